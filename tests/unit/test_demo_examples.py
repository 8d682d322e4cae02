"""The demo's examples come from the checkpoint's own data, the bundled ones only for synthetic."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.layouts import VAL_TEXTS, make_lvit_dataset
from tmc_lightning.inference.segment import (
    ALL_WORDS,
    Attention,
    bundled_examples,
    checkpoint_examples,
    read_upload,
    shown_gray,
)


def fake_checkpoint(path: Path, module: str, **settings) -> Path:
    """What checkpoint_examples reads of a checkpoint: its DataModule's name and settings."""
    torch.save(
        {"datamodule_hyper_parameters": {"image_size": 48, **settings}, module: {}}, str(path)
    )
    return path


def test_a_qata_checkpoint_offers_its_own_validation_images(tmp_path):
    root = make_lvit_dataset(tmp_path / "QaTa-COV19")
    ckpt = fake_checkpoint(tmp_path / "q.ckpt", "QaTaDataModule", root=str(root))
    shown = checkpoint_examples(ckpt, n=4)
    assert len(shown.items) == 4
    texts = [e["text"] for e in shown.items]
    assert len(set(texts)) == 4 and set(texts) <= set(VAL_TEXTS)  # distinct, their own texts
    for e in shown.items:
        image = Path(e["image"])
        assert image.parent == root / "Val_Folder" / "img" and image.is_file()
        row = VAL_TEXTS[int(image.stem.rsplit("_", 1)[1])]
        assert e["text"] == row  # each image with its own description
    assert shown.prompt == texts[0]
    assert "Validation images" in shown.label and "qata" in shown.label
    assert "synthetic" not in shown.label.lower()


def test_the_root_override_wins_over_the_recorded_one(tmp_path):
    root = make_lvit_dataset(tmp_path / "moved")
    ckpt = fake_checkpoint(tmp_path / "q.ckpt", "QaTaDataModule", root=str(tmp_path / "gone"))
    assert checkpoint_examples(ckpt).items == []
    assert "not found at" in checkpoint_examples(ckpt).note
    assert "dataset.root=" in checkpoint_examples(ckpt).note
    moved = checkpoint_examples(ckpt, root=str(root), n=2)
    assert [Path(e["image"]).parent for e in moved.items] == [root / "Val_Folder" / "img"] * 2


def test_unreachable_data_gives_no_examples_never_the_synthetic_ones(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "q.ckpt", "QaTaDataModule", root=None)
    shown = checkpoint_examples(ckpt)
    assert shown.items == [] and shown.prompt == ""
    assert "records no qata data path" in shown.note
    broken = tmp_path / "broken"
    (broken / "Val_Folder").mkdir(parents=True)  # a val folder without its sheet
    shown = checkpoint_examples(ckpt, root=str(broken))
    assert shown.items == [] and "cannot be read" in shown.note


def test_a_synthetic_checkpoint_gets_the_bundled_synthetic_examples(tmp_path):
    ckpt = fake_checkpoint(tmp_path / "s.ckpt", "SyntheticDataModule", root=None)
    shown = checkpoint_examples(ckpt)
    assert shown.items == bundled_examples().items and len(shown.items) == 3
    assert all(Path(e["image"]).is_file() for e in shown.items)
    assert "Synthetic" in shown.label and shown.prompt == shown.items[0]["text"]


def test_a_checkpoint_that_names_no_dataset(tmp_path):
    ckpt = tmp_path / "x.ckpt"
    torch.save({"datamodule_hyper_parameters": {}}, str(ckpt))
    assert checkpoint_examples(ckpt).items == []


def test_the_preview_is_what_the_model_reads_16_bit_included(tmp_path):
    a = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 30).astype(np.uint16)
    deep = tmp_path / "deep.tif"
    Image.fromarray(a).save(deep)
    gray = read_upload(deep)
    assert gray.dtype == np.uint8 and gray.min() == 0 and gray.max() == 255
    shown = shown_gray(gray)
    assert shown.size == (50 * 7, 40 * 7)  # enlarged pixel-exact to >= 320 px
    assert np.array_equal(np.asarray(shown)[::7, ::7], gray)
    big = shown_gray(np.zeros((3000, 1500), np.uint8))
    assert big.size == (512, 1024)  # large images are shown reduced


def test_one_heatmap_per_stage_and_word(tmp_path):
    gray = np.full((64, 64), 120, np.uint8)
    hot = torch.zeros(3, 4, 4)
    hot[1, 0, 0] = 1.0  # word 2 attends to the top-left corner at stage 1
    hot[0, 3, 3] = 1.0  # word 1 to the bottom-right
    att = Attention(["left", "lower", "lung"], [hot, torch.ones(3, 2, 2)])
    assert att.word_choices()[0] == ("all words, averaged", ALL_WORDS)
    assert [c[0] for c in att.word_choices()[1:]] == ["1. left", "2. lower", "3. lung"]
    assert [c[1] for c in att.stage_choices()] == [0, 1]
    im = np.asarray(att.heatmap(gray, 0, 1))
    assert im.shape == (512, 512, 3)  # one large image
    corner, far = im[:64, :64].astype(int), im[-64:, -64:].astype(int)
    assert corner[..., 0].mean() > far[..., 0].mean() + 50  # red where word 2 looked
    mean = np.asarray(att.heatmap(gray, 0, ALL_WORDS)).astype(int)
    centre_blue = mean[224:288, 224:288, 2].mean()  # no attention: jet's blue end
    for corner in (mean[:64, :64], mean[-64:, -64:]):  # both words' corners: jet's red end
        assert corner[..., 0].mean() > corner[..., 2].mean() + 40
        assert corner[..., 2].mean() < centre_blue - 40
    with pytest.raises(ValueError, match="stage 3 does not exist"):
        att.heatmap(gray, 2)
