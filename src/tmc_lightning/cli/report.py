"""``tmc-report DIR``: tables, plots and paired tests over a study's run folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tmc_lightning.reporting.build import build_report, wandb_default
from tmc_lightning.reporting.runs import DEFAULT_KEYS, PAPER_TMC, ReportError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tmc-report",
        description="Tables (md/csv/LaTeX), plots and a paired test over tmc-train run folders.",
    )
    p.add_argument(
        "dir", type=Path, help="a multirun/<group>/<date> or outputs/ folder (searched recursively)"
    )
    p.add_argument("--out", type=Path, help="output folder (default: DIR/report)")
    p.add_argument(
        "--group-by",
        nargs="+",
        metavar="KEY",
        help="config keys that define a configuration (default: label where every run sets it, "
        f"else {' '.join(DEFAULT_KEYS)}); "
        "comma- or space-separated; seed never groups",
    )
    p.add_argument(
        "--paper-dataset",
        choices=sorted(PAPER_TMC),
        help="compare with the paper's numbers for this dataset (default: each run's dataset.name)",
    )
    p.add_argument(
        "--compare",
        nargs=2,
        action="append",
        metavar=("A", "B"),
        help="configurations to test (id C1, or label); repeat for several pairs "
        "(default: the best two)",
    )
    p.add_argument(
        "--gap",
        nargs=2,
        metavar=("FLOOR", "CEILING"),
        help="the share of the Dice gap between these two configurations (id or label; e.g. 25%% "
        "and 100%% of the masks) that each other one closes, with bootstrap CIs",
    )
    p.add_argument(
        "--wandb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log the table to an offline W&B run in the report folder "
        "(default: on when wandb is installed and WANDB_MODE is set)",
    )
    p.add_argument(
        "--skip-incomplete", action="store_true", help="ignore runs without final scores"
    )
    args = p.parse_args(argv)
    keys = [k for item in args.group_by for k in item.split(",") if k] if args.group_by else None
    try:
        out = build_report(
            args.dir,
            args.out,
            keys,
            args.paper_dataset,
            [tuple(c) for c in args.compare] if args.compare else None,
            wandb_default() if args.wandb is None else args.wandb,
            args.skip_incomplete,
            tuple(args.gap) if args.gap else None,
        )
    except ReportError as err:
        print(f"tmc-report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'report.md'} (+ report.csv, report.tex, runs.csv, plots)")
    return 0
