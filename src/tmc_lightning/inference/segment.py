"""One image and one prompt -> everything the demo shows (no UI code here).

Reuses the predictor (image-to-tensor, tokenizer, network), the overlay and ``tmc-explain``'s
attention maps, so the demo segments exactly as ``tmc-predict`` does.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tmc_lightning.data.imageio import read_image
from tmc_lightning.data.layouts import DataError
from tmc_lightning.inference.overlay import overlay
from tmc_lightning.inference.predictor import Predictor

MAX_SIDE = 8192  # pixels: larger uploads are refused before they are decoded
MIN_SHOWN = 320  # smaller images are shown enlarged (pixel-exact), so the caption fits


@dataclass
class Segmentation:
    gray: np.ndarray  # the image, gray uint8 at its own size
    prob: np.ndarray  # foreground probability at the image's size
    mask: np.ndarray  # bool, prob > threshold
    overlay: Image.Image
    heatmaps: Image.Image | None  # per-stage cross-attention (models with MCM)

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def area_text(self) -> str:
        share = 100 * self.area / self.mask.size
        h, w = self.mask.shape
        return f"mask area: {self.area} pixels ({share:.2f}% of the {w}x{h} image)"

    def prob_image(self) -> Image.Image:
        return _enlarged(Image.fromarray((self.prob * 255).round().astype(np.uint8)))

    def save_mask(self, path: Path) -> Path:
        Image.fromarray(self.mask.astype(np.uint8) * 255).save(path)
        return path


def _factor(shape: tuple[int, ...]) -> int:
    return max(1, -(-MIN_SHOWN // max(shape[:2])))  # ceil


def _enlarged(im: Image.Image) -> Image.Image:
    k = _factor(im.size[::-1])
    return im if k == 1 else im.resize((im.width * k, im.height * k), Image.NEAREST)


def read_upload(path: str | Path | None) -> np.ndarray:
    """An uploaded file as gray uint8, with one readable message for each kind of bad file."""
    if not path:
        raise DataError("no image: upload one (PNG, JPEG, TIFF or BMP) or pick an example")
    path = Path(path)
    try:
        with Image.open(path) as im:
            w, h = im.size
    except Exception:  # noqa: BLE001 - any failure to identify the file is the same to the user
        raise DataError(
            f"{path.name} is not an image this demo can read; upload a PNG, JPEG, TIFF or BMP"
        ) from None
    if max(w, h) > MAX_SIDE:
        raise DataError(
            f"{path.name} is {w}x{h} pixels; the demo takes at most {MAX_SIDE} pixels a side, "
            "so downscale it first"
        )
    return read_image(path)  # 16-bit is min-max scaled to 8 bits, colour made gray


def shown_overlay(gray: np.ndarray, mask: np.ndarray, text: str) -> Image.Image:
    """``tmc-predict``'s overlay, drawn on an enlarged copy when the image is small."""
    k = _factor(gray.shape)
    if k > 1:
        gray, mask = (np.kron(a, np.ones((k, k), a.dtype)) for a in (gray, mask))
    return overlay(gray, mask, text or "(no prompt)")


def heatmap_image(predictor: Predictor, gray: np.ndarray, text: str) -> Image.Image | None:
    """``tmc-explain``'s figure as an image, or None for a model without cross-attention."""
    model = predictor.module.model
    if not getattr(model, "mcm", None):
        return None
    import matplotlib.pyplot as plt

    from tmc_lightning.inference.explain import attention_maps, heatmap_figure

    words, maps = attention_maps(predictor, gray, text)
    fig = heatmap_figure(gray, words, maps, text)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def segment(
    predictor: Predictor, path: str | Path | None, text: str | None, threshold: float = 0.5
) -> Segmentation:
    """Segment one uploaded image from one prompt, as ``tmc-predict`` would."""
    gray = read_upload(path)
    text = predictor.check_text(text, "prompt")
    prob = predictor.probabilities([gray], [text])[0]
    mask = prob > threshold
    return Segmentation(
        gray=gray,
        prob=prob,
        mask=mask,
        overlay=shown_overlay(gray, mask, text),
        heatmaps=heatmap_image(predictor, gray, text),
    )
