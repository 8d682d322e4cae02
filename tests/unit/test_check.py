"""tmc-data check: the report on a good dataset and the exit code on a broken one."""

import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.layouts import TEXT, make_ariadne, make_lvit, pair
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.inspect import report


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


def test_cli_exit_code(tmp_path, monkeypatch, capsys):
    from tmc_lightning.cli.data import cli

    root = make_lvit(tmp_path)
    (root / "Val_Folder" / "Val_text.xlsx").unlink()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["tmc-data", "check", "dataset=qata", f"dataset.root={root}"])
    with pytest.raises(SystemExit) as exit_:
        cli()
    out = capsys.readouterr()
    assert exit_.value.code == 1, out.out + out.err
    assert "ERROR: no text sheet for split 'val'" in out.out


def test_report_statistics_and_duplicates(tmp_path, capsys):
    root = make_lvit(tmp_path)  # 3 identical 32x32 images per split, each mask 6x6 = 3.52%
    assert report(build_datamodule("qata", root=str(root))) == 0
    out = capsys.readouterr().out
    assert "mask coverage %: min 3.52, mean 3.52, max 3.52; empty masks: 0" in out
    assert "text length (words): min 13.0, mean 13.0, max 13.0" in out
    assert (
        "duplicate images (same bytes): 1, e.g. [['train0.png', 'train1.png', 'train2.png']]" in out
    )
    assert "identical image(s) appear in both train and val" in out


def test_report_on_shared_folders_counts_no_false_orphans(tmp_path, capsys):
    """Ariadne's validation shares Train/Images with train: neither split's images are orphans."""
    root = make_ariadne(tmp_path / "a")
    dm = build_datamodule("qata", root=str(root), layout="ariadne")
    assert report(dm) == 0
    out = capsys.readouterr().out
    assert out.count("images without masks/text: 0") == 2 and "triples: 4" in out
    pair(root / "Train" / "Images", root / "Train" / "GTs", "x.png", "mask_x.png")
    (root / "Train" / "GTs" / "mask_x.png").unlink()  # an image with neither mask nor text
    assert report(dm) == 0
    assert "images without masks/text: 1, e.g. ['x.png']" in capsys.readouterr().out


def test_broken_test_split_stops_training(tmp_path, capsys):
    root = make_lvit(tmp_path)
    pair(root / "Test_Folder" / "img", root / "Test_Folder" / "labelcol", "t.png", "mask_t.png")
    pd.DataFrame([{"Image": "mask_t.png", "Caption": TEXT}]).to_excel(
        root / "Test_Folder" / "Test_text.xlsx", index=False
    )
    assert report(build_datamodule("qata", root=str(root))) == 1
    out = capsys.readouterr().out
    assert "[test]\n  ERROR: " in out and "lacks column" in out and "1 problem(s)" in out
