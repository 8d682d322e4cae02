"""``tmc-data check|describe dataset=... [dataset.root=...]``: inspect a dataset, or describe its masks."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.cli.common import one_line_errors
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.data.describe import DescribeOptions
from tmc_lightning.data.describe_io import write_descriptions
from tmc_lightning.data.inspect import report
from tmc_lightning.errors import ConfigError, check_keys
from tmc_lightning.utils import CONF_DIR

USAGE = (
    "usage: tmc-data check dataset=<name> [dataset.root=...]\n"
    "       tmc-data describe dataset=<name> [dataset.root=...] out=new_sheet.csv [split=train]"
)


def _datamodule(cfg: DictConfig):
    dm = datamodule_from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
    dm.prepare_data()
    return dm


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="check")
@one_line_errors
def main(cfg: DictConfig) -> None:
    code = report(_datamodule(cfg))
    if code:
        sys.exit(code)


def describe_options(cfg: DictConfig, dataset_convention: str | None) -> DescribeOptions:
    """``describe.*`` settings; the convention defaults to the dataset's."""
    settings = OmegaConf.to_container(cfg.describe, resolve=True)
    check_keys(settings, set(DescribeOptions.__dataclass_fields__), "describe")
    if settings.get("convention") is None:
        if dataset_convention in (None, "unknown"):
            raise ConfigError(
                "describe.convention: the dataset does not say what 'left' means; set "
                "describe.convention=plain (the image's left half, as QaTa's texts) or radiographic"
            )
        settings["convention"] = dataset_convention
    try:
        return DescribeOptions(**settings)
    except ValueError as err:
        raise ConfigError(f"describe: {err}") from None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="describe")
@one_line_errors
def describe_main(cfg: DictConfig) -> None:
    if not cfg.get("out"):
        raise ConfigError("out: name the new sheet to write, e.g. out=described.csv")
    dm = _datamodule(cfg)
    opts = describe_options(cfg, dm.hparams.get("convention"))
    path = write_descriptions(dm, cfg.out, opts, cfg.split)
    print(f"wrote {path} ({opts.vocabulary} vocabulary, {opts.convention} laterality)")


def cli() -> None:
    """``tmc-data check|describe [overrides]``."""
    commands = {"check": main, "describe": describe_main}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command = commands[sys.argv.pop(1)]
    command()
