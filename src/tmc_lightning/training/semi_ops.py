"""The pieces of semi-supervised training, each testable alone: the EMA teacher update, the EPI
average, the LV loss and its reference bank, and the strong view that moves image and target.
The callback that runs them is :mod:`tmc_lightning.training.semi`.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, decay: float) -> None:
    """``teacher <- decay x teacher + (1 - decay) x student`` (parameters); buffers copied."""
    for t, s in zip(teacher.parameters(), student.parameters(), strict=True):
        t.mul_(decay).add_(s.detach(), alpha=1.0 - decay)
    for t, s in zip(teacher.buffers(), student.buffers(), strict=True):
        t.copy_(s)


def epi_update(
    previous: torch.Tensor | None, prediction: torch.Tensor, beta: float
) -> torch.Tensor:
    """``beta x previous + (1 - beta) x prediction``; the first (``previous`` None) is the prediction."""
    if previous is None:
        return prediction.clone()
    return beta * previous + (1.0 - beta) * prediction


def lv_loss(prob: torch.Tensor, reference: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per image ``1 - cos(prob, reference)`` over pixels, averaged over the batch.

    0 when the prediction is the reference (or any positive multiple of it); up to 1 as they
    stop overlapping.
    """
    p, r = prob.flatten(1).float(), reference.flatten(1).float()
    cos = (p * r).sum(1) / (p.norm(dim=1) * r.norm(dim=1)).clamp_min(eps)
    return (1.0 - cos).mean()


def rampup(step: int, steps: int) -> float:
    """The ramp-up factor ``exp(-5 (1 - t)^2)``, t = step / steps clipped to 1 (1 when steps=0)."""
    if steps <= 0:
        return 1.0
    t = min(max(step, 0) / steps, 1.0)
    return math.exp(-5.0 * (1.0 - t) ** 2)


def text_keys(ids: torch.Tensor, attn: torch.Tensor) -> list[tuple[int, ...]]:
    return [tuple(i[a > 0].tolist()) for i, a in zip(ids, attn, strict=True)]


def build_references(
    ids: torch.Tensor,
    attn: torch.Tensor,
    masks: np.ndarray,
    labelled: np.ndarray,
    top_k: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The LV loss's reference masks, from the labelled masks only.

    ``ids``/``attn`` (N, T): every training text's tokens; ``masks`` (N, H, W): the split's
    masks, of which only rows with ``labelled`` True are read. The bank holds one mean mask per
    distinct labelled text; an unlabelled image's reference is the mean of the bank masks of
    the ``top_k`` texts most similar to its own (cosine of TF-IDF token counts, IDF over the
    bank's texts; ties go to the earlier text). Returns ``(refs, ref_of)``: (R, H, W) float32
    references and, for each unlabelled image in index order, its row in ``refs``.
    """
    keys = text_keys(ids, attn)
    lab = np.flatnonzero(labelled)
    unl = np.flatnonzero(~labelled)
    bank_keys: dict[tuple[int, ...], list[int]] = {}
    for i in lab:
        bank_keys.setdefault(keys[i], []).append(int(i))
    bank = list(bank_keys)
    h, w = masks.shape[1:]
    means = torch.zeros(len(bank), h, w)
    for b, key in enumerate(bank):
        rows = bank_keys[key]
        means[b] = torch.from_numpy((np.asarray(masks[rows]) > 0).astype(np.float32)).mean(0)
    queries: dict[tuple[int, ...], int] = {}
    ref_of = torch.tensor(
        [queries.setdefault(keys[i], len(queries)) for i in unl], dtype=torch.long
    )
    vocab = int(ids.max()) + 1

    def counts(key_list: list[tuple[int, ...]]) -> torch.Tensor:
        c = torch.zeros(len(key_list), vocab)
        for r, key in enumerate(key_list):
            c[r].index_add_(0, torch.tensor(key, dtype=torch.long), torch.ones(len(key)))
        return c

    cb, cq = counts(bank), counts(list(queries))
    df = (cb > 0).sum(0).float()
    idf = torch.log((1 + len(bank)) / (1 + df)) + 1
    eb, eq = F.normalize(cb * idf, dim=1), F.normalize(cq * idf, dim=1)
    sim = eq @ eb.T  # (queries, bank)
    k = min(top_k, len(bank))
    best = torch.argsort(-sim, dim=1, stable=True)[:, :k]
    refs = means[best].mean(1)
    return refs, ref_of


def random_affine(n: int, strength: float, generator: torch.Generator) -> torch.Tensor:
    """(n, 2, 3) affine_grid matrices: rotation +-10 deg, scale +-10%, shift +-5% x strength."""

    def uniform(scale: float) -> torch.Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * scale

    angle = uniform(math.radians(10 * strength))
    scale = 1 + uniform(0.1 * strength)
    tx, ty = uniform(0.1 * strength), uniform(0.1 * strength)  # +-5% of the side in [-1, 1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    return torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1).float()


def warp(x: torch.Tensor, theta: torch.Tensor, fill: float = 0.0) -> torch.Tensor:
    """``x`` (N, C, H, W) resampled through ``theta`` (bilinear), ``fill`` outside the image."""
    grid = F.affine_grid(theta.to(x.device, x.dtype), list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out + fill


def strong_view(
    image: torch.Tensor, strength: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The student's view of a batch: ``(image, theta, valid)``.

    The image warped by a random affine (black outside), then brightness/contrast and noise;
    ``theta`` moves any target the same way; ``valid`` (N, 1, H, W) marks the pixels that came
    from inside the image.
    """
    n = image.shape[0]
    theta = random_affine(n, strength, generator)
    x = warp(image.float(), theta, fill=-1.0)  # -1: black, as the supervised augmentation pads
    s = 0.15 * strength
    contrast = 1 + (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * s
    bright = (torch.rand(n, 1, 1, 1, generator=generator) * 2 - 1) * 2 * s
    std = torch.rand(n, 1, 1, 1, generator=generator) * 0.06 * strength
    noise = torch.randn(n, 1, *image.shape[2:], generator=generator) * std
    dev = image.device
    x = (x * contrast.to(dev) + bright.to(dev) + noise.to(dev)).clamp(-1, 1).to(image.dtype)
    ones = torch.ones(n, 1, *image.shape[2:], device=dev)
    valid = warp(ones, theta) > 0.999
    return x, theta, valid


def masked_task_loss(
    logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, dice_weight: float
) -> torch.Tensor:
    """BCE against a soft ``target`` on ``valid`` pixels, plus ``dice_weight`` x soft Dice."""
    v = valid.float()
    bce = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
    loss = (bce * v).sum() / v.sum().clamp_min(1)
    if dice_weight > 0:
        p, t = torch.sigmoid(logits.float()) * v, target.float() * v
        inter = (p * t).flatten(1).sum(1)
        dice = (2 * inter + 1) / (p.flatten(1).sum(1) + t.flatten(1).sum(1) + 1)
        loss = loss + dice_weight * (1 - dice).mean()
    return loss


def take(batch: dict[str, Any], keep: torch.Tensor) -> dict[str, Any]:
    """The items of ``batch`` where ``keep`` (bool, one per item) is True."""
    rows = keep.nonzero().flatten().tolist()
    out = {}
    for k, v in batch.items():
        out[k] = v[keep.to(v.device)] if torch.is_tensor(v) else [v[i] for i in rows]
    return out


# -- the callback that trains it ----------------------------------------------------------------
