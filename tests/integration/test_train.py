"""End-to-end: training runs, run folders, checkpoint reload, evaluation, determinism, resume."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.helpers.config import TINY, compose_cfg, tiny_cfg
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.evaluation.evaluate import evaluate
from tmc_lightning.inference.checkpoint import CheckpointError, load_module, read_checkpoint
from tmc_lightning.training.module import SegmentationModule
from tmc_lightning.training.precision import choose_precision
from tmc_lightning.training.run import run

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("model", ["unet", "lvit", "tmc"])
def test_fast_dev_run_each_model(cache_dir, tmp_path, model):
    cfg = tiny_cfg(cache_dir, f"model={model}", "debug=fast_dev_run", "trainer.precision=auto")
    results = run(cfg, tmp_path)
    assert results["model"]["name"] == model
    assert results["model"]["params"] > 0 and results["model"]["gflops_per_image"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    # auto resolves to what this machine runs well, recorded with the reason
    assert saved["precision"]["requested"] == "auto"
    assert saved["precision"]["used"] == choose_precision("auto", "cpu")[0]
    assert saved["precision"]["used"] in ("32-true", "bf16-mixed") and saved["precision"]["reason"]
    assert saved["allocator"]  # perf.keep_freed_memory: what the run did to malloc


def test_run_folder_contents(trained_tiny):
    run_dir, results = trained_tiny["run_dir"], trained_tiny["results"]
    assert (run_dir / "config.yaml").is_file() and (run_dir / "tokenizer.json").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert Path(results["best_checkpoint"]).is_file()
    saved = json.loads((run_dir / "metrics.json").read_text())
    for split in ("val", "test"):
        assert {"dice", "iou", "dice_global", "iou_global"} <= set(saved[split])
    assert saved["dataset"]["name"] == "synthetic" and saved["dataset"]["sizes"]["test"] == 16
    assert saved["model"]["params"] > 0 and "git_commit" in saved
    assert (run_dir / "logs" / "metrics.csv").is_file()


def test_tiny_model_learns_something(trained_tiny):
    assert trained_tiny["results"]["val"]["dice"] > 0.3


def test_checkpoint_reloads_alone(trained_tiny):
    ckpt = trained_tiny["results"]["best_checkpoint"]
    module = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=True)
    assert module.hparams.model_name == "tmc"
    mine, _ = load_module(ckpt)
    for (n, a), (_, b) in zip(module.state_dict().items(), mine.state_dict().items(), strict=True):
        torch.testing.assert_close(a, b, msg=n)


def test_evaluate_reproduces_training_metrics(trained_tiny, tmp_path):
    results = trained_tiny["results"]
    out = evaluate(results["best_checkpoint"], ["val", "test"], out=str(tmp_path / "eval.json"))
    assert out["test"]["dice"] == pytest.approx(results["test"]["dice"], abs=1e-6)
    assert out["val"]["dice_global"] == pytest.approx(results["val"]["dice_global"], abs=1e-6)
    assert json.loads((tmp_path / "eval.json").read_text())["test"]["dice"] == out["test"]["dice"]


def test_changing_the_text_changes_the_mask(trained_tiny):
    module, ckpt = load_module(trained_tiny["results"]["best_checkpoint"])
    dm = build_datamodule(
        "synthetic", **{k: v for k, v in ckpt["datamodule_hyper_parameters"].items()}
    )
    dm.load_state_dict(ckpt["SyntheticDataModule"])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    from tmc_lightning.data.text import encode

    texts = ["Unilateral pulmonary infection, one infected area, upper left lung."] * 4
    other = ["Unilateral pulmonary infection, one infected area, lower right lung."] * 4
    image = batch["image"][:4]
    with torch.no_grad():
        a = module(image, *encode(dm.tokenizer, texts, 24)) > 0
        b = module(image, *encode(dm.tokenizer, other, 24)) > 0
    assert (a != b).any()  # the tiny model reads laterality only weakly: some pixels move


def test_unsafe_or_missing_checkpoint_is_refused(tmp_path, trained_tiny):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.ckpt")
    ckpt = torch.load(trained_tiny["results"]["best_checkpoint"], weights_only=True)
    ckpt["hyper_parameters"]["model_name"] = "os.system"
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    with pytest.raises(CheckpointError, match="not registered"):
        read_checkpoint(bad)


def _metrics(run_dir: Path) -> dict:
    data = json.loads((run_dir / "metrics.json").read_text())
    return {"val": data["val"], "test": data["test"]}


# With text dropout: its draws, too, must come out the same after a kill and a resume. Two
# epochs of 16 steps (~2 s each): the kills land in the second, after the first's last.ckpt.
RESUME = [
    "trainer.max_epochs=2",
    "dataset.n_train=64",
    "dataset.batch_size=4",
    "seed=7",
    "dataset.text_dropout=0.3",
]


def _start(cache_dir: Path, run_dir: Path) -> tuple[subprocess.Popen, Path]:
    """A RESUME run in its own process, returned once it is into its second epoch."""
    env = {**os.environ, "TMC_CACHE_DIR": str(cache_dir)}
    cmd = [sys.executable, "-m", "tmc_lightning.train", *TINY, *RESUME]
    cmd += [f"dataset.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)  # into the second epoch
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    return proc, last


def _resume_from_the_command_line(last: Path, cache_dir: Path, elsewhere: Path) -> None:
    """``python -m tmc_lightning.train ckpt_path=...`` as a user types it, from another folder:
    the run continues in its own folder and Hydra makes no new outputs/<date>/ folder."""
    elsewhere.mkdir()
    env = {**os.environ, "TMC_CACHE_DIR": str(cache_dir)}
    resume = [sys.executable, "-m", "tmc_lightning.train", f"ckpt_path={last}"]
    done = subprocess.run(resume, cwd=elsewhere, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert list(elsewhere.iterdir()) == []
    run_dir = last.parent.parent
    assert len(list(run_dir.glob(".hydra-resume-*/overrides.yaml"))) == 1
    assert (run_dir / ".hydra" / "config.yaml").is_file()  # the original record is kept
    assert (run_dir / "train.log").read_text().count("resuming ") == 1


def test_same_seed_same_metrics_and_resume_after_ctrl_c(cache_dir, tmp_path):
    # The uninterrupted reference. Same seed, same metrics needs no second run of its own: the
    # interrupted run trains its first epoch in a fresh process and must end equal.
    first = run(tiny_cfg(cache_dir, *RESUME), tmp_path / "a")
    assert first["epochs_trained"] == 2
    # Ctrl-C mid-epoch: last.ckpt at that step, a clean exit, and a resume to the same end.
    stopped = tmp_path / "sigint"
    proc, last = _start(cache_dir, stopped)
    proc.send_signal(signal.SIGINT)
    err = proc.communicate(timeout=120)[1].decode()
    assert proc.returncode == 130, err[-2000:]
    assert f"continue with python -m tmc_lightning.train ckpt_path={last}" in err
    step = torch.load(last, map_location="cpu", weights_only=True)["global_step"]
    per_epoch = 64 // 4
    assert per_epoch < step < 2 * per_epoch  # saved mid-epoch, not at the epoch's end
    assert not (stopped / "metrics.json").exists()
    _resume_from_the_command_line(last, cache_dir, tmp_path / "elsewhere")
    assert _metrics(stopped) == _metrics(tmp_path / "a")  # exactly the uninterrupted run


@pytest.mark.slow  # ~30 s: a reference run and two command starts (make test-slow)
def test_resume_after_sigkill_equals_the_uninterrupted_run(cache_dir, tmp_path):
    """No chance to save: the run continues from the last epoch's end (last.ckpt)."""
    run(tiny_cfg(cache_dir, *RESUME), tmp_path / "a")
    killed = tmp_path / "killed"
    proc, last = _start(cache_dir, killed)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    _resume_from_the_command_line(last, cache_dir, tmp_path / "elsewhere")
    assert _metrics(killed) == _metrics(tmp_path / "a")


def test_resume_from_a_missing_checkpoint_fails_before_any_folder(tmp_path, monkeypatch, capsys):
    from tmc_lightning.cli.train import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tmc-train", "ckpt_path=runs/x/checkpoints/last.ckpt"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "ckpt_path=runs/x/checkpoints/last.ckpt: no such checkpoint file" in err
    assert list(tmp_path.iterdir()) == []


def test_last_checkpoint_is_the_last_epoch_even_when_it_is_not_the_best(cache_dir, tmp_path):
    """Monitor "epoch" in mode min: only epoch 0 is ever the best, so last.ckpt must come from
    its own per-epoch save (with a monitored save_last it stayed at epoch 0)."""
    overrides = ["trainer.max_epochs=3", "callbacks.checkpoint.monitor=epoch"]
    overrides += ["callbacks.checkpoint.mode=min", "run_test=false"]
    run(tiny_cfg(cache_dir, *overrides), tmp_path / "r")
    folder = tmp_path / "r" / "checkpoints"
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 2 and names[0].startswith("best-epoch000-") and names[1] == "last.ckpt"
    last = torch.load(folder / "last.ckpt", weights_only=False, map_location="cpu")
    assert last["epoch"] == 2 and last["global_step"] > 0


def test_bad_data_fails_with_one_line_and_leaves_no_run_folder(tmp_path, cache_dir):
    from tests.helpers.layouts import make_lvit

    root = make_lvit(tmp_path / "qata")
    (root / "Val_Folder" / "img" / "val1.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    run_dir = tmp_path / "outputs" / "run"
    cmd = [
        sys.executable,
        "-m",
        "tmc_lightning.train",
        "dataset=qata",
        f"dataset.root={root}",
        "dataset.preset=tiny",
        "dataset.image_size=32",
        "dataset.num_workers=0",
        "logger=csv",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "TMC_CACHE_DIR": str(cache_dir)}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: cannot read image " in proc.stderr and "val1.png" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists() and not (tmp_path / "outputs").exists()  # nor its empty parent
    # The paper preset's BERT tokenizer offline, with no local copy: the same one-line exit
    # (once the data is sound: the data is checked first).
    make_lvit(root)
    offline = {**env, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    cmd = [c for c in cmd if not c.startswith("dataset.preset=")]
    proc = subprocess.run(cmd, cwd=REPO, env=offline, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "error: Could not load the tokenizer 'bert-base-uncased'" in proc.stderr
    assert not run_dir.exists()


def test_eval_scores_the_splits_the_data_has(cache_dir, tmp_path):
    """Like QaTa's public release: train and val only. tmc-eval's default splits=[val, test]
    then scores val (test is skipped with a warning); asking for test alone is an error."""
    from tests.helpers.layouts import make_lvit
    from tmc_lightning.data.layouts import DataError

    root = make_lvit(tmp_path / "qata", n=4)
    cfg = compose_cfg(
        [
            "dataset=qata",
            f"dataset.root={root}",
            "dataset.preset=tiny",
            "dataset.image_size=32",
            "dataset.batch_size=2",
            "dataset.num_workers=0",
            "model=unet",
            "trainer.max_epochs=1",
            "callbacks.rich_progress=false",
        ]
    )
    results = run(cfg, tmp_path / "run")
    assert "test" not in results and "dice" in results["val"]
    out = evaluate(results["best_checkpoint"], ["val", "test"])
    assert "test" not in out
    # default output beside checkpoints/, named after the whole checkpoint stem (it holds dots)
    best = Path(results["best_checkpoint"])
    assert "." in best.stem
    assert (tmp_path / "run" / f"eval_{best.stem}.json").is_file()
    assert out["val"]["dice"] == pytest.approx(results["val"]["dice"], abs=1e-6)
    with pytest.raises(DataError, match="Test_Folder"):
        evaluate(results["best_checkpoint"], ["test"], out=str(tmp_path / "t.json"))
    assert not (tmp_path / "t.json").exists()


@pytest.mark.parametrize("model", ["unet", "lvit"])
def test_other_models_reload_alone(cache_dir, tmp_path, model):
    results = run(tiny_cfg(cache_dir, f"model={model}", "trainer.max_epochs=1"), tmp_path)
    module, _ = load_module(results["best_checkpoint"])
    assert module.hparams.model_name == model
    out = evaluate(results["best_checkpoint"], ["test"], out=str(tmp_path / "e.json"))
    assert out["test"]["dice"] == pytest.approx(results["test"]["dice"], abs=1e-6)


def test_zero_alignment_weight_builds_no_alignment_heads(cache_dir):

    from tmc_lightning.training.factory import make_datamodule, make_module

    cfg = tiny_cfg(cache_dir, "loss.align_weight=0")
    dm = make_datamodule(cfg)
    assert make_module(cfg, dm).model.align_heads is None
    assert make_module(tiny_cfg(cache_dir), dm).model.align_heads is not None
    # model.align=false is lambda = 0: no heads, and the module records the weight it used
    off = make_module(tiny_cfg(cache_dir, "model.align=false"), dm)
    assert off.model.align_heads is None and off.hparams.align_weight == 0
    # Used directly, the heads exist exactly when the recorded weight is > 0: align=True with
    # lambda = 0 builds none; align=False (an ablation, as earlier checkpoints store it) is
    # lambda = 0 and recorded so.
    kwargs = {"preset": "tiny", "image_size": 64, "vocab_size": 50}
    assert (
        SegmentationModule("tmc", {**kwargs, "align": True}, align_weight=0).model.align_heads
        is None
    )
    off = SegmentationModule("tmc", {**kwargs, "align": False}, align_weight=0.1)
    assert off.model.align_heads is None and off.hparams.align_weight == 0
    assert off.hparams.model_kwargs["align"] is False
    on = SegmentationModule("tmc", kwargs, align_weight=0.1)
    assert on.model.align_heads is not None and on.hparams.model_kwargs["align"] is True


@pytest.mark.parametrize(
    ("override", "named", "suggested"),
    [
        ("+model.base_widht=32", "model.base_widht", "did you mean base_width"),
    ],
)
def test_a_misspelt_setting_stops_the_run_with_one_line(tmp_path, override, named, suggested):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "tmc_lightning.train", override, f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {named}: unknown key"), proc.stderr
    assert suggested in lines[0]
    assert not run_dir.exists()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "+model.text.hiden_size=8",
            "model.text.hiden_size: unknown key; did you mean hidden_size",
        ),
        ("+model.vision.depth=[1]", "model.vision.depth: unknown key; did you mean depths"),
        ("+optim.warmup_epoch=2", "optim.warmup_epoch: unknown key; did you mean warmup_epochs"),
        ("+loss.align_wieght=0.3", "loss.align_wieght: unknown key; did you mean align_weight"),
        ("+perf.chanels_last=true", "perf.chanels_last: unknown key; did you mean channels_last"),
        ("+dataset.n_trian=4", "dataset.n_trian: unknown key; did you mean n_train"),
        ("model=unet +model.mcm_heads=2", "model.mcm_heads: unknown key"),
        (
            "text_encoder=clip +text_encoder.nmae=x",
            "text_encoder.nmae: unknown key; did you mean name",
        ),
    ],
)
def test_every_section_the_code_reads_is_checked(override, message):
    from tmc_lightning.errors import ConfigError
    from tmc_lightning.training.factory import check_config

    with pytest.raises(ConfigError, match=re.escape(message)):
        check_config(compose_cfg(override.split()))
    check_config(compose_cfg([]))  # the defaults pass


def test_a_missing_data_root_is_reported_before_the_tokenizer_and_leaves_no_folder(tmp_path):
    """The paper preset needs BERT's tokenizer (offline here): the data is checked first."""
    out = tmp_path / "outputs"
    cmd = [sys.executable, "-m", "tmc_lightning.train", "dataset=qata", "dataset.root=/nonexistent"]
    cmd += [f"hydra.run.dir={out}/qata/tmc/run"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "/nonexistent" in lines[0] and "tokenizer" not in lines[0]
    assert not out.exists()  # every folder the failed start made is gone, not only the leaf


def test_a_non_finite_loss_stops_training_and_keeps_finite_weights(
    cache_dir, tmp_path, monkeypatch
):
    """A NaN injected into the task loss at step 3: the run stops there with one message,
    last.ckpt holds the weights of step 2 (all finite), metrics.json records the failure."""
    import tmc_lightning.training.module as module_py
    from tmc_lightning.training.callbacks import NonFiniteError

    real, calls = module_py.task_loss, {"n": 0}

    def nan_at_step_3(logits, target, dice_weight=0.0):
        loss = real(logits, target, dice_weight)
        if torch.is_grad_enabled():
            calls["n"] += 1
            if calls["n"] == 4:  # training steps 0, 1, 2 are fine
                return loss * float("nan")
        return loss

    monkeypatch.setattr(module_py, "task_loss", nan_at_step_3)
    with pytest.raises(
        NonFiniteError,
        match=r"stopped at step 3 \(epoch 0\): the training loss is not finite \(task=nan",
    ) as err:
        run(tiny_cfg(cache_dir, "trainer.max_epochs=2"), tmp_path)
    assert "optim.lr=" in str(err.value) and "bf16-mixed" in str(err.value)
    last = torch.load(
        tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert last["global_step"] == 3 and all(
        torch.isfinite(v).all() for v in last["state_dict"].values()
    )
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert "stopped at step 3" in saved["failed"] and "val" not in saved


def test_under_16_mixed_skipped_steps_are_not_failures_until_patience():
    from types import SimpleNamespace

    from tmc_lightning.training.callbacks import FiniteCheck, NonFiniteError

    check = FiniteCheck(patience=3)
    trainer = SimpleNamespace(
        precision="16-mixed", global_step=7, current_epoch=1, callbacks=[], world_size=1
    )
    module = SimpleNamespace(hparams={"lr": 1e-3}, parameters=lambda: iter([torch.zeros(1)]))
    check._bad(trainer, module, "the gradient norm is not finite (inf)")
    check._bad(trainer, module, "the gradient norm is not finite (inf)")
    with pytest.raises(NonFiniteError, match="for 3 steps in a row under 16-mixed"):
        check._bad(trainer, module, "the gradient norm is not finite (inf)")
    with pytest.raises(NonFiniteError, match="step 7"):  # fp32: the first one stops
        FiniteCheck(patience=3)._bad(
            SimpleNamespace(**{**vars(trainer), "precision": "32-true"}), module, "x"
        )
