"""UCTransNet baseline (Wang et al. 2022): a U-Net whose skips are fused by a transformer.

CCT (channel-wise cross-fusion transformer): each of the four encoder skips is cut into
patches whose size halves per level (16, 8, 4, 2), so every scale gives the same token grid.
In each layer the channels of every scale query the channels of all scales concatenated:
attention runs over channels (C_i x sum C), not over tokens, with instance normalisation of the
similarity map and heads averaged. The tokens are folded back, upsampled and added to the skips.
CCA (channel-wise cross attention): before each decoder stage, the pooled skip and the pooled
decoder feature decide a sigmoid weight per skip channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.models.base import SegOutput
from tmc_lightning.models.baselines.common import BaselineNet, add_position
from tmc_lightning.models.blocks import ConvBlock, Mlp, sincos_2d, unet_widths
from tmc_lightning.models.configs import UCTRANSNET_PRESETS, UCTransNetConfig
from tmc_lightning.models.registry import register_model


class SkipTokens(nn.Module):
    """One skip map (B, C, H, W) -> tokens (B, N, C) on the shared grid, position added."""

    def __init__(self, ch: int, patch: int, grid: int) -> None:
        super().__init__()
        self.embed = nn.Conv2d(ch, ch, patch, stride=patch)
        self.pos = nn.Parameter(sincos_2d(ch, grid, grid)[None])  # (1, C, g, g), learned

    def forward(self, skip: torch.Tensor) -> torch.Tensor:
        return add_position(self.embed(skip), self.pos).flatten(2).transpose(1, 2)


class ChannelCrossAttention(nn.Module):
    """Each scale's channels attend to the channels of all scales (one CCT attention)."""

    def __init__(self, widths: list[int], heads: int) -> None:
        super().__init__()
        self.heads, self.total = heads, sum(widths)
        self.q = nn.ModuleList(nn.Linear(c, heads * c, bias=False) for c in widths)
        self.kv = nn.Linear(self.total, 2 * heads * self.total, bias=False)
        self.norm_scores = nn.InstanceNorm2d(heads)  # psi: per head, over the C_i x S map
        self.out = nn.ModuleList(nn.Linear(c, c, bias=False) for c in widths)

    def forward(self, tokens: list[torch.Tensor], joint: torch.Tensor) -> list[torch.Tensor]:
        B, N, S = joint.shape
        kv = self.kv(joint).view(B, N, 2, self.heads, S).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)  # each (B, nh, N, S)
        outs = []
        for t, q_proj, out in zip(tokens, self.q, self.out, strict=True):
            C = t.shape[-1]
            q = q_proj(t).view(B, N, self.heads, C).permute(0, 2, 3, 1)  # (B, nh, C, N)
            scores = q @ k / math.sqrt(S)  # (B, nh, C, S): channel-to-channel similarity
            attn = self.norm_scores(scores).softmax(-1)
            mixed = attn @ v.transpose(-1, -2)  # (B, nh, C, N)
            outs.append(out(mixed.mean(1).transpose(1, 2)))  # heads averaged, (B, N, C)
        return outs


class CCTLayer(nn.Module):
    """Pre-norm channel cross-attention and per-scale MLP, both residual."""

    def __init__(self, widths: list[int], heads: int, mlp_ratio: float) -> None:
        super().__init__()
        self.norm_q = nn.ModuleList(nn.LayerNorm(c) for c in widths)
        self.norm_joint = nn.LayerNorm(sum(widths))
        self.attn = ChannelCrossAttention(widths, heads)
        self.norm_mlp = nn.ModuleList(nn.LayerNorm(c) for c in widths)
        self.mlp = nn.ModuleList(Mlp(c, mlp_ratio) for c in widths)

    def forward(self, tokens: list[torch.Tensor]) -> list[torch.Tensor]:
        queries = [norm(t) for norm, t in zip(self.norm_q, tokens, strict=True)]
        joint = self.norm_joint(torch.cat(tokens, dim=-1))  # (B, N, sum C)
        tokens = [t + a for t, a in zip(tokens, self.attn(queries, joint), strict=True)]
        return [
            t + mlp(norm(t)) for t, mlp, norm in zip(tokens, self.mlp, self.norm_mlp, strict=True)
        ]


class ChannelTransformer(nn.Module):
    """CCT: fuses the four skips and returns them enriched (same shapes)."""

    def __init__(
        self,
        widths: list[int],
        image_size: int,
        patch: int,
        depth: int,
        heads: int,
        mlp_ratio: float,
    ) -> None:
        super().__init__()
        if patch % 2 ** (len(widths) - 1):
            raise ValueError(f"uctransnet: model.patch={patch} must be divisible by 8")
        self.patch = patch
        grid = max(image_size // patch, 1)
        self.embed = nn.ModuleList(SkipTokens(c, patch >> i, grid) for i, c in enumerate(widths))
        self.layers = nn.ModuleList(CCTLayer(widths, heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.ModuleList(nn.LayerNorm(c) for c in widths)
        self.rebuild = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True))
            for c in widths
        )

    def forward(self, skips: list[torch.Tensor]) -> list[torch.Tensor]:
        H, W = skips[0].shape[-2:]
        if H % self.patch or W % self.patch:
            raise ValueError(
                f"uctransnet needs image sides divisible by model.patch={self.patch}, got "
                f"{(H, W)}; set dataset.image_size to a multiple of {self.patch}"
            )
        tokens = [embed(s) for embed, s in zip(self.embed, skips, strict=True)]  # (B, N, C_i)
        for layer in self.layers:
            tokens = layer(tokens)
        grid = (H // self.patch, W // self.patch)
        out = []
        for t, s, norm, rebuild in zip(tokens, skips, self.norm, self.rebuild, strict=True):
            fmap = norm(t).transpose(1, 2).unflatten(2, grid)  # (B, C_i, gh, gw)
            fmap = F.interpolate(fmap, size=s.shape[-2:], mode="bilinear", align_corners=False)
            out.append(s + rebuild(fmap))
        return out


class ChannelGate(nn.Module):
    """CCA: pooled skip and pooled decoder feature give a sigmoid weight per skip channel."""

    def __init__(self, skip_ch: int, dec_ch: int) -> None:
        super().__init__()
        self.from_skip = nn.Linear(skip_ch, skip_ch)
        self.from_dec = nn.Linear(dec_ch, skip_ch)

    def forward(self, skip: torch.Tensor, dec: torch.Tensor) -> torch.Tensor:
        w = self.from_skip(skip.mean((2, 3))) + self.from_dec(dec.mean((2, 3)))  # (B, C)
        return skip * torch.sigmoid(w)[:, :, None, None]


class GatedUpBlock(nn.Module):
    """Upsample to the skip's size, gate the skip with CCA, concatenate, :class:`ConvBlock`."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.gate = ChannelGate(skip_ch, in_ch)
        self.conv = ConvBlock(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, self.gate(skip, x)], dim=1))


@register_model("uctransnet")
class UCTransNet(BaselineNet):
    """U-Net (widths c, 2c, 4c, 8c, 8c) with CCT-fused, CCA-gated skips; ignores the text."""

    presets = UCTRANSNET_PRESETS

    def __init__(self, config: UCTransNetConfig) -> None:
        super().__init__(config)
        cfg = config
        w = unet_widths(cfg.base_width)
        self.inc = ConvBlock(cfg.in_channels, w[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), ConvBlock(w[i], w[i + 1])) for i in range(4)
        )
        self.cct = ChannelTransformer(
            w[:4], cfg.image_size, cfg.patch, cfg.depth, cfg.heads, cfg.mlp_ratio
        )
        # Level i upsamples the level-(i+1) output and joins gated skip i: 8c+8c->4c, ...
        self.ups = nn.ModuleList(
            GatedUpBlock(w[4] if i == 3 else w[i], w[i], w[max(i - 1, 0)]) for i in range(4)
        )
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward_features(self, image, input_ids=None, attention_mask=None, need_attention=False):
        xs = [self.inc(image)]
        for down in self.downs:
            xs.append(down(xs[-1]))
        skips = self.cct(xs[:4])
        d = xs[4]
        for i in reversed(range(4)):
            d = self.ups[i](d, skips[i])
        return SegOutput(logits=self.head(d))
