"""Any timm backbone as TMC's visual encoder, run one stage at a time (strides 4, 8, 16, 32).

TMC interleaves the visual and text encoders (stage i of each, then cross-attention), so the
backbone exposes ``embed`` (everything before the first stage) and ``stage(i, x)``. The stages
are cut from the timm model itself, at the modules its ``feature_info`` names: a Swin's
``patch_embed`` then ``layers.0`` ... ``layers.3``; a ConvNeXt's ``stem`` then ``stages.0`` ...;
a ResNet's stem up to ``maxpool`` then ``layer1`` ... ``layer4``; an EfficientNet's stem and
first block, then blocks 1-2, 3-4, 5-6. A model with five feature levels (stride 2 first) uses
its last four. Parameter names stay timm's own (``model.<timm name>``), so timm state dicts and
checkpoints of earlier versions load unchanged.

Between stages the features are channels-last ``(B, H_i, W_i, C_i)``, what MCM reads; a CNN's
stages run in NCHW and are permuted at the boundary.
"""

from __future__ import annotations

from typing import Any

import timm
import torch
from torch import nn

from tmc_lightning import weights
from tmc_lightning.hub import EncoderUnavailableError, hub_reachable

STRIDES = [4, 8, 16, 32]


def sequential_modules(model: nn.Module, stage_names: list[str]) -> list[tuple[str, nn.Module]]:
    """The model's top-level children in order; a ``nn.Sequential`` whose children are stages
    (Swin's ``layers``, EfficientNet's ``blocks``) is opened one level."""
    out = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential) and any(s.startswith(f"{name}.") for s in stage_names):
            out += [(f"{name}.{sub}", m) for sub, m in child.named_children()]
        else:
            out.append((name, child))
    return out


def create_timm(
    name: str, pretrained: bool, checkpoint: str | None, img_size: int, **overrides: Any
) -> nn.Module:
    """A timm model, pretrained from ``checkpoint`` (a local file) or the hub; fails fast offline."""
    kwargs: dict[str, Any] = {"num_classes": 0, **overrides}
    checkpoint = weights.resolve(checkpoint) if pretrained else checkpoint
    if pretrained and checkpoint:
        kwargs["pretrained_cfg_overlay"] = {"file": checkpoint}
    elif pretrained and not hub_reachable():
        raise EncoderUnavailableError(
            f"Could not load pretrained visual encoder {name!r} (model.vision.name): the "
            "Hugging Face hub is unreachable. Download the timm weights file elsewhere and set "
            "vision_encoder=local vision_encoder.name=NAME vision_encoder.checkpoint=FILE (or "
            "+model.vision.checkpoint=FILE), use vision_encoder=efficientnet_lite0 after "
            "`tmc-weights fetch efficientnet-lite0`, or train from random weights with "
            "model.pretrained=false."
        )
    try:
        try:  # transformers (Swin, ViT) take the input size; CNNs do not
            return timm.create_model(name, pretrained=pretrained, img_size=img_size, **kwargs)
        except TypeError:
            return timm.create_model(name, pretrained=pretrained, **kwargs)
    except RuntimeError as err:  # unknown model name, or a weights file of another model
        raise EncoderUnavailableError(
            f"Could not build visual encoder {name!r} (model.vision.name, checkpoint "
            f"{checkpoint!r}): {str(err).splitlines()[0][:300]}"
        ) from None


class StagedBackbone(nn.Module):
    """A timm model cut into ``embed`` + four stages at strides 4, 8, 16 and 32."""

    def __init__(self, config: Any, img_size: int = 224) -> None:
        super().__init__()
        self.model = create_timm(
            config.name, config.pretrained, config.checkpoint, img_size, **config.timm_overrides()
        )
        levels = [f for f in getattr(self.model, "feature_info", []) if f["reduction"] >= 4]
        found = [f["reduction"] for f in getattr(self.model, "feature_info", [])]
        if [f["reduction"] for f in levels] != STRIDES:
            raise EncoderUnavailableError(
                f"visual encoder {config.name!r} has feature levels at strides {found}; TMC needs "
                "four at strides 4, 8, 16, 32 (a fifth at stride 2 is skipped): choose a "
                "hierarchical backbone such as a Swin, ConvNeXt, ResNet or EfficientNet"
            )
        self.channels: list[int] = [f["num_chs"] for f in levels]
        self.channels_last: bool = getattr(self.model, "output_fmt", "NCHW") == "NHWC"
        modules = sequential_modules(self.model, [f["module"] for f in levels])
        names = [n for n, _ in modules]
        ends = []
        for f in levels:
            if f["module"] not in names:
                raise EncoderUnavailableError(
                    f"visual encoder {config.name!r}: its stage {f['module']!r} is not a "
                    "top-level module, so it cannot be run stage by stage"
                )
            ends.append(names.index(f["module"]))
        # Plain lists, not ModuleLists: the modules stay registered once, under their timm
        # names in self.model. The stem is everything before the stride-4 module; stage i runs
        # from after stage i-1's module up to and including its own.
        self._embed = [m for _, m in modules[: ends[0]]]
        starts = [ends[0], *[e + 1 for e in ends[:-1]]]
        self._stages = [
            [m for _, m in modules[a : b + 1]] for a, b in zip(starts, ends, strict=True)
        ]
        for name, _ in modules[ends[-1] + 1 :]:  # final norm, pooling, head: never used
            if "." not in name:
                setattr(self.model, name, nn.Identity())
        if config.freeze:
            self.requires_grad_(False)

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        """Everything before stage 0 (a patch embedding or a CNN stem)."""
        for m in self._embed:
            image = m(image)
        return image

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage ``i``: (B, H_{i-1}, W_{i-1}, C) channels-last in and out (stage 0 takes embed's)."""
        if not self.channels_last and i > 0:
            x = x.permute(0, 3, 1, 2)
        for m in self._stages[i]:
            x = m(x)
        return x if self.channels_last else x.permute(0, 2, 3, 1)
