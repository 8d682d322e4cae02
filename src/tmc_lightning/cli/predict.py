"""``tmc-predict`` / ``python -m tmc_lightning.predict ckpt_path=... input=... text="..."``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli.common import one_line_errors
from tmc_lightning.inference.predict import predict
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@one_line_errors
def main(cfg: DictConfig) -> None:
    predict(
        cfg.ckpt_path,
        cfg.input,
        cfg.text,
        cfg.out,
        cfg.prob,
        cfg.batch_size,
        cfg.device,
        cfg.threshold,
    )
