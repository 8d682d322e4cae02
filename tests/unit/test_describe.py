"""Descriptions from masks, read back; the laterality convention measured from masks and text."""

import numpy as np
import pandas as pd
import pytest

from tmc_lightning.data import synthetic
from tmc_lightning.data.describe import (
    DescribeOptions,
    agreement,
    describe_mask,
    measure_convention,
    parse_description,
    side_share,
)

S = 100  # the lungs' band is rows 15-85 by default: thirds at 15-38, 38-61, 61-85
ROWS = {"upper": (20, 32), "middle": (42, 56), "lower": (66, 80)}
COLS = {"left": (15, 35), "right": (65, 85)}  # image halves; plain convention: left = image-left


def blob(mask, level, side):
    (y0, y1), (x0, x1) = ROWS[level], COLS[side]
    mask[y0:y1, x0:x1] = True
    return mask


@pytest.mark.parametrize("level", ["upper", "middle", "lower"])
@pytest.mark.parametrize("side", ["left", "right"])
def test_one_lesion_in_each_zone(level, side):
    mask = blob(np.zeros((S, S), bool), level, side)
    want = f"Unilateral pulmonary infection, one infected area, {level} {side} lung."
    assert describe_mask(mask) == want
    # radiographic: the image's left half is the patient's right lung
    other = "right" if side == "left" else "left"
    assert describe_mask(mask, DescribeOptions(convention="radiographic")) == want.replace(
        f"{level} {side}", f"{level} {other}"
    )


def test_two_lesions_in_one_lung_and_one_spanning_the_other():
    mask = blob(blob(np.zeros((S, S), bool), "upper", "left"), "lower", "left")
    assert describe_mask(mask) == (
        "Unilateral pulmonary infection, two infected areas, upper lower left lung."
    )
    mask[18:82, 65:85] = True  # one lesion over all three levels of the right lung
    assert describe_mask(mask) == (
        "Bilateral pulmonary infection, three infected areas, upper lower left lung and "
        "all right lung."
    )


def test_empty_mask_and_specks_below_the_minimum_area():
    empty = np.zeros((S, S), bool)
    assert describe_mask(empty) == "No pulmonary infection."
    specks = empty.copy()
    specks[50, 20] = specks[30, 70] = True  # 1 pixel each: below 0.1% of the image
    assert describe_mask(specks) == "No pulmonary infection."
    assert describe_mask(specks, DescribeOptions(min_area=0)).startswith("Bilateral")


def test_describe_reproduces_the_embedded_generator_for_95_percent():
    cfg = synthetic.SyntheticConfig(n_train=150, image_size=128)
    rng = np.random.default_rng(0)
    opts = DescribeOptions(vocabulary="zones", convention=cfg.convention)
    hits = 0
    for _ in range(cfg.n_train):
        _, mask, text, _ = synthetic.generate_case(rng, cfg)
        hits += describe_mask(mask, opts) == text
    assert hits / cfg.n_train >= 0.95, hits


def test_qata_style_parsing_and_agreement():
    lvit = "Bilateral pulmonary infection, two infected areas, all left lung and lower right lung."
    parsed = parse_description(lvit)
    assert parsed["laterality"] == "bilateral" and parsed["count"] == 2
    assert parsed["zones"] == {"left": {"upper", "middle", "lower"}, "right": {"lower"}}
    ours = "Bilateral pulmonary infection, three infected areas, upper middle lower left lung and lower right lung."
    assert agreement(ours, lvit) == {"laterality": True, "count": False, "zones": True}
    assert agreement("Unilateral ... lower left lung.", lvit)["zones"] is False


def test_convention_is_measured_from_one_sided_texts():
    left_img = blob(np.zeros((S, S), bool), "lower", "left")
    right_img = blob(np.zeros((S, S), bool), "lower", "right")
    plain = [
        side_share("Unilateral pulmonary infection, one infected area, lower left lung.", left_img),
        side_share(
            "Unilateral pulmonary infection, one infected area, lower right lung.", right_img
        ),
        side_share("Bilateral ..., left lung and right lung.", left_img),  # two sides: unused
    ]
    assert plain[2] is None
    got = measure_convention(plain)
    assert got["convention"] == "plain" and got["n_left"] == got["n_right"] == 1
    assert got["left_texts_in_image_left"] == 1.0
    flipped = [side_share("lower left lung", right_img), side_share("lower right lung", left_img)]
    assert measure_convention(flipped)["convention"] == "radiographic"
    assert measure_convention([None])["convention"] == "unknown"


def test_describe_command_writes_a_new_lvit_sheet_and_never_overwrites(tmp_path, capsys):
    from tests.helpers.config import compose_cfg
    from tmc_lightning.cli.data import describe_options
    from tmc_lightning.data.datamodule import build_datamodule
    from tmc_lightning.data.describe_io import write_descriptions
    from tmc_lightning.data.layouts import DataError

    dm = build_datamodule(
        "synthetic", n_train=24, n_val=4, n_test=4, image_size=128, cache_dir=str(tmp_path / "c")
    )
    dm.prepare_data()
    cfg = compose_cfg(["describe.vocabulary=zones"], config_name="describe")
    opts = describe_options(cfg, dm.hparams.convention)
    assert opts.convention == "radiographic"  # the dataset's
    out = write_descriptions(dm, tmp_path / "described.csv", opts)
    sheet = pd.read_csv(out)
    assert list(sheet.columns) == ["Image", "Description"] and len(sheet) == 24
    given = {s.mask.name: s.text for s in dm.read_split("train")}
    assert sum(given[r.Image] == r.Description for r in sheet.itertuples()) >= 20
    before = out.read_bytes()
    with pytest.raises(DataError, match="never overwrites"):
        write_descriptions(dm, out, opts)
    assert out.read_bytes() == before
    with pytest.raises(Exception, match="describe.convention"):
        describe_options(cfg, "unknown")
