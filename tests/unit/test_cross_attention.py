"""MCM's cross-attention: the path without the key/value projection computes the same block."""

from __future__ import annotations

import pytest
import torch

from tmc_lightning.models.attention import attention_kernel
from tmc_lightning.models.cross_attention import CrossAttentionBlock


def run_block(absorb: bool, sdpa: bool, seed: int = 0):
    """Words (B, 5, 32) reading visual tokens (B, 49, 12) with a position code and a mask."""
    torch.manual_seed(seed)
    with attention_kernel(sdpa):
        block = CrossAttentionBlock(dim=32, context_dim=12, num_heads=4).double()
    block.absorb = absorb
    with torch.no_grad():  # a key bias that is not zero, so dropping it is tested
        block.kv.bias.normal_()
    words = torch.randn(2, 5, 32, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(2, 49, 12, dtype=torch.float64, requires_grad=True)
    pos = torch.randn(1, 49, 12, dtype=torch.float64)
    keep = torch.ones(2, 49, dtype=torch.long)
    keep[1, 30:] = 0  # the second sample's last tokens are masked out of the keys
    out, _ = block(words, tokens, keep, context_pos=pos)
    (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    grads = {n: p.grad.clone() for n, p in block.named_parameters()}
    return out.detach(), words.grad, tokens.grad, grads


@pytest.mark.parametrize("sdpa", [True, False])
def test_absorbed_attention_matches_the_projected_one(sdpa):
    out_p, dw_p, dt_p, g_p = run_block(absorb=False, sdpa=sdpa)
    out_a, dw_a, dt_a, g_a = run_block(absorb=True, sdpa=sdpa)
    torch.testing.assert_close(out_a, out_p)
    torch.testing.assert_close(dw_a, dw_p)
    torch.testing.assert_close(dt_a, dt_p)
    for name in g_p:
        torch.testing.assert_close(g_a[name], g_p[name], msg=f"gradient of {name} differs")
    # The key bias moves no score (softmax ignores a per-query constant) on either path.
    assert g_a["kv.bias"][:32].abs().max() < 1e-12 and g_p["kv.bias"][:32].abs().max() < 1e-12


def test_the_cheaper_path_is_chosen_by_shape():
    block = CrossAttentionBlock(dim=768, context_dim=96, num_heads=8)  # paper, stage 1
    assert block.absorbs(queries=32, keys=3136)  # words reading 56 x 56 visual tokens
    wide = CrossAttentionBlock(dim=768, context_dim=768, num_heads=8)  # paper, stage 4
    assert not wide.absorbs(queries=32, keys=49)  # saves too little (0.95 of the work)
    vis = CrossAttentionBlock(dim=96, context_dim=768, num_heads=8)  # tokens reading words
    assert not vis.absorbs(queries=3136, keys=32)
    vis.absorb = True  # an explicit choice wins
    assert vis.absorbs(queries=3136, keys=32)


def test_absorbed_attention_runs_under_bf16_autocast():
    # The normalised context stays fp32 under autocast while the queries are bf16: the fused
    # kernel must take the mix, and the result stay at bf16 rounding of the fp32 one.
    torch.manual_seed(0)
    block = CrossAttentionBlock(dim=64, context_dim=16, num_heads=4)
    block.absorb = True
    words, tokens, pos = torch.randn(2, 6, 64), torch.randn(2, 100, 16), torch.randn(1, 100, 16)
    ref, _ = block(words, tokens, context_pos=pos)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out, _ = block(words, tokens, context_pos=pos)
    out.float().sum().backward()
    assert ((out.float() - ref).norm() / ref.norm()) < 0.02
    assert all(torch.isfinite(p.grad).all() for p in block.parameters() if p.grad is not None)
