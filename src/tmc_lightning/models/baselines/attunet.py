"""Attention U-Net baseline (Oktay et al. 2018), built on MONAI's ``AttentionUnet``.

A five-level U-Net whose skips are rescaled by additive attention gates driven by the
coarser decoder feature before they are joined.
"""

from __future__ import annotations

from tmc_lightning.models.base import SegOutput
from tmc_lightning.models.baselines.common import BaselineNet
from tmc_lightning.models.configs import ATTUNET_PRESETS, AttUNetConfig
from tmc_lightning.models.registry import register_model


@register_model("attunet")
class AttUNet(BaselineNet):
    """U-Net with attention-gated skips; ignores the text."""

    presets = ATTUNET_PRESETS

    def __init__(self, config: AttUNetConfig) -> None:
        super().__init__(config)
        cfg = config
        # MONAI takes seconds to import and only the MONAI baselines need it.
        from monai.networks.nets import AttentionUnet

        self.stride = 2 ** (len(cfg.widths) - 1)
        self.net = AttentionUnet(
            spatial_dims=2,
            in_channels=cfg.in_channels,
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
