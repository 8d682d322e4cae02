"""tmc-data check: the report on a good dataset and the exit code on a broken one."""

import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from tests.unit.test_layouts import make_lvit
from tmc_lightning.data.check import report
from tmc_lightning.data.datamodule import build_datamodule

REPO = Path(__file__).resolve().parents[2]


def test_report_on_a_good_dataset(tmp_path, capsys):
    root = make_lvit(tmp_path)
    assert report(build_datamodule("qata", root=str(root))) == 0
    out = capsys.readouterr().out
    assert "triples: 3" in out and "32x32 (3)" in out and "distinct texts: 1" in out
    assert "[test]\n  absent" in out and "ready to train" in out


def test_report_flags_what_would_stop_training(tmp_path, capsys):
    root = make_lvit(tmp_path)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(
        root / "Train_Folder" / "labelcol" / "mask_train1.png"
    )
    (root / "Val_Folder" / "img" / "val0.png").write_bytes(b"broken")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "Train_Folder" / "img" / "extra.png")
    assert report(build_datamodule("qata", root=str(root))) == 1
    out = capsys.readouterr().out
    assert "size mismatches: 1" in out and "unreadable files: 1" in out
    assert "images without masks/text: 1" in out and "2 problem(s)" in out


def test_cli_exit_code(tmp_path):
    root = make_lvit(tmp_path)
    (root / "Val_Folder" / "Val_text.xlsx").unlink()
    cmd = [
        sys.executable,
        "-c",
        "from tmc_lightning.data.check import cli; cli()",
        "check",
        "dataset=qata",
        f"dataset.root={root}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "ERROR: no text sheet for split 'val'" in proc.stdout
