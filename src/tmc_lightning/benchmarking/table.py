"""What ``tmc-bench`` prints and writes: the machine line and the results table."""

from __future__ import annotations

from typing import Any

COLUMNS = [  # (header, key, format)
    ("model", "model", "{}"),
    ("preset", "preset", "{}"),
    ("variant", "variant", "{}"),
    ("train img/s", "train_images_per_s", "{:.2f}"),
    ("step ms", "train_step_ms", "{:.0f}"),
    ("page faults/step", "page_faults_per_step", "{:.0f}"),
    ("kernel s/step", "sys_s_per_step", "{:.2f}"),
    ("infer ms/img b1", "infer_ms_per_image_b1", "{:.1f}"),
    ("infer ms/img b8", "infer_ms_per_image_b8", "{:.1f}"),
    ("peak MB", "peak_mem_mb", "{:.0f}"),
    ("GFLOP/step", "train_gflop_per_step", "{:.1f}"),
    ("GFLOP/s", "train_gflops_per_s", "{:.1f}"),
    ("matmul GFLOP/s", "matmul_gflops_per_s", "{:.1f}"),
    ("% matmul", "frac_of_matmul", "{:.0%}"),
    ("data/train", "data_to_train_ratio", "{:.1f}x"),
]


def format_row(row: dict[str, Any]) -> str:
    cells = [fmt.format(row[key]) if row.get(key) is not None else "" for _, key, fmt in COLUMNS]
    if row.get("error"):
        cells.append(f"error: {row['error']}")
    return "| " + " | ".join(cells) + " |"


def markdown(report: dict[str, Any]) -> str:
    headers = [h for h, _, _ in COLUMNS]
    mem_kind = next((r["mem_kind"] for r in report["rows"] if r.get("mem_kind")), None)
    if any(r.get("error") for r in report["rows"]):
        headers.append("error")
    lines = [
        "# tmc-bench",
        "",
        f"Machine: {report['machine_line']}",
        "",
        f"Command: `{report['command']}` (git {report['git_commit']})",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
        *(format_row(r) for r in report["rows"]),
        "",
        f"FLOPs: {report['flops_source']}. % matmul: the train step's GFLOP/s over an n x n "
        "matmul's in the same run, device and dtype (bf16 rows against a bf16 matmul).",
        f"Peak MB: {mem_kind or 'peak memory'} during the train steps. Page faults and "
        "kernel s: this process's, per timed train step (memory faulted in again each step "
        "shows there; perf.keep_freed_memory and --no-keep-freed-memory).",
    ]
    data = report["data"]
    if data:
        lines.append(
            f"Data pipeline: {data['dataset']} train loader with augmentation={data['augment']}, "
            f"{data['workers']} workers: {data['images_per_s']:.1f} images/s "
            f"(first batch {data['first_batch_s']:.2f} s); data/train = that over train img/s."
        )
    profiled = [r for r in report["rows"] if r.get("profile")]
    if profiled:
        lines += ["", "## Profiles (torch.profiler, self time per train step)", ""]
    for r in profiled:
        lines += profile_lines(r)
    lines += ["", "Per-row commands:", ""]
    lines += [
        f"- {r['model']} {r['preset']} {r['variant']}: `{r['command']}`" for r in report["rows"]
    ]
    return "\n".join(lines) + "\n"


def profile_lines(row: dict[str, Any]) -> list[str]:
    prof = row["profile"]
    fams = ", ".join(f"{k} {v:.0%}" for k, v in prof["families"].items())
    lines = [
        f"### {row['model']} {row['preset']} {row['variant']}",
        "",
        f"{prof['ms_per_step']:.0f} ms of operator {prof['time']} time per step: {fams}.",
        "",
        "| operator | ms/step | share | calls/step |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{o['op']}` | {o['ms_per_step']:.1f} | {o['share']:.1%} | {o['calls_per_step']:.0f} |"
        for o in prof["top_ops"]
    ]
    return [*lines, ""]
