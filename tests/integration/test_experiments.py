"""The experiment suite end to end: every experiment config, the ablation multirun with W&B and
tmc-report, DDP metrics against one process, and the Optuna search."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.config import TINY, compose_cfg
from tmc_lightning.cli.report import main as report_main
from tmc_lightning.evaluation.evaluate import evaluate
from tmc_lightning.training.tracking import read_offline_run, run_name

REPO = Path(__file__).resolve().parents[2]
EXPERIMENTS = sorted(p.stem for p in (REPO / "conf" / "experiment").glob("*.yaml"))


def train_cli(*args: str, cache_dir: Path, timeout: int = 900) -> subprocess.CompletedProcess:
    """``python -m tmc_lightning.train ARGS`` in a subprocess (Hydra multirun needs a real CLI)."""
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "tmc_lightning.train", *args, f"dataset.cache_dir={cache_dir}"]
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def run_dirs(root: Path) -> list[Path]:
    return sorted(p.parent for p in root.rglob("metrics.json"))


def test_every_experiment_config_composes():
    assert {"ablation", "table1", "ablation_synthetic"} <= set(EXPERIMENTS)
    for name in EXPERIMENTS:
        cfg = compose_cfg([f"experiment={name}"])
        assert cfg.group == name, f"conf/experiment/{name}.yaml should set group: {name}"
        assert cfg.model.name and cfg.dataset.name


@pytest.mark.slow  # ~11 s: every conf/experiment file through fast_dev_run (make test-slow)
def test_every_experiment_runs_fast_dev_run(cache_dir, tmp_path):
    """One multirun over experiment=glob(*), each job a fast_dev_run on the embedded set.

    The QaTa recipes (qata_cpu, qata_study, ...) need the real data and fetched weights; the
    study's driver is tested end to end on the embedded set in test_qata_study.py.
    """
    real_data = {n for n in EXPERIMENTS if compose_cfg([f"experiment={n}"]).dataset.name == "qata"}
    train_cli(
        "-m",
        f"experiment=glob(*,exclude=[{','.join(sorted(real_data))}])",
        "debug=fast_dev_run",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
        cache_dir=cache_dir,
    )
    runs = run_dirs(tmp_path)
    assert len(runs) == len(EXPERIMENTS) - len(real_data)
    assert {OmegaConf.load(r / "config.yaml").group for r in runs} == set(EXPERIMENTS) - real_data


@pytest.fixture(scope="module")
def ablation_sweep(cache_dir, tmp_path_factory):
    """MCM on/off x 2 seeds (the alignment loss off), one epoch each on a tiny set, logged to
    offline W&B. Half the paper's 2x2 grid: four runs show the grouping, the seeds' mean and
    std, and W&B as well as eight (each run's start, ~4 s, is most of its cost)."""
    root = tmp_path_factory.mktemp("ablation")
    train_cli(
        "-m",
        "experiment=ablation_synthetic",
        "model.mcm=true,false",
        "model.align=false",
        "seed=1,2",
        "logger=wandb",
        *TINY,
        "dataset.n_train=16",
        "dataset.n_val=8",
        "dataset.n_test=8",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={root}",
        cache_dir=cache_dir,
    )
    return root


def test_ablation_sweep_and_report(ablation_sweep):
    runs = run_dirs(ablation_sweep)
    assert len(runs) == 4
    metrics = {r: json.loads((r / "metrics.json").read_text()) for r in runs}
    switches = {r: OmegaConf.load(r / "config.yaml").model for r in runs}
    assert report_main([str(ablation_sweep), "--no-wandb"]) == 0
    with (ablation_sweep / "report" / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # one row per (mcm, align); seeds averaged
    for row in rows:
        mine = [
            metrics[r]["test"]["dice"]
            for r in runs
            if str(switches[r].mcm).lower() == row["model.mcm"]
            and str(switches[r].align).lower() == row["model.align"]
        ]
        assert row["n"] == "2" and len(mine) == 2, row
        # The report writes percentages.
        assert float(row["test_dice_mean"]) == pytest.approx(100 * statistics.mean(mine), abs=1e-7)
        assert float(row["test_dice_std"]) == pytest.approx(100 * statistics.stdev(mine), abs=1e-7)
    for name in ("report.md", "report.tex", "ablation_bars.png", "val_dice_curves.png"):
        assert (ablation_sweep / "report" / name).stat().st_size > 0


def test_ablation_wandb_runs_hold_config_and_final_metrics(ablation_sweep):
    for run in run_dirs(ablation_sweep):
        files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
        assert len(files) == 1, f"{run}: expected one offline W&B run, found {files}"
        wb = read_offline_run(files[0])
        local = json.loads((run / "metrics.json").read_text())
        assert wb["group"] == "ablation_synthetic"
        cfg = compose_cfg(
            [
                "experiment=ablation_synthetic",
                f"model.mcm={wb['config']['model']['mcm']}",
                f"model.align={wb['config']['model']['align']}",
                f"seed={wb['config']['seed']}",
            ]
        )
        assert wb["name"] == run_name(cfg)
        assert wb["config"]["trainer"]["max_epochs"] == 1  # the resolved Hydra config
        for split in ("val", "test"):
            for key in ("dice", "iou", "dice_global", "iou_global"):
                assert wb["summary"][f"final/{split}/{key}"] == pytest.approx(local[split][key])


@pytest.mark.slow  # ~40 s: two DDP processes over gloo (make test-slow)
def test_ddp_metrics_equal_one_process(cache_dir, tmp_path):
    """Two gloo processes on the CPU: split metrics equal a one-process evaluation of the same
    checkpoint. Odd split sizes make sure no item is padded in twice."""
    run_dir = tmp_path / "ddp"
    train_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.precision=32-true",
        "trainer.max_epochs=1",
        "trainer.benchmark=false",
        "trainer.sync_batchnorm=false",
        *TINY,
        "dataset.n_train=16",
        "dataset.n_val=15",
        "dataset.n_test=13",
        "dataset.eval_batch_size=4",
        f"hydra.run.dir={run_dir}",
        cache_dir=cache_dir,
    )
    ddp = json.loads((run_dir / "metrics.json").read_text())
    assert ddp["dataset"]["sizes"] == {"train": 16, "val": 15, "test": 13}
    single = evaluate(ddp["best_checkpoint"], ["val", "test"], out=str(tmp_path / "one.json"))
    for split in ("val", "test"):
        for key in ("dice", "iou", "dice_global", "iou_global"):
            assert ddp[split][key] == pytest.approx(single[split][key], abs=1e-6), (split, key)
    with (run_dir / "per_image_val.csv").open() as f:
        names = [row["name"] for row in csv.DictReader(f)]
    assert len(names) == len(set(names)) == 15


@pytest.mark.slow  # ~13 s: an Optuna multirun (make test-slow)
def test_optuna_search_runs(cache_dir, tmp_path):
    train_cli(
        "-m",
        "hparams_search=align_lr",
        "hydra.sweeper.n_trials=2",
        "hydra.sweeper.sampler.n_startup_trials=2",
        *TINY,
        "dataset.n_train=16",
        "dataset.n_val=8",
        "dataset.n_test=8",
        "trainer.max_epochs=1",
        f"hydra.sweep.dir={tmp_path}",
        cache_dir=cache_dir,
    )
    assert len(run_dirs(tmp_path)) == 2
    best = (tmp_path / "optimization_results.yaml").read_text()
    assert "best_params" in best and "loss.align_weight" in best and "optim.lr" in best
