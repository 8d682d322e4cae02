"""Real QaTa-COV19 on a 2-core CPU: TMC small vs UNet, 60 minutes each (README here).

    tmc-study qata_cpu [--commit]

The recipe is ``conf/experiment/qata_cpu.yaml``; each model's epoch count lets its cosine
schedule end inside the hour (TMC 7, UNet 15 at the recording machine's speed).
"""

from __future__ import annotations

import sys
from pathlib import Path

from tmc_lightning.training.study import Row, Study, main

QATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "QaTa-COV19"

STUDY = Study(
    name="qata_cpu",
    rows=(
        Row("tmc", "TMC small", ("model=tmc", "trainer.max_epochs=7")),
        Row("unet", "UNet", ("model=unet", "trainer.max_epochs=15")),
    ),
    shared=("experiment=qata_cpu",),
    comparisons=(("TMC small", "UNet"),),
    seeds=(42,),
    root=str(QATA),
    paper_dataset="qata",
    order="row",
    doc=__doc__,
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
