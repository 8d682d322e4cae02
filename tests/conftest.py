"""Shared fixtures: a tiny synthetic dataset, Hydra composition, one short training run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ["HF_HUB_OFFLINE"] = "1"  # tests never touch the network


from tests.helpers.config import tiny_cfg  # noqa: E402
from tmc_lightning import weights  # noqa: E402

# Fetched pretrained weights stay where `make weights` put them, though tests move the cache.
os.environ.setdefault("TMC_WEIGHTS_DIR", str(weights.cache_root()))


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tmc_cache")
    os.environ["TMC_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def trained_tiny(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """TMC tiny trained for a few epochs on the tiny synthetic set (shared by several tests).

    Trained once per test session: under pytest-xdist the workers share the session's base
    folder, and the first to take the lock trains while the others wait and read its results.
    """
    from filelock import FileLock

    from tmc_lightning.training.run import run

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # .../pytest-N/popen-gwK: share .../pytest-N
        shared = shared.parent
    run_dir = shared / "trained_tiny"
    # The tiny preset at this budget (120 steps) fails to learn for many seeds (test Dice
    # stuck at 0.06 for 3 of 7-8 seeds, measured 2026-12-01 with and without per-part
    # seeding; 42 learned only weakly after it). The tests need a model that learned and
    # reads its text, so the seed is fixed to one that does.
    cfg = tiny_cfg(
        cache_dir,
        "seed=7",
        "trainer.max_epochs=6",
        "dataset.n_train=160",
        "optim.lr=2e-3",
        "dataset.augment=false",
    )
    with FileLock(str(shared / "trained_tiny.lock")):
        done = run_dir / "metrics.json"
        if done.is_file() and "best_checkpoint" in (results := json.loads(done.read_text())):
            return {"run_dir": run_dir, "results": results, "cfg": cfg}
        shutil.rmtree(run_dir, ignore_errors=True)  # a worker that died half-way
        run_dir.mkdir()
        results = run(cfg, run_dir)
    return {"run_dir": run_dir, "results": results, "cfg": cfg}
