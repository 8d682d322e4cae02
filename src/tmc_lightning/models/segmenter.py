"""The dual-branch (CNN + ViT) U-Net that turns features into a mask (docs/design.md §2.3).

A CNN U-Net (widths c, 2c, 4c, 8c, 8c) runs beside a ViT branch at the four upper scales.
ViT stage k embeds the CNN map of scale k into a fixed (image/16)^2 token grid and adds the
previous ViT stage's tokens; text joins at the first stage. A ViT "up" path mirrors it, and
each scale's tokens are reshaped, upsampled and added to the CNN skip of that scale. A
pixel-level attention gate rescales every skip before the CNN decoder.

TMC injects its MCM features into the down path, the paper's
``x_i = DownCNN_i(concat(x_{i-1}, F_i))`` and ``y_i = DownViT_i(concat(x_{i-1}, F_i), y_{i-1})``.
``F_i`` (stage i of the visual encoder, stride ``4 * 2^i``) is coarser than the U-Net level it
joins (stride ``2^i``), so it has to be resized; two ways are built (``model.injection``):

- ``resized`` (the default) never builds ``F_i`` at the U-Net level's full resolution::

      x_i = Conv_i(concat(MaxPool(x_{i-1}), Up(F_i)))            Up: bilinear to x_i's size
      y_i = Blocks_i(E_i(x_{i-1}) + G_i(F_i) + pos_i + link(y_{i-1}))

  ``E_i`` is the patch embedding of the CNN map (kernel = stride = 16 / 2^i), ``G_i`` a patch
  embedding of ``F_i`` at its own resolution (kernel = stride = 4 / 2^i, a 1x1 after bilinear
  upsampling for the stride-32 stage). A convolution over a concatenation is the sum of
  convolutions over its parts, so this is the paper's embedding of ``concat(x_{i-1}, F_i)``
  with ``F_i``'s part applied before, not after, the upsampling.
- ``full`` (checkpoints written before this option existed): ``F_i`` is upsampled to
  ``x_{i-1}``'s resolution, concatenated, and the concatenation is max-pooled inside
  ``DownCNN_i`` and patch-embedded by ``DownViT_i``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.models.blocks import (
    ConvBlock,
    SeededParts,
    TransformerBlock,
    UNetDecoder,
    heads_for,
    sincos_2d,
    unet_widths,
)

PATCH = 16  # the ViT token grid is image_size / PATCH on every scale
INJECT_STRIDE = 4  # injected map i has stride INJECT_STRIDE * 2^i (the visual encoder's stages)
INJECTIONS = ("resized", "full")


def resize(x: torch.Tensor, size: tuple[int, ...] | torch.Size) -> torch.Tensor:
    """``x`` bilinearly resized to ``size`` (returned as it is when it has that size already)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class PatchEmbed(nn.Conv2d):
    """A patch embedding: ``nn.Conv2d(in_ch, out_ch, p, stride=p)``, computed as one matmul.

    The same parameters, initialisation and state-dict keys as the convolution, so checkpoints
    load either way. Written out because oneDNN's bf16 convolution with kernel = stride gave
    wrong values for some channel counts (torch 2.14.1 on an AMX CPU: relative error about 1
    for 16 or 24 input channels at kernels 4-16, correct for 3, 8, 32 or 64), and this
    convolution reads each input pixel once, so it is a reshape and a matmul anyway.
    """

    def __init__(self, in_ch: int, out_ch: int, patch: int, bias: bool = True) -> None:
        super().__init__(in_ch, out_ch, patch, stride=patch, bias=bias)
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, C, H, W = x.shape
        p = self.patch
        h, w = H // p, W // p
        x = x[..., : h * p, : w * p]  # what a stride-p convolution reads
        patches = x.reshape(B, C, h, p, w, p).permute(0, 2, 4, 1, 3, 5).reshape(B, h, w, C * p * p)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)
        return out.permute(0, 3, 1, 2)  # (B, out_ch, h, w)


class TextToTokens(nn.Module):
    """Adds words to visual tokens: project width, then mix the T word slots into N patches."""

    def __init__(self, text_dim: int, dim: int, max_words: int, num_tokens: int) -> None:
        super().__init__()
        self.proj = nn.Linear(text_dim, dim)
        self.mix = nn.Linear(max_words, num_tokens)

    def forward(self, words: torch.Tensor, word_mask: torch.Tensor) -> torch.Tensor:
        w = self.proj(words) * word_mask[..., None].to(words.dtype)  # (B, T, dim), pads zeroed
        return self.mix(w.transpose(1, 2)).transpose(1, 2)  # (B, N, dim)


class ViTStage(SeededParts, nn.Module):
    """Patch-embeds a CNN map (B, C, h, w) into the fixed grid and runs transformer blocks."""

    def __init__(
        self, in_ch: int, dim: int, patch: int, num_tokens: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        # The blocks' init does not depend on the embedding's width (SeededParts).
        self.embed = self.part("embed", lambda: PatchEmbed(in_ch, dim, patch))
        grid = int(round(num_tokens**0.5))
        self.pos = nn.Parameter(sincos_2d(dim, grid, grid).flatten(1).T[None])  # (1, N, dim)
        self.blocks = self.part(
            "blocks",
            lambda: nn.Sequential(*(TransformerBlock(dim, heads) for _ in range(depth))),
        )

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


class DualUSegmenter(SeededParts, nn.Module):
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
        injection: str = "resized",
    ) -> None:
        super().__init__()
        if image_size % PATCH != 0:
            raise ValueError(f"image_size must be a multiple of {PATCH}, got {image_size}")
        if injection not in INJECTIONS:
            raise ValueError(
                f"model.injection={injection!r} is unknown; choose one of {', '.join(INJECTIONS)}"
            )
        w = unet_widths(base_width)
        inj = inject_channels or [0, 0, 0, 0]
        grid = image_size // PATCH
        self.grid = grid
        self.injection = injection
        full = injection == "full"
        # Every part's init from (one draw, its name): the two injections start all the parts
        # they share (all but the ViT patch embeddings) from the same weights.
        part = self.part
        self.inc = part("inc", lambda: ConvBlock(in_channels, w[0]))
        self.downs = part(
            "downs", lambda: nn.ModuleList(ConvBlock(w[i] + inj[i], w[i + 1]) for i in range(4))
        )
        # "resized": the injected maps' own patch embeddings (Identity where none is needed).
        self.inject_patch = [max(PATCH // (INJECT_STRIDE << k), 1) for k in range(4)]
        self.vit_inject = part(
            "vit_inject",
            lambda: nn.ModuleList(
                PatchEmbed(inj[k], w[k], q, bias=False) if inj[k] and not full else nn.Identity()
                for k, q in enumerate(self.inject_patch)
            ),
        )
        self.vit_down = nn.ModuleList(
            part(
                f"vit_down.{k}",
                lambda k=k: ViTStage(
                    w[k] + (inj[k] if full else 0),
                    w[k],
                    PATCH >> k,
                    grid * grid,
                    vit_depth,
                    heads_for(w[k], vit_heads),
                ),
            )
            for k in range(4)
        )
        self.vit_link = part(
            "vit_link", lambda: nn.ModuleList(nn.Linear(w[k - 1], w[k]) for k in range(1, 4))
        )  # y_{k-1} -> y_k
        self.text_in = part("text_in", lambda: TextToTokens(text_dim, w[0], max_words, grid * grid))
        self.vit_up = part(
            "vit_up",
            lambda: nn.ModuleList(
                nn.Sequential(
                    *(TransformerBlock(w[k], heads_for(w[k], vit_heads)) for _ in range(vit_depth))
                )
                for k in range(3)
            ),
        )
        self.up_link = part(
            "up_link", lambda: nn.ModuleList(nn.Linear(w[k + 1], w[k]) for k in range(3))
        )  # u_{k+1} -> u_k
        self.to_skip = part(
            "to_skip", lambda: nn.ModuleList(nn.Conv2d(w[k], w[k], 1) for k in range(4))
        )
        self.gates = part("gates", lambda: nn.ModuleList(PixelGate() for _ in range(4)))
        self.decoder = part("decoder", lambda: UNetDecoder(w))

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
            extra = self.text_in(words, word_mask) if k == 0 else self.vit_link[k - 1](y)
            if injections is None:
                y = self.vit_down[k](x, extra)  # (B, N, w_k)
                x = self.downs[k](F.max_pool2d(x, 2))
            elif self.injection == "full":
                inp = torch.cat([x, resize(injections[k], x.shape[-2:])], dim=1)
                y = self.vit_down[k](inp, extra)
                x = self.downs[k](F.max_pool2d(inp, 2))
            else:
                f = injections[k]
                side = self.grid * self.inject_patch[k]
                g = self.vit_inject[k](resize(f, (side, side)))  # (B, w_k, grid, grid)
                y = self.vit_down[k](x, extra + g.flatten(2).transpose(1, 2))
                pooled = F.max_pool2d(x, 2)
                x = self.downs[k](torch.cat([pooled, resize(f, pooled.shape[-2:])], dim=1))
            ys.append(y)
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
