"""Fewer masks on QaTa-COV19 (issue 30): a quarter of the training masks, three ways to use the rest.

    tmc-study qata_semi [--commit] [--rows sup25 mean-teacher ...] [--seeds 1 2] [-- overrides]

Every run trains TMC ``small_pretrained`` (the qata_study recipe: 128 px, lr 1e-3, BCE + 0.5
soft Dice, lambda 0.01, encoders at a tenth of the rate) for the same 480 optimizer steps: 4
epochs of 120 steps, full validation after each, the best rescored. ``dataset.label_seed=0``
picks the same 25% of the train split for every row and seed (``labelled.txt`` in each run
folder). The semi-supervised rows add 8 unlabelled images to each step's 8 labelled ones. Resumable
(training/study.py): finished runs' small results go to ``experiments/qata_semi/runs/``.
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

SHARED = (
    "experiment=qata_pretrained_cpu",  # the recipe: small_pretrained, 128 px, lr 1e-3, Dice 0.5
    "model=tmc",
    # One budget in optimizer steps for every row: the cosine schedule runs over 4 epochs of
    # 120 steps whatever an epoch of the row's sampler would be.
    "trainer.max_epochs=4",
    "+trainer.limit_train_batches=120",
    "+trainer.max_steps=480",
    "dataset.label_seed=0",
)
QUARTER = ("dataset.label_fraction=0.25",)
# In training order (seed 1 of every row first): an unfinished study still has whole rows.
ROWS = (
    Row("sup25", "supervised 25%", (*QUARTER, "semi=none")),
    Row("epi-lv", "EPI + LV", (*QUARTER, "semi=epi_lv")),
    Row("mean-teacher", "mean teacher", (*QUARTER, "semi=mean_teacher", "semi.rampup_steps=120")),
    Row("epi", "EPI, no LV loss", (*QUARTER, "semi=epi_lv", "semi.lv_weight=0")),
    Row("sup100", "supervised 100%", ("dataset.label_fraction=1.0", "semi=none")),
)
# Paired Wilcoxon tests of the report (row labels): every method against 25% of the masks,
# the LV loss (the text) alone, and the ceiling.
COMPARISONS = (
    ("EPI + LV", "supervised 25%"),
    ("mean teacher", "supervised 25%"),
    ("EPI, no LV loss", "supervised 25%"),
    ("EPI + LV", "EPI, no LV loss"),
    ("supervised 100%", "supervised 25%"),
)
STUDY = Study.on_qata(
    "qata_semi",
    ROWS,
    SHARED,
    comparisons=COMPARISONS,
    paper_dataset=None,
    gap=("supervised 25%", "supervised 100%"),  # the report: how much of it each method closes
    doc=__doc__,
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
