"""experiments/interleaved_bench/run.py: rotation, medians, and a run on the tiny preset."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "experiments/interleaved_bench/run.py"
_spec = importlib.util.spec_from_file_location("interleaved_bench", SCRIPT)
ib = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ib)


def test_each_round_rotates_the_order() -> None:
    calls: list[str] = []
    fns = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = ib.interleaved(fns, rounds=3)
    assert calls == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    summary = ib.summary({"x": [1.0, 5.0, 2.0], "y": [4.0, 4.0, 9.0]})
    assert summary["x"]["median_ms"] == 2.0 and summary["y"]["vs_first"] == 2.0
    assert summary["y"]["min_ms"] == 4.0 and summary["y"]["max_ms"] == 9.0


def test_bad_variant_is_one_argparse_error(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        ib.parse_args(["--variants", "fp32", "fp16", "--out", "x"])
    assert exit_info.value.code == 2
    assert "--variants fp16: unknown variant flag" in capsys.readouterr().err


def test_tiny_run_writes_both_tables(tmp_path: Path) -> None:
    out = tmp_path / "ib"
    argv = ["--models", "tmc", "lvit", "--preset", "tiny", "--image-size", "64"]
    argv += ["--variants", "fp32", "channels_last+nchw_wgrad", "--rounds", "2", "--warmup", "1"]
    ib.main([*argv, "--out", str(out)])
    report = json.loads(out.with_suffix(".json").read_text())
    names = [
        "tmc fp32",
        "tmc channels_last+nchw_wgrad",
        "lvit fp32",
        "lvit channels_last+nchw_wgrad",
    ]
    assert list(report["train_step"]) == names and list(report["inference_b1"]) == names
    for row in report["train_step"].values():
        assert len(row["all_ms"]) == 2 and row["gflop_per_step"] > 0
        assert 0 < row["share_of_matmul"] < 1
    md = out.with_suffix(".md").read_text()
    assert "| tmc channels_last+nchw_wgrad |" in md and "% of matmul" in md
