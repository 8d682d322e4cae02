"""The best QaTa-COV19 model one hour of a 2-core CPU buys (issue 33), run by run.

    make weights && tmc-study qata_cpu_hour --commit [--rows hour ...]

Every row is ``experiment=qata_cpu_hour`` (the qata_pretrained_cpu recipe under a 60-minute
time budget that the learning-rate schedule follows) plus the row's one change; each is scored
on QaTa val at the masks' own resolution (and at the model's, in ``model_resolution``).
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

ROWS = (
    Row("hour", "recipe (cosine, 128 px, small_pretrained)", ()),
    Row("linear0", "linear-to-zero", ("optim.scheduler=linear", "optim.min_lr_ratio=0")),
    Row("px160", "160 px", ("dataset.image_size=160",)),
    Row("lambda0", "lambda 0", ("loss.align_weight=0",)),
    Row("enc03", "encoder lr ratio 0.3", ("optim.encoder_lr_ratio=0.3",)),
)
COMPARISONS = tuple((ROWS[0].label, r.label) for r in ROWS[1:])
STUDY = Study.on_qata(
    "qata_cpu_hour", ROWS, ("experiment=qata_cpu_hour",), comparisons=COMPARISONS,
    seeds=(42,), order="row", doc=__doc__,
)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main(STUDY))
