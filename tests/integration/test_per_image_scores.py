"""A real (tiny) training run writes per-image scores that match its metrics, and reports."""

import csv
import json

import numpy as np
import pytest

from tmc_lightning.reporting.build import build_report


def test_training_writes_per_image_scores_matching_metrics(trained_tiny):
    run_dir = trained_tiny["run_dir"]
    saved = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        with (run_dir / f"per_image_{split}.csv").open() as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == saved["dataset"]["sizes"][split] == 16
        assert len({r["name"] for r in rows}) == len(rows)
        for metric in ("dice", "iou"):
            mean = np.mean([float(r[metric]) for r in rows])
            assert mean == pytest.approx(saved[split][metric], abs=1e-4)


def test_report_on_a_real_run_folder(trained_tiny, tmp_path):
    run_dir = trained_tiny["run_dir"]
    out = build_report(run_dir, out=tmp_path / "report", use_wandb=False)
    with (out / "report.csv").open() as f:
        (row,) = list(csv.DictReader(f))
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert float(row["test_dice_mean"]) == pytest.approx(100 * saved["test"]["dice"])
    assert float(row["val_dice_global_mean"]) == pytest.approx(100 * saved["val"]["dice_global"])
    assert "no val/dice" not in (out / "report.md").read_text()  # curves read from logs/
