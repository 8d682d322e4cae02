"""Aggregate finished training runs into tables, plots and a paired test: ``tmc-report DIR``.

A run folder is one that ``tmc-train`` wrote: ``config.yaml`` and ``metrics.json`` (plus
``logs/metrics.csv`` and ``per_image_<split>.csv``). Runs are grouped into configurations by
config keys (seeds never group); each configuration gets mean ± sample std over its runs of
Dice and IoU under both protocols of docs/design.md §4, next to the paper's number where known.
Everything lands in ``--out`` (default ``DIR/report``) at once, or not at all.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from tmc_lightning.reporting.plots import plot_bars, plot_curves
from tmc_lightning.reporting.runs import (
    METRICS,
    PRECISION_KEY,
    SPLITS,
    Group,
    ReportError,
    default_keys,
    group_runs,
    load_runs,
    mixed_keys,
    summarise,
)
from tmc_lightning.reporting.stats import gap_closed, paired_test, paper_dice, pick
from tmc_lightning.reporting.tables import (
    rel_path,
    table_rows,
    write_csv,
    write_markdown,
    write_tex,
)
from tmc_lightning.utils import atomic_folder


def log_wandb(out_dir: Path, groups: list[Group], root: Path, plots: list[Path]) -> Path:
    """Log the table (and plots) as an offline W&B run in ``out_dir/wandb``; returns its folder."""
    try:
        import wandb
    except ImportError:
        raise ReportError("--wandb: wandb is not installed (pip install wandb)") from None
    mode = "online" if os.environ.get("WANDB_MODE") == "online" else "offline"
    header, rows = table_rows(groups)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "tmc-lightning"),
        job_type="report",
        name=f"report-{root.name}",
        dir=str(out_dir),
        mode=mode,
        config={"source": str(root), "configurations": len(groups)},
    )
    run.log(
        {
            "report": wandb.Table(columns=header, data=rows),
            **{p.stem: wandb.Image(str(p)) for p in plots},
        }
    )
    run_dir = Path(run.dir).parent  # .../wandb/offline-run-<stamp>-<id>/files -> the run folder
    run.finish()
    return run_dir


# ---------------------------------------------------------------- driver


def build_report(
    root: str | Path,
    out: str | Path | None = None,
    group_by: list[str] | None = None,
    paper_dataset: str | None = None,
    compare: tuple[str, str] | list[tuple[str, str]] | None = None,
    use_wandb: bool = False,
    skip_incomplete: bool = False,
    gap: tuple[str, str] | None = None,
) -> Path:
    """Write report.md/.csv/.tex, runs.csv and plots for the runs under ``root``; returns --out.

    ``compare``: one pair of configurations (id, label or a unique piece of it) or a list of
    pairs, each tested with a paired Wilcoxon test; default: the best two.
    """
    root = Path(root).resolve()
    out = Path(out).resolve() if out else root / "report"
    runs = load_runs(root, skip=out, skip_incomplete=skip_incomplete)
    keys = list(group_by) if group_by else default_keys(runs)
    groups, varying = group_runs(runs, keys)
    for g in groups:
        summarise(g)
        papers = {paper_dice(r.config, paper_dataset) for r in g.runs}
        g.paper = papers.pop() if len(papers) == 1 else None  # pooled rows of different kinds
    constants = {k: runs[0].config.get(k) for k in keys if k not in varying}
    notes = [
        f"{g.id} mixes runs that differ in {', '.join(m)} (not a grouping key): add them with --group-by"
        for g in groups
        if (m := mixed_keys(g))
    ]
    if compare:
        pairs = [compare] if isinstance(compare[0], str) else list(compare)
        tests = [paired_test(pick(groups, a), pick(groups, b)) for a, b in pairs]
    else:
        split = "test" if all("test_dice" in g.stats for g in groups) else "val"
        ranked = sorted(groups, key=lambda g: -np.nan_to_num(g.score(split), nan=-1.0))
        tests = [paired_test(ranked[0], ranked[1])] if len(ranked) > 1 else []

    closed = None
    if gap:  # e.g. 25% of the masks (floor) and 100% (ceiling); contrasts: compared pairs between
        low, high = pick(groups, gap[0], "--gap"), pick(groups, gap[1], "--gap")
        ends = {low.id, high.id}
        between = [
            (t["a"], t["b"])
            for t in tests
            if "error" not in t and not {t["a"].id, t["b"].id} & ends
        ]
        closed = gap_closed(groups, low, high, between)

    with atomic_folder(out, replace=True) as tmp:  # an earlier report goes once this one is whole
        plots = [tmp / "ablation_bars.png", tmp / "val_dice_curves.png"]
        plot_bars(groups, plots[0])
        if not plot_curves(groups, plots[1]):
            notes.append("no run has val/dice in logs/metrics.csv: the curve plot is empty")
        wandb_dir = None
        if use_wandb:
            wandb_dir = log_wandb(tmp, groups, root, plots)
            if tmp in wandb_dir.parents:  # where it will be once the folder is renamed
                wandb_dir = out / wandb_dir.relative_to(tmp)
        write_csv(groups, keys, tmp / "report.csv")
        write_tex(groups, tmp / "report.tex")
        write_markdown(
            root,
            groups,
            varying,
            constants,
            tests,
            notes,
            plots,
            wandb_dir,
            tmp / "report.md",
            gap=closed,
        )
        with (tmp / "runs.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["config", "label", "seed", "path"]
                + [f"{s}_{m}" for s in SPLITS for m in METRICS]
                + ["precision"]
            )
            for g in groups:
                for r in g.runs:
                    vals = [r.metrics.get(s, {}).get(m, "") for s in SPLITS for m in METRICS]
                    w.writerow(
                        [g.id, g.label, r.config.get("seed", ""), rel_path(r.path, root), *vals]
                        + [r.config.get(PRECISION_KEY, "")]
                    )
    return out


def wandb_default() -> bool:
    if os.environ.get("WANDB_MODE") in (None, "", "disabled"):
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True
