"""TransUNet baseline (Chen et al. 2021): ResNet encoder, ViT bottleneck, cascaded upsampler.

A timm ResNet gives features at strides 2, 4, 8 and 16. The stride-16 map becomes one token
per pixel (patch size 1) of a ViT with learned position embeddings; the tokens are folded back
into a map, and a cascade of (upsample x2, join the CNN skip, two 3x3 convs) stages returns to
full resolution, where a 1x1 convolution gives the logits.

The paper's hybrid encoder is BiT's ResNetV2-50 with 9 blocks in stage 3 and ImageNet-21k ViT
weights; here the paper preset uses timm's ImageNet ResNet-50 (6 blocks in stage 3) and a
randomly initialised ViT-B, the closest match that loads from timm alone.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.hub import EncoderUnavailableError, hub_reachable
from tmc_lightning.models.base import SegOutput
from tmc_lightning.models.baselines.common import BaselineNet, add_position
from tmc_lightning.models.blocks import ConvBlock, TransformerBlock, UpBlock, heads_for, sincos_2d
from tmc_lightning.models.configs import TRANSUNET_PRESETS, TransUNetConfig
from tmc_lightning.models.registry import register_model


def resnet_features(cfg: TransUNetConfig, in_channels: int) -> nn.Module:
    """The ResNet's stride-2, 4, 8 and 16 features; later stages are not built."""
    kwargs: dict[str, Any] = {
        "features_only": True,
        "out_indices": (0, 1, 2, 3),
        "in_chans": in_channels,
        **cfg.backbone_kwargs,
    }
    if not cfg.pretrained:
        return timm.create_model(cfg.backbone, pretrained=False, **kwargs)
    advice = (
        "Download the timm weights file on a machine with internet and set "
        "model.checkpoint=/path/to/weights.safetensors, or train from random weights with "
        "model.pretrained=false."
    )
    if cfg.checkpoint:
        kwargs["pretrained_cfg_overlay"] = {"file": cfg.checkpoint}
    elif not hub_reachable():
        raise EncoderUnavailableError(
            f"Could not load pretrained ResNet {cfg.backbone!r} for transunet (model.backbone): "
            f"the Hugging Face hub is unreachable. {advice}"
        )
    try:
        return timm.create_model(cfg.backbone, pretrained=True, **kwargs)
    except (OSError, ValueError) as err:
        raise EncoderUnavailableError(
            f"Could not load pretrained ResNet {cfg.backbone!r} for transunet "
            f"(model.backbone, model.checkpoint={cfg.checkpoint!r}): {err}. {advice}"
        ) from None


class ViTBottleneck(nn.Module):
    """Transformer over the stride-16 map, one token per pixel; returns a map of the ViT width."""

    def __init__(
        self, in_ch: int, dim: int, depth: int, heads: int, mlp_ratio: float, grid: int
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_ch, dim, 1)  # patch size 1
        self.pos = nn.Parameter(sincos_2d(dim, grid, grid)[None])  # (1, dim, g, g), learned
        self.blocks = nn.Sequential(
            *(TransformerBlock(dim, heads_for(dim, heads), mlp_ratio) for _ in range(depth))
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:
        x = add_position(self.embed(fmap), self.pos)  # (B, dim, h, w)
        h, w = x.shape[-2:]
        tokens = self.norm(self.blocks(x.flatten(2).transpose(1, 2)))  # (B, h*w, dim)
        return tokens.transpose(1, 2).unflatten(2, (h, w))  # (B, dim, h, w)


@register_model("transunet")
class TransUNet(BaselineNet):
    """ResNet + ViT encoder with a cascaded-upsampling CNN decoder; ignores the text."""

    presets = TRANSUNET_PRESETS

    def __init__(self, config: TransUNetConfig) -> None:
        super().__init__(config)
        cfg = config
        if len(cfg.decoder_channels) != 4:
            raise ValueError(
                f"transunet needs 4 decoder widths (model.decoder_channels), got "
                f"{cfg.decoder_channels}"
            )
        self.encoder = resnet_features(cfg, cfg.in_channels)
        ch = self.encoder.feature_info.channels()  # strides 2, 4, 8, 16
        self.vit = ViTBottleneck(
            ch[3], cfg.hidden_size, cfg.depth, cfg.heads, cfg.mlp_ratio, -(-cfg.image_size // 16)
        )
        self.neck = nn.Sequential(
            nn.Conv2d(cfg.hidden_size, cfg.neck_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(cfg.neck_channels),
            nn.ReLU(inplace=True),
        )
        dec = cfg.decoder_channels
        # Stride 16 -> 8 -> 4 -> 2, each joining the ResNet feature of that stride.
        self.ups = nn.ModuleList(
            UpBlock(c_in, skip, c_out)
            for c_in, skip, c_out in zip(
                [cfg.neck_channels, *dec[:2]], [ch[2], ch[1], ch[0]], dec[:3], strict=True
            )
        )
        self.last = ConvBlock(dec[2], dec[3])  # stride 2 -> 1, no skip at full resolution
        self.head = nn.Conv2d(dec[3], 1, 1)

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        f2, f4, f8, f16 = self.encoder(image)
        d = self.neck(self.vit(f16))
        for up, skip in zip(self.ups, (f8, f4, f2), strict=True):
            d = up(d, skip)
        d = F.interpolate(d, size=image.shape[-2:], mode="bilinear", align_corners=False)
        return SegOutput(logits=self.head(self.last(d)))
