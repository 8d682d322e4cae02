"""The best QaTa-COV19 model one hour of a 2-core CPU buys (issue 33), run by run.

    make weights && tmc-study qata_cpu_hour --commit [--rows hour ...]

Every row is ``experiment=qata_cpu_hour`` (the qata_pretrained_cpu recipe under a 60-minute
time budget that the learning-rate schedule follows) plus the row's one change; each is scored
on QaTa val at the masks' own resolution (and at the model's, in ``model_resolution``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tmc_lightning.training.study import Row, Study, main

QATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "QaTa-COV19"

ROWS = (
    Row("hour", "recipe (cosine, 128 px, small_pretrained)", ()),
    Row("linear0", "linear-to-zero", ("optim.scheduler=linear", "optim.min_lr_ratio=0")),
    Row("px160", "160 px", ("dataset.image_size=160",)),
    Row("lambda0", "lambda 0", ("dataset.align_weight=0",)),
    Row("enc03", "encoder lr ratio 0.3", ("optim.encoder_lr_ratio=0.3",)),
)
STUDY = Study(
    name="qata_cpu_hour",
    rows=ROWS,
    shared=("experiment=qata_cpu_hour",),
    comparisons=tuple(("recipe (cosine, 128 px, small_pretrained)", r.label) for r in ROWS[1:]),
    seeds=(42,),
    root=str(QATA),
    paper_dataset="qata",
    order="row",
    doc=__doc__,
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
