"""Dice and IoU under the two protocols of spec section 4, as torchmetrics ``Metric``s.

Both keep sums as states with ``dist_reduce_fx="sum"``, so under DDP they are computed over
the whole split rather than averaged per process.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


def binarize(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Sigmoid > 0.5 (i.e. logit > 0) and target > 0.5, flattened per image: (B, H*W) bools."""
    return (logits > 0).flatten(1), (target > 0.5).flatten(1)


def per_image_scores(
    logits: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image foreground Dice and IoU (B,); empty prediction and empty target score 1."""
    p, g = binarize(logits, target)
    inter = (p & g).sum(1).double()
    psum, gsum = p.sum(1).double(), g.sum(1).double()
    union = psum + gsum - inter
    empty = (psum + gsum) == 0
    dice = torch.where(empty, 1.0, 2 * inter / (psum + gsum).clamp_min(1))
    iou = torch.where(empty, 1.0, inter / union.clamp_min(1))
    return dice, iou


class PerImageDiceIoU(Metric):
    """The paper's and LViT's protocol: Dice and IoU per image, averaged over images."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("dice_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("iou_sum", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        # The latest batch's (dice, iou) per image, not a synced state: a callback pairs them
        # with the batch's image names to write per-image scores without a second pass.
        self.last_scores: tuple[torch.Tensor, torch.Tensor] | None = None

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        dice, iou = per_image_scores(logits, target)
        self.last_scores = (dice.detach(), iou.detach())
        self.dice_sum += dice.sum()
        self.iou_sum += iou.sum()
        self.count += dice.numel()

    def compute(self) -> dict[str, torch.Tensor]:
        n = self.count.clamp_min(1)
        return {"dice": (self.dice_sum / n).float(), "iou": (self.iou_sum / n).float()}


class GlobalDiceIoU(Metric):
    """Ariadne's Thread's protocol: tp/fp/fn summed over the split, one Dice and one IoU."""

    full_state_update = False
    higher_is_better = True

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        for name in ("tp", "fp", "fn"):
            self.add_state(name, torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, target: torch.Tensor) -> None:
        p, g = binarize(logits, target)
        self.tp += (p & g).sum()
        self.fp += (p & ~g).sum()
        self.fn += (~p & g).sum()

    def compute(self) -> dict[str, torch.Tensor]:
        tp, fp, fn = self.tp.double(), self.fp.double(), self.fn.double()
        denom = 2 * tp + fp + fn
        if denom == 0:  # nothing predicted, nothing to find
            return {"dice_global": torch.tensor(1.0), "iou_global": torch.tensor(1.0)}
        return {
            "dice_global": (2 * tp / denom).float(),
            "iou_global": (tp / (tp + fp + fn)).float(),
        }
