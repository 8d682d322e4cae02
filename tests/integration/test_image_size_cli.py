"""tmc-predict and tmc-explain on a huge image: one ``error:`` line with its size, exit 2, no output."""

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.images import write_huge_png
from tmc_lightning.data.imageio import MAX_SIDE

CKPT = Path(__file__).resolve().parents[1] / "fixtures" / "tmc_tiny_premove.ckpt"
TEXT = "text='Unilateral pulmonary infection, one infected area, lower left lung.'"


# Both tools read the size through data/imageio.header_size; one command start (~10 s) each.
@pytest.mark.parametrize("tool", ["predict", pytest.param("explain", marks=pytest.mark.slow)])
def test_a_huge_png_is_one_error_line_and_writes_nothing(tool, tmp_path):
    huge = write_huge_png(tmp_path / "huge.png", 20000, 20000)
    out = tmp_path / ("pred" if tool == "predict" else "att.png")
    proc = subprocess.run(
        [sys.executable, "-m", f"tmc_lightning.{tool}", f"ckpt_path={CKPT}", f"input={huge}"]
        + [TEXT, f"out={out}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [
        f"error: {huge} is 20000 x 20000 pixels; at most {MAX_SIDE} a side: "
        "downscale it first (e.g. to 2048 pixels on the longer side)"
    ], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "DecompressionBomb" not in proc.stderr
    assert not out.exists()
