"""``tmc-explain`` / ``python -m tmc_lightning.explain ckpt_path=... input=img.png text="..."``."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tmc_lightning.cli.common import one_line_errors
from tmc_lightning.inference.explain import explain
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="explain")
@one_line_errors
def main(cfg: DictConfig) -> None:
    explain(cfg.ckpt_path, cfg.input, cfg.text, cfg.out, cfg.device)
