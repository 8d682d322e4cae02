"""The QaTa study driver end to end on a tiny synthetic set: kill it, run it again, it goes on."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STUDY = REPO / "experiments" / "qata_study" / "run.py"
TINY_STUDY = [
    "dataset=synthetic",
    "dataset.preset=tiny",
    "model.preset=tiny",
    "dataset.image_size=64",
    "dataset.n_train=32",
    "dataset.n_val=16",
    "dataset.n_test=8",
    "dataset.augment=false",
    "trainer.limit_train_batches=1.0",
    "trainer.enable_model_summary=false",
    "trainer.precision=32-true",
]


def study_cmd(tmp_path: Path, *extra: str) -> list[str]:
    return [
        sys.executable, str(STUDY), "--rows", "tmc", "unet", "--seeds", "1", "--root", "",
        "--runs", str(tmp_path / "runs"), "--work", str(tmp_path / "work"),
        "--report", str(tmp_path / "report"), "--",
        *TINY_STUDY, f"dataset.cache_dir={tmp_path / 'cache'}", *extra,
    ]  # fmt: skip


@pytest.mark.slow  # ~50 s: two trainings, a kill, a resume (make test-slow)
def test_an_interrupted_study_continues_where_it_stopped(tmp_path):
    env = {**os.environ, "WANDB_MODE": "offline", "HF_HUB_OFFLINE": "1"}
    cmd = study_cmd(tmp_path, "trainer.max_epochs=12")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, start_new_session=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    first = tmp_path / "runs" / "tmc-seed1" / "metrics.json"
    second_ckpt = tmp_path / "work" / "unet-seed1" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 240
    while not (first.is_file() and second_ckpt.is_file()):  # the second run is training
        assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
        assert time.time() < deadline, "the study never reached its second run"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # as a lost machine would
    proc.wait()
    assert not (tmp_path / "runs" / "unet-seed1").exists()
    assert not (tmp_path / "work" / "unet-seed1" / "metrics.json").exists()
    kept = first.stat().st_mtime_ns

    again = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "tmc-seed1: done" in again.stdout  # not trained again
    assert first.stat().st_mtime_ns == kept
    assert f"unet-seed1: resuming from {second_ckpt}" in again.stdout
    done = tmp_path / "runs" / "unet-seed1"
    assert (done / "logs-resume1" / "metrics.csv").is_file()  # continued, not restarted
    metrics = json.loads((done / "metrics.json").read_text())
    assert metrics["epochs_trained"] == 12 and "dice" in metrics["val"]
    timing = json.loads((done / "timing.json").read_text())
    assert len(timing["attempts"]) == 2 and timing["wall_s"] > 0
    assert (done / "per_image_val.csv").is_file() and (done / "config.yaml").is_file()
    report = (tmp_path / "report" / "report.md").read_text()
    assert "| TMC | 1 |" in report and "| UNet | 1 |" in report  # rows by the paper's names
    assert "| C1 (TMC) | C2 (UNet) |" in report  # the TMC-vs-UNet test
