"""Weights & Biases for training runs: ``logger=wandb`` (offline unless a key is configured)."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from tmc_lightning.losses import alignment_on

# The switches that name a run, in this order, when the model config has them.
SWITCHES = ("mcm", "align")


def wandb_mode(requested: str = "auto") -> str:
    """``online`` or ``offline``: WANDB_MODE wins, then ``requested``, then whether a key exists."""
    env = os.environ.get("WANDB_MODE")
    if env:
        return "offline" if env in ("offline", "dryrun", "disabled") else "online"
    if requested in ("online", "offline"):
        return requested
    if requested != "auto":
        raise ValueError(f"logger.wandb.mode={requested!r}: use auto, online or offline")
    return "online" if api_key_configured() else "offline"


def api_key_configured() -> bool:
    """True when WANDB_API_KEY is set or ``wandb login`` stored a key in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        hosts = netrc.netrc().hosts
    except (OSError, netrc.NetrcParseError):
        return False
    return any("wandb" in host for host in hosts)


def run_name(cfg: DictConfig) -> str:
    """``<model>-<dataset>-mcm=..-align=..-seed=..``: ablation runs read apart at a glance."""
    parts = [str(cfg.model.name), str(cfg.dataset.name)]
    parts += [f"{k}={cfg.model[k]}" for k in SWITCHES if k in cfg.model]
    if "align" in cfg.model and not alignment_on(cfg.model.align, cfg.loss.align_weight):
        parts[-1] = "align=False"  # lambda = 0 turns the heads off whatever model.align says
    parts.append(f"seed={cfg.seed}")
    return "-".join(parts)


def make_wandb_logger(cfg: DictConfig, run_dir: Path, version: str):
    """A WandbLogger whose run config is the whole resolved Hydra config."""
    from lightning.pytorch.loggers import WandbLogger

    w = cfg.logger.wandb
    mode = wandb_mode(w.mode)
    return WandbLogger(
        name=w.name or run_name(cfg),
        save_dir=str(run_dir),
        project=w.project,
        entity=w.entity,
        group=w.group,
        tags=list(w.tags or []),
        offline=mode == "offline",
        log_model=bool(w.log_model),
        config=OmegaConf.to_container(cfg, resolve=True),
        job_type="resume" if version != "logs" else "train",
    )


def finish_wandb(loggers: list[Any], results: dict[str, Any]) -> None:
    """Write the final scores into each W&B run's summary and close it (one run per job)."""
    from lightning.pytorch.loggers import WandbLogger

    summary = {}
    for split in ("val", "test"):
        for key, value in (results.get(split) or {}).items():
            summary[f"final/{split}/{key}"] = value
    summary["final/epochs_trained"] = results.get("epochs_trained")
    summary["final/wall_time_s"] = results.get("wall_time_s")
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            run = logger.experiment
            run.summary.update(summary)
            run.finish()


def read_offline_run(run_file: str | Path) -> dict[str, Any]:
    """Name, group, tags, config and summary stored in an offline ``run-*.wandb`` file.

    Lets tests (and users, before ``wandb sync``) check what a run will upload. The file is a
    header (``:W&B``, magic, version: 7 bytes) and then LevelDB-style log blocks of 32 KiB whose
    records (crc32, length, type) carry protobuf ``Record`` messages, split across blocks when
    long.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    block, raw = 32768, Path(run_file).read_bytes()
    if raw[:4] != b":W&B":
        raise ValueError(f"{run_file} is not a W&B run file (no :W&B header)")
    records, pending, pos = [], b"", 7
    while pos + 7 <= len(raw):
        left = block - pos % block
        if left < 7:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", raw[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding up to the next block
            pos += left
            continue
        data, pos = raw[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind == 1:  # full record
            records.append(data)
        elif kind in (2, 3):  # first / middle fragment
            pending = (pending if kind == 3 else b"") + data
        elif kind == 4:  # last fragment
            records.append(pending + data)
            pending = b""
    out: dict[str, Any] = {"name": None, "group": None, "tags": [], "config": {}, "summary": {}}
    for data in records:
        rec = pb.Record()
        rec.ParseFromString(data)
        kind = rec.WhichOneof("record_type")
        if kind == "run":  # the run record carries the config given to wandb.init
            out.update(name=rec.run.display_name, group=rec.run.run_group, tags=list(rec.run.tags))
            updates = [("config", rec.run.config.update)]
        elif kind in ("config", "summary"):
            updates = [(kind, getattr(rec, kind).update)]
        else:
            continue
        for section, items in updates:
            for item in items:
                key = item.key or "/".join(item.nested_key)
                out[section][key] = json.loads(item.value_json)
    return out
