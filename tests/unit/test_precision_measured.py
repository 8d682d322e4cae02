"""trainer.precision=auto on a CPU: measured on the run's model, cached per machine and model."""

from __future__ import annotations

import json

import pytest
import torch

from tests.helpers.config import tiny_cfg
from tmc_lightning.errors import ConfigError
from tmc_lightning.training import precision as P

MACHINE = {"host": "a", "cpu": "EPYC", "threads": 2}
MODEL = {"model": "tmc", "kwargs": {"preset": "small"}, "batch": {"image": [8, 3, 128, 128]}}


def fake_step(ms: dict[str, float], calls: list[str] | None = None):
    def step(precision: str) -> float:
        if calls is not None:
            calls.append(precision)
        return ms[precision] / 1000

    return step


@pytest.mark.parametrize(
    ("fp32", "bf16", "threshold", "expected"),
    [
        (100, 50, 1.15, "bf16-mixed"),  # 2x
        (100, 86, 1.15, "bf16-mixed"),  # 1.163x
        (100, 88, 1.15, "32-true"),  # 1.136x: faster, but not clearly
        (100, 103, 1.15, "32-true"),  # 0.97x: slower (TMC small at 128 px, issue 33)
        (100, 88, 1.1, "bf16-mixed"),  # the threshold is a setting
    ],
)
def test_the_faster_precision_wins_only_above_the_threshold(
    tmp_path, fp32, bf16, threshold, expected
):
    steps = {P.FP32: fp32, P.BF16: bf16}
    choice = P.measured_cpu_precision(fake_step(steps), MACHINE, MODEL, threshold, tmp_path)
    assert choice.used == expected
    assert choice.step_ms == steps and choice.speedup == pytest.approx(fp32 / bf16, abs=1e-3)
    assert f"{threshold:g}x" in choice.reason and "perf.bf16_min_speedup" in choice.reason
    assert choice.record()["step_ms"] == steps and choice.cached is False


def test_timing_skips_warm_up_alternates_and_takes_medians():
    calls: list[str] = []
    seconds = iter([9.0, 9.0, 0.1, 0.05, 0.3, 0.06, 0.1, 0.07])  # warm-ups first, slow

    def step(precision):
        calls.append(precision)
        return next(seconds)

    ms = P.time_precisions(step, rounds=3)
    assert ms == {P.FP32: 100.0, P.BF16: 60.0}
    assert calls == [P.FP32, P.BF16] * 4


def test_timing_stops_at_its_time_limit():
    now = [0.0]

    def clock():
        now[0] += 20.0  # every read 20 s later: the first round already runs over
        return now[0]

    calls: list[str] = []
    P.time_precisions(fake_step({P.FP32: 1, P.BF16: 1}, calls), rounds=5, max_s=15, clock=clock)
    assert len(calls) == 4  # the warm-ups and one timed round each


def test_the_cache_is_keyed_by_machine_and_model(tmp_path):
    calls: list[str] = []
    step = fake_step({P.FP32: 100, P.BF16: 50}, calls)
    first = P.measured_cpu_precision(step, MACHINE, MODEL, 1.15, tmp_path)
    assert not first.cached and first.probe_s is not None
    n = len(calls)
    again = P.measured_cpu_precision(step, MACHINE, MODEL, 1.15, tmp_path)
    assert again.cached and len(calls) == n and again.used == first.used
    assert "cached in" in again.reason and again.probe_s == 0
    # a stricter threshold decides again from the cached times, without timing
    strict = P.measured_cpu_precision(step, MACHINE, MODEL, 3.0, tmp_path)
    assert strict.cached and strict.used == P.FP32 and len(calls) == n
    # another machine, or another model (or batch), is timed anew
    P.measured_cpu_precision(step, {**MACHINE, "host": "b"}, MODEL, 1.15, tmp_path)
    assert len(calls) == 2 * n
    other = {**MODEL, "batch": {"image": [2, 3, 128, 128]}}
    P.measured_cpu_precision(step, MACHINE, other, 1.15, tmp_path)
    assert len(calls) == 3 * n
    entries = json.loads((tmp_path / "precision.json").read_text())["entries"]
    assert len(entries) == 3
    assert P.cache_key(MACHINE, MODEL) != P.cache_key({**MACHINE, "threads": 1}, MODEL)


def test_a_bad_threshold_names_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"perf.bf16_min_speedup=0"):
        P.measured_cpu_precision(fake_step({P.FP32: 1, P.BF16: 1}), MACHINE, MODEL, 0, tmp_path)


def _module_and_data(cache_dir, *extra):
    from tmc_lightning.training.factory import make_datamodule, make_module

    cfg = tiny_cfg(cache_dir, "trainer.precision=auto", *extra)
    dm = make_datamodule(cfg)
    dm.prepare_data()
    dm.setup("fit")
    return cfg, make_module(cfg, dm), dm


def test_explicit_precision_and_cpus_without_bf16_are_not_timed(cache_dir, monkeypatch):
    def no_timing(*args, **kwargs):
        raise AssertionError("timed")

    monkeypatch.setattr(P, "time_precisions", no_timing)
    cfg, module, dm = _module_and_data(cache_dir, "trainer.precision=bf16-mixed")
    assert P.choose_for_run(cfg, module, dm).used == "bf16-mixed"  # explicit always wins
    monkeypatch.setattr(P, "cpu_bf16_reason", lambda: None)
    cfg, module, dm = _module_and_data(cache_dir)
    choice = P.choose_for_run(cfg, module, dm)
    assert choice.used == "32-true" and choice.step_ms is None and "neither" in choice.reason


def test_auto_times_the_runs_own_model_and_leaves_it_untouched(cache_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("TMC_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(P, "cpu_bf16_reason", lambda: "CPU has avx512_bf16")
    monkeypatch.setattr(P, "PROBE_ROUNDS", 1)
    cfg, module, dm = _module_and_data(cache_dir, "perf.bf16_min_speedup=1000")
    before = {k: v.clone() for k, v in module.state_dict().items()}
    rng = torch.get_rng_state()
    choice = P.choose_for_run(cfg, module, dm)
    assert choice.used == "32-true" and "1000x" in choice.reason  # no CPU is 1000x faster
    assert set(choice.step_ms) == {P.FP32, P.BF16} and all(choice.step_ms.values())
    after = module.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BN statistics
    assert all(p.grad is None for p in module.parameters())
    assert torch.equal(rng, torch.get_rng_state())
    entry = next(iter(json.loads((tmp_path / "precision.json").read_text())["entries"].values()))
    assert entry["model"]["batch"]["image"] == [8, 3, 64, 64] and entry["machine"]["cpu"]
