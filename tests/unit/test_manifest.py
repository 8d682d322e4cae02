"""The manifest route (users' own data, Duke-Breast): triples, splits and clear errors."""

import numpy as np
import pytest
from PIL import Image

from tests.helpers.config import compose_cfg
from tmc_lightning.data.datamodule import datamodule_from_config
from tmc_lightning.data.layouts import DataError, read_manifest


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "imgs").mkdir()
    rows = ["image,mask,text,split"]
    for i, split in enumerate(["train", "train", "train", "val", "test"]):
        Image.fromarray(np.full((40, 48), 60 + i, np.uint8)).save(tmp_path / "imgs" / f"c{i}.png")
        mask = np.zeros((40, 48), np.uint8)
        mask[5:15, 5:20] = 1  # 0/1 masks are binarised too
        Image.fromarray(mask).save(tmp_path / "imgs" / f"c{i}_m.png")
        rows.append(
            f'imgs/c{i}.png,imgs/c{i}_m.png,"Mass in the upper outer quadrant, case {i}.",{split}'
        )
    (tmp_path / "manifest.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


def test_manifest_splits_and_paths(folder):
    train = read_manifest(folder / "manifest.csv", "train")
    assert len(train) == 3 and train[0].image == folder / "imgs" / "c0.png"
    assert [s.text for s in read_manifest(folder / "manifest.csv", "test")] == [
        "Mass in the upper outer quadrant, case 4."
    ]


def test_custom_dataset_config_builds_batches(folder):
    cfg = compose_cfg(
        [
            "dataset=custom",
            f"dataset.manifest={folder / 'manifest.csv'}",
            "dataset.image_size=32",
            "dataset.num_workers=0",
            "dataset.batch_size=2",
        ]
    )
    from omegaconf import OmegaConf

    dm = datamodule_from_config(OmegaConf.to_container(cfg.dataset, resolve=True))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape == (2, 3, 32, 32) and batch["mask"].max() == 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("image,mask,text,split", "img,mask,text,split"), "lacks column"),
        (lambda t: t.replace("imgs/c1_m.png", "imgs/nope.png"), "row 3: mask"),
        (
            lambda t: t.replace('"Mass in the upper outer quadrant, case 2."', '""'),
            "row 4: empty text",
        ),
        (lambda t: t.replace(",val", ",train"), "no row has split=val"),
    ],
)
def test_bad_manifests_name_the_row_and_the_fix(folder, edit, message):
    path = folder / "manifest.csv"
    path.write_text(edit(path.read_text()))
    with pytest.raises(DataError, match=message):
        for split in ("train", "val"):
            read_manifest(path, split)


def test_missing_manifest_says_which_key_to_set(tmp_path):
    with pytest.raises(DataError, match="dataset.manifest"):
        read_manifest(tmp_path / "none.csv", "train")


def test_xlsx_and_semicolon_manifests_read_alike(folder):
    import pandas as pd

    df = pd.read_csv(folder / "manifest.csv")
    df.to_excel(folder / "manifest.xlsx", index=False)
    df.to_csv(folder / "semi.csv", sep=";", index=False)
    want = read_manifest(folder / "manifest.csv", "train")
    assert read_manifest(folder / "manifest.xlsx", "train") == want
    assert read_manifest(folder / "semi.csv", "train") == want


def test_manifest_with_no_rows_for_a_split_is_an_absent_split(folder):
    from tmc_lightning.data.layouts import SplitAbsent

    text = (folder / "manifest.csv").read_text().replace(",test\n", ",val\n")
    (folder / "manifest.csv").write_text(text)
    with pytest.raises(SplitAbsent, match="no row has split=test; give some rows split=test"):
        read_manifest(folder / "manifest.csv", "test")
