"""``tmc-eval`` / ``python -m tmc_lightning.evaluate ckpt_path=... [splits=[val,test]]``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

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
        OmegaConf.to_object(cfg.text_mode) if OmegaConf.is_list(cfg.text_mode) else cfg.text_mode,
        cfg.generic_prompt,
        cfg.eval_resolution,
    )
