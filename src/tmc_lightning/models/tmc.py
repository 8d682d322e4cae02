"""TMC: Text-guided Multi-stage Cross-perception network.

Visual-encoder stage i (a Swin by default; any timm backbone, backbones.py) and text-encoder
stage i run side by side; MCM (cross_attention.py) lets each
stage's visual tokens and words read each other; alignment heads project each stage's pooled
visual tokens and sentence token ([CLS], or CLIP's end-of-text token) for the sigmoid alignment
loss (losses.py); the fused visual
features are injected into the dual-U segmenter (segmenter.py).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from tmc_lightning.models.backbones import StagedBackbone
from tmc_lightning.models.base import AlignFeatures, SegmentationNet, SegOutput
from tmc_lightning.models.blocks import unet_widths
from tmc_lightning.models.configs import TMC_PRESETS, TMCConfig
from tmc_lightning.models.cross_attention import MCMStage
from tmc_lightning.models.encoders import StagedTextEncoder
from tmc_lightning.models.registry import register_model
from tmc_lightning.models.segmenter import DualUSegmenter


class AlignHead(nn.Module):
    """Projects one stage's pooled visual tokens and sentence token into a shared normalised space."""

    def __init__(self, vis_dim: int, txt_dim: int, dim: int) -> None:
        super().__init__()
        self.proj_v = nn.Linear(vis_dim, dim)
        self.proj_l = nn.Linear(txt_dim, dim)
        # Where SigLIP starts (Zhai et al. 2023, there t = log 10, b = -10). At init the
        # projections are random, cos ~ 0, so every pair's logit is about b: with b = -5 each
        # of the B^2 - B negative pairs costs log(1 + e^-5) ~ 0.007 and each positive ~ 5, so the
        # first gradients come from the few positives instead of from pushing all pairs apart
        # (b = 0 would start at B^2 log 2, dominated by negatives). -5, not -10: TMC's batches
        # are small (8) and QaTa repeats texts, so positives are a larger share than in SigLIP.
        # exp(t) = 10 lets cos in [-1, 1] move a logit by +-10 around b: enough to separate
        # pairs, not so sharp that the sigmoid saturates before the projections have learned.
        self.log_temperature = nn.Parameter(torch.tensor(math.log(10.0)))
        self.bias = nn.Parameter(torch.tensor(-5.0))

    def forward(self, v_pooled: torch.Tensor, sentence: torch.Tensor) -> AlignFeatures:
        z_v = nn.functional.normalize(self.proj_v(v_pooled), dim=-1)
        z_l = nn.functional.normalize(self.proj_l(sentence), dim=-1)
        return AlignFeatures(z_v, z_l, self.log_temperature, self.bias)


@register_model("tmc")
class TMC(SegmentationNet):
    """Staged visual backbone + text encoder with cross-perception, alignment heads, dual-U."""

    uses_text = True
    presets = TMC_PRESETS

    def __init__(self, config: TMCConfig) -> None:
        super().__init__(config)
        cfg = config
        part = self.part  # each part's random init from (seed, its name) alone
        self.vision = part("vision", lambda: StagedBackbone(cfg.vision, img_size=cfg.image_size))
        self.text = part("text", lambda: StagedTextEncoder(cfg.text, vocab_size=cfg.vocab_size))
        vis, txt = self.vision.channels, self.text.hidden_size
        self.mcm = (
            part(
                "mcm",
                lambda: nn.ModuleList(
                    MCMStage(c, txt, cfg.mcm_heads, grid=-(-cfg.image_size // (4 << i)))
                    for i, c in enumerate(vis)
                ),
            )
            if cfg.mcm
            else None
        )
        self.align_heads = (
            part(
                "align_heads",
                lambda: nn.ModuleList(AlignHead(c, txt, cfg.align_dim) for c in vis),
            )
            if cfg.align
            else None
        )
        widths = unet_widths(cfg.base_width)
        inject = [widths[k] // 2 for k in range(4)]
        self.inject = part(
            "inject", lambda: nn.ModuleList(nn.Linear(vis[k], inject[k]) for k in range(4))
        )
        self.segmenter = part(
            "segmenter",
            lambda: DualUSegmenter(
                cfg.image_size,
                cfg.base_width,
                txt,
                cfg.max_words,
                inject,
                cfg.vit_depth,
                cfg.vit_heads,
                injection=cfg.injection,
            ),
        )

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        if input_ids is None or attention_mask is None:
            raise ValueError("TMC needs input_ids and attention_mask (the tokenised prompt)")
        v = self.vision.embed(image)  # (B, H/4, W/4, C0)
        words = self.text.embed(input_ids)  # (B, T, D)
        word_bias = self.text.attention_bias(attention_mask)  # what the text layers mask with
        out = SegOutput(logits=image.new_empty(0))
        injections = []
        for i in range(4):
            v = self.vision.stage(i, v)
            words = self.text.stage(i, words, word_bias)
            # alignment features are taken before the cross-attention (design.md §2.2, step 2)
            if self.align_heads is not None:
                sentence = self.text.sentence_token(words, attention_mask)  # [CLS] / CLIP's EOT
                out.align.append(self.align_heads[i](v.mean((1, 2)), sentence))
            if self.mcm is not None:
                v, words, weights = self.mcm[i](v, words, attention_mask, need_attention)
                if weights is not None:  # (B, nh, N, T) -> (B, T, h, w)
                    out.attentions.append(
                        weights.mean(1).transpose(1, 2).unflatten(2, v.shape[1:3])
                    )
            injections.append(self.inject[i](v).permute(0, 3, 1, 2))  # (B, inj_i, h, w)
        out.logits = self.segmenter(image, words, attention_mask, injections)
        return out

    def encoder_modules(self) -> list[nn.Module]:
        return [self.vision, self.text]

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict)."""
        kwargs = super().checkpoint_kwargs()
        kwargs["vision"].update(pretrained=False, checkpoint=None)
        kwargs["text"] = {"config": self.text.resolved_config(), "freeze": self.config.text.freeze}
        return kwargs
