"""dataset.prompt=p0..p9 on a manifest; alternatives drawn per item per epoch; inconclusive checks."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tmc_lightning.data import synthetic
from tmc_lightning.data.datamodule import build_datamodule
from tmc_lightning.data.inspect import judge_convention, laterality_line, leakage_lines
from tmc_lightning.data.layouts import DataError, Sample, prompt_cell
from tmc_lightning.data.prompts import PromptChoices
from tmc_lightning.data.samplers import EpochShuffleSampler
from tmc_lightning.errors import ConfigError

ALTS = ["polyp at the left", "growth on the left side", "lesion in the left part"]


def make_manifest(tmp: Path, n_train: int = 6) -> Path:
    (tmp / "img").mkdir()
    rows = []
    for k in range(n_train + 2):
        a = np.zeros((8, 8), np.uint8)
        a[:, :3] = 255
        Image.fromarray(np.full((8, 8), 20 * k, np.uint8)).save(tmp / "img" / f"{k}.png")
        Image.fromarray(a).save(tmp / "img" / f"m{k}.png")
        rows.append(
            {
                "image": f"img/{k}.png",
                "mask": f"img/m{k}.png",
                "text": f"one polyp {k}",
                "split": "train" if k < n_train else "val",
                "p0": "",
                "p1": "polyp",
                "p7": json.dumps([f"{t} {k}" for t in ALTS]),
            }
        )
    pd.DataFrame(rows).to_csv(tmp / "m.csv", index=False)
    return tmp / "m.csv"


def _dm(manifest: Path, **kw):
    settings = dict(
        manifest=str(manifest), image_size=8, batch_size=2, num_workers=0, decoded_cache=False
    )
    return build_datamodule("custom", **settings | kw)


def test_prompt_cell_reads_one_text_or_a_list():
    assert prompt_cell('["a", "b"]') == ["a", "b"]
    assert prompt_cell("[not json") == ["[not json"]
    assert prompt_cell(float("nan")) == [""] and prompt_cell("polyp ") == ["polyp"]


def test_levels_pick_the_column_and_p0_is_empty(tmp_path):
    m = make_manifest(tmp_path)
    assert _dm(m).read_split("train")[0].text == "one polyp 0"  # null: the text column
    assert _dm(m, prompt="p1").read_split("val")[0].text == "polyp"
    assert _dm(m, prompt="p0").read_split("train")[0].text == ""
    val = _dm(m, prompt="p7").read_split("val")[0]
    assert val.text == f"{ALTS[0]} 6" and len(val.alternatives) == 3
    with pytest.raises(DataError, match="no column p5 .*p0, p1, p7"):
        _dm(m, prompt="p5").read_split("train")
    with pytest.raises(ConfigError, match="dataset.prompt='p12'"):
        _dm(m, prompt="p12")


def test_empty_level_other_than_p0_is_an_error(tmp_path):
    m = make_manifest(tmp_path)
    df = pd.read_csv(m)
    df.loc[1, "p1"] = ""
    df.to_csv(m, index=False)
    with pytest.raises(DataError, match="row 3: empty p1 prompt"):
        _dm(m, prompt="p1").read_split("train")


def test_alternatives_drawn_per_item_per_epoch_seeded_val_uses_first(tmp_path):
    dm = _dm(make_manifest(tmp_path), prompt="p7", augment=True)
    dm.setup("fit")
    train = dm.datasets["train"]
    assert isinstance(train.choices, PromptChoices) and len(train) == 6
    assert dm.datasets["val"].choices is None
    assert [dm.datasets["val"][i]["text"] for i in range(2)] == [f"{ALTS[0]} 6", f"{ALTS[0]} 7"]
    # every alternative is in the vocabulary (no [UNK] for words only the later ones use)
    assert dm.tokenizer.token_to_id("growth") is not None
    plain = copy.copy(train)  # the same split without the draw: what each item had before it
    plain.choices = None
    sampler = EpochShuffleSampler(len(train), seed=3)
    epochs = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        keys = list(sampler)
        drawn = {i: train[(i, s)]["text"] for i, s in keys}
        assert drawn == {i: train[(i, s)]["text"] for i, s in keys}  # same key, same draw
        for i, (_, s) in zip([k[0] for k in keys], keys, strict=True):
            base = plain[(i, s)]
            item = train[(i, s)]
            assert torch.equal(item["image"], base["image"])  # augmentation unchanged
            ids = dm.tokenizer.encode(item["text"]).ids
            assert item["input_ids"][: len(ids)].tolist() == ids  # tokens match the text
        epochs.append(drawn)
    assert all(t.rsplit(" ", 1)[0] in ALTS for e in epochs for t in e.values())
    assert len({e[0] for e in epochs} | {e[1] for e in epochs}) > 2  # draws vary by epoch
    # A resumed run rebuilds the sampler: the same (seed, epoch) gives the same draws.
    again = EpochShuffleSampler(len(train), seed=3)
    again.set_epoch(2)
    assert {i: train[(i, s)]["text"] for i, s in again} == epochs[2]


def test_a_flip_swaps_the_drawn_alternative(tmp_path):
    dm = _dm(make_manifest(tmp_path), prompt="p7", hflip=True, augment=False)
    dm.setup("fit")
    train = dm.datasets["train"]
    plain = copy.copy(train)  # the same split without the draw
    plain.choices = None
    flips = 0
    for s in range(40):
        item, base = train[(0, s)], plain[(0, s)]
        flipped = "right" in base["text"]  # the wrapped item's own text says whether it flipped
        assert ("right" in item["text"]) == flipped and "left" not in item["text"] or not flipped
        assert item["text"] in {
            (synthetic.swap_laterality(t) if flipped else t) for t in (f"{a} 0" for a in ALTS)
        }
        flips += flipped
    assert 5 < flips < 35


def test_laterality_inconclusive_below_the_thresholds():
    monuseg = {
        "convention": "plain",
        "n_left": 30,
        "n_right": 30,
        "left_texts_in_image_left": 0.59,
        "right_texts_in_image_right": 0.53,
    }
    assert judge_convention(monuseg)["convention"] == "inconclusive"
    line = laterality_line(monuseg, "unknown")
    assert "inconclusive" in line and "59%" in line and "53%" in line and ">= 70%" in line
    qata = dict(monuseg, n_left=521, n_right=548)
    qata |= {"left_texts_in_image_left": 0.97, "right_texts_in_image_right": 0.96}
    assert judge_convention(qata)["convention"] == "plain"
    assert "(measured): plain" in laterality_line(qata, "plain")
    few = dict(qata, n_left=5, n_right=4)
    assert judge_convention(few)["convention"] == "inconclusive"
    radio = dict(qata, left_texts_in_image_left=0.1, right_texts_in_image_right=0.2)
    radio["convention"] = "radiographic"
    assert judge_convention(radio)["convention"] == "radiographic"


def _samples(names: list[str]) -> list[Sample]:
    return [Sample(Path(n), Path(n), "t") for n in names]


def test_leakage_section_counts_and_inconclusive():
    splits = {
        "train": _samples([f"vol{v}_{k}.png" for v in range(3) for k in range(10)]),
        "val": _samples(
            [f"vol2_{k}.png" for k in range(10, 14)] + [f"vol7_{k}.png" for k in range(8)]
        ),
        "test": _samples([f"plain{k}.png" for k in range(12)]),
    }
    text = "\n".join(leakage_lines(splits, r"^(vol\d+)_\d+$"))
    assert "train: 30 images, 30 with a group, 3 groups" in text
    assert (
        "val: 12 images, 12 with a group, 2 groups; 4 of 12 images (33%) in 1 of 2 groups" in text
    )
    assert "test: 12 images, 0 with a group, 0 groups (12 names carry no group" in text
    assert "inconclusive: fewer than 10 images" in text and "WARNING: 4 val images" in text
    assert "not measured: set dataset.group_pattern" in "\n".join(leakage_lines(splits, None))
    with pytest.raises(ConfigError, match="group_pattern"):
        build_datamodule("mosmed", root="x", group_pattern="(unclosed")
