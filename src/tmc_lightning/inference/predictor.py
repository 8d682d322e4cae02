"""A trained network ready to segment gray images of any size from a prompt."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer

from tmc_lightning.data.datamodule import DATAMODULES
from tmc_lightning.data.layouts import DataError
from tmc_lightning.data.text import encode
from tmc_lightning.data.transforms import model_input
from tmc_lightning.inference.checkpoint import CheckpointError, load_module
from tmc_lightning.metrics import upsample_logits
from tmc_lightning.training.module import SegmentationModule


@dataclass
class Predictor:
    """A trained network with the tokenizer and input size it was trained with."""

    module: SegmentationModule
    tokenizer: Tokenizer | None
    image_size: int
    max_words: int
    device: torch.device
    text_dropout: float = 0.0  # > 0: trained with empty prompts too, so it segments without one
    convention: str = "unknown"  # what "left" meant in the training texts

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
            text_dropout=float(dm_hp.get("text_dropout", 0.0)),
            convention=str(dm_hp.get("convention", "unknown")),
        )

    @property
    def uses_text(self) -> bool:
        return bool(getattr(self.module.model, "uses_text", False))

    @property
    def accepts_empty_prompt(self) -> bool:
        """Text-free models, and text-guided ones trained with ``dataset.text_dropout > 0``."""
        return not self.uses_text or self.text_dropout > 0

    def convention_note(self) -> str:
        """What "left" means in this checkpoint's prompts, for the user to read."""
        return {
            "plain": 'prompts: "left" means the image\'s left half (as in the training texts)',
            "radiographic": "prompts: \"left\" means the patient's left, shown on the image's right",
        }.get(self.convention, 'prompts: the training data did not state what "left" means')

    def check_text(self, text: str | None, where: str) -> str:
        text = (text or "").strip()
        if not text and not self.accepts_empty_prompt:
            raise DataError(
                f"{where}: model {self.module.hparams.model_name!r} is text-guided and needs a "
                "prompt (it was trained without text dropout, so it never saw an empty one); "
                'pass text="..." (e.g. text="Unilateral pulmonary infection, lower left lung.") '
                "or use a model trained with dataset.text_dropout=0.3"
            )
        return text

    def tensors(self, grays: list[np.ndarray], texts: list[str]) -> tuple[torch.Tensor, ...]:
        """Gray uint8 images of any size -> the network's normalised (B, 3, S, S) input and tokens."""
        x = torch.stack([model_input(g, self.image_size) for g in grays])
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
            full = upsample_logits(lg[None], g.shape)[0, 0]  # the scorer's upsampling too
            out.append(torch.sigmoid(full).cpu().numpy())
        return out
