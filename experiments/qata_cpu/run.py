"""Real QaTa-COV19 on a 2-core CPU: TMC small vs UNet, 60 minutes each (README here).

    tmc-study qata_cpu [--commit]

The recipe is ``conf/experiment/qata_cpu.yaml``; each model's epoch count lets its cosine
schedule end inside the hour (TMC 7, UNet 15 at the recording machine's speed).
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

ROWS = (
    Row("tmc", "TMC small", ("model=tmc", "trainer.max_epochs=7")),
    Row("unet", "UNet", ("model=unet", "trainer.max_epochs=15")),
)
STUDY = Study.on_qata(
    "qata_cpu", ROWS, ("experiment=qata_cpu",), comparisons=(("TMC small", "UNet"),),
    seeds=(42,), order="row", doc=__doc__,
)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main(STUDY))
