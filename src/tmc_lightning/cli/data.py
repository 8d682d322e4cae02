"""``tmc-data check dataset=qata dataset.root=...``: inspect a dataset before training."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.cli.common import one_line_errors
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.data.inspect import report
from tmc_lightning.utils import CONF_DIR


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="check")
@one_line_errors
def main(cfg: DictConfig) -> None:
    dm = datamodule_from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
    dm.prepare_data()
    code = report(dm)
    if code:
        sys.exit(code)


def cli() -> None:
    """``tmc-data check [overrides]``."""
    if len(sys.argv) < 2 or sys.argv[1] != "check":
        print("usage: tmc-data check dataset=<name> [dataset.root=...]", file=sys.stderr)
        sys.exit(2)
    del sys.argv[1]
    main()
