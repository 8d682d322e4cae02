"""Shared inference helpers: load a checkpoint for prediction, prepare images, draw overlays."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from tokenizers import Tokenizer

from tmc_lightning.data.datamodule import DATAMODULES
from tmc_lightning.data.imageio import _open, _to_gray8
from tmc_lightning.data.tokenization import encode
from tmc_lightning.evaluate import CheckpointError, load_module
from tmc_lightning.module import SegmentationModule


@dataclass
class Predictor:
    """A trained network with the tokenizer and input size it was trained with."""

    module: SegmentationModule
    tokenizer: Tokenizer | None
    image_size: int
    max_words: int
    device: torch.device

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu") -> Predictor:
        module, ckpt = load_module(path)
        dm_hp = ckpt.get("datamodule_hyper_parameters", {})
        tok_json = next(
            (
                ckpt[c.__qualname__]["tokenizer_json"]
                for c in DATAMODULES.values()
                if c.__qualname__ in ckpt
            ),
            None,
        )
        if "image_size" not in dm_hp:
            raise CheckpointError(
                f"checkpoint {path} lacks the data settings (was it written by tmc-train?)"
            )
        dev = torch.device(device)
        return cls(
            module=module.to(dev).eval(),
            tokenizer=Tokenizer.from_str(tok_json) if tok_json else None,
            image_size=int(dm_hp["image_size"]),
            max_words=int(dm_hp.get("max_words", 24)),
            device=dev,
        )

    @property
    def uses_text(self) -> bool:
        return bool(getattr(self.module.model, "uses_text", False))

    def check_text(self, text: str | None, where: str) -> str:
        text = (text or "").strip()
        if not text and self.uses_text:
            raise ValueError(
                f"{where}: model {self.module.hparams.model_name!r} is text-guided and needs a prompt; "
                'pass text="..." (e.g. text="Unilateral pulmonary infection, lower left lung.")'
            )
        return text

    def tensors(self, grays: list[np.ndarray], texts: list[str]) -> tuple[torch.Tensor, ...]:
        """Gray uint8 images of any size -> the network's normalised (B, 3, S, S) input and tokens."""
        s = self.image_size
        batch = [
            np.asarray(Image.fromarray(g).resize((s, s), Image.BILINEAR), dtype=np.float32)
            for g in grays
        ]
        x = (
            torch.from_numpy(np.stack(batch))
            .div_(255)
            .sub_(0.5)
            .div_(0.5)[:, None]
            .expand(-1, 3, -1, -1)
        )
        if self.tokenizer is None:
            ids = torch.zeros(len(texts), self.max_words, dtype=torch.long)
            mask = torch.ones_like(ids)
        else:
            ids, mask = encode(self.tokenizer, texts, self.max_words)
        return x.to(self.device), ids.to(self.device), mask.to(self.device)

    @torch.no_grad()
    def probabilities(self, grays: list[np.ndarray], texts: list[str]) -> list[np.ndarray]:
        """Foreground probability maps at each image's original size."""
        x, ids, mask = self.tensors(grays, texts)
        logits = self.module(x, ids, mask).float()
        out = []
        for g, lg in zip(grays, logits, strict=True):
            full = F.interpolate(lg[None], size=g.shape, mode="bilinear", align_corners=False)[0, 0]
            out.append(torch.sigmoid(full).cpu().numpy())
        return out


def read_gray(path: Path) -> np.ndarray:
    """An image file as gray uint8 at its original size (16-bit and colour handled)."""
    return _to_gray8(_open(path))


def overlay(
    gray: np.ndarray, mask: np.ndarray, caption: str = "", color=(255, 40, 40)
) -> Image.Image:
    """The image with the mask filled (translucent) and outlined, and the caption written on top."""
    rgb = np.repeat(gray[..., None], 3, axis=2).astype(np.float32)
    m = mask.astype(bool)
    rgb[m] = 0.6 * rgb[m] + 0.4 * np.array(color, dtype=np.float32)
    edge = m & ~_erode(m)
    rgb[edge] = (255, 230, 0)
    img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    if caption:
        img = _caption(img, caption)
    return img


def _erode(m: np.ndarray) -> np.ndarray:
    p = np.pad(m, 1)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _caption(img: Image.Image, caption: str) -> Image.Image:
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
    out.paste(band, (0, 0))
    out.paste(img, (0, band.height))
    return out
