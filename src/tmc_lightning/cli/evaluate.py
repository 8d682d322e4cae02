"""``tmc-eval`` / ``python -m tmc_lightning.evaluate ckpt_path=... [splits=[val,test]]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli.common import one_line_errors
from tmc_lightning.evaluation.evaluate import evaluate
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
@one_line_errors
def main(cfg: DictConfig) -> None:
    evaluate(
        cfg.ckpt_path,
        list(cfg.splits),
        cfg.out,
        cfg.data_root,
        cfg.accelerator,
        cfg.precision,
        cfg.artifacts,
        cfg.top_k,
    )
