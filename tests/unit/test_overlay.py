"""The overlay's caption band: above the image for files, below it for the demo page."""

import numpy as np

from tmc_lightning.inference.overlay import overlay


def test_caption_band_above_or_below_the_image():
    gray = np.full((64, 96), 100, np.uint8)
    mask = np.zeros_like(gray, bool)
    mask[20:40, 30:60] = True
    plain = np.asarray(overlay(gray, mask))
    assert plain.shape == (64, 96, 3)
    top = np.asarray(overlay(gray, mask, "lower left lung"))
    below = np.asarray(overlay(gray, mask, "lower left lung", caption_below=True))
    band = top.shape[0] - 64
    assert band > 0 and below.shape == top.shape
    # the picture itself is untouched, only moved: after the band, or before it
    assert np.array_equal(top[band:], plain) and np.array_equal(below[:64], plain)
    # the band: black with white text, the same band in both places
    assert np.array_equal(top[:band], below[64:])
    assert (top[:band] == 0).mean() > 0.5 and top[:band].max() > 200  # anti-aliased white
