"""The size check every inference entry point runs before decoding: huge, truncated, not an image."""

import warnings

import numpy as np
import pytest
from PIL import Image

from tests.helpers.images import write_huge_png
from tmc_lightning.data.imageio import MAX_SIDE, header_size, read_image
from tmc_lightning.data.layouts import DataError


def test_the_hand_written_png_is_valid(tmp_path):
    path = write_huge_png(tmp_path / "small.png", 70, 30)
    with Image.open(path) as im:
        assert im.size == (70, 30)
        assert np.asarray(im.convert("L")).max() == 0  # decodes: a real PNG, not just a header


def test_a_huge_png_gets_its_size_not_pillows_bomb_error(tmp_path):
    huge = write_huge_png(tmp_path / "huge.png", 20000, 20000)  # 400 Mpixel: Pillow would raise
    assert huge.stat().st_size < 200_000
    with pytest.raises(Image.DecompressionBombError):  # what an unguarded open does
        Image.open(huge)
    limit = Image.MAX_IMAGE_PIXELS
    with pytest.raises(DataError) as err:
        header_size(huge)
    assert f"{huge} is 20000 x 20000 pixels; at most {MAX_SIDE} a side" in str(err.value)
    assert "downscale" in str(err.value)
    assert Image.MAX_IMAGE_PIXELS == limit  # the guard is back for everyone else


def test_between_warning_and_error_no_warning_and_the_size_message(tmp_path):
    big = write_huge_png(tmp_path / "big.png", 10000, 10000)  # 100 Mpixel: Pillow only warns
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(DataError, match="10000 x 10000 pixels; at most 8192 a side"):
            header_size(big, label="big.png")


def test_one_side_too_long_and_the_limit_is_a_parameter(tmp_path):
    wide = write_huge_png(tmp_path / "wide.png", MAX_SIDE + 1, 8)
    with pytest.raises(DataError, match=f"{MAX_SIDE + 1} x 8 pixels; at most {MAX_SIDE} a side"):
        header_size(wide)
    assert header_size(wide, max_side=MAX_SIDE + 1) == (MAX_SIDE + 1, 8)
    with pytest.raises(DataError, match="70 x 30 pixels; at most 64 a side"):
        header_size(write_huge_png(tmp_path / "s.png", 70, 30), max_side=64)


def test_a_normal_image_passes_and_is_not_decoded(tmp_path):
    path = tmp_path / "ok.png"
    Image.fromarray(np.full((40, 50), 7, np.uint8)).save(path)
    assert header_size(path) == (50, 40)
    deep = tmp_path / "deep.tif"  # 16-bit
    Image.fromarray(np.arange(40 * 50, dtype=np.uint16).reshape(40, 50)).save(deep)
    assert header_size(deep) == (50, 40)


def test_a_text_file_named_png_keeps_its_own_message(tmp_path):
    fake = tmp_path / "notes.png"
    fake.write_text("Bilateral pulmonary infection.\n")
    with pytest.raises(DataError) as err:
        header_size(fake, label="notes.png")
    msg = str(err.value)
    assert msg.startswith("notes.png is not an image that can be read (PNG, JPEG, TIFF or BMP)")
    assert "pixels" not in msg and "recognises no image format" in msg
    assert str(tmp_path) not in msg  # the label only, not Pillow's own repeat of the path


def test_a_truncated_file_opens_and_then_fails_to_decode_with_its_own_message(tmp_path):
    whole = tmp_path / "whole.png"
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(whole)
    cut = tmp_path / "cut.png"
    cut.write_bytes(whole.read_bytes()[:1500])  # header intact, pixel data cut short
    assert header_size(cut) == (64, 64)  # the header is enough to know the size
    with pytest.raises(DataError, match=r"cannot read image .*cut\.png: .*truncated"):
        read_image(cut)
    stub = tmp_path / "stub.png"
    stub.write_bytes(whole.read_bytes()[:20])  # cut inside the header: not identifiable
    with pytest.raises(DataError, match="stub.png is not an image that can be read"):
        header_size(stub)


def test_a_missing_file(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        header_size(tmp_path / "absent.png")
