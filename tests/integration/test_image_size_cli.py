"""tmc-predict and tmc-explain on a huge image: one ``error:`` line with its size, exit 2, no output."""

import importlib
import sys
from pathlib import Path

import pytest

from tests.helpers.images import write_huge_png
from tmc_lightning.data.imageio import MAX_SIDE

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "tmc_tiny_premove.ckpt"
TEXT = "text='Unilateral pulmonary infection, one infected area, lower left lung.'"


@pytest.mark.parametrize("tool", ["predict", "explain"])
def test_a_huge_png_is_one_error_line_and_writes_nothing(tool, tmp_path, monkeypatch, capsys):
    """The command as a user types it, run in this process (its Hydra main and exit code)."""
    huge = write_huge_png(tmp_path / "huge.png", 20000, 20000)
    out = tmp_path / ("pred" if tool == "predict" else "att.png")
    main = importlib.import_module(f"tmc_lightning.cli.{tool}").main
    monkeypatch.chdir(tmp_path)
    argv = [f"tmc-{tool}", f"ckpt_path={CKPT}", f"input={huge}", TEXT, f"out={out}"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2, err[-2000:]
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [
        f"error: {huge} is 20000 x 20000 pixels; at most {MAX_SIDE} a side: "
        "downscale it first (e.g. to 2048 pixels on the longer side)"
    ], err[-2000:]
    assert "Traceback" not in err and "DecompressionBomb" not in err
    assert not out.exists()
