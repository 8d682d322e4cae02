"""OmegaConf resolvers the configs in ``conf/`` use (registered on import)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from tmc_lightning.utils import run_dir_of


def sweep_dirname(overrides: str, limit: int = 120) -> str:
    """A sweep job's folder name from its overrides: no '/', at most ``limit`` characters."""
    name = overrides.replace("/", "_") or "defaults"
    if len(name) <= limit:
        return name
    return f"{name[: limit - 9]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def resume_run_dir(ckpt_path: str | None, default: str) -> str:
    """``hydra.run.dir``: a resumed run's own folder (where ``run`` continues it), else ``default``.

    Hydra creates its run folder before ``main`` starts; pointing it at the original run keeps a
    resume from leaving an extra, nearly empty ``outputs/<now>/`` behind.
    """
    ckpt = Path(str(ckpt_path)) if ckpt_path else None
    if ckpt is None or not ckpt.is_file():  # a missing file: main() reports it before Hydra runs
        return default
    return str(run_dir_of(ckpt))


def hydra_subdir(ckpt_path: str | None, stamp: str) -> str:
    """``hydra.output_subdir``: a resume records its command beside the original ``.hydra/``."""
    return f".hydra-resume-{stamp}" if ckpt_path else ".hydra"


def or_default(value: Any, default: str) -> Any:
    """``${tmc_or:${key},default}``: unlike ``oc.select``, also falls back when the key is null."""
    return default if value is None or value == "" else value


OmegaConf.register_new_resolver("tmc_dirname", sweep_dirname, replace=True)
OmegaConf.register_new_resolver("tmc_or", or_default, replace=True)
OmegaConf.register_new_resolver("tmc_run_dir", resume_run_dir, replace=True)
OmegaConf.register_new_resolver("tmc_hydra_subdir", hydra_subdir, replace=True)
