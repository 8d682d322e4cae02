"""Prototype, not in the package: channels-last convolutions with NCHW weight gradients.

oneDNN's fp32 3x3 convolutions on the 2-core AVX2 CPU run their forward and input gradient
about as fast or faster in channels-last (much faster at 224 px), but their weight gradient
1.1-4x slower than in NCHW (``shapes.py``, README.md). :func:`nchw_weight_grads` swaps a model's
stride-1 convolutions for a class whose backward computes the weight gradient from NCHW copies
of the saved input and the output gradient, keeping the rest in channels-last. Same values and gradients
(``tests/unit/test_conv_layout_prototype.py``); in a whole train step it was no faster than plain
NCHW (README.md), so it stays here as the record of that measurement.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable


class _ConvNCHWWeightGrad(torch.autograd.Function):
    """``F.conv2d`` whose backward computes the weight gradient from NCHW tensors."""

    @staticmethod
    def forward(ctx: Any, x, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(x, weight)
        ctx.conv = (list(stride), list(padding), list(dilation), False, [0, 0], groups)
        return F.conv2d(x, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out):
        x, weight = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        grad_x = grad_w = grad_b = None
        backward = torch.ops.aten.convolution_backward
        if need_x:  # in the tensors' own layout
            grad_x = backward(grad_out, x, weight, None, *ctx.conv, [True, False, False])[0]
        if need_w:  # .contiguous(): NCHW copies, where oneDNN's weight gradient is fast
            nchw = (grad_out.contiguous(), x.contiguous(), weight.contiguous())
            grad_w = backward(*nchw, None, *ctx.conv, [False, True, False])[1]
        if need_b:
            grad_b = grad_out.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None


def _channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


class NCHWWeightGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` that takes :class:`_ConvNCHWWeightGrad` where it was measured faster."""

    def _conv_forward(self, input, weight, bias):
        if (
            input.device.type == "cpu"
            and torch.is_grad_enabled()
            and weight.requires_grad
            and not torch.is_autocast_enabled("cpu")
            and _channels_last(input)
            and not torch.compiler.is_compiling()
        ):
            return _ConvNCHWWeightGrad.apply(
                input, weight, bias, self.stride, self.padding, self.dilation, self.groups
            )
        return super()._conv_forward(input, weight, bias)


def eligible(module: nn.Module) -> bool:
    """A plain stride-1, ungrouped, zero-padded ``nn.Conv2d`` with a kernel wider than 1x1."""
    return (
        type(module) is nn.Conv2d
        and module.padding_mode == "zeros"
        and module.stride == (1, 1)
        and module.groups == 1
        and module.kernel_size != (1, 1)
    )


def nchw_weight_grads(model: nn.Module) -> int:
    """Makes every :func:`eligible` convolution of ``model`` a :class:`NCHWWeightGradConv2d`.

    In place (the class changes; parameters, buffers and state-dict keys stay). Returns how
    many convolutions changed.
    """
    changed = 0
    for module in model.modules():
        if eligible(module):
            module.__class__ = NCHWWeightGradConv2d
            changed += 1
    return changed
