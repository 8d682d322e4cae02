"""The attention kernel: fused ``F.scaled_dot_product_attention`` (default) or explicit math.

Every attention in the suite (our transformer and cross-attention blocks, timm's Swin and ViT
blocks, the Hugging Face text encoders) picks its kernel when it is built. Build a network
inside ``attention_kernel(sdpa=False)`` to get ``softmax(Q K^T / sqrt(d)) V`` written out, the
path that materialises the full score matrix; ``tmc-bench --variants eager_attn`` compares the
two, and ``perf.sdpa`` chooses for training.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F

_SDPA = [True]  # the kernel that blocks built now will use


def sdpa_enabled() -> bool:
    return _SDPA[0]


def hf_attn_implementation() -> str:
    """The ``attn_implementation`` to give transformers' models built now."""
    return "sdpa" if _SDPA[0] else "eager"


@contextmanager
def attention_kernel(sdpa: bool) -> Iterator[None]:
    """Blocks (ours, timm's, transformers') built inside use SDPA or explicit attention."""
    from timm.layers import config as timm_config

    before, timm_before = _SDPA[0], timm_config._USE_FUSED_ATTN
    _SDPA[0] = sdpa
    timm_config.set_fused_attn(sdpa)
    try:
        yield
    finally:
        _SDPA[0] = before
        timm_config._USE_FUSED_ATTN = timm_before


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    keep: torch.Tensor | None = None,
    *,
    sdpa: bool = True,
    scale: float | None = None,
) -> torch.Tensor:
    """Multi-head attention of (B, nh, N, hs) queries over (B, nh, M, hs) keys and values.

    ``keep`` (broadcastable to (B, nh, N, M), True = attend) masks keys out; ``scale``
    multiplies the scores (default ``1 / sqrt(hs)``).
    """
    if sdpa:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=keep, scale=scale)
    return attention_weights(q, k, keep, scale=scale) @ v


def attention_weights(
    q: torch.Tensor,
    k: torch.Tensor,
    keep: torch.Tensor | None = None,
    *,
    scale: float | None = None,
) -> torch.Tensor:
    """softmax(Q K^T * scale) with masked keys at -inf: (B, nh, N, M); scale 1/sqrt(hs)."""
    scores = (q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5 if scale is None else scale)
    if keep is not None:
        scores = scores.masked_fill(~keep, float("-inf"))
    return scores.softmax(dim=-1)
