"""A budget the schedule follows: it ends at the budget, resumes on it, and steps reproduce."""

from __future__ import annotations

import json
import shutil

import lightning as L
import pytest
import torch

from tests.helpers.config import tiny_cfg
from tmc_lightning.errors import ConfigError
from tmc_lightning.training.budget import Budget, budget_config, parse_duration
from tmc_lightning.training.factory import check_config, make_datamodule, make_module
from tmc_lightning.training.run import make_trainer, run
from tmc_lightning.training.schedule import WARMUP_START, budget_factor

LR = 1e-3
# no budget warm-up surprises: a fifth of the budget warms up, then linear to zero
TIME_BUDGET = [
    f"optim.lr={LR}",
    "optim.scheduler=linear",
    "optim.min_lr_ratio=0",
    "budget.warmup=0.2",
    "budget.val_every=0.5",
    "trainer.max_epochs=-1",  # no step plan: the time budget alone decides
    "callbacks.early_stopping=null",
    "logger.csv=false",
    "callbacks.lr_monitor=false",
]


class FakeClock:
    """One second passes per train step, none anywhere else: no sleeping, same on every machine."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Tick(L.Callback):
    def __init__(self, clock: FakeClock) -> None:
        self.clock, self.lrs = clock, {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.lrs[trainer.global_step] = trainer.optimizers[0].param_groups[0]["lr"]
        self.clock.now += 1.0


def fit(cfg, run_dir, clock, ckpt_path=None, extra=()):
    dm = make_datamodule(cfg)
    module = make_module(cfg, dm)
    budget = Budget.from_config(cfg, clock=clock)
    module.budget = budget
    trainer = make_trainer(cfg, run_dir, "32-true", budget)
    tick = Tick(clock)
    trainer.callbacks.extend([tick, *extra])
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return trainer, budget, tick


def expected_lr(step: int, seconds: float) -> float:
    return LR * budget_factor(step / seconds, "linear", 0.2, 0.0)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("60min", 3600), ("1h30m", 5400), ("01:00:00", 3600), ("1:00:00:00", 86400)],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["60", "an hour", "0s", "1:2"])
def test_a_bad_duration_names_the_key_and_the_fix(bad):
    with pytest.raises(ConfigError, match=r"budget.time=.*60min"):
        parse_duration(bad)


def test_schedule_shapes():
    assert budget_factor(0.0, "cosine", 0.1, 0.01) == pytest.approx(WARMUP_START)
    assert budget_factor(0.1, "cosine", 0.1, 0.01) == pytest.approx(1.0)
    assert budget_factor(0.55, "cosine", 0.1, 0.0) == pytest.approx(0.5)
    assert budget_factor(0.55, "linear", 0.1, 0.0) == pytest.approx(0.5)
    assert budget_factor(0.4, "linear", 0.0, 0.0) == pytest.approx(0.6)
    assert budget_factor(0.4, "cosine", 0.0, 0.0) > 0.6  # cosine stays high for longer
    for kind, floor in (("cosine", 0.01), ("linear", 0.0)):
        assert budget_factor(1.0, kind, 0.05, floor) == pytest.approx(floor)
        assert budget_factor(7.0, kind, 0.05, floor) == pytest.approx(floor)  # clamped


def test_budget_settings_are_checked(cache_dir):
    with pytest.raises(ConfigError, match=r"budget.warmp: unknown key; did you mean warmup"):
        check_config(tiny_cfg(cache_dir, "+budget.warmp=0.1"))
    with pytest.raises(ConfigError, match=r"remove trainer.max_time"):
        budget_config(tiny_cfg(cache_dir, "budget.time=10min", "+trainer.max_time=00:00:10:00"))
    with pytest.raises(ConfigError, match=r"budget.steps=100 and trainer.max_steps=50"):
        budget_config(tiny_cfg(cache_dir, "budget.steps=100", "+trainer.max_steps=50"))
    with pytest.raises(ConfigError, match=r"budget.val_every=0 .*0 < it <= 1"):
        budget_config(tiny_cfg(cache_dir, "budget.steps=100", "budget.val_every=0"))
    assert Budget.from_config(tiny_cfg(cache_dir)) is None  # no budget: per-epoch schedule


def test_a_time_budget_ends_the_schedule_at_the_budget(cache_dir, tmp_path):
    cfg = tiny_cfg(cache_dir, "budget.time=10s", *TIME_BUDGET)
    clock = FakeClock()
    trainer, budget, tick = fit(cfg, tmp_path, clock)
    assert trainer.global_step == 10  # 10 fake seconds, one per step: the budget ended it
    assert list(tick.lrs) == list(range(10))
    for step, lr in tick.lrs.items():
        assert lr == pytest.approx(expected_lr(step, 10)), step
    assert tick.lrs[0] == pytest.approx(LR * WARMUP_START)
    assert max(tick.lrs.values()) == pytest.approx(LR)  # warm-up reached the peak at 20%
    assert trainer.optimizers[0].param_groups[0]["lr"] == 0.0  # linear to zero, at the end
    rec = budget.record()
    assert rec["ended_by"] == "time" and rec["progress"] == 1.0 and rec["time_used_s"] == 10
    assert [v["step"] for v in rec["validations"]] == [5, 10]  # at 50% and at the end
    assert rec["phases_s"]["warmup"] == 2 and rec["phases_s"]["decay"] == 8
    assert rec["phases_of_time_budget"]["train"] == 1.0  # the fake validation took no time


def test_a_resumed_run_continues_the_same_schedule(cache_dir, tmp_path):
    cfg = tiny_cfg(cache_dir, "budget.time=14s", *TIME_BUDGET)  # 6 steps per epoch
    mid = tmp_path / "mid.ckpt"

    class KeepMid(L.Callback):  # last.ckpt as the validation at 50% (step 7, mid-epoch) wrote it
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if trainer.global_step == 8:
                shutil.copy(tmp_path / "a" / "checkpoints" / "last.ckpt", mid)

    whole, _, tick_a = fit(cfg, tmp_path / "a", FakeClock(), extra=[KeepMid()])
    assert whole.global_step == 14 and mid.is_file()
    saved = torch.load(mid, weights_only=True)["callbacks"]["Budget"]
    assert saved["time_used_s"] == 7.0  # the time used so far travels with the checkpoint

    # A new process: its clock starts anywhere; the budget goes on from the 7 s already used.
    resumed, budget, tick_b = fit(cfg, tmp_path / "b", FakeClock(1000.0), ckpt_path=str(mid))
    assert resumed.global_step == 14 and budget.record()["time_used_s"] == 14
    assert min(tick_b.lrs) == 7
    for step, lr in tick_b.lrs.items():
        assert lr == pytest.approx(tick_a.lrs[step]), step
        assert lr == pytest.approx(expected_lr(step, 14)), step
    assert resumed.optimizers[0].param_groups[0]["lr"] == 0.0
    assert [v["step"] for v in budget.record()["validations"]] == [7, 14]
    a, b = whole.lightning_module.state_dict(), resumed.lightning_module.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run, bitwise


def test_a_step_budget_is_reproducible_and_recorded(cache_dir, tmp_path):
    def once(name):
        cfg = tiny_cfg(
            cache_dir, "budget.steps=8", "budget.val_every=0.5", "run_test=false",
            "callbacks.lr_monitor=false",
        )  # fmt: skip
        results = run(cfg, tmp_path / name)
        state = torch.load(tmp_path / name / "checkpoints" / "last.ckpt", weights_only=True)
        return results, state["state_dict"]

    (_, weights1), (second, weights2) = once("one"), once("two")
    assert weights1.keys() == weights2.keys()
    assert all(torch.equal(weights1[k], weights2[k]) for k in weights1)  # bitwise
    rec = json.loads((tmp_path / "one" / "metrics.json").read_text())["budget"]
    assert rec["steps_planned"] == 8 and rec["steps_done"] == 8 and rec["ended_by"] == "steps"
    assert [v["step"] for v in rec["validations"]] == [4, 8]
    assert set(rec["phases_s"]) == {"warmup", "decay", "train", "validation"}
    assert [v["step"] for v in second["budget"]["validations"]] == [4, 8]
