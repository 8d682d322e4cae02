"""Seed-by-seed paired comparisons of the synthetic study, at matched precision.

    .venv/bin/python experiments/synthetic_study/pairs.py [--runs DIR] [--out FILE]

The study's report (`report/report.md`) averages each configuration's per-image Dice over its
seeds before pairing images. Its runs were trained on different machines, so a row can mix
precisions (`trainer.precision=auto` is bf16-mixed on a CPU with native bf16, fp32 on one
without). Here every comparison is one seed of A against the same seed of B, trained with the
same data order and initialisation; each line shows the precision each run actually used
(`metrics.json`), and an injection pair whose precisions differ is marked as confounded.

- injection: the `resized` injection (default) against `model.injection=full`, at equal
  precision: `tmc-seed42`/`tmc-full-seed42` (both bf16 where they were trained),
  `tmc-fp32-seed43`/`tmc-full-seed43` and `tmc-seed44`/`tmc-full-seed44` (fp32 on AVX2);
- precision: `tmc-seed<N>` (bf16-mixed) against `tmc-fp32-seed<N>`;
- the yardstick: seed 42 against seed 43 of one configuration.

Writes `report/pairs.md`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from tmc_lightning.reporting.runs import Group, load_run
from tmc_lightning.reporting.stats import paired_test

HERE = Path(__file__).resolve().parent
PAIRS = (
    ("injection: resized − full", "tmc-seed42", "tmc-full-seed42"),
    ("injection: resized − full", "tmc-fp32-seed43", "tmc-full-seed43"),
    ("injection: resized − full", "tmc-seed44", "tmc-full-seed44"),
    ("precision: auto − fp32", "tmc-seed42", "tmc-fp32-seed42"),
    ("precision: auto − fp32", "tmc-seed43", "tmc-fp32-seed43"),
    # The yardstick: the same configuration, two seeds. How far apart two runs land anyway.
    ("same configuration: seed 42 − 43", "tmc-seed42", "tmc-seed43"),
    ("same configuration: seed 42 − 43", "tmc-fp32-seed42", "tmc-fp32-seed43"),
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--runs", type=Path, default=HERE / "runs")
    ap.add_argument("--out", type=Path, default=HERE / "report" / "pairs.md")
    args = ap.parse_args(argv)
    lines = [
        "# Seed-by-seed pairs at matched precision (`pairs.py`)",
        "",
        "Per-image Dice (split, n images), A − B in Dice points; the 95% CI is a",
        "bootstrap over images; p: Wilcoxon signed-rank. Val Dice is each run's best-epoch mean.",
        "The CI and p say whether two trained models differ on these images, not whether the",
        "setting does: they leave out how far two runs of one setting land apart. The",
        "same-configuration rows measure that, and a setting's effect has to exceed them.",
        "",
        "| comparison | A | B | precision A / B | val Dice A / B | split, n "
        "| Dice A − B (95% CI) | median | p |",
        "|---|---|---|---|---|---|---:|---:|---:|",
    ]
    by_kind: dict[str, list[float]] = {}
    missing = []
    for kind, a, b in PAIRS:
        fa, fb = args.runs / a, args.runs / b
        if not (fa / "metrics.json").is_file() or not (fb / "metrics.json").is_file():
            missing.append(f"{a} / {b}")
            continue
        ra, rb = load_run(fa), load_run(fb)
        test = paired_test(Group((a,), [ra], label=a), Group((b,), [rb], label=b))
        if "error" in test:
            print(f"error: {a} vs {b}: {test['error']}", file=sys.stderr)
            return 1
        pa, pb = (r.metrics.get("precision", {}).get("used", "?") for r in (ra, rb))
        note = (
            " (confounded: precisions differ)" if kind.startswith("injection") and pa != pb else ""
        )
        lo, hi = test["mean_diff_ci"]
        va, vb = (100 * r.metrics["val"]["dice"] for r in (ra, rb))
        lines.append(
            f"| {kind}{note} | {a} | {b} | {pa} / {pb} | {va:.2f} / {vb:.2f} "
            f"| {test['split']}, {test['n']} "
            f"| {100 * test['mean_diff']:+.2f} ({100 * lo:+.2f} to {100 * hi:+.2f}) "
            f"| {100 * test['median_diff']:+.2f} | {test['p']:.3g} |"
        )
        if not note:
            by_kind.setdefault(kind, []).append(100 * test["mean_diff"])
    lines += ["", "Mean over the unconfounded pairs (each pair's mean per-image difference):", ""]
    for kind, diffs in by_kind.items():
        spread = f", sample std {np.std(diffs, ddof=1):.2f}" if len(diffs) > 1 else ""
        lines.append(f"- {kind}: {np.mean(diffs):+.2f} points over {len(diffs)} seed(s){spread}")
    if missing:
        lines += ["", "Not yet run: " + "; ".join(missing) + "."]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
