"""``tmc-bench --models tmc --presets small``: speed, memory and FLOP efficiency per model."""

from __future__ import annotations

import sys

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tmc_lightning.benchmarking.run import NO_DATA, data_overrides, parse_args, run
from tmc_lightning.utils import CONF_DIR


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    settings = None
    if args.dataset != NO_DATA:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = compose(config_name="train", overrides=data_overrides(args))
        settings = OmegaConf.to_container(cfg.dataset, resolve=True)
    run(argv, args, settings)
