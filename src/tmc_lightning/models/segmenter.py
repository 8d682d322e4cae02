"""The dual-branch (CNN + ViT) U-Net that turns features into a mask (spec section 2).

A CNN U-Net (widths c, 2c, 4c, 8c, 8c) runs beside a ViT branch at the four upper scales.
ViT stage k embeds the CNN map of scale k into a fixed (image/16)^2 token grid and adds the
previous ViT stage's tokens; text joins at the first stage. A ViT "up" path mirrors it, and
each scale's tokens are reshaped, upsampled and added to the CNN skip of that scale. A
pixel-level attention gate rescales every skip before the CNN decoder.

TMC injects its MCM features into the down path: ``x_i = DownCNN_i(concat(x_{i-1}, F_i))`` and
``y_i = DownViT_i(concat(x_{i-1}, F_i), y_{i-1})``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.models.blocks import (
    ConvBlock,
    TransformerBlock,
    UNetDecoder,
    heads_for,
    sincos_2d,
    unet_widths,
)

PATCH = 16  # the ViT token grid is image_size / PATCH on every scale


class TextToTokens(nn.Module):
    """Adds words to visual tokens: project width, then mix the T word slots into N patches."""

    def __init__(self, text_dim: int, dim: int, max_words: int, num_tokens: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)
        self.mix = nn.Linear(max_words, num_tokens)

    def forward(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        w = self.proj(words) * word_mask[..., None].to(words.dtype)  # (B, T, dim), pads zeroed
        return self.mix(w.transpose(1, 2)).transpose(1, 2)  # (B, N, dim)


class ViTStage(nn.Module):
    """Patch-embeds a CNN map (B, C, h, w) into the fixed grid and runs transformer blocks."""

    def __init__(
        self, in_ch: int, dim: int, patch: int, num_tokens: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        self.embed = nn.Conv2d(in_ch, dim, patch, stride=patch)
        grid = int(round(num_tokens**0.5))
        self.pos = nn.Parameter(sincos_2d(dim, grid, grid).flatten(1).T[None])  # (1, N, dim)
        self.blocks = nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth)))

    def forward(self, fmap: torch.Tensor, extra: torch.Tensor | None = None) -> torch.Tensor:
        tokens = self.embed(fmap).flatten(2).transpose(1, 2) + self.pos  # (B, N, dim)
        if extra is not None:
            tokens = tokens + extra
        return self.blocks(tokens)


class PixelGate(nn.Module):
    """Pixel-level attention: channel mean and max maps -> per-pixel MLP -> sigmoid weight."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(2, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stats = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)  # (B, 2, h, w)
        return x * torch.sigmoid(self.mlp(stats))


class DualUSegmenter(nn.Module):
    """The LViT-style segmentation part; optional per-level injected features."""

    def __init__(
        self,
        image_size: int,
        base_width: int,
        text_dim: int,
        max_words: int,
        inject_channels: list[int] | None = None,
        vit_depth: int = 1,
        vit_heads: int = 4,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if image_size % PATCH != 0:
            raise ValueError(f"image_size must be a multiple of {PATCH}, got {image_size}")
        w = unet_widths(base_width)
        inj = inject_channels or [0, 0, 0, 0]
        grid = image_size // PATCH
        self.grid = grid
        self.inc = ConvBlock(in_channels, w[0])
        self.downs = nn.ModuleList(ConvBlock(w[i] + inj[i], w[i + 1]) for i in range(4))
        self.vit_down = nn.ModuleList(
            ViTStage(
                w[k] + inj[k],
                w[k],
                PATCH >> k,
                grid * grid,
                vit_depth,
                heads_for(w[k], vit_heads),
            )
            for k in range(4)
        )
        self.vit_link = nn.ModuleList(
            nn.Linear(w[k - 1], w[k]) for k in range(1, 4)
        )  # y_{k-1} -> y_k
        self.text_in = TextToTokens(text_dim, w[0], max_words, grid * grid)
        self.vit_up = nn.ModuleList(
            nn.Sequential(
                *(TransformerBlock(w[k], heads_for(w[k], vit_heads)) for _ in range(vit_depth))
            )
            for k in range(3)
        )
        self.up_link = nn.ModuleList(nn.Linear(w[k + 1], w[k]) for k in range(3))  # u_{k+1} -> u_k
        self.to_skip = nn.ModuleList(nn.Conv2d(w[k], w[k], 1) for k in range(4))
        self.gates = nn.ModuleList(PixelGate() for _ in range(4))
        self.decoder = UNetDecoder(w)

    def forward(
        self,
        image: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        injections: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """image (B, 3, H, W), words (B, T, D), word_mask (B, T), injections[i] (B, inj_i, h, w)."""
        x = self.inc(image)
        xs, ys = [x], []
        y = None
        for k in range(4):
            inp = x
            if injections is not None:
                f = F.interpolate(
                    injections[k], size=x.shape[-2:], mode="bilinear", align_corners=False
                )
                inp = torch.cat([x, f], dim=1)
            extra = self.text_in(words, word_mask) if k == 0 else self.vit_link[k - 1](y)
            y = self.vit_down[k](inp, extra)  # (B, N, w_k)
            ys.append(y)
            x = self.downs[k](F.max_pool2d(inp, 2))
            xs.append(x)
        # ViT up path: u_3 = y_3, u_k = Blocks(y_k + link(u_{k+1})).
        us = [ys[3]]
        for k in reversed(range(3)):
            us.insert(0, self.vit_up[k](ys[k] + self.up_link[k](us[0])))
        B = image.shape[0]
        skips = []
        for k in range(4):
            u = us[k].transpose(1, 2).reshape(B, -1, self.grid, self.grid)  # (B, w_k, g, g)
            u = F.interpolate(
                self.to_skip[k](u), size=xs[k].shape[-2:], mode="bilinear", align_corners=False
            )
            skips.append(self.gates[k](xs[k] + u))
        return self.decoder(xs[4], skips)
