"""Composing the Hydra configs in tests, and the tiny settings every fast run uses."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from tmc_lightning.utils import CONF_DIR

SHARED_QATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "QaTa-COV19"

# A tiny synthetic set and the tiny model preset: every code path, seconds per epoch.
TINY = [
    "dataset.preset=tiny",
    "dataset.image_size=64",
    "dataset.n_train=48",
    "dataset.n_val=16",
    "dataset.n_test=16",
    "dataset.batch_size=8",
    "dataset.eval_batch_size=16",
    "callbacks.rich_progress=false",
    "trainer.enable_model_summary=false",
    "trainer.precision=32-true",  # the same numbers on every CI machine (auto is tested alone)
]


def compose_cfg(
    overrides: list[str], config_name: str = "train", return_hydra: bool = False
) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(
            config_name=config_name, overrides=overrides, return_hydra_config=return_hydra
        )


def tiny_cfg(cache_dir: Path, *extra: str) -> DictConfig:
    return compose_cfg([*TINY, f"dataset.cache_dir={cache_dir}", *extra])
