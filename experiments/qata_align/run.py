"""Why did alignment cost Dice in the QaTa study? "neither" and "align only" again, paired.

    .venv/bin/python experiments/qata_align/run.py [--commit] [--seeds 1 2]

In the QaTa study (`experiments/qata_study/`) "align only" scored 2.2 points below "neither"
(per-image val Dice, paired over images, p = 3e-55), but its two seeds lay 5 points apart
(65.4 and 70.5) while "neither"'s lay 0.1 apart. Then, every part of the network drew its
random initialisation from one stream in construction order, and the alignment heads are
built before the injection layers and the U-Net, so for the same seed "align only" and
"neither" started their U-Nets from different weights: a different draw, not the switch.

Now each part's initialisation comes from (seed, its name) alone (`SegmentationNet.part`),
and the per-batch dropout draws from (seed, epoch, batch), so for one seed the two rows share
their initial U-Net, injection layers and training randomness: the paired runs differ by the
alignment heads and their loss only. Same recipe and budget as the study
(`experiment=qata_study`), with the study's injection layout (`model.injection=full`) and
its precision (fp32: `auto` chose it on the study's machine) so that the one change against
the study is the initialisation.
"""

from __future__ import annotations

import sys

from tmc_lightning.training.study import Row, Study, main

TMC = ("model=tmc", "model.injection=full")
ROWS = (
    Row("tmc-neither", "neither (TMC encoders)", (*TMC, "model.mcm=false", "model.align=false")),
    Row("tmc-align", "align only", (*TMC, "model.mcm=false", "model.align=true")),
    # "neither" again on another machine: how far a machine change alone moves one seed
    # (the lambda rows ran on an AMD EPYC, the first four runs on an Intel Xeon).
    Row(
        "tmc-neither-rerun",
        "neither (TMC encoders), rerun",
        (*TMC, "model.mcm=false", "model.align=false"),
        seeds=(1,),
    ),
    # lambda, one variable at a time (the study's is 0.01): does the cost scale with it?
    Row(
        "tmc-align-lam0.1",
        "align only, lambda 0.1",
        (*TMC, "model.mcm=false", "model.align=true", "loss.align_weight=0.1"),
        seeds=(1,),
    ),
    Row(
        "tmc-align-lam0.001",
        "align only, lambda 0.001",
        (*TMC, "model.mcm=false", "model.align=true", "loss.align_weight=0.001"),
        seeds=(1,),
    ),
)
COMPARISONS = (
    ("align only", "neither (TMC encoders)"),
    ("align only, lambda 0.1", "neither (TMC encoders)"),
    ("align only, lambda 0.001", "neither (TMC encoders)"),
    ("neither (TMC encoders), rerun", "neither (TMC encoders)"),
)
SHARED = ("experiment=qata_study", "trainer.precision=32-true")
STUDY = Study.on_qata("qata_align", ROWS, SHARED, comparisons=COMPARISONS, doc=__doc__)

if __name__ == "__main__":
    sys.exit(main(STUDY))
