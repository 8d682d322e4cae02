"""Training on a CUDA device: bf16-mixed, 16-mixed (gradient scaling) and DDP on one device.

Marked ``gpu``; skipped without CUDA. experiments/gpu_check/run.py runs them on a GPU machine.
"""

import json

import pytest
import torch

from tests.helpers.config import tiny_cfg
from tmc_lightning.training.run import run

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


@pytest.mark.parametrize(
    "overrides",
    [
        ["trainer=gpu", "trainer.precision=bf16-mixed"],
        ["trainer=gpu", "trainer.precision=16-mixed"],
        ["trainer=gpu", "trainer.precision=auto"],
        ["trainer=ddp", "trainer.devices=1", "trainer.precision=bf16-mixed"],
    ],
    ids=["bf16-mixed", "16-mixed", "auto", "ddp-1"],
)
def test_training_on_cuda_learns_and_records_the_precision(cache_dir, tmp_path, overrides):
    cfg = tiny_cfg(
        cache_dir, *overrides, "trainer.max_epochs=4", "dataset.n_train=160", "optim.lr=2e-3",
        "dataset.augment=false", "trainer.deterministic=false", "dataset.num_workers=0",
    )  # fmt: skip
    results = run(cfg, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["precision"]["used"] in ("bf16-mixed", "16-mixed")
    assert results["val"]["dice"] > 0.2  # it learns under mixed precision
    assert "failed" not in saved
