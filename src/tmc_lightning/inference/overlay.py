"""Drawing a mask over its image: translucent fill, outline and the prompt as a caption."""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def overlay(
    gray: np.ndarray,
    mask: np.ndarray,
    caption: str = "",
    color=(255, 40, 40),
    caption_below: bool = False,
) -> Image.Image:
    """The image with the mask filled (translucent) and outlined, and the caption in a band above
    it (below it with ``caption_below``: where a viewer's own label covers the top, as in the
    demo page)."""
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    m = mask.astype(bool)
    rgb[m] = 0.6 * rgb[m] + 0.4 * np.array(color, dtype=np.float32)
    edge = m & ~_erode(m)
    rgb[edge] = (255, 230, 0)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    if caption:
        img = _caption(img, caption, caption_below)
    return img


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _caption(img: Image.Image, caption: str, below: bool) -> Image.Image:
    w = img.width
    font = ImageFont.load_default(size=max(10, w // 28))
    chars = max(12, int(w / (font.size * 0.55)))
    lines = textwrap.wrap(caption, chars)
    line_h = font.size + 3
    band = Image.new("RGB", (w, line_h * len(lines) + 6), (0, 0, 0))
    draw = ImageDraw.Draw(band)
    for i, line in enumerate(lines):
        draw.text((4, 3 + i * line_h), line, fill=(255, 255, 255), font=font)
    out = Image.new("RGB", (w, img.height + band.height))
    out.paste(band, (0, img.height) if below else (0, 0))
    out.paste(img, (0, 0) if below else (0, band.height))
    return out
