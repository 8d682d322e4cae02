"""Losses: the task loss (BCE on logits, optional soft Dice) and the multi-stage alignment loss."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

if TYPE_CHECKING:  # the type only: the paper's equations need no network code
    from tmc_lightning.models.base import AlignFeatures


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice per image, averaged; logits and target (B, 1, H, W)."""
    p = torch.sigmoid(logits.float()).flatten(1)
    t = target.float().flatten(1)
    dice = (2 * (p * t).sum(1) + eps) / (p.sum(1) + t.sum(1) + eps)
    return 1 - dice.mean()


def task_loss(logits: torch.Tensor, target: torch.Tensor, dice_weight: float = 0.0) -> torch.Tensor:
    """BCE on logits (the paper's loss) plus ``dice_weight`` x soft Dice."""
    loss = F.binary_cross_entropy_with_logits(logits.float(), target.float())
    if dice_weight > 0:
        loss = loss + dice_weight * soft_dice_loss(logits, target)
    return loss


def same_text_matrix(input_ids: torch.Tensor) -> torch.Tensor:
    """(B, B) bool: True where samples a and b carry the same token sequence (always on the diagonal)."""
    return (input_ids[:, None, :] == input_ids[None, :, :]).all(-1)


def sigmoid_alignment_loss(feats: AlignFeatures, same_text: torch.Tensor) -> torch.Tensor:
    """One stage: ``-(1/B) sum_ab log sigmoid(y_ab * (cos(z_v^a, z_l^b) * exp(t) + b))``.

    ``y_ab = +1`` where a and b share their text, so repeated descriptions are not pushed apart.
    """
    z_v, z_l = feats.z_v.float(), feats.z_l.float()
    logits = z_v @ z_l.T * feats.log_temperature.float().exp() + feats.bias.float()  # (B, B)
    y = same_text.float() * 2 - 1
    return -F.logsigmoid(y * logits).sum() / z_v.shape[0]


def alignment_on(model_align: bool | None, align_weight: float) -> bool:
    """Whether a run has alignment heads: the model asks for them and their loss has a weight.

    The one place this is decided (docs/design.md §3): ``model.align=false`` (the ablation's "no
    alignment") and ``loss.align_weight=0`` both mean no heads, so none sits untrained.
    """
    return model_align is not False and align_weight > 0


def multi_stage_alignment_loss(
    stages: list[AlignFeatures], same_text: torch.Tensor
) -> torch.Tensor:
    """Mean of :func:`sigmoid_alignment_loss` over the stages."""
    return torch.stack([sigmoid_alignment_loss(f, same_text) for f in stages]).mean()
