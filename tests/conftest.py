"""Shared fixtures: a tiny synthetic dataset, Hydra composition, one short training run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network

from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from tmc_lightning import weights  # noqa: E402
from tmc_lightning.utils import CONF_DIR  # noqa: E402

# Fetched pretrained weights stay where `make weights` put them, though tests move the cache.
os.environ.setdefault("TMC_WEIGHTS_DIR", str(weights.cache_root()))

SHARED_QATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "QaTa-COV19"

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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmc_cache")
    os.environ["TMC_CACHE_DIR"] = str(path)
    return path


def compose_cfg(
    overrides: list[str], config_name: str = "train", return_hydra: bool = False
) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(
            config_name=config_name, overrides=overrides, return_hydra_config=return_hydra
        )


def tiny_cfg(cache_dir: Path, *extra: str) -> DictConfig:
    return compose_cfg([*TINY, f"dataset.cache_dir={cache_dir}", *extra])


@pytest.fixture(scope="session")
def trained_tiny(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TMC tiny trained for a few epochs on the tiny synthetic set (shared by several tests)."""
    from tmc_lightning.training.run import run

    run_dir = tmp_path_factory.mktemp("trained_tiny")
    # The tiny preset at this budget (120 steps) fails to learn for many seeds (test Dice
    # stuck at 0.06 for 3 of 7-8 seeds, measured 2026-12-01 with and without per-part
    # seeding; 42 learned only weakly after it). The tests need a model that learned and
    # reads its text, so the seed is fixed to one that does.
    cfg = tiny_cfg(
        cache_dir,
        "seed=7",
        "trainer.max_epochs=6",
        "dataset.n_train=160",
        "dataset.lr=2e-3",
        "dataset.augment=false",
    )
    results = run(cfg, run_dir)
    return {"run_dir": run_dir, "results": results, "cfg": cfg}
