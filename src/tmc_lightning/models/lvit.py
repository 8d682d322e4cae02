"""LViT baseline: the dual-U segmenter alone; text enters only through its ViT branch."""

from __future__ import annotations

from typing import Any

from tmc_lightning.models.base import SegmentationNet, SegOutput
from tmc_lightning.models.configs import LVIT_PRESETS, LViTConfig
from tmc_lightning.models.encoders import StagedTextEncoder
from tmc_lightning.models.registry import register_model
from tmc_lightning.models.segmenter import DualUSegmenter


@register_model("lvit")
class LViT(SegmentationNet):
    """Text-guided dual-U segmenter fed with the text encoder's token embeddings."""

    uses_text = True
    presets = LVIT_PRESETS

    def __init__(self, config: LViTConfig) -> None:
        super().__init__(config)
        cfg = config
        self.text = self.part(
            "text",
            lambda: StagedTextEncoder(cfg.text, vocab_size=cfg.vocab_size, embeddings_only=True),
        )
        self.segmenter = self.part(
            "segmenter",
            lambda: DualUSegmenter(
                cfg.image_size,
                cfg.base_width,
                self.text.hidden_size,
                cfg.max_words,
                None,
                cfg.vit_depth,
                cfg.vit_heads,
            ),
        )

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        if input_ids is None or attention_mask is None:
            raise ValueError("LViT needs input_ids and attention_mask (the tokenised prompt)")
        words = self.text.embed(input_ids)
        return SegOutput(logits=self.segmenter(image, words, attention_mask))

    def encoder_modules(self) -> list:
        return [self.text]

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict)."""
        kwargs = super().checkpoint_kwargs()
        kwargs["text"] = {"config": self.text.resolved_config(), "freeze": self.config.text.freeze}
        return kwargs
