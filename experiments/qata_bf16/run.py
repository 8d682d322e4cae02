"""Does bf16 cost Dice on real data? QaTa-COV19 at the QaTa study's budget, fp32 vs bf16.

    tmc-study qata_bf16 --commit      # on a CPU with native bf16 (AVX512-BF16 or AMX), or a GPU

TMC ``small_pretrained`` with the ``qata_study`` recipe (the same optimizer steps for every
run), the precision set explicitly in each row, 2 seeds; the report pairs the rows image by
image on QaTa val. On a CPU without native bf16 the bf16 rows run emulated (slowly) and say
nothing about the machines that would choose bf16: run it where ``trainer.precision=auto``
would pick it.
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

ROWS = (
    Row("fp32", "fp32", ("trainer.precision=32-true",)),
    Row("bf16", "bf16-mixed", ("trainer.precision=bf16-mixed",)),
)
STUDY = Study.on_qata(
    "qata_bf16", ROWS, ("experiment=qata_study", "model=tmc"),
    comparisons=(("bf16-mixed", "fp32"),), doc=__doc__,
)  # fmt: skip

if __name__ == "__main__":
    sys.exit(main(STUDY))
