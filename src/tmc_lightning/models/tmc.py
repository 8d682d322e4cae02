"""TMC: Text-guided Multi-stage Cross-perception network.

Swin stage i and text-encoder stage i run side by side; MCM (cross_attention.py) lets each
stage's visual tokens and words read each other; alignment heads project each stage's pooled
visual tokens and sentence token ([CLS], or CLIP's end-of-text token) for the sigmoid alignment
loss (losses.py); the fused visual
features are injected into the dual-U segmenter (segmenter.py).
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn

from tmc_lightning.models.base import AlignFeatures, SegmentationNet, SegOutput, resolve_preset
from tmc_lightning.models.blocks import unet_widths
from tmc_lightning.models.cross_attention import MCMStage
from tmc_lightning.models.encoders import StagedSwin, StagedTextEncoder, text_settings
from tmc_lightning.models.registry import register_model
from tmc_lightning.models.segmenter import DualUSegmenter

SWIN = "swin_tiny_patch4_window7_224"

PRESETS: dict[str, dict[str, Any]] = {
    # Test-sized: runs a forward/backward in milliseconds at 64 px.
    "tiny": {
        "base_width": 8,
        "mcm_heads": 2,
        "align_dim": 32,
        "vit_depth": 1,
        "vit_heads": 2,
        "vision": {
            "name": SWIN,
            "pretrained": False,
            "embed_dim": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 1, 2, 2],
            "window_size": 2,
        },
        "text": {
            "name": None,
            "pretrained": False,
            "hidden_size": 32,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "max_position_embeddings": 64,
        },
    },
    # Same code paths, narrow and shallow, random init: trains on a 2-core CPU.
    "small": {
        "base_width": 16,
        "mcm_heads": 4,
        "align_dim": 64,
        "vit_depth": 1,
        "vit_heads": 4,
        "vision": {
            "name": SWIN,
            "pretrained": False,
            "embed_dim": 32,
            "depths": [2, 2, 2, 2],
            "num_heads": [1, 2, 4, 8],
            "window_size": 4,
        },
        "text": {
            "name": None,
            "pretrained": False,
            "hidden_size": 64,
            "num_hidden_layers": 4,
            "num_attention_heads": 2,
            "intermediate_size": 128,
            "max_position_embeddings": 64,
        },
    },
    # The paper's model: ImageNet Swin-T + BERT-base, CNN width 64, 224 px.
    "paper": {
        "base_width": 64,
        "mcm_heads": 8,
        "align_dim": 256,
        "vit_depth": 1,
        "vit_heads": 4,
        "vision": {"name": SWIN, "pretrained": True},
        "text": {"name": "bert-base-uncased", "pretrained": True},
    },
}


class AlignHead(nn.Module):
    """Projects one stage's pooled visual tokens and sentence token into a shared normalised space."""

    def __init__(self, vis_dim: int, txt_dim: int, dim: int) -> None:
        super().__init__()
        self.proj_v = nn.Linear(vis_dim, dim)
        self.proj_l = nn.Linear(txt_dim, dim)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, v_pooled: torch.Tensor, cls: torch.Tensor) -> AlignFeatures:
        z_v = nn.functional.normalize(self.proj_v(v_pooled), dim=-1)
        z_l = nn.functional.normalize(self.proj_l(cls), dim=-1)
        return AlignFeatures(z_v, z_l, self.log_temperature, self.bias)


@register_model("tmc")
class TMC(SegmentationNet):
    """Staged Swin + BERT with cross-perception, alignment heads and a dual-U segmenter."""

    uses_text = True
    presets = PRESETS

    def __init__(
        self,
        preset: str = "small",
        image_size: int = 224,
        max_words: int = 24,
        mcm: bool = True,
        align: bool = True,
        vocab_size: int | None = None,
        text_encoder: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__()
        if text_encoder:  # conf/text_encoder/: replaces the preset's text encoder
            overrides["text"] = text_settings(text_encoder, overrides.get("text"))
        cfg = resolve_preset(PRESETS, preset, "tmc", overrides)
        self.config = {
            "preset": preset,
            "image_size": image_size,
            "max_words": max_words,
            "mcm": mcm,
            "align": align,
            "vocab_size": vocab_size,
            **cfg,
        }
        self.vision = StagedSwin(img_size=image_size, **cfg["vision"])
        self.text = StagedTextEncoder(vocab_size=vocab_size, **cfg["text"])
        vis, txt = self.vision.channels, self.text.hidden_size
        self.mcm = (
            nn.ModuleList(
                MCMStage(c, txt, cfg["mcm_heads"], grid=-(-image_size // (4 << i)))
                for i, c in enumerate(vis)
            )
            if mcm
            else None
        )
        self.align_heads = (
            nn.ModuleList(AlignHead(c, txt, cfg["align_dim"]) for c in vis) if align else None
        )
        widths = unet_widths(cfg["base_width"])
        inject = [widths[k] // 2 for k in range(4)]
        self.inject = nn.ModuleList(nn.Linear(vis[k], inject[k]) for k in range(4))
        self.segmenter = DualUSegmenter(
            image_size,
            cfg["base_width"],
            txt,
            max_words,
            inject,
            cfg["vit_depth"],
            cfg["vit_heads"],
        )

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        if input_ids is None or attention_mask is None:
            raise ValueError("TMC needs input_ids and attention_mask (the tokenised prompt)")
        v = self.vision.embed(image)  # (B, H/4, W/4, C0)
        words = self.text.embed(input_ids)  # (B, T, D)
        word_attn = self.text.attention_bias(attention_mask)
        out = SegOutput(logits=image.new_empty(0))
        injections = []
        for i in range(4):
            v = self.vision.stage(i, v)
            words = self.text.stage(i, words, word_attn)
            if self.align_heads is not None:  # taken before cross-attention (spec section 3)
                cls = self.text.cls(words, attention_mask)  # [CLS], or CLIP's end-of-text
                out.align.append(self.align_heads[i](v.mean((1, 2)), cls))
            if self.mcm is not None:
                v, words, weights = self.mcm[i](v, words, attention_mask, need_attention)
                if weights is not None:  # (B, nh, N, T) -> (B, T, h, w)
                    out.attentions.append(
                        weights.mean(1).transpose(1, 2).unflatten(2, v.shape[1:3])
                    )
            injections.append(self.inject[i](v).permute(0, 3, 1, 2))  # (B, inj_i, h, w)
        out.logits = self.segmenter(image, words, attention_mask, injections)
        return out

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict)."""
        c = copy.deepcopy(self.config)
        c["vision"] = {**c["vision"], "pretrained": False, "checkpoint": None}
        c["text"] = {
            "config": self.text.resolved_config(),
            "freeze": c["text"].get("freeze", False),
        }
        return c
