"""LViT baseline: the dual-U segmenter alone; text enters only through its ViT branch."""

from __future__ import annotations

import copy
from typing import Any

from tmc_lightning.models.base import SegmentationNet, SegOutput, resolve_preset
from tmc_lightning.models.encoders import StagedTextEncoder, text_settings
from tmc_lightning.models.registry import register_model
from tmc_lightning.models.segmenter import DualUSegmenter
from tmc_lightning.models.tmc import PRESETS as TMC_PRESETS

# Same widths and text embeddings as the TMC presets, without Swin, MCM or alignment heads.
PRESETS = {
    name: {
        "base_width": p["base_width"],
        "vit_depth": p["vit_depth"],
        "vit_heads": p["vit_heads"],
        "text": dict(p["text"]),
    }
    for name, p in TMC_PRESETS.items()
}


@register_model("lvit")
class LViT(SegmentationNet):
    """Text-guided dual-U segmenter fed with the text encoder's token embeddings."""

    uses_text = True
    presets = PRESETS

    def __init__(
        self,
        preset: str = "small",
        image_size: int = 224,
        max_words: int = 24,
        vocab_size: int | None = None,
        text_encoder: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if text_encoder:  # conf/text_encoder/: replaces the preset's text encoder
            overrides["text"] = text_settings(text_encoder, overrides.get("text"))
        cfg = resolve_preset(PRESETS, preset, "lvit", overrides)
        self.config = {
            "preset": preset,
            "image_size": image_size,
            "max_words": max_words,
            "vocab_size": vocab_size,
            **cfg,
        }
        self.text = StagedTextEncoder(vocab_size=vocab_size, embeddings_only=True, **cfg["text"])
        self.segmenter = DualUSegmenter(
            image_size,
            cfg["base_width"],
            self.text.hidden_size,
            max_words,
            None,
            cfg["vit_depth"],
            cfg["vit_heads"],
        )

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        if input_ids is None or attention_mask is None:
            raise ValueError("LViT needs input_ids and attention_mask (the tokenised prompt)")
        words = self.text.embed(input_ids)
        return SegOutput(logits=self.segmenter(image, words, attention_mask))

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict)."""
        c = copy.deepcopy(self.config)
        c["text"] = {
            "config": self.text.resolved_config(),
            "freeze": c["text"].get("freeze", False),
        }
        return c
