"""MCM: multi-stage cross-perception between visual tokens and words (spec section 2).

At every stage i::

    F_V = V + MHCA(query=V, key/value=proj(L))      then  F_V += MLP(F_V)
    F_L = L + MHCA(query=L, key/value=proj(F_V))    then  F_L += MLP(F_L)

as pre-norm residual blocks, with padded words masked out of the keys. Swin has no absolute
position embedding, so a learned one per stage is added to the visual queries and keys (not to
the values or the residual stream): a word like "upper left" can then find where it points.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tmc_lightning.models.attention import attend, attention_weights, sdpa_enabled
from tmc_lightning.models.blocks import Mlp, heads_for, sincos_2d


class CrossAttentionBlock(nn.Module):
    """Pre-norm residual multi-head cross-attention followed by a pre-norm residual MLP."""

    def __init__(self, dim: int, context_dim: int, num_heads: int, mlp_ratio: float = 2.0) -> None:
        super().__init__()
        assert dim % num_heads == 0, f"dim {dim} not divisible by heads {num_heads}"
        self.num_heads = num_heads
        self.sdpa = sdpa_enabled()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(context_dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(context_dim, 2 * dim)  # proj(context) into the query's width
        self.out = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, mlp_ratio)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        context_mask: torch.Tensor | None = None,
        need_weights: bool = False,
        x_pos: torch.Tensor | None = None,
        context_pos: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x (B, N, dim), context (B, M, context_dim), context_mask (B, M) with 1 = keep.

        ``x_pos`` is added to the queries' input, ``context_pos`` to the keys' input only.
        Returns the updated x and, if asked, the attention weights (B, nh, N, M).
        """
        B, N, C = x.shape
        M = context.shape[1]
        hs = C // self.num_heads
        xq = self.norm_q(x) if x_pos is None else self.norm_q(x) + x_pos
        q = self.q(xq).view(B, N, self.num_heads, hs).transpose(1, 2)  # (B, nh, N, hs)
        ctx = self.norm_kv(context)
        w_k, w_v = self.kv.weight.chunk(2)
        b_k, b_v = self.kv.bias.chunk(2)
        k = F.linear(ctx if context_pos is None else ctx + context_pos, w_k, b_k)
        v = F.linear(ctx, w_v, b_v)
        k = k.view(B, M, self.num_heads, hs).transpose(1, 2)  # (B, nh, M, hs)
        v = v.view(B, M, self.num_heads, hs).transpose(1, 2)
        keep = None if context_mask is None else context_mask[:, None, None, :].bool()  # (B,1,1,M)
        weights = None
        if need_weights:
            weights = attention_weights(q, k, keep)  # (B, nh, N, M)
            a = weights @ v
        else:
            a = attend(q, k, v, keep, sdpa=self.sdpa)  # (B, nh, N, hs)
        x = x + self.out(a.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.norm_mlp(x)), weights


class MCMStage(nn.Module):
    """One stage of cross-perception: vision attends to words, then words to updated vision."""

    def __init__(
        self, vis_dim: int, txt_dim: int, num_heads: int, grid: int, mlp_ratio: float = 2.0
    ) -> None:
        super().__init__()
        self.pos = nn.Parameter(sincos_2d(vis_dim, grid, grid)[None])  # (1, Cv, g, g)
        self.vis_from_txt = CrossAttentionBlock(
            vis_dim, txt_dim, heads_for(vis_dim, num_heads), mlp_ratio
        )
        self.txt_from_vis = CrossAttentionBlock(
            txt_dim, vis_dim, heads_for(txt_dim, num_heads), mlp_ratio
        )

    def forward(
        self,
        v: torch.Tensor,
        words: torch.Tensor,
        word_mask: torch.Tensor,
        need_weights: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """v (B, h, w, Cv), words (B, T, D), word_mask (B, T) -> F_V, F_L, weights (B, nh, N, T)."""
        B, h, w, C = v.shape
        pos = (
            self.pos
            if self.pos.shape[-2:] == (h, w)
            else F.interpolate(self.pos, size=(h, w), mode="bilinear", align_corners=False)
        )
        pos = pos.flatten(2).transpose(1, 2)  # (1, N, Cv)
        tokens = v.reshape(B, h * w, C)
        tokens, weights = self.vis_from_txt(tokens, words, word_mask, need_weights, x_pos=pos)
        words, _ = self.txt_from_vis(words, tokens, context_pos=pos)
        return tokens.view(B, h, w, C), words, weights
