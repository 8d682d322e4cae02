"""The small interface every segmentation network shares."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import nn

from tmc_lightning.models.blocks import SeededParts
from tmc_lightning.models.configs import build_config


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


class SegmentationNet(SeededParts, nn.Module):
    """Base class: ``forward`` gives logits; ``forward_features`` gives a :class:`SegOutput`.

    A subclass names its config dataclass's presets (``models/configs.py``) and takes one
    config instance; ``self.config`` keeps it, and :meth:`checkpoint_kwargs` turns it into the
    plain keyword arguments a checkpoint stores.
    """

    uses_text: bool = False
    presets: dict[str, Any] = {}

    def __init__(self, config: Any) -> None:
        super().__init__()
        self.config = config

    @classmethod
    def make_config(cls, kwargs: dict[str, Any]) -> Any:
        """The typed config for ``kwargs`` (a preset name plus overrides); unknown keys raise."""
        return build_config(cls.presets, kwargs, where="model")

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict).

        Pretrained weights are never re-fetched: the state dict holds them.
        """
        kwargs = dataclasses.asdict(self.config)
        for key in ("pretrained", "checkpoint"):
            if key in kwargs:
                kwargs[key] = False if key == "pretrained" else None
        return kwargs

    def encoder_modules(self) -> list[nn.Module]:
        """The pretrained encoders inside this network (their parameters may train slower)."""
        return []

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
