"""One image and one prompt -> everything the demo shows (no UI code here).

Reuses the predictor (image-to-tensor, tokenizer, network), the overlay and ``tmc-explain``'s
attention maps, so the demo segments exactly as ``tmc-predict`` does. Also picks the examples
the demo offers: images of the checkpoint's own dataset, never another domain's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tmc_lightning.data.datamodule import DATAMODULES, ManifestDataModule
from tmc_lightning.data.imageio import MAX_SIDE, header_size, read_image
from tmc_lightning.data.layouts import DataError, SplitAbsent
from tmc_lightning.errors import ConfigError
from tmc_lightning.inference.overlay import overlay
from tmc_lightning.inference.predictor import Predictor

__all__ = ["MAX_SIDE", "Attention", "Examples", "Segmentation", "checkpoint_examples", "segment"]

MIN_SHOWN = 320  # smaller images are shown enlarged (pixel-exact), so the caption fits
HEAT_SHOWN = 512  # the attention heatmap is shown at least this large
MAX_SHOWN = 1024  # larger images are shown downscaled (the page needs no more pixels)
N_EXAMPLES = 4
ALL_WORDS = -1  # the word index that stands for "all words, averaged"


def _factor(shape: tuple[int, ...], least: int = MIN_SHOWN) -> int:
    return max(1, -(-least // max(shape[:2])))  # ceil


def _enlarged(im: Image.Image, least: int = MIN_SHOWN) -> Image.Image:
    k = _factor(im.size[::-1], least)
    return im if k == 1 else im.resize((im.width * k, im.height * k), Image.NEAREST)


def shown_size(shape: tuple[int, int], least: int = MIN_SHOWN) -> tuple[int, int]:
    """(width, height) an image of ``shape`` (h, w) is shown at: small enlarged, large reduced."""
    h, w = shape
    k = _factor(shape, least)
    h, w = h * k, w * k
    if max(h, w) > MAX_SHOWN:
        s = MAX_SHOWN / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
    return w, h


def shown_gray(gray: np.ndarray, least: int = MIN_SHOWN) -> Image.Image:
    """The gray image the model reads, at the size the page shows it."""
    size = shown_size(gray.shape, least)
    im = Image.fromarray(gray)
    if size == im.size:
        return im
    return im.resize(size, Image.NEAREST if size[0] > im.width else Image.BILINEAR)


@dataclass
class Attention:
    """Per MCM stage, how the image's visual tokens attend to each word of the prompt."""

    words: list[str]  # the tokenizer's words (special tokens left out)
    stages: list[torch.Tensor]  # per stage (n_words, h, w) at the stage's own grid

    def stage_choices(self) -> list[tuple[str, int]]:
        n = len(self.stages)
        return [(f"stage {i + 1}" + (" (deepest)" if i == n - 1 else ""), i) for i in range(n)]

    def word_choices(self) -> list[tuple[str, int]]:
        numbered = [(f"{i + 1}. {w}", i) for i, w in enumerate(self.words)]
        return [("all words, averaged", ALL_WORDS), *numbered]

    def heatmap(self, gray: np.ndarray, stage: int, word: int = ALL_WORDS) -> Image.Image:
        """One large heatmap over the image: ``stage`` (0-based), ``word`` index or ALL_WORDS.

        Bilinear to the shown size, scaled to its own maximum, jet colours at 45% over the gray.
        """
        from matplotlib import colormaps

        from tmc_lightning.inference.explain import upsample

        if not 0 <= stage < len(self.stages):
            raise DataError(f"stage {stage + 1} does not exist; this model has {len(self.stages)}")
        maps = self.stages[stage]
        if word != ALL_WORDS and not 0 <= word < len(self.words):
            raise DataError(f"word {word + 1} does not exist; the prompt has {len(self.words)}")
        picked = maps.mean(0, keepdim=True) if word == ALL_WORDS else maps[word : word + 1]
        base = shown_gray(gray, HEAT_SHOWN)
        heat = upsample(picked, (base.height, base.width))[0]
        heat = heat / (heat.max() + 1e-8)
        colour = colormaps["jet"](heat)[..., :3]
        gray3 = np.asarray(base.convert("RGB"), dtype=np.float64) / 255
        mixed = 0.55 * gray3 + 0.45 * colour
        return Image.fromarray((mixed * 255).round().astype(np.uint8))


@dataclass
class Segmentation:
    gray: np.ndarray  # the image, gray uint8 at its own size (as the model reads it)
    prob: np.ndarray  # foreground probability at the image's size
    mask: np.ndarray  # bool, prob > threshold
    overlay: Image.Image
    attention: Attention | None  # per-stage cross-attention (models with MCM)

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


def read_upload(path: str | Path | None) -> np.ndarray:
    """An uploaded file as gray uint8, with one readable message for each kind of bad file.

    The size comes from the header first (:func:`header_size`), so a huge image is refused
    with its size before a pixel is decoded; then 16-bit is min-max scaled, colour made gray.
    """
    if not path:
        raise DataError("no image: upload one (PNG, JPEG, TIFF or BMP) or pick an example")
    path = Path(path)
    header_size(path, MAX_SIDE, label=path.name)
    try:
        return read_image(path)
    except DataError as err:  # truncated or corrupt pixel data: the decoder's own reason
        reason = err.__context__ or err
        raise DataError(
            f"{path.name} could not be decoded ({reason}); the file is damaged or incomplete: "
            "upload it again or save it again from the original"
        ) from None


def describe_upload(path: str | Path, gray: np.ndarray) -> str:
    """One line about what the model reads from ``path``."""
    path = Path(path)
    with Image.open(path) as im:  # the header only; its size was checked before
        mode = im.mode
    h, w = gray.shape
    how = {
        "I;16": "16-bit, scaled to 8-bit gray",
        "I;16B": "16-bit, scaled to 8-bit gray",
        "I;16L": "16-bit, scaled to 8-bit gray",
        "I": "32-bit, scaled to 8-bit gray",
        "F": "floating point, scaled to 8-bit gray",
        "L": "8-bit gray",
        "1": "black and white",
    }.get(mode, f"{mode} colour, converted to gray")
    return f"{path.name}: {w} x {h} pixels, {how} (shown as the model reads it)"


def shown_overlay(gray: np.ndarray, mask: np.ndarray, text: str) -> Image.Image:
    """``tmc-predict``'s overlay, drawn on an enlarged copy when the image is small, with the
    prompt under the image: the page's "Overlay" label covers the image's top-left corner."""
    k = _factor(gray.shape)
    if k > 1:
        gray, mask = (np.kron(a, np.ones((k, k), a.dtype)) for a in (gray, mask))
    return overlay(gray, mask, text or "(no prompt)", caption_below=True)


def attention_of(predictor: Predictor, gray: np.ndarray, text: str) -> Attention | None:
    """The prompt's cross-attention per stage, or None for a model without it."""
    if not getattr(predictor.module.model, "mcm", None):
        return None
    from tmc_lightning.inference.explain import stage_attention

    return Attention(*stage_attention(predictor, gray, text))


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
        attention=attention_of(predictor, gray, text),
    )


# -- examples -------------------------------------------------------------------------------


@dataclass
class Examples:
    """What the demo offers to click: images of the checkpoint's own data, with their texts."""

    items: list[dict[str, str]] = field(default_factory=list)  # {"image": path, "text": ...}
    label: str = ""  # the heading shown over them
    note: str = ""  # where they come from, or why there are none (for the log and the page)

    @property
    def prompt(self) -> str:
        """The prompt prefilled in the textbox: the first example's, or none."""
        return self.items[0]["text"] if self.items else ""


def bundled_examples() -> Examples:
    """The synthetic examples shipped with the package (the embedded set's generator)."""
    folder = resources.files("tmc_lightning") / "assets" / "examples"
    listing = json.loads((folder / "examples.json").read_text())
    items = [{"image": str(folder / e["image"]), "text": e["text"]} for e in listing["examples"]]
    return Examples(
        items,
        "Synthetic examples (the embedded set's generator, the data this model was trained on)",
        "examples: the bundled synthetic images (the checkpoint was trained on the synthetic set)",
    )


def _data_settings(ckpt_path: str | Path) -> tuple[str | None, dict]:
    """The checkpoint's dataset name (its DataModule) and recorded settings, weights unread."""
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=True, mmap=True)
    name = next((n for n, c in DATAMODULES.items() if c.__qualname__ in ckpt), None)
    return name, dict(ckpt.get("datamodule_hyper_parameters") or {})


def _spread(samples: list, n: int) -> list:
    """Up to ``n`` samples spread evenly over the split, each with a description not yet taken."""
    picked: list[int] = []
    texts: set[str] = set()
    m = len(samples)
    for k in range(n):
        for i in range(k * m // n, m):  # from the k-th n-th of the split on, the first new text
            text = samples[i].text.strip()
            if text and text not in texts and i not in picked:
                picked.append(i)
                texts.add(text)
                break
    return [samples[i] for i in sorted(picked)]


def checkpoint_examples(
    ckpt_path: str | Path, root: str | None = None, n: int = N_EXAMPLES
) -> Examples:
    """A handful of validation images of the data the checkpoint was trained on, with their texts.

    The data is found at ``root`` when given (``dataset.root=``; a manifest dataset's manifest
    file), else where the checkpoint recorded it. A synthetic checkpoint gets the bundled
    synthetic examples; data that cannot be found gets none, never another domain's.
    """
    name, settings = _data_settings(ckpt_path)
    if name is None:
        return Examples(note="examples: none (the checkpoint does not name the dataset it used)")
    if name == "synthetic":
        return bundled_examples()
    cls = DATAMODULES[name]
    key = "manifest" if issubclass(cls, ManifestDataModule) else "root"
    if root:
        settings[key] = str(root)
    where = settings.get(key)
    fix = f"start tmc-demo with dataset.root=/path/to/the/{name}/data to show some"
    if not where:
        return Examples(note=f"examples: none (the checkpoint records no {name} data path); {fix}")
    if not Path(where).expanduser().exists():
        return Examples(note=f"examples: none ({name} data not found at {where}); {fix}")
    try:
        dm = cls(**settings)
        samples: list = []
        for split in ("val", "test"):
            try:
                samples = dm.read_split(split)
            except SplitAbsent:
                continue
            break
    except (DataError, ConfigError, OSError, TypeError) as err:
        return Examples(note=f"examples: none (the {name} data at {where} cannot be read: {err})")
    chosen = _spread(samples, n)
    if not chosen:
        return Examples(note=f"examples: none (no described validation images under {where})")
    items = [{"image": str(s.image), "text": s.text.strip()} for s in chosen]
    return Examples(
        items,
        f"Validation images of the model's own data ({name}, {where}), each with its own text",
        f"examples: {len(items)} validation images from {where}",
    )
