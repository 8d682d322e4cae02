"""What the baselines share: typed preset configs and a resizable position embedding."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, TypeVar

import torch
import torch.nn.functional as F

from tmc_lightning.models.base import SegmentationNet

C = TypeVar("C")


def build_config(
    cls: type[C], presets: dict[str, dict], preset: str, model: str, overrides: dict
) -> C:
    """The preset's settings with ``overrides`` on top, as the network's config dataclass.

    ``None`` keeps the preset's value (a YAML ``null``); an unknown key is an error that lists
    the known ones instead of being ignored.
    """
    if preset not in presets:
        raise KeyError(
            f"unknown preset {preset!r} for model {model}; choose one of {sorted(presets)}"
        )
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"model {model} has no setting(s) {unknown}; known: {sorted(known)} "
            "(override them as model.<key>=... or +model.<key>=...)"
        )
    chosen = {k: v for k, v in overrides.items() if v is not None}
    return cls(**{**copy.deepcopy(presets[preset]), **chosen})


class BaselineNet(SegmentationNet):
    """A text-free network whose ``config`` dict rebuilds it (set by the subclass)."""

    uses_text = False
    config: dict[str, Any]

    def checkpoint_kwargs(self) -> dict[str, Any]:
        """Plain kwargs that rebuild this architecture offline (weights come from the state dict)."""
        c = copy.deepcopy(self.config)
        if "pretrained" in c:
            c["pretrained"] = False
        if "checkpoint" in c:
            c["checkpoint"] = None
        return c


def add_position(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x (B, C, h, w) + pos (1, C, g, g)``, resizing ``pos`` when the grid differs.

    The grid is fixed by ``image_size`` at construction; resizing lets the same weights run
    on other input sizes (e.g. prediction on larger images) instead of failing.
    """
    if pos.shape[-2:] != x.shape[-2:]:
        pos = F.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x + pos
