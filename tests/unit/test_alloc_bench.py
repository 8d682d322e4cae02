"""experiments/alloc_bench/run.py: the arms' environments, their rotation and the medians."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments/alloc_bench/run.py"
_spec = importlib.util.spec_from_file_location("alloc_bench", SCRIPT)
ab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ab)


def test_the_glibc_arms_switch_the_commands_preload_off(monkeypatch):
    monkeypatch.setattr(ab, "JEMALLOC", Path("/nonexistent/libjemalloc.so.2"))
    arms = ab.arms(["glibc", "thp", "jemalloc-keep"])
    assert list(arms) == ["glibc", "thp"]  # jemalloc skipped: not installed
    assert arms["glibc"]["TMC_ALLOCATOR"] == "glibc" and arms["thp"]["THP_MEM_ALLOC_ENABLE"] == "1"
    with pytest.raises(SystemExit, match="--arms tcmalloc"):
        ab.arms(["tcmalloc"])


def test_rounds_rotate_the_arms_and_the_table_holds_medians(monkeypatch, tmp_path):
    monkeypatch.setattr(ab, "JEMALLOC", Path(__file__))  # "installed"
    calls = []
    step = {"glibc": [300.0, 100.0, 200.0], "jemalloc-keep": [50.0, 70.0, 60.0]}

    def fake(model, batch, env, args):
        arm = "glibc" if env.get("TMC_ALLOCATOR") == "glibc" else "jemalloc-keep"
        calls.append((batch, arm))
        ms = step[arm][sum(1 for b, a in calls if a == arm and b == batch) - 1]
        return {
            "train_step_ms": ms * batch,
            "page_faults_per_step": 1.0,
            "sys_s_per_step": 0.5,
            "peak_mem_mb": 1000.0,
        }

    monkeypatch.setattr(ab, "bench_once", fake)
    out = tmp_path / "alloc"
    ab.main(
        ["--batches", "2", "--rounds", "3", "--arms", "glibc", "jemalloc-keep", "--out", str(out)]
    )
    assert calls == [
        (2, "glibc"), (2, "jemalloc-keep"),
        (2, "jemalloc-keep"), (2, "glibc"),
        (2, "glibc"), (2, "jemalloc-keep"),
    ]  # fmt: skip
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["median"]["glibc"]["2"]["train_step_ms"] == 400.0  # median of 600, 200, 400
    assert saved["median"]["jemalloc-keep"]["2"]["train_step_ms"] == 120.0
    md = out.with_suffix(".md").read_text()
    assert "Machine: " in md and "| jemalloc-keep | 2 | 120 | 60 | 1 | 0.50 | 250 | 1000 |" in md
