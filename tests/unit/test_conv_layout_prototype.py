"""The prototype of experiments/conv_layout/: channels-last convs, weight gradients from NCHW.

Same values and gradients as ``nn.Conv2d``; its speed is measured in experiments/conv_layout/
(README.md), not here.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path

import pytest
import torch
from torch import nn

from tests.helpers.models import SIZE, WORDS, bench_module
from tmc_lightning.benchmarking.measure import synthetic_batch

PROTOTYPE = Path(__file__).resolve().parents[2] / "experiments/conv_layout/nchw_weight_grad.py"
_spec = importlib.util.spec_from_file_location("nchw_weight_grad", PROTOTYPE)
proto = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(proto)
NCHWWeightGradConv2d, eligible, nchw_weight_grads = (
    proto.NCHWWeightGradConv2d,
    proto.eligible,
    proto.nchw_weight_grads,
)

CL = torch.channels_last


def _pair(**conv) -> tuple[nn.Conv2d, nn.Conv2d]:
    torch.manual_seed(0)
    plain = nn.Conv2d(**conv).to(memory_format=CL)
    swapped = copy.deepcopy(plain)
    assert nchw_weight_grads(swapped) == 1
    assert type(swapped) is NCHWWeightGradConv2d
    return plain, swapped


@pytest.mark.parametrize(
    ("conv", "input_grad"),
    [
        ({"in_channels": 6, "out_channels": 5, "kernel_size": 3, "padding": 1}, True),
        (
            {"in_channels": 4, "out_channels": 8, "kernel_size": 3, "padding": 1, "bias": False},
            True,
        ),
        ({"in_channels": 3, "out_channels": 4, "kernel_size": 5, "padding": 2}, False),  # an image
        ({"in_channels": 4, "out_channels": 4, "kernel_size": 3, "dilation": 2}, True),
    ],
)
def test_same_values_and_gradients_as_conv2d(conv, input_grad) -> None:
    plain, swapped = _pair(**conv)
    x = torch.randn(2, conv["in_channels"], 11, 9).contiguous(memory_format=CL)
    grads = {}
    for name, module in (("plain", plain), ("swapped", swapped)):
        xi = x.clone().requires_grad_(input_grad)
        y = module(xi)
        taken = type(y.grad_fn).__name__
        y.backward(torch.linspace(-1, 1, y.numel()).reshape(y.shape))
        grads[name] = (y.detach(), xi.grad, *(p.grad for p in module.parameters()))
        grads[name + "_fn"] = taken
    assert grads["swapped_fn"].startswith("_ConvNCHWWeightGrad"), grads["swapped_fn"]
    assert not grads["plain_fn"].startswith("_ConvNCHWWeightGrad")
    for a, b in zip(grads["plain"], grads["swapped"], strict=True):
        if a is None:
            assert b is None
        else:
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)


def test_falls_back_where_it_was_not_measured() -> None:
    _, conv = _pair(in_channels=4, out_channels=4, kernel_size=3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    nchw = conv(x.requires_grad_())
    assert not type(nchw.grad_fn).__name__.startswith("_ConvNCHW")  # NCHW input
    cl = x.detach().contiguous(memory_format=CL)
    with torch.no_grad():
        assert conv(cl).grad_fn is None
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = conv(cl)
    assert y.dtype == torch.bfloat16 and not type(y.grad_fn).__name__.startswith("_ConvNCHW")


def test_only_plain_stride_one_convolutions_change() -> None:
    convs = {
        "3x3": nn.Conv2d(4, 4, 3, padding=1),
        "1x1": nn.Conv2d(4, 4, 1),
        "stride 2": nn.Conv2d(4, 4, 3, stride=2, padding=1),
        "grouped": nn.Conv2d(4, 4, 3, padding=1, groups=2),
        "reflect": nn.Conv2d(4, 4, 3, padding=1, padding_mode="reflect"),
    }
    assert [k for k, v in convs.items() if eligible(v)] == ["3x3"]
    model = nn.Sequential(*convs.values())
    keys = list(model.state_dict())
    assert nchw_weight_grads(model) == 1
    assert list(model.state_dict()) == keys


def test_channels_last_module_trains_the_same_with_either_weight_gradient() -> None:
    batch = synthetic_batch(2, SIZE, WORDS, vocab=1000, device=torch.device("cpu"))
    grads = {}
    for swap in (True, False):
        module = bench_module(channels_last=True)
        if swap:
            assert nchw_weight_grads(module) > 0
        swapped = [m for m in module.modules() if isinstance(m, NCHWWeightGradConv2d)]
        assert bool(swapped) is swap
        module.train()
        module._step(batch)[0].backward()
        grads[swap] = {n: p.grad for n, p in module.named_parameters() if p.grad is not None}
    assert grads[True].keys() == grads[False].keys()
    for name, g in grads[False].items():
        torch.testing.assert_close(grads[True][name], g, rtol=1e-3, atol=1e-5, msg=name)
