"""The embedded synthetic set at the `make train` budget: the rows that issues 16 and 20 ask for.

    .venv/bin/python experiments/synthetic_study/run.py [--commit] [--rows tmc lvit ...]
        [-- extra overrides for every run]

Every run is `python -m tmc_lightning.train` with the defaults (`dataset=synthetic`, TMC
`small`, 128 px, 12 epochs of 125 steps, `trainer.precision=auto`) plus its row's overrides:

- TMC, LViT, UNet and TMC with `dataset.text_dropout=0.3` (seed 42, the default): the
  checkpoints of the prompt-robustness table (`experiments/text_robustness/text_robustness.md`);
- TMC with `model.injection=full` against the default `resized` injection, 3 seeds each: the
  cheaper injection of MCM features loses no Dice (`models/segmenter.py`);
- TMC with `trainer.precision=32-true` (2 seeds) against the same seeds under `auto`
  (bf16-mixed where the CPU has native bf16): bf16 changes nothing that matters.

Resumable and committed run by run like the QaTa study (`tmc_lightning/training/study.py`);
the report goes to `experiments/synthetic_study/report/`.
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

FULL = ("model.injection=full",)
# In training order (every row's first seed, then every second, ...): the checkpoints of the
# robustness table first, then the fp32 reruns (they need a CPU with native bf16 beside them).
ROWS = (
    Row("tmc", "TMC", (), seeds=(42, 43, 44)),
    Row("lvit", "LViT", ("model=lvit",), seeds=(42,)),
    Row("unet", "UNet", ("model=unet",), seeds=(42,)),
    Row("tmc-dropout", "TMC, text dropout 0.3", ("dataset.text_dropout=0.3",), seeds=(42,)),
    Row("tmc-fp32", "TMC, fp32", ("trainer.precision=32-true",), seeds=(42, 43)),
    Row("tmc-full", "TMC, full-resolution injection", FULL, seeds=(42, 43, 44)),
)
COMPARISONS = (
    ("TMC", "TMC, full-resolution injection"),
    ("TMC", "TMC, fp32"),
    ("TMC", "TMC, text dropout 0.3"),
    ("TMC", "LViT"),
    ("TMC", "UNet"),
)
STUDY = Study("synthetic_study", ROWS, comparisons=COMPARISONS, seeds=(42,), doc=__doc__)

if __name__ == "__main__":
    sys.exit(main(STUDY))
