"""What the demo shows for one upload: as tmc-predict would, and one message per bad input."""

import numpy as np
import pytest
from PIL import Image

from tmc_lightning.data.layouts import DataError
from tmc_lightning.inference.predict import predict
from tmc_lightning.inference.predictor import Predictor
from tmc_lightning.inference.segment import MAX_SIDE, segment

IMAGE = "tests/fixtures/synthetic_test3.png"
TEXT = "Unilateral pulmonary infection, one infected area, lower left lung."


@pytest.fixture(scope="module")
def predictor(trained_tiny):
    return Predictor.from_checkpoint(trained_tiny["results"]["best_checkpoint"])


def test_segment_matches_tmc_predict_and_explains(predictor, trained_tiny, tmp_path):
    result = segment(predictor, IMAGE, TEXT)
    predict(trained_tiny["results"]["best_checkpoint"], IMAGE, TEXT, str(tmp_path))
    mask = np.asarray(Image.open(tmp_path / "synthetic_test3_mask.png")) > 0
    assert result.area == int(mask.sum()) and np.array_equal(result.mask, mask)
    assert f"mask area: {result.area} pixels" in result.area_text()
    assert np.asarray(result.overlay).std() > 5 and result.attention is not None  # TMC has MCM
    saved = result.save_mask(tmp_path / "m.png")
    assert Image.open(saved).size == Image.open(IMAGE).size


def test_bad_uploads_get_one_readable_message(predictor, tmp_path):
    text_file = tmp_path / "notes.png"
    text_file.write_text("not an image")
    with pytest.raises(DataError, match="notes.png is not an image that can be read"):
        segment(predictor, text_file, TEXT)
    huge = tmp_path / "huge.png"
    Image.new("L", (MAX_SIDE + 1, 8)).save(huge)
    with pytest.raises(
        DataError, match=f"huge.png is {MAX_SIDE + 1} x 8 pixels; at most {MAX_SIDE} a side"
    ):
        segment(predictor, huge, TEXT)
    with pytest.raises(DataError, match="no image"):
        segment(predictor, None, TEXT)
    with pytest.raises(DataError, match="needs a prompt|never saw an empty prompt"):
        segment(predictor, IMAGE, "  ")
    deep = tmp_path / "deep.tif"  # 16-bit TIFF: scaled to 8 bits, segmented
    a = np.asarray(Image.open(IMAGE).convert("L"), dtype=np.uint16) * 257
    Image.fromarray(a).save(deep)
    assert segment(predictor, deep, TEXT).mask.shape == a.shape
