"""CNN and transformer building blocks shared by the U-Net family."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.models.attention import attend, sdpa_enabled

T = TypeVar("T")


def seeded(base: int, name: str, build: Callable[[], T]) -> T:
    """``build()`` with the random generator seeded from (``base``, ``name``), then restored.

    A part built so has a random initialisation that depends on ``base`` and its own name
    only, not on which parts were built before it.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(base + zlib.crc32(name.encode()))
        return build()


def draw_seed() -> int:
    """One draw from the global generator: the base of a network's :func:`seeded` parts."""
    return int(torch.randint(0, 2**31 - 1, ()).item())


class SeededParts:
    """Mixin for modules that build their parts with :meth:`part`.

    Each part's random initialisation then depends on one draw from the global generator
    (taken at the first part) and the part's own name, not on which other parts were built
    before it: two rows of an ablation (MCM or alignment off, another injection) start every
    part they share from the same weights, so their difference is the switch, not a draw.
    """

    def part(self, name: str, build: Callable[[], T]) -> T:
        if not hasattr(self, "_part_seed"):
            self._part_seed = draw_seed()
        return seeded(self._part_seed, name, build)


class ConvBlock(nn.Module):
    """Two 3x3 conv + BatchNorm + ReLU layers."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_ch),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class UpBlock(nn.Module):
    """Upsample by 2, concatenate the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ConvBlock(in_ch + skip_ch, out_ch)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat([x, skip], dim=1))


def unet_widths(base_width: int) -> list[int]:
    """Channel widths of the five U-Net levels: c, 2c, 4c, 8c, 8c."""
    c = base_width
    return [c, 2 * c, 4 * c, 8 * c, 8 * c]


class Mlp(nn.Sequential):
    def __init__(self, dim: int, ratio: float = 2.0, out_dim: int | None = None) -> None:
        hidden = int(dim * ratio)
        super().__init__(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, out_dim or dim))


class TransformerBlock(nn.Module):
    """Pre-norm self-attention block (SDPA unless built under ``attention_kernel(False)``)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by heads {num_heads}"
        self.num_heads = num_heads
        self.sdpa = sdpa_enabled()
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(self.norm1(x)).view(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, N, hs)
        a = attend(q, k, v, sdpa=self.sdpa)  # (B, nh, N, hs)
        x = x + self.proj(a.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.norm2(x))


class UNetDecoder(nn.Module):
    """CNN decoder from the deepest level back to full resolution, then 1x1 conv to logits."""

    def __init__(self, widths: list[int]) -> None:
        super().__init__()
        w = widths
        # Level i upsamples the level-(i+1) output and joins skip i: 8c+8c->4c, 4c+4c->2c, ...
        self.ups = nn.ModuleList(
            UpBlock(w[4] if i == 3 else w[i], w[i], w[max(i - 1, 0)]) for i in range(4)
        )
        self.head = nn.Conv2d(w[0], 1, 1)

    def forward(self, bottom: torch.Tensor, skips: list[torch.Tensor]) -> torch.Tensor:
        d = bottom
        for i in reversed(range(4)):
            d = self.ups[i](d, skips[i])
        return self.head(d)


def sincos_2d(dim: int, h: int, w: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position code (dim, h, w) of unit scale.

    Used to initialise learned position embeddings, so positions matter from the first step
    instead of growing slowly out of a near-zero initialisation.
    """
    quarter = max(dim // 4, 1)
    freq = 1.0 / (100.0 ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    ys, xs = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    ang_y = ys[None] * freq[:, None, None] * 2 * torch.pi * 4  # (quarter, h, w)
    ang_x = xs[None] * freq[:, None, None] * 2 * torch.pi * 4
    code = torch.cat([ang_y.sin(), ang_y.cos(), ang_x.sin(), ang_x.cos()])[:dim]
    if code.shape[0] < dim:
        code = torch.cat([code, torch.zeros(dim - code.shape[0], h, w)])
    return code


def heads_for(dim: int, wanted: int) -> int:
    """The largest head count <= ``wanted`` that divides ``dim`` (narrow presets, odd widths)."""
    return next(h for h in range(min(wanted, dim), 0, -1) if dim % h == 0)
