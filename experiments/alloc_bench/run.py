"""Where a large CPU train step's memory comes from: glibc alone, huge pages, or jemalloc.

    python experiments/alloc_bench/run.py --model lvit --batches 2 8 --rounds 2 \
        --out experiments/alloc_bench/alloc_lvit_paper

Each arm is a way of running the same ``tmc-bench`` train step (``--presets paper --variants
fp32 --dataset none``, glibc keeping freed blocks under 32 MiB as training does):

- ``glibc``: ``THP_MEM_ALLOC_ENABLE=0``: every block above glibc's 32 MiB mmap ceiling comes
  back from the kernel each step, faulted in 4 KiB page by page, each page zeroed;
- ``thp``: ``THP_MEM_ALLOC_ENABLE=1``: torch aligns blocks of 2 MiB and more to 2 MiB and
  asks for transparent huge pages (``madvise``), so a fault maps 2 MiB at once;
- ``glibc-nommap``: ``GLIBC_TUNABLES=glibc.malloc.mmap_max=0``: no block is mmapped, so every
  freed block stays in the heap for the next step;
- ``jemalloc``: Debian's libjemalloc2 preloaded (``LD_PRELOAD``), when it is installed, with its
  defaults, and ``jemalloc-keep`` with ``MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1``
  (freed pages are never returned).

The variable is read once, at a process's first allocation, so arms cannot share a process:
each round runs one ``tmc-bench`` process per arm and batch, the arms' order rotating every
round, and the table gives each arm's median over rounds of tmc-bench's per-step figures (step
time, page faults, kernel seconds, peak memory). Kernel seconds per image at batch 8 against
batch 2 answer issue 33's question.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from tmc_lightning.utils import provenance, write_json_atomic, write_text_atomic

JEMALLOC = Path("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2")
# glibc serves every block from the heap (no mmap at all), so nothing above 32 MiB is unmapped
NOMMAP = "glibc.malloc.mmap_max=0"
# jemalloc never hands freed pages back to the kernel (its default purges them after 10 s)
JEMALLOC_KEEP = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
# An allocator this runner itself may run under: no arm inherits it
INHERITED = ("LD_PRELOAD", "MALLOC_CONF", "TMC_ALLOCATOR", "TMC_ALLOCATOR_PRELOADED")
FIELDS = ("train_step_ms", "page_faults_per_step", "sys_s_per_step", "peak_mem_mb")


def arms(requested: list[str]) -> dict[str, dict[str, str]]:
    """Each arm's environment changes; jemalloc only where the library is installed."""
    known = {
        "glibc": {"THP_MEM_ALLOC_ENABLE": "0", "TMC_ALLOCATOR": "glibc"},
        "thp": {"THP_MEM_ALLOC_ENABLE": "1", "TMC_ALLOCATOR": "glibc"},
        "glibc-nommap": {
            "THP_MEM_ALLOC_ENABLE": "0",
            "TMC_ALLOCATOR": "glibc",
            "GLIBC_TUNABLES": NOMMAP,
        },
        "jemalloc": {
            "THP_MEM_ALLOC_ENABLE": "0",
            "LD_PRELOAD": str(JEMALLOC),
            "MALLOC_CONF": "",  # its own defaults: freed pages purged after 10 s
        },
        "jemalloc-keep": {
            "THP_MEM_ALLOC_ENABLE": "0",
            "LD_PRELOAD": str(JEMALLOC),
            "MALLOC_CONF": JEMALLOC_KEEP,
        },
    }
    out = {}
    for name in requested:
        if name not in known:
            raise SystemExit(f"error: --arms {name}: one of {', '.join(known)}")
        if name.startswith("jemalloc") and not JEMALLOC.is_file():
            print(f"skipping {name}: {JEMALLOC} is not installed (apt install libjemalloc2)")
            continue
        out[name] = known[name]
    return out


def bench_once(model: str, batch: int, env: dict[str, str], args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench"
        cmd = [
            str(Path(sys.executable).with_name("tmc-bench")), "--models", model,
            "--presets", args.preset, "--variants", "fp32", "--image-size", str(args.image_size),
            "--batch", str(batch), "--infer-batches", "1", "--steps", str(args.steps),
            "--warmup", str(args.warmup), "--dataset", "none", "--matmul-seconds", "1",
            "--out", str(out),
        ]  # fmt: skip
        base = {k: v for k, v in os.environ.items() if k not in INHERITED}  # this runner's own
        proc = subprocess.run(cmd, env={**base, **env}, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"error: tmc-bench failed under {env}:\n{proc.stderr[-2000:]}")
        row = json.loads(out.with_suffix(".json").read_text())["rows"][0]
    return {k: row[k] for k in FIELDS}


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="lvit")
    p.add_argument("--preset", default="paper")
    p.add_argument("--batches", nargs="+", type=int, default=[2, 8])
    p.add_argument("--arms", nargs="+", default=["glibc", "thp", "jemalloc"])
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--out", required=True, help="writes <out>.json and <out>.md")
    args = p.parse_args(argv)
    chosen = arms(args.arms)
    names = list(chosen)
    runs: dict[str, dict[int, list[dict]]] = {a: {b: [] for b in args.batches} for a in names}
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for batch in args.batches:
            for arm in order:
                got = bench_once(args.model, batch, chosen[arm], args)
                runs[arm][batch].append(got)
                print(f"round {r + 1} batch {batch} {arm}: {got}", flush=True)
    table = {
        arm: {
            batch: {k: statistics.median(x[k] for x in rows) for k in FIELDS}
            for batch, rows in per_batch.items()
        }
        for arm, per_batch in runs.items()
    }
    report = {**provenance(), "args": vars(args), "arms": chosen, "median": table, "runs": runs}
    head = [
        f"# {args.model} {args.preset} train step (fp32, {args.image_size} px): memory arms",
        "",
        f"Machine: {report['machine_line']}  ",
        f"Command: `{report['command']}`  ",
        f"Commit: {report['git_commit']}; medians of {args.rounds} rounds, arms alternating.",
        "",
    ]
    lines = [
        "| arm | batch | step ms | ms / image | page faults / step | kernel s / step "
        "| kernel ms / image | peak MB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for arm, per_batch in table.items():
        for batch, m in per_batch.items():
            lines.append(
                f"| {arm} | {batch} | {m['train_step_ms']:.0f} | {m['train_step_ms'] / batch:.0f} "
                f"| {m['page_faults_per_step']:.0f} | {m['sys_s_per_step']:.2f} "
                f"| {1000 * m['sys_s_per_step'] / batch:.0f} | {m['peak_mem_mb']:.0f} |"
            )
    out = Path(args.out)
    write_json_atomic(out.with_suffix(".json"), report)
    write_text_atomic(out.with_suffix(".md"), "\n".join(head + lines) + "\n")
    print("\n".join(head + lines))


if __name__ == "__main__":
    main(sys.argv[1:])
