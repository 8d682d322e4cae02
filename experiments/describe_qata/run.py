"""How often descriptions written from masks agree with LViT's hand-written QaTa-COV19 texts.

    .venv/bin/python experiments/describe_qata/run.py [--root ../shared/data/QaTa-COV19] [--split train]

For every triple of the split: ``describe_mask`` (QaTa vocabulary, plain laterality, the
default lung band) against the sheet's Description, compared on laterality (unilateral /
bilateral), the number of infected areas and the zones per lung; plus the laterality
convention measured from the one-sided texts. Writes experiments/describe_qata/describe_qata.md.

Two option sets are scored: the defaults (an anatomical guess: lungs in rows 15-85% of the
image) and the band that agreed best on zones in a grid search over every 6th train triple
(lung_top 0.10-0.25, lung_bottom 0.45-0.85, min_share 0.03-0.3): rows 25-45%, min_share 0.06.
"""

from __future__ import annotations

import argparse
import collections
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    from tmc_lightning.data.describe import (
        DescribeOptions,
        agreement,
        convention_line,
        describe_mask,
        measure_convention,
        side_share,
    )
    from tmc_lightning.data.imageio import read_mask
    from tmc_lightning.data.layouts import read_lvit
    from tmc_lightning.utils import provenance

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--root", default=str(REPO.parent / "shared" / "data" / "QaTa-COV19"))
    ap.add_argument("--split", default="train")
    ap.add_argument(
        "--out", default=str(REPO / "experiments" / "describe_qata" / "describe_qata.md")
    )
    args = ap.parse_args(argv)
    samples = read_lvit(args.root, args.split)
    masks = [read_mask(s.mask) > 0 for s in samples]
    measured = measure_convention(
        side_share(s.text, m) for s, m in zip(samples, masks, strict=True)
    )
    prov = provenance()
    lines = [
        f"# Descriptions from masks vs LViT's QaTa-COV19 texts ({args.split}, {len(samples)} triples)",
        "",
        f"Command: `{prov['command']}` (git {prov['git_commit']})  ",
        f"Machine: {prov['machine_line']}",
        "",
        convention_line(measured, "plain"),
    ]
    for title, opts in (
        ("defaults", DescribeOptions()),
        ("best-agreeing band", DescribeOptions(lung_top=0.25, lung_bottom=0.45, min_share=0.06)),
    ):
        tally = {k: collections.Counter() for k in ("laterality", "count", "zones")}
        examples = []
        for s, mask in zip(samples, masks, strict=True):
            ours = describe_mask(mask, opts)
            agree = agreement(ours, s.text)
            for key, value in agree.items():
                tally[key][value] += 1
            if len(examples) < 5 and not all(agree.values()):
                examples.append((s.mask.name, s.text, ours))
        lines += [
            "",
            f"## {title}: `{opts}`",
            "",
            "| agrees on | yes | no | not comparable | share yes |",
            "|---|---:|---:|---:|---:|",
        ]
        for key, c in tally.items():
            share = c[True] / max(c[True] + c[False], 1)
            lines.append(f"| {key} | {c[True]} | {c[False]} | {c[None]} | {share:.1%} |")
        lines += ["", "Disagreements, first few:", ""]
        lines += [f"- `{m}`: LViT “{t}” / ours “{o}”" for m, t, o in examples]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
