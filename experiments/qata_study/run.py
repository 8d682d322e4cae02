"""The QaTa-COV19 study: Table 2's rows, Table 1's text-encoder swap and UNet, 2 seeds each.

    .venv/bin/python experiments/qata_study/run.py [--commit] [--rows tmc unet ...] [--seeds 1 2]
        [-- extra overrides for every run]

Trains every (row, seed) one after another with ``experiment=qata_study`` (the shared recipe
and budget) plus the row's own overrides, and scores each on QaTa val. Resumable: a finished
run's small results are copied to ``experiments/qata_study/runs/<row>-seed<N>/`` (with
``--commit``, committed there at once) and skipped from then on, on any machine; a run
interrupted mid-way continues from its ``last.ckpt`` under ``outputs/qata_study/``. Once no run
is left, ``tmc-report`` writes ``experiments/qata_study/report/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from tmc_lightning.training.study import Row, Study, main

REPO = Path(__file__).resolve().parents[2]

TMC = ("model=tmc",)
# In training order (seed 1 of every row first): an unfinished study still has whole rows.
ROWS = (
    Row("tmc", "TMC", (*TMC, "model.mcm=true", "model.align=true")),
    Row("unet", "UNet", ("model=unet", "model.preset=small")),
    Row("tmc-neither", "neither (TMC encoders)", (*TMC, "model.mcm=false", "model.align=false")),
    Row("lvit", "neither (LViT)", ("model=lvit",)),
    Row("tmc-mcm", "MCM only", (*TMC, "model.mcm=true", "model.align=false")),
    Row("tmc-align", "align only", (*TMC, "model.mcm=false", "model.align=true")),
    Row(
        "tmc-random-text",
        "TMC, random-init MiniLM",
        (*TMC, "text_encoder=minilm", "text_encoder.pretrained=false"),
    ),
)
# Paired Wilcoxon tests of the report (labels): issue 19's four, plus the text-encoder swap.
COMPARISONS = (
    ("TMC", "neither (TMC encoders)"),
    ("MCM only", "neither (TMC encoders)"),
    ("align only", "neither (TMC encoders)"),
    ("TMC", "neither (LViT)"),
    ("TMC", "UNet"),
    ("TMC", "TMC, random-init MiniLM"),
)
STUDY = Study.on_qata(
    "qata_study", ROWS, ("experiment=qata_study",), comparisons=COMPARISONS, doc=__doc__
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
