"""tmc-export nnunet: the nnU-Net v2 raw folder it writes, and what it refuses."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.layouts import TEXT, make_lvit, pair
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.layouts import DataError
from tmc_lightning.export.nnunet import export_nnunet, score_predictions

REPO = Path(__file__).resolve().parents[2]


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def _add_test_split(root, sizes=((40, 24), (24, 40))):
    rows = []
    for i, size in enumerate(sizes):
        name = f"test{i}.png"
        folder = root / "Test_Folder"
        pair(folder / "img", folder / "labelcol", name, f"mask_{name}", size=size)
        rows.append({"Image": f"mask_{name}", "Description": TEXT})
    pd.DataFrame(rows).to_excel(root / "Test_Folder" / "Test_text.xlsx", index=False)


def test_export_without_test_split(tmp_path):
    dm = build_datamodule("qata", root=str(make_lvit(tmp_path / "data")))
    target = export_nnunet(dm, tmp_path / "raw", dataset_id=7, dataset_name="qata")
    assert target == tmp_path / "raw" / "Dataset007_qata"
    assert _names(tmp_path / "raw") == ["Dataset007_qata"]  # no temporary folder left
    cases = ["train0", "train1", "train2", "val0", "val1", "val2"]
    assert _names(target / "imagesTr") == [f"{c}_0000.png" for c in cases]
    assert _names(target / "labelsTr") == [f"{c}.png" for c in cases]
    # No test split: val is the held-out set, as our runs report it.
    assert _names(target / "imagesTs") == [f"val{i}_0000.png" for i in range(3)]
    assert _names(target / "labelsTs") == [f"val{i}.png" for i in range(3)]

    info = json.loads((target / "dataset.json").read_text())
    assert info["channel_names"] == {"0": "zscore"}
    assert info["labels"] == {"background": 0, "lesion": 1}
    assert info["numTraining"] == 6 and info["file_ending"] == ".png"
    splits = json.loads((target / "splits_final.json").read_text())
    assert splits == [{"train": cases[:3], "val": cases[3:]}]

    for c in cases:
        with Image.open(target / "imagesTr" / f"{c}_0000.png") as im:
            assert im.mode == "L" and im.size == (32, 32)
        with Image.open(target / "labelsTr" / f"{c}.png") as lb:
            assert lb.mode == "L" and lb.size == (32, 32)
            label = np.asarray(lb)
        assert label.dtype == np.uint8 and set(np.unique(label)) == {0, 1}
        assert label[4:10, 4:10].all() and label.sum() == 36  # the 0/255 square, now 0/1
    rows = pd.read_csv(target / "cases.csv")
    assert list(rows["split"]) == ["train"] * 3 + ["val"] * 6 and set(rows["text"]) == {TEXT}


def test_export_with_test_split_keeps_each_size(tmp_path):
    root = make_lvit(tmp_path / "data")
    _add_test_split(root)
    target = export_nnunet(build_datamodule("qata", root=str(root)), tmp_path / "raw")
    assert target.name == "Dataset501_tmc"
    assert _names(target / "imagesTs") == ["test0_0000.png", "test1_0000.png"]
    for i, size in enumerate(((40, 24), (24, 40))):
        for path in (
            target / "imagesTs" / f"test{i}_0000.png",
            target / "labelsTs" / f"test{i}.png",
        ):
            with Image.open(path) as im:
                assert im.size == size
    assert json.loads((target / "dataset.json").read_text())["numTraining"] == 6


def test_refuses_to_overwrite_unless_asked(tmp_path):
    root = make_lvit(tmp_path / "data")
    dm = build_datamodule("qata", root=str(root))
    target = export_nnunet(dm, tmp_path / "raw", dataset_name="qata")
    marker = target / "imagesTr" / "train0_0000.png"
    with pytest.raises(FileExistsError, match="overwrite=true"):
        export_nnunet(dm, tmp_path / "raw", dataset_name="qata")
    with pytest.raises(FileExistsError, match="another dataset_id"):
        export_nnunet(dm, tmp_path / "raw", dataset_name="other")  # same id, another name
    (target / "stale.txt").write_text("from before")
    export_nnunet(dm, tmp_path / "raw", dataset_name="qata", overwrite=True)
    assert marker.is_file() and not (target / "stale.txt").exists()
    assert _names(tmp_path / "raw") == ["Dataset501_qata"]


def test_bad_input_leaves_no_partial_output(tmp_path):
    root = make_lvit(tmp_path / "data")
    dm = build_datamodule("qata", root=str(root))
    good = export_nnunet(dm, tmp_path / "raw", dataset_name="qata")
    (root / "Val_Folder" / "img" / "val1.png").write_bytes(b"broken")
    with pytest.raises(DataError, match="val1.png"):
        export_nnunet(dm, tmp_path / "fresh", dataset_name="qata")
    assert not (tmp_path / "fresh").exists() or _names(tmp_path / "fresh") == []
    with pytest.raises(DataError):  # a failed overwrite keeps the previous export intact
        export_nnunet(dm, tmp_path / "raw", dataset_name="qata", overwrite=True)
    assert _names(tmp_path / "raw") == ["Dataset501_qata"]
    assert len(_names(good / "imagesTr")) == 6

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "Val_Folder" / "img" / "val1.png")
    with pytest.raises(DataError, match="must match"):  # image/mask size mismatch
        export_nnunet(dm, tmp_path / "fresh", dataset_name="qata")
    assert not (tmp_path / "fresh").exists() or _names(tmp_path / "fresh") == []


def test_invalid_id_and_name(tmp_path):
    dm = build_datamodule("qata", root=str(make_lvit(tmp_path / "data")))
    with pytest.raises(ValueError, match="1-999"):
        export_nnunet(dm, tmp_path / "raw", dataset_id=1000)
    with pytest.raises(ValueError, match="letters, digits"):
        export_nnunet(dm, tmp_path / "raw", dataset_name="QaTa COV")


def test_score_predictions_uses_our_metrics(tmp_path):
    target = export_nnunet(
        build_datamodule("qata", root=str(make_lvit(tmp_path / "data"))), tmp_path / "raw"
    )
    pred = tmp_path / "pred"
    pred.mkdir()
    for i in range(3):  # two perfect predictions and one empty one
        label = np.asarray(Image.open(target / "labelsTs" / f"val{i}.png"))
        Image.fromarray(label if i < 2 else np.zeros_like(label)).save(pred / f"val{i}.png")
    scores = score_predictions(pred, target / "labelsTs")
    assert scores["n"] == 3
    assert scores["dice"] == pytest.approx(2 / 3) and scores["iou"] == pytest.approx(2 / 3)
    assert scores["dice_global"] == pytest.approx(2 * 72 / (2 * 72 + 36))


@pytest.mark.slow  # ~15 s: the nnU-Net export CLI end to end (make test-slow)
def test_cli(tmp_path):
    root = make_lvit(tmp_path / "data")
    out = tmp_path / "raw"
    cmd = [
        sys.executable,
        "-c",
        "from tmc_lightning.cli.export import cli; cli()",
        "nnunet",
        "dataset=qata",
        f"dataset.root={root}",
        f"out={out}",
        "dataset_id=12",
    ]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (out / "Dataset012_qata" / "dataset.json").is_file()
    assert "nnUNetv2_plan_and_preprocess -d 12 --verify_dataset_integrity" in proc.stdout
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 2 and "already exists" in again.stderr
