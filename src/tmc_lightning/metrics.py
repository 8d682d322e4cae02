"""Dice and IoU under the two protocols of docs/design.md §4, as torchmetrics ``Metric``s.

Both keep sums as states with ``dist_reduce_fx="sum"``, so under DDP they are computed over
the whole split rather than averaged per process.

``eval_resolution=original`` (the default of ``tmc-train``'s final scoring and of ``tmc-eval``)
upsamples each image's logits to its mask file's own size with :func:`upsample_logits`, then
thresholds them and scores them against the mask read from its file at that size: the pixels
the paper and the published scores count. ``eval_resolution=model`` scores the logits against
the masks resized to the model's input (nearest neighbour), as validation during training
does: the numbers of earlier versions. :func:`upsample_logits` is the suite's one upsampling:
the predictor (``tmc-predict``'s masks) and the scorer both call it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import Metric

from tmc_lightning.errors import ConfigError

RESOLUTIONS = ("original", "model")
DEFAULT_RESOLUTION = "original"


def check_resolution(value: object, key: str = "eval_resolution") -> str:
    """``original`` | ``model``; anything else is a :class:`ConfigError` naming the key and fix."""
    if value not in RESOLUTIONS:
        raise ConfigError(
            f"{key}={value!r}: use {key}=original (each mask at its own size, as the paper "
            f"and published scores count it) or {key}=model (masks resized to the model's input)"
        )
    return str(value)


def upsample_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Logits ``(N, C, h, w)`` -> ``(N, C, H, W)`` at ``size = (H, W)``, bilinear, corners not aligned.

    The logits (not a thresholded mask) are upsampled, then thresholded, so boundaries stay
    smooth at the larger size. A map already at ``size`` is returned as it is.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(logits.shape[-2:]) == size:
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


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


# -- confidence intervals: one bootstrap for tmc-eval and tmc-report ---------------------------
BOOTSTRAP_RESAMPLES = 5000


def bootstrap_indices(n: int, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0) -> np.ndarray:
    """(resamples, n) image indices drawn with replacement from a fixed seed."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def bootstrap_mean_ci(
    values: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over images (per-image Dice, a paired difference).

    The one interval the suite reports: ``tmc-eval``'s per-image Dice and IoU and
    ``tmc-report``'s paired differences both come from here, so the same per-image scores
    give the same interval in both. Without spread (or one image) it is the mean itself.
    """
    values = np.asarray(values, dtype=np.float64)
    if len(values) < 2 or np.ptp(values) == 0:
        return float(values.mean()), float(values.mean())
    means = values[bootstrap_indices(len(values), resamples, seed)].mean(axis=1)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def bootstrap_global_dice_ci(
    tp: np.ndarray,
    pred: np.ndarray,
    true: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of the global Dice, resampling images (their tp and areas)."""
    idx = bootstrap_indices(len(tp), resamples, seed)
    denom = pred[idx].sum(axis=1) + true[idx].sum(axis=1)
    values = np.where(denom > 0, 2 * tp[idx].sum(axis=1) / np.maximum(denom, 1), 1.0)
    tail = 100 * (1 - level) / 2
    return float(np.percentile(values, tail)), float(np.percentile(values, 100 - tail))
