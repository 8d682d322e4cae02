"""``tmc-data check|describe|prepare``: inspect a dataset, describe its masks, or lay out a download."""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from tmc_lightning.cli.common import dispatch, one_line_errors
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.data.describe import DescribeOptions
from tmc_lightning.data.describe_io import write_descriptions
from tmc_lightning.data.inspect import report
from tmc_lightning.data.prepare import PrepareError, plan_medvlsm, plan_mosmed, plan_qata
from tmc_lightning.data.prepare_write import raise_if_problems, write_lvit, write_manifest
from tmc_lightning.errors import ConfigError, check_keys
from tmc_lightning.utils import CONF_DIR

USAGE = (
    "usage: tmc-data check dataset=<name> [dataset.root=...]\n"
    "       tmc-data describe dataset=<name> [dataset.root=...] out=new_sheet.csv [split=train]\n"
    "       tmc-data prepare qata src=<download> text=<sheets> out=<new root>\n"
    "       tmc-data prepare mosmed src=<frames/ and masks/> text=<sheets> out=<new root> "
    "[split=lvit|patient]\n"
    "       tmc-data prepare medvlsm images=<dir> masks=<dir> anns=<dir> out=<manifest.csv>"
)
PREPARE_KINDS = ("qata", "mosmed", "medvlsm")


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


def _need(cfg: DictConfig, *keys: str) -> list[Path]:
    missing = [k for k in keys if not cfg.get(k)]
    if missing:
        raise ConfigError(
            f"tmc-data prepare {cfg.kind}: set {', '.join(f'{k}=...' for k in missing)}\n{USAGE}"
        )
    return [Path(str(cfg[k])).expanduser() for k in keys]


def prepare(cfg: DictConfig) -> Path:
    """Check the download, then write its layout; a :class:`PrepareError` lists every problem."""
    kind = cfg.kind
    if kind not in PREPARE_KINDS:
        raise ConfigError(f"tmc-data prepare {kind}: use one of {', '.join(PREPARE_KINDS)}")
    settings = OmegaConf.to_container(cfg, resolve=True)
    record = {"command": f"tmc-data prepare {kind}"} | {
        k: settings[k] for k in ("src", "text", "images", "masks", "anns", "copy", "split", "seed")
    }
    sheets = settings["sheets"]
    if kind == "medvlsm":
        images, masks, anns, out = _need(cfg, "images", "masks", "anns", "out")
        plan, records = plan_medvlsm(images, masks, anns, settings["anns_files"], cfg.text_level)
        raise_if_problems(plan, f"tmc-data prepare medvlsm anns={anns}")
        return write_manifest(plan, records, out, record)
    src, text, out = _need(cfg, "src", "text", "out")
    for key, path in (("src", src), ("text", text)):
        if not path.is_dir():
            raise ConfigError(f"{key}={path} is not a folder; point it at the unpacked download")
    if kind == "qata":
        if cfg.split != "lvit":
            raise ConfigError("split: QaTa keeps LViT's split (split=patient is for mosmed)")
        plan = plan_qata(src, text, settings["qata"], sheets, cfg.strict_counts)
    else:
        plan = plan_mosmed(
            src,
            text,
            settings["mosmed"],
            sheets,
            cfg.strict_counts,
            split=cfg.split,
            seed=cfg.seed,
            group_pattern=cfg.group_pattern,
        )
    raise_if_problems(plan, f"tmc-data prepare {kind} src={src}")
    out = write_lvit(plan, out, settings["copy"], record)
    for note in plan.notes:
        print(f"note: {note}")
    return out


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="prepare")
@one_line_errors
def prepare_main(cfg: DictConfig) -> None:
    try:
        out = prepare(cfg)
    except PrepareError as err:  # the download's problems: a report, exit 1, nothing written
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    what = "manifest" if cfg.kind == "medvlsm" else "dataset root"
    how = "copies" if cfg["copy"] else "links to the download"
    print(f"wrote {what} {out} ({how})")
    if cfg.kind == "medvlsm":
        print(f"train on it: dataset=custom dataset.manifest={out} [dataset.prompt=p0..p9]")
    else:
        print(f"check it: tmc-data check dataset={cfg.kind} dataset.root={out}")


def prepare_cli() -> None:
    """``tmc-data prepare <kind> key=value ...``: the kind becomes the ``kind=`` setting."""
    if len(sys.argv) >= 2 and sys.argv[1] in PREPARE_KINDS:
        sys.argv.append(f"kind={sys.argv.pop(1)}")
    elif not (len(sys.argv) >= 2 and sys.argv[1] in ("-h", "--help")):
        print(f"error: name what to prepare: {' | '.join(PREPARE_KINDS)}\n{USAGE}", file=sys.stderr)
        raise SystemExit(2)
    prepare_main()


def cli() -> None:
    """``tmc-data check|describe|prepare [overrides]``."""
    dispatch({"check": main, "describe": describe_main, "prepare": prepare_cli}, USAGE)
