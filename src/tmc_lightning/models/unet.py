"""Plain U-Net: the text-free baseline."""

from __future__ import annotations

from torch import nn

from tmc_lightning.models.base import SegmentationNet, SegOutput
from tmc_lightning.models.blocks import ConvBlock, UNetDecoder, unet_widths
from tmc_lightning.models.configs import UNET_PRESETS, UNetConfig
from tmc_lightning.models.registry import register_model


@register_model("unet")
class UNet(SegmentationNet):
    """Four-level U-Net (widths c, 2c, 4c, 8c, 8c); ignores the text."""

    presets = UNET_PRESETS

    def __init__(self, config: UNetConfig) -> None:
        super().__init__(config)
        w = unet_widths(config.base_width)
        self.inc = ConvBlock(config.in_channels, w[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(w[i], w[i + 1])) for i in range(4)
        )
        self.decoder = UNetDecoder(w)

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        xs = [self.inc(image)]
        for down in self.downs:
            xs.append(down(xs[-1]))
        return SegOutput(logits=self.decoder(xs[4], xs[:4]))
