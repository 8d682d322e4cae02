"""tmc-data prepare: each download's layout as a fixture, prepared, then checked (issue 34).

MosMedData+ is built from the real LViT sheets in ../shared/data/MosMedDataPlus-text/ (2729
rows) with 8x8 stand-in images named after them; QaTa-COV19 and MedVLSM from hand-made
fixtures shaped like their downloads. Every test also proves that a broken download is reported
in full and leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.helpers.config import compose_cfg
from tmc_lightning.cli.data import prepare
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.inspect import measure_leakage, report
from tmc_lightning.data.prepare import PrepareError

REPO = Path(__file__).resolve().parents[2]
MOSMED_TEXT = REPO.parent / "shared" / "data" / "MosMedDataPlus-text"
needs_mosmed = pytest.mark.skipif(
    not MOSMED_TEXT.is_dir(),
    reason=f"{MOSMED_TEXT} is absent (LViT's MosMedData+ sheets; see ../shared/data/README.md)",
)
TEXT = "Unilateral pulmonary infection, one infected area, lower left lung."


def _png(path: Path, value: int = 0, size: int = 8) -> None:
    a = np.full((size, size), value, np.uint8)
    if value:
        a[: size // 2, : size // 2] = 255  # a lesion in the image's upper left
    Image.fromarray(a).save(path)


def _tiny_png_bytes() -> tuple[bytes, bytes]:
    from io import BytesIO

    out = []
    for value in (90, 255):
        buf = BytesIO()
        a = np.full((8, 8), value if value != 255 else 0, np.uint8)
        if value == 255:
            a[:4, :4] = 255
        Image.fromarray(a).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out[0], out[1]


def _prepare(kind: str, *overrides: str):
    """What `tmc-data prepare <kind> ...` runs, in-process."""
    return prepare(compose_cfg([f"kind={kind}", *overrides], config_name="prepare"))


def _nothing_written(out: Path) -> None:
    assert not out.exists(), f"{out} was written despite the problems"
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.tmp")]


# -- MosMedData+: the real sheets, stand-in images ------------------------------------------
def make_mosmed(tmp: Path) -> tuple[Path, Path]:
    """The Kaggle release (archive/frames, archive/masks) and a copy of the real sheets."""
    src = tmp / "download" / "archive"  # Kaggle's zip may unpack one level down
    (src / "frames").mkdir(parents=True)
    (src / "masks").mkdir()
    text = tmp / "text"
    shutil.copytree(MOSMED_TEXT, text)
    image, mask = _tiny_png_bytes()
    for sheet in sorted(text.glob("*.csv")):
        for name in pd.read_csv(sheet, sep=";")["Image"]:
            (src / "frames" / name).write_bytes(image)
            (src / "masks" / name).write_bytes(mask)
    return src.parent, text


@pytest.fixture(scope="module")
def mosmed(tmp_path_factory) -> dict[str, Path]:
    if not MOSMED_TEXT.is_dir():
        pytest.skip(f"{MOSMED_TEXT} is absent (LViT's MosMedData+ sheets)")
    tmp = tmp_path_factory.mktemp("mosmed")
    src, text = make_mosmed(tmp)
    lvit = _prepare("mosmed", f"src={src}", f"text={text}", f"out={tmp / 'lvit'}")
    patient = _prepare(
        "mosmed", f"src={src}", f"text={text}", f"out={tmp / 'patient'}", "split=patient"
    )
    return {"src": src, "text": text, "lvit": lvit, "patient": patient, "tmp": tmp}


@needs_mosmed
def test_mosmed_lvit_split_prepares_checks_and_leaks(mosmed, capsys):
    root = mosmed["lvit"]
    record = json.loads((root / "prepared.json").read_text())
    assert record["counts"] == {"train": 2183, "val": 273, "test": 273}
    img = root / "Train_Folder" / "img" / "bjorke_1.png"
    assert img.is_symlink() and img.resolve() == (mosmed["src"] / "archive/frames/bjorke_1.png")
    dm = build_datamodule("mosmed", root=str(root), group_pattern=r"^(.+)_\d+$")
    capsys.readouterr()
    assert report(dm) == 0
    out = capsys.readouterr().out
    assert "triples: 2183" in out and out.count("triples: 273") == 2
    assert "test: 273 images, 273 with a group, 9 groups; 193 of 273 images (71%) in 4 of 9" in out
    assert "val: 273 images, 273 with a group, 11 groups; 34 of 273 images" in out
    assert "WARNING: 34 val and 193 test images come from patients/volumes" in out
    assert "ready to train" in out


@needs_mosmed
def test_mosmed_patient_split_has_no_leak(mosmed, capsys):
    root = mosmed["patient"]
    record = json.loads((root / "prepared.json").read_text())
    sizes = record["counts"]
    assert sum(sizes.values()) == 2729
    assert abs(sizes["val"] - 273) <= 15 and abs(sizes["test"] - 273) <= 15, sizes
    assert "vs LViT's 273" in record["notes"][0]
    dm = build_datamodule("mosmed", root=str(root), group_pattern=r"^(.+)_\d+$")
    splits = {s: dm.read_split(s) for s in ("train", "val", "test")}
    leak = measure_leakage(splits, r"^(.+)_\d+$")
    assert leak["val"]["in_train_images"] == 0 and leak["test"]["in_train_images"] == 0
    groups = [{s.image.name.rsplit("_", 1)[0] for s in samples} for samples in splits.values()]
    assert not (groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2])
    capsys.readouterr()
    assert report(dm) == 0
    assert "no val/test image shares a group with train" in capsys.readouterr().out


@needs_mosmed
def test_mosmed_problems_are_reported_together_and_nothing_is_written(mosmed, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(mosmed["src"], src, symlinks=True)
    (src / "archive/frames/bjorke_1.png").unlink()  # a missing image
    (src / "archive/masks/Morozov_study_0295_12.png").unlink()  # a missing mask
    _png(src / "archive/frames/stray_7.png")  # an extra file
    out = tmp_path / "out"
    with pytest.raises(PrepareError) as err:
        _prepare("mosmed", f"src={src}", f"text={mosmed['text']}", f"out={out}")
    msg = str(err.value)
    assert "missing image: Train_text_MosMedData+.csv row 2 (train): no bjorke_1.*" in msg
    assert "missing mask: " in msg and "no morozov_study_0295_12.*" in msg
    assert "extra file: " in msg and "stray_7.png has no row in any sheet" in msg
    assert "count: train has 2182 triples, mosmed has 2183" in msg
    _nothing_written(out)
    assert (src / "archive/frames/stray_7.png").is_file()  # sources untouched


@pytest.mark.slow  # decodes 2729 images and starts a training process: about 1-2 min here
@needs_mosmed
def test_mosmed_fast_dev_run_trains_on_the_prepared_root(mosmed, tmp_path, cache_dir):
    """Done-when 2: python -m tmc_lightning.train dataset=mosmed dataset.root=<prepared> debug=fast_dev_run."""
    env = {**os.environ, "TMC_CACHE_DIR": str(cache_dir), "WANDB_MODE": "offline"}
    cmd = [
        sys.executable,
        "-m",
        "tmc_lightning.train",
        "dataset=mosmed",
        f"dataset.root={mosmed['lvit']}",
        "debug=fast_dev_run",
        "dataset.image_size=32",
        "dataset.num_workers=0",
        "dataset.preset=tiny",
        "logger=csv",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


# -- QaTa-COV19: hand-made, shaped like Kaggle's QaTa-COV19-v2 ---------------------------------
def make_qata(tmp: Path) -> tuple[Path, Path]:
    """QaTa-COV19/QaTa-COV19-v2/{Train Set,Test Set}/{Images,Ground-truths} + LViT's sheets."""
    v2 = tmp / "download" / "QaTa-COV19" / "QaTa-COV19-v2"
    names = {
        "train": ["covid_1.png", "sub-S10037_ses-E17945_run-1.png", "sub-S10040_ses-E1_run-1.png"],
        "val": ["covid_2.png", "sub-S10037_ses-E17946_run-1.png"],
        "test": ["covid_3.png", "sub-S20000_ses-E1_run-1.png"],
    }
    for split_set, splits in (("Train Set", ("train", "val")), ("Test Set", ("test",))):
        (v2 / split_set / "Images").mkdir(parents=True)
        (v2 / split_set / "Ground-truths").mkdir()
        for split in splits:
            for n in names[split]:
                _png(v2 / split_set / "Images" / n, 90)
                _png(v2 / split_set / "Ground-truths" / f"mask_{n}", 1)
    text = tmp / "LViT-QaTa"
    for split, folder in (
        ("train", "Train_Folder"),
        ("val", "Val_Folder"),
        ("test", "Test_Folder"),
    ):
        (text / folder).mkdir(parents=True)
        rows = [{"Image": f"mask_{n}", "Description": TEXT} for n in names[split]]
        pd.DataFrame(rows).to_excel(text / folder / f"{folder[:-7]}_text.xlsx", index=False)
    return tmp / "download", text


def test_qata_prepares_and_checks(tmp_path, capsys):
    src, text = make_qata(tmp_path)
    out = _prepare(
        "qata",
        f"src={src}",
        f"text={text}",
        f"out={tmp_path / 'qata'}",
        "copy=true",
        "strict_counts=false",
    )
    assert (out / "Val_Folder" / "labelcol" / "mask_covid_2.png").is_file()
    assert not (out / "Val_Folder" / "img" / "covid_2.png").is_symlink()  # copy=true
    capsys.readouterr()
    dm = build_datamodule("qata", root=str(out), group_pattern=r"^(sub-S\d+)_")
    assert report(dm) == 0
    report_text = capsys.readouterr().out
    assert "triples: 3" in report_text and report_text.count("triples: 2") == 2
    # sub-S10037 gives images to train and val; 1 of 2 val names carries no group
    assert "val: 2 images, 1 with a group, 1 groups (1 names carry no group: not counted)" in (
        report_text
    )
    assert "inconclusive: fewer than 10 images" in report_text


def test_qata_strict_counts_and_every_problem_in_one_report(tmp_path):
    src, text = make_qata(tmp_path)
    train_set = src / "QaTa-COV19/QaTa-COV19-v2/Train Set"
    (train_set / "Images" / "covid_1.png").unlink()
    (train_set / "Ground-truths" / "mask_covid_2.png").unlink()
    _png(src / "QaTa-COV19/QaTa-COV19-v2/Test Set/Images/covid_99.png")
    out = tmp_path / "qata"
    with pytest.raises(PrepareError) as err:
        _prepare("qata", f"src={src}", f"text={text}", f"out={out}")
    msg = str(err.value)
    assert "missing image: Train_text.xlsx row 2 (train): no covid_1.*" in msg
    assert "missing mask: Val_text.xlsx row 2 (val): no mask_covid_2.*" in msg
    assert "extra file: " in msg and "covid_99.png has no row" in msg
    assert "count: train has 2 triples, qata has 5716 (strict_counts=false" in msg
    _nothing_written(out)


def test_prepare_refuses_a_non_empty_out(tmp_path):
    src, text = make_qata(tmp_path)
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(PrepareError, match="exists and is not an empty folder"):
        _prepare("qata", f"src={src}", f"text={text}", f"out={out}", "strict_counts=false")
    assert (out / "keep.txt").read_text() == "mine" and len(list(out.iterdir())) == 1
    out.joinpath("keep.txt").unlink()  # an empty folder is fine
    _prepare("qata", f"src={src}", f"text={text}", f"out={out}", "strict_counts=false")
    assert (out / "Train_Folder" / "Train_text.csv").is_file()


def test_cli_exit_codes(tmp_path, monkeypatch, capsys):
    """A broken download: exit 1 with the report; an unknown kind: exit 2 with the usage."""
    from tmc_lightning.cli.data import cli

    src, text = make_qata(tmp_path)
    (src / "QaTa-COV19/QaTa-COV19-v2/Test Set/Images/covid_3.png").unlink()
    out = tmp_path / "o"
    args = ["qata", f"src={src}", f"text={text}", f"out={out}", "strict_counts=false"]
    for argv, code, expected in (
        (args, 1, "missing image: Test_text.xlsx row 2 (test)"),
        (["nosuch"], 2, "tmc-data prepare qata src="),
    ):
        monkeypatch.setattr(sys, "argv", ["tmc-data", "prepare", *argv])
        with pytest.raises(SystemExit) as exit_:
            cli()
        assert exit_.value.code == code and expected in capsys.readouterr().err
    assert not out.exists()


# -- MedVLSM: hand-made annotations in its JSON format --------------------------------------------
def _record(stem: str, p7: list[str] | None = None) -> dict:
    prompts = {
        "p0": "",
        "p1": "polyp",
        "p6": f"one medium yellow round polyp {stem}, located in right of the image",
    }
    if p7 is not None:
        prompts["p7"] = p7
    return {
        "bbox": [1, 1, 4, 4],
        "segment_id": stem,
        "img_name": f"{stem}.png",  # listed as .png; the images are .tif on disk
        "mask_name": f"{stem}.png",
        "prompts": prompts,
    }


def make_medvlsm(tmp: Path) -> Path:
    root = tmp / "kvasir_polyp"
    for d in ("images", "masks", "anns"):
        (root / d).mkdir(parents=True)
    splits = {"train": ["1", "2", "3", "4"], "val": ["5", "6"], "test": ["7"]}
    for split, stems in splits.items():
        for s in stems:
            Image.fromarray(np.full((8, 8), 90, np.uint8)).save(root / "images" / f"{s}.tif")
            _png(root / "masks" / f"{s}.png", 1)
        recs = [_record(s, [f"alt a {s}", f"alt b {s}", f"alt c {s}"]) for s in stems]
        (root / "anns" / f"{split}.json").write_text(json.dumps(recs))
    return root


def test_medvlsm_prepares_a_manifest_with_every_level(tmp_path, capsys):
    root = make_medvlsm(tmp_path)
    out = _prepare(
        "medvlsm",
        f"images={root / 'images'}",
        f"masks={root / 'masks'}",
        f"anns={root / 'anns'}",
        f"out={tmp_path / 'kvasir.csv'}",
    )
    df = pd.read_csv(out)
    assert list(df.columns) == [
        "image",
        "mask",
        "text",
        "split",
        "segment_id",
        "p0",
        "p1",
        "p6",
        "p7",
    ]
    assert df["image"][0].endswith("images/1.tif") and json.loads(df["p7"][0])[1] == "alt b 1"
    dm = build_datamodule("custom", manifest=str(out), group_pattern=None)
    capsys.readouterr()
    assert report(dm) == 0
    assert "triples: 4" in capsys.readouterr().out
    for level, want in (("p6", "one medium yellow round polyp 5"), ("p0", ""), ("p7", "alt a 5")):
        dm = build_datamodule("custom", manifest=str(out), prompt=level)
        val = dm.read_split("val")
        assert val[0].text.startswith(want) and (val[0].text == "") == (level == "p0")
    assert dm.read_split("train")[0].alternatives == ("alt a 1", "alt b 1", "alt c 1")


def test_medvlsm_problems_in_one_report(tmp_path):
    root = make_medvlsm(tmp_path)
    (root / "images" / "2.tif").unlink()
    (root / "masks" / "6.png").unlink()
    _png(root / "masks" / "extra.png")
    out = tmp_path / "m.csv"
    args = [f"images={root / 'images'}", f"masks={root / 'masks'}", f"anns={root / 'anns'}"]
    with pytest.raises(PrepareError) as err:
        _prepare("medvlsm", *args, f"out={out}")
    msg = str(err.value)
    assert "missing image: train.json record 1 (train): no 2.*" in msg
    assert "missing mask: val.json record 1 (val): no 6.*" in msg
    assert "extra file: " in msg and "extra.png" in msg
    assert not out.exists() and not list(tmp_path.glob(".m.csv*"))
