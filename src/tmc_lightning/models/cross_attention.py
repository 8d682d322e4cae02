"""MCM: multi-stage cross-perception between visual tokens and words (docs/design.md §2.2).

At every stage i::

    F_V = V + MHCA(query=V, key/value=proj(L))      then  F_V += MLP(F_V)
    F_L = L + MHCA(query=L, key/value=proj(F_V))    then  F_L += MLP(F_L)

as pre-norm residual blocks, with padded words masked out of the keys. Swin has no absolute
position embedding, so a learned one per stage is added to the visual queries and keys (not to
the values or the residual stream): a word like "upper left" can then find where it points.

Words reading visual tokens (``F_L``) have few queries (T words) and many keys (h * w tokens,
3136 at stage 1 of the ``paper`` preset), so projecting every token into keys and values of the
text's width is most of that attention's cost. With ``W_k, W_v`` split per head ``h`` into
``(hs, Cv)`` blocks, the same attention is computed without the projection::

    q_h k_j^T = (q_h W_k,h) (c_j + p_j)^T + q_h b_k,h      the last term is the same for every
                                                           key j, so the softmax drops it
    sum_j P_hj v_j = (sum_j P_hj c_j) W_v,h^T + b_v,h      since sum_j P_hj = 1

i.e. attention of the queries ``q_h W_k,h`` over the normalised tokens ``c`` themselves, all
heads as one batch of ``nh * T`` queries, then ``W_v,h`` on the T results. Same parameters,
same values up to rounding; each block takes this path where it costs fewer multiply-adds
(:meth:`CrossAttentionBlock.absorbs`).
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
        self.absorb: bool | None = None  # None: the cheaper way by shape; True/False forces one
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
        nh, hs = self.num_heads, C // self.num_heads
        xq = self.norm_q(x) if x_pos is None else self.norm_q(x) + x_pos
        q = self.q(xq).view(B, N, nh, hs).transpose(1, 2)  # (B, nh, N, hs)
        ctx = self.norm_kv(context)
        kctx = ctx if context_pos is None else ctx + context_pos  # what the keys are made from
        keep = None if context_mask is None else context_mask[:, None, None, :].bool()  # (B,1,1,M)
        w_k, w_v = self.kv.weight.chunk(2)  # each (C, Cc)
        b_k, b_v = self.kv.bias.chunk(2)
        weights = None
        if not need_weights and self.absorbs(N, M):
            Cc = ctx.shape[-1]
            qk = (q @ w_k.view(nh, hs, Cc)).reshape(B, 1, nh * N, Cc)  # q_h W_k,h, heads as rows
            a = attend(qk, kctx[:, None], ctx[:, None], keep, sdpa=self.sdpa, scale=hs**-0.5)
            a = a.view(B, nh, N, Cc) @ w_v.view(nh, hs, Cc).transpose(1, 2)  # (B, nh, N, hs)
            a = a + b_v.to(a.dtype).view(nh, 1, hs)
        else:
            k = F.linear(kctx, w_k, b_k).view(B, M, nh, hs).transpose(1, 2)  # (B, nh, M, hs)
            v = F.linear(ctx, w_v, b_v).view(B, M, nh, hs).transpose(1, 2)
            if need_weights:
                weights = attention_weights(q, k, keep)  # (B, nh, N, M)
                a = weights @ v
            else:
                a = attend(q, k, v, keep, sdpa=self.sdpa)  # (B, nh, N, hs)
        x = x + self.out(a.transpose(1, 2).reshape(B, N, C))
        return x + self.mlp(self.norm_mlp(x)), weights

    def absorbs(self, queries: int, keys: int) -> bool:
        """Whether attention without the key/value projection is cheaper here (module doc).

        Multiply-adds per sample: projecting costs ``2 M Cc C`` (keys and values) plus
        ``2 N M C`` (scores and weighted sum); absorbing costs ``2 N C Cc`` (``q W_k`` and
        ``W_v``) plus ``2 N M Cc nh`` (every head attends in the context's width ``Cc``).
        Absorbing must save a fifth: its attention runs on a few wide rows, less efficiently
        than the projections (``paper``, stage 4, 0.95 of the multiply-adds: 47 against 43 ms
        per CPU step; stage 1, 0.26 of them: 63 against 139 ms).
        """
        if self.absorb is not None:
            return self.absorb
        C, Cc, nh = self.q.out_features, self.kv.in_features, self.num_heads
        N, M = queries, keys
        return N * C * Cc + N * M * Cc * nh < 0.8 * (M * Cc * C + N * M * C)


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
