"""Same-budget comparison on the embedded synthetic set: every registered model, small preset.

    tmc-study synthetic_benchmark [--rows tmc lvit ...] [--commit] [-- extra overrides]

Each model trains with the same data, epochs, optimiser and seed (the embedded set's defaults),
one after another, through the resumable study driver. The set names the target lesions in the
text and adds identical-looking distractors, so a text-free model cannot tell them apart: the
image-only baselines are expected to stay well below TMC and LViT. The recorded table
(``synthetic_benchmark.md``) was written by this study's earlier runner; new runs land in
``runs/`` and ``report/``.
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

MODELS = (
    ("tmc", "TMC"),
    ("lvit", "LViT"),
    ("unet", "UNet"),
    ("attunet", "AttUNet"),
    ("unetpp", "UNet++"),
    ("transunet", "TransUNet"),
    ("uctransnet", "UCTransNet"),
)
ROWS = tuple(Row(slug, label, (f"model={slug}",)) for slug, label in MODELS)
COMPARISONS = (("TMC", "LViT"), ("TMC", "UNet"))
STUDY = Study(
    "synthetic_benchmark", ROWS, comparisons=COMPARISONS, seeds=(42,), order="row", doc=__doc__
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
