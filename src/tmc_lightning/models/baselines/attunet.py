"""Attention U-Net baseline (Oktay et al. 2018), built on MONAI's ``AttentionUnet``.

A five-level U-Net whose skips are rescaled by additive attention gates driven by the
coarser decoder feature before they are joined.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tmc_lightning.models.base import SegOutput
from tmc_lightning.models.baselines.common import BaselineNet, build_config
from tmc_lightning.models.registry import register_model

PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"widths": [8, 16, 32, 64, 128]},
    "small": {"widths": [16, 32, 64, 128, 256]},
    "paper": {"widths": [64, 128, 256, 512, 1024]},  # Oktay et al.'s widths
}


@dataclass
class AttUNetConfig:
    widths: list[int]  # channels of the five levels, finest first; each level halves H and W
    dropout: float = 0.0


@register_model("attunet")
class AttUNet(BaselineNet):
    """U-Net with attention-gated skips; ignores the text."""

    presets = PRESETS

    def __init__(
        self,
        preset: str = "small",
        image_size: int | None = None,
        in_channels: int = 3,
        **overrides: Any,
    ) -> None:
        super().__init__()
        # MONAI takes seconds to import and only the MONAI baselines need it.
        from monai.networks.nets import AttentionUnet

        cfg = build_config(AttUNetConfig, PRESETS, preset, "attunet", overrides)
        self.config = {"preset": preset, "in_channels": in_channels, **asdict(cfg)}
        self.stride = 2 ** (len(cfg.widths) - 1)
        self.net = AttentionUnet(
            spatial_dims=2,
            in_channels=in_channels,
            out_channels=1,
            channels=cfg.widths,
            strides=[2] * (len(cfg.widths) - 1),
            dropout=cfg.dropout,
        )

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        if image.shape[-1] % self.stride or image.shape[-2] % self.stride:
            raise ValueError(
                f"attunet needs image sides divisible by {self.stride}, got "
                f"{tuple(image.shape[-2:])}; set dataset.image_size to a multiple of {self.stride}"
            )
        return SegOutput(logits=self.net(image))
