"""The report's tables: Markdown, CSV and LaTeX."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

from tmc_lightning.reporting.runs import (
    METRIC_TITLES,
    METRICS,
    PRECISION_KEY,
    SPLITS,
    Group,
    show_value,
)


def _cell(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "—"
    mean, std, _ = stat
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _delta(g: Group) -> float | None:
    test = g.stats.get("test_dice")
    return None if g.paper is None or test is None else test[0] - g.paper


def table_rows(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    header = ["#", "configuration", "n"]
    header += [f"{s} {METRIC_TITLES[m]}" for s in SPLITS for m in METRICS]
    header += ["paper Dice", "Δ Dice (test − paper)"]
    rows = []
    for g in groups:
        row = [g.id, g.label, str(len(g.runs))]
        row += [_cell(g.stats.get(f"{s}_{m}")) for s in SPLITS for m in METRICS]
        d = _delta(g)
        row += [f"{g.paper:.2f}" if g.paper is not None else "—", "—" if d is None else f"{d:+.2f}"]
        rows.append(row)
    return header, rows


def write_csv(groups: list[Group], keys: list[str], path: Path) -> None:
    fields = ["id", "label", *keys, "n"]
    fields += [f"{s}_{m}_{x}" for s in SPLITS for m in METRICS for x in ("mean", "std")]
    fields += ["paper_dice", "delta_dice"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for g in groups:
            cfg = g.runs[0].config
            row: list[Any] = [g.id, g.label, *(show_value(cfg.get(k)) for k in keys), len(g.runs)]
            for s in SPLITS:
                for m in METRICS:
                    mean, std, _ = g.stats.get(f"{s}_{m}", (math.nan, math.nan, 0))
                    row += ["" if math.isnan(mean) else mean, "" if math.isnan(std) else std]
            d = _delta(g)
            row += ["" if g.paper is None else g.paper, "" if d is None else d]
            w.writerow(row)


TEX_ESCAPES = str.maketrans(
    {c: "\\" + c for c in "_&%#$"}
    | {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "—": "--", "−": "-", "±": r"$\pm$"}
)


def _tex(text: str) -> str:
    return text.translate(TEX_ESCAPES)


def write_tex(groups: list[Group], path: Path) -> None:
    _, rows = table_rows(groups)
    sub = " & ".join(["Dice", "IoU", r"Dice\textsubscript{g}", r"IoU\textsubscript{g}"] * 2)
    lines = [
        r"% Needs \usepackage{booktabs}. Values in %, mean $\pm$ sample std over seeds.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * 11 + "}",
        r"\toprule",
        r" & & & \multicolumn{4}{c}{Validation} & \multicolumn{4}{c}{Test} & & \\",
        r"\cmidrule(lr){4-7} \cmidrule(lr){8-11}",
        rf"\# & Configuration & $n$ & {sub} & Paper & $\Delta$ \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{Dice and IoU (\%) per configuration: per-image mean and global "
        r"(\textsubscript{g}) protocols; Paper: the paper's test Dice; $\Delta$: test Dice "
        r"minus Paper.}",
        r"\label{tab:tmc-report}",
        r"\end{table}",
    ]
    path.write_text("\n".join(lines) + "\n")


def paired_lines(tests: list[dict[str, Any]]) -> list[str]:
    """One table row per paired test; the CI is a bootstrap over images of the mean difference."""
    if not tests:
        return ["Only one configuration: nothing to compare."]
    ok = [t for t in tests if "error" not in t]
    out = []
    if ok:
        out += [
            "Per-image Dice averaged over each configuration's seeds, paired by image name (on "
            "the test split where both have it, else val); A − B in Dice points (95% bootstrap "
            "CI of the mean over images).",
            "",
            "| A | B | split | n images | median Dice A − B | mean Dice A − B (95% CI) | statistic | p-value |",
            "|---|---|---|---:|---:|---:|---:|---:|",
        ]
    for t in ok:
        lo, hi = t["mean_diff_ci"]
        out.append(
            f"| {_name(t['a'])} | {_name(t['b'])} | {t['split']} | {t['n']} | {100 * t['median_diff']:+.3f} | "
            f"{100 * t['mean_diff']:+.3f} ({100 * lo:+.3f} to {100 * hi:+.3f}) | "
            f"{t['statistic']:.1f} | {t['p']:.4g} |"
        )
    notes = [f"{_name(t['a'])} vs {_name(t['b'])}: {t['note']}." for t in ok if t.get("note")]
    notes += [
        f"{_name(t['a'])} vs {_name(t['b'])}: not run ({t['error']})."
        for t in tests
        if "error" in t
    ]
    return out + ([""] + notes if notes else [])


def gap_lines(gap: dict[str, Any]) -> list[str]:
    """The share of the floor-to-ceiling gap each configuration closes (reporting/stats.py)."""
    if "error" in gap:
        return [f"Not computed: {gap['error']}."]
    lo, hi = gap["gap_ci"]
    out = [
        f"Gap: {_name(gap['high'])} − {_name(gap['low'])} = {100 * gap['gap']:+.2f} Dice points "
        f"(95% CI {100 * lo:+.2f} to {100 * hi:+.2f}) per image on {gap['split']} "
        f"({gap['n']} images, each configuration's seeds averaged). Share closed = "
        "(configuration − floor) / (ceiling − floor). The 95% bootstrap CIs resample images and "
        "leave out the variation between seeds: the last column shows it, each seed's runs "
        "compared with the same seed's floor and ceiling.",
        "",
        "| configuration | per-image Dice | share of the gap closed (95% CI) | by seed |",
        "|---|---:|---:|---|",
    ]
    for r in gap["rows"]:
        lo, hi = r["ci"]
        seeds = ", ".join(f"{s}: {100 * v:+.0f}%" for s, v in r["seeds"].items()) or "—"
        out.append(
            f"| {_name(r['group'])} | {100 * r['dice']:.2f} | "
            f"{100 * r['share']:+.1f}% ({100 * lo:+.1f}% to {100 * hi:+.1f}%) | {seeds} |"
        )
    if gap["contrasts"]:
        out += ["", "| A | B | share A − share B (95% CI) |", "|---|---|---:|"]
        for c in gap["contrasts"]:
            lo, hi = c["ci"]
            out.append(
                f"| {_name(c['a'])} | {_name(c['b'])} | "
                f"{100 * c['share']:+.1f}% ({100 * lo:+.1f}% to {100 * hi:+.1f}%) |"
            )
    if gap["skipped"]:
        names = ", ".join(_name(g) for g in gap["skipped"])
        out += ["", f"Left out (runs without per-image scores): {names}."]
    return out


def _name(g: Group) -> str:
    return f"{g.id} ({g.label})"


def _minutes(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds / 60:.1f}"


def write_markdown(
    root: Path, groups, varying, constants, tests, notes, plots, wandb_dir, path: Path, gap=None
) -> None:
    header, rows = table_rows(groups)
    n_runs = sum(len(g.runs) for g in groups)
    out = [f"# Report: {root}", ""]
    out.append(
        f"{n_runs} runs in {len(groups)} configurations (rows named by: {', '.join(varying) or 'none varies'})."
    )
    if constants:
        out.append(
            "Same in every run: "
            + ", ".join(f"`{k}={show_value(v)}`" for k, v in constants.items())
            + "."
        )
    out += [
        "",
        "Values in %: mean ± sample std (ddof=1) over runs (seeds). Per-image: Dice/IoU per image,"
        " averaged (the paper's protocol); global: tp/fp/fn summed over the split. Paper: the "
        "paper's test Dice for this row where it has one; Δ = test Dice − paper.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Paired tests (Wilcoxon signed-rank on per-image Dice)", ""]
    out += paired_lines(tests)
    if gap is not None:
        out += ["", "## Share of the gap closed", ""] + gap_lines(gap)
    out += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    out += [
        "",
        "## Runs",
        "",
        "| config | seed | val Dice | test Dice | precision | epochs | wall (min) | CPU (min) "
        "| git commit | folder |",
        "|---|---:|---:|---:|---|---:|---:|---:|---|---|",
    ]
    machines: set[str] = set()
    for g in groups:
        for r in g.runs:
            v, t = (r.metrics.get(s, {}).get("dice") for s in SPLITS)
            cells = ["—" if x is None else f"{100 * x:.2f}" for x in (v, t)]
            timing = read_timing(r.path)
            machines |= {a["machine"] for a in timing.get("attempts", []) if "machine" in a}
            wall = timing.get("wall_s", r.metrics.get("wall_time_s"))
            commit = str(r.metrics.get("git_commit") or "—")[:10]
            out.append(
                f"| {g.label} | {r.config.get('seed', '—')} | {cells[0]} | {cells[1]} | "
                f"{r.config.get(PRECISION_KEY, '—')} | {r.metrics.get('epochs_trained', '—')} | {_minutes(wall)} | "
                f"{_minutes(timing.get('cpu_s'))} | {commit} | {rel_path(r.path, root)} |"
            )
    if machines:
        out += ["", "Machine: " + "; ".join(sorted(machines)) + "."]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if wandb_dir:
        out += ["", f"W&B offline run: `{wandb_dir}` (upload with `wandb sync <that folder>`)."]
    path.write_text("\n".join(out) + "\n")


def read_timing(folder: Path) -> dict[str, Any]:
    """A study driver's timing.json (wall and CPU seconds over all attempts), or {}."""
    try:
        return json.loads((folder / "timing.json").read_text())
    except (OSError, ValueError):
        return {}


def rel_path(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path != root else "."
