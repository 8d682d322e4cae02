"""What the baselines share: the text-free base class and a resizable position embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from tmc_lightning.models.base import SegmentationNet


class BaselineNet(SegmentationNet):
    """A text-free network built from its config dataclass (``models/configs.py``)."""

    uses_text = False


def add_position(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x (B, C, h, w) + pos (1, C, g, g)``, resizing ``pos`` when the grid differs.

    The grid is fixed by ``image_size`` at construction; resizing lets the same weights run
    on other input sizes (e.g. prediction on larger images) instead of failing.
    """
    if pos.shape[-2:] != x.shape[-2:]:
        pos = F.interpolate(pos, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return x + pos
