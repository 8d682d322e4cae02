"""Decoding images and masks into fixed-size uint8 arrays."""

from __future__ import annotations

import threading
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tmc_lightning.data.layouts import DataError


def _open(path: Path) -> Image.Image:
    try:
        im = Image.open(path)
        im.load()
        return im
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}; replace or remove the file") from None


def _to_gray8(im: Image.Image) -> np.ndarray:
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        return (
            np.zeros(a.shape, np.uint8)
            if hi <= lo
            else ((a - lo) / (hi - lo) * 255).round().astype(np.uint8)
        )
    if im.mode in ("RGBA", "LA", "P"):
        im = im.convert("RGBA").convert("RGB")
    return np.asarray(im.convert("L"), dtype=np.uint8)


def check_pair(image: Path, mask: Path) -> None:
    """Image and mask must have the same size (read from the headers, no decoding)."""
    a, b = _open_header(image).size, _open_header(mask).size
    if a != b:
        raise DataError(
            f"image {image} is {a[0]}x{a[1]} but its mask {mask} is {b[0]}x{b[1]}; "
            "they must match (re-export the mask at the image's size)"
        )


def _open_header(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except (OSError, UnidentifiedImageError) as err:
        raise DataError(f"cannot read image {path}: {err}; replace or remove the file") from None


# The most pixels a side that tmc-predict, tmc-explain and the demo decode. 8192^2 is below
# Pillow's decompression-bomb threshold, so an image that passes never trips its guard.
MAX_SIDE = 8192
_GUARD = threading.Lock()  # Image.MAX_IMAGE_PIXELS is global: one header read lifts it at a time


def header_size(
    path: str | Path, max_side: int = MAX_SIDE, label: str | None = None
) -> tuple[int, int]:
    """(width, height) from the file's header, before any pixel is decoded; refuse a larger image.

    Pillow's ``Image.open`` reads only the header, but its decompression-bomb guard raises there
    for a very large image, which would hide its size: the guard is lifted for the header read
    alone and the size is checked against ``max_side`` instead. A file that is not an image
    keeps its own message; a truncated one opens here and fails when decoded. ``label`` names
    the file in messages (default: its path).
    """
    path = Path(path)
    name = label or str(path)
    if not path.is_file():
        raise DataError(f"image {name} does not exist; check the path")
    with _GUARD, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            with Image.open(path) as im:
                width, height = im.size
        except UnidentifiedImageError:  # its own text repeats the path; say it once, plainly
            reason = "Pillow recognises no image format in it"
        except (OSError, SyntaxError, ValueError) as err:  # a header Pillow knows but cannot parse
            reason = str(err) or type(err).__name__
        else:
            reason = None
        finally:
            Image.MAX_IMAGE_PIXELS = limit
    if reason is not None:
        raise DataError(
            f"{name} is not an image that can be read (PNG, JPEG, TIFF or BMP): {reason}; "
            "replace it or save it again in one of those formats"
        )
    if max(width, height) > max_side:
        raise DataError(
            f"{name} is {width} x {height} pixels; at most {max_side} a side: "
            "downscale it first (e.g. to 2048 pixels on the longer side)"
        )
    return width, height


def read_image(path: Path) -> np.ndarray:
    """Gray uint8 at the file's own size; 16-bit is min-max scaled, colour converted."""
    return _to_gray8(_open(path))


def resize_gray(gray: np.ndarray, size: int) -> np.ndarray:
    """Gray uint8 at any size -> (size, size) uint8, bilinear (PIL's, as in every path here)."""
    if gray.shape == (size, size):
        return gray
    im = Image.fromarray(gray).resize((size, size), Image.BILINEAR)
    return np.asarray(im, dtype=np.uint8)


def load_image(path: Path, size: int) -> np.ndarray:
    """Gray uint8 (size, size), bilinear resize; 16-bit is min-max scaled, colour converted."""
    return resize_gray(read_image(path), size)


def binarize_mask(a: np.ndarray) -> np.ndarray:
    """0/1, 0/255 (possibly JPEG-noisy), 0/65535 and other two-valued masks -> uint8 {0, 1}.

    A mask of 0 and one other value (0/100, a red or palette mask read as gray) is that value.
    Otherwise (JPEG noise) it is thresholded at half the value range the mask uses, never at
    half its own maximum, so an empty noisy mask stays empty.
    """
    top = a.max()
    fg = a > 0
    if top > 0 and not fg.all() and a[fg].min() == top:  # exactly two values, one of them 0
        return fg.astype(np.uint8)
    scale = 1.0 if top <= 1 else 255.0 if top <= 255 else 65535.0
    return (a > scale / 2).astype(np.uint8)


def read_mask(path: Path) -> np.ndarray:
    """Binary uint8 {0, 1} at the file's own size; 0/1, 0/255, 16-bit and noisy masks."""
    im = _open(path)
    if im.mode not in ("I;16", "I;16B", "I;16L", "I", "F"):
        im = im.convert("L")
    return binarize_mask(np.asarray(im).astype(np.float64))


def load_mask(path: Path, size: int) -> np.ndarray:
    """Binary uint8 {0, 1} (size, size), nearest-neighbour resize; 0/1, 0/255 and noisy masks."""
    im = Image.fromarray(read_mask(path))
    if im.size != (size, size):
        im = im.resize((size, size), Image.NEAREST)
    return np.asarray(im, dtype=np.uint8)
