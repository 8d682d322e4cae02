"""The small interface every segmentation network shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import nn


class AlignFeatures(NamedTuple):
    """One stage's inputs to the sigmoid alignment loss (shared width, L2-normalised)."""

    z_v: torch.Tensor  # (B, D)
    z_l: torch.Tensor  # (B, D)
    log_temperature: torch.Tensor  # scalar, learnable
    bias: torch.Tensor  # scalar, learnable


@dataclass
class SegOutput:
    """Logits plus what losses and explanations need besides them."""

    logits: torch.Tensor  # (B, 1, H, W)
    align: list[AlignFeatures] = field(default_factory=list)
    # Per MCM stage: visual-token -> word attention, averaged over heads, (B, T, h_i, w_i).
    attentions: list[torch.Tensor] = field(default_factory=list)
    # Deep-supervision heads (UNet++), each (B, 1, H, W): trained on, never scored.
    aux_logits: list[torch.Tensor] = field(default_factory=list)


class SegmentationNet(nn.Module):
    """Base class: ``forward`` gives logits; ``forward_features`` gives a :class:`SegOutput`."""

    uses_text: bool = False
    presets: dict[str, dict] = {}

    @classmethod
    def resolve_text(cls, kwargs: dict) -> dict:
        """The text-encoder settings these constructor kwargs imply (preset merged)."""
        if "text" not in cls.presets.get(kwargs.get("preset", "small"), {}):
            return {}
        preset_keys = {k for p in cls.presets.values() for k in p} | {"pretrained", "freeze_text"}
        overrides = {k: v for k, v in kwargs.items() if k in preset_keys}
        return resolve_preset(cls.presets, kwargs.get("preset", "small"), cls.__name__, overrides)[
            "text"
        ]

    def forward_features(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        need_attention: bool = False,
    ) -> SegOutput:
        raise NotImplementedError

    def forward(
        self,
        image: torch.Tensor,
        input_ids: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.forward_features(image, input_ids, attention_mask).logits


def resolve_preset(presets: dict[str, dict], preset: str, model: str, overrides: dict) -> dict:
    """Merge ``overrides`` into a named preset (one level deep for dict values like ``text``).

    Two switches reach inside the encoder settings: ``pretrained`` (both encoders) and
    ``freeze_text``; ``None`` anywhere means "keep the preset's value".
    """
    if preset not in presets:
        raise KeyError(
            f"unknown preset {preset!r} for model {model}; choose one of {sorted(presets)}"
        )
    overrides = dict(overrides)
    pretrained, freeze_text = overrides.pop("pretrained", None), overrides.pop("freeze_text", None)
    out = {k: dict(v) if isinstance(v, dict) else v for k, v in presets[preset].items()}
    for key, value in overrides.items():
        if value is None and key in out:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            base = out[key]
            if value.get("name") and value["name"] != base.get("name"):
                # Another encoder by name: load it as it is, not resized to the preset's widths.
                base = {"name": value["name"], "pretrained": True}
            out[key] = {**base, **value}
        else:
            out[key] = value
    for key in ("vision", "text"):
        if pretrained is not None and isinstance(out.get(key), dict):
            out[key]["pretrained"] = pretrained
    if freeze_text is not None and isinstance(out.get("text"), dict):
        out["text"]["freeze"] = freeze_text
    return out
