"""Per-image evaluation artefacts: scores per case, bootstrap intervals, best/worst overlays."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from PIL import Image
from scipy import ndimage

from tmc_lightning.inference import overlay
from tmc_lightning.metrics import per_image_scores


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """95th-percentile symmetric surface distance in pixels; NaN when either mask is empty."""
    if not pred.any() or not gt.any():
        return float("nan")
    edge_p = pred & ~ndimage.binary_erosion(pred)
    edge_g = gt & ~ndimage.binary_erosion(gt)
    dist_to_g = ndimage.distance_transform_edt(~edge_g)
    dist_to_p = ndimage.distance_transform_edt(~edge_p)
    return float(np.percentile(np.concatenate([dist_to_g[edge_p], dist_to_p[edge_g]]), 95))


def bootstrap_ci(values: np.ndarray, n: int = 2000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap 95% interval of the mean."""
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(1)
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


@torch.no_grad()
def score_split(module, loader, dataset) -> list[dict[str, Any]]:
    """One row per image: name, text, Dice, IoU, HD95, predicted and true area (pixels)."""
    rows, offset = [], 0
    for batch in loader:
        logits = module(batch["image"], batch["input_ids"], batch["attention_mask"])
        dice, iou = per_image_scores(logits, batch["mask"])
        preds = (logits > 0)[:, 0].numpy()
        gts = (batch["mask"] > 0.5)[:, 0].numpy()
        for j in range(len(preds)):
            rows.append(
                {
                    "index": offset + j,
                    "name": batch["name"][j],
                    "text": batch["text"][j],
                    "dice": float(dice[j]),
                    "iou": float(iou[j]),
                    "hd95": hd95(preds[j], gts[j]),
                    "pred_area": int(preds[j].sum()),
                    "true_area": int(gts[j].sum()),
                    "_pred": preds[j],
                }
            )
        offset += len(preds)
    return rows


class PerImageRecorder(L.Callback):
    """Records each image's Dice and IoU, by name, while ``trainer.validate``/``test`` run.

    It reads the per-image values the module's ``PerImageDiceIoU`` (``metrics[<stage>_image]``)
    computed for the batch, so the scores equal the logged metric and cost no second pass.
    ``rows[stage]`` holds one ``{"name", "dice", "iou"}`` per image, in dataset order.
    """

    def __init__(self) -> None:
        self.rows: dict[str, list[dict[str, Any]]] = {}

    def _start(self, stage: str) -> None:
        self.rows[stage] = []

    def _batch_end(self, pl_module: L.LightningModule, batch: dict[str, Any], stage: str) -> None:
        scores = pl_module.metrics[f"{stage}_image"].last_scores
        if scores is None:
            return
        dice, iou = (s.tolist() for s in scores)
        for name, d, i in zip(batch["name"], dice, iou, strict=True):
            self.rows[stage].append({"name": name, "dice": d, "iou": i})

    def _end(self, trainer: L.Trainer, stage: str) -> None:
        if trainer.world_size == 1 or not (dist.is_available() and dist.is_initialized()):
            return
        parts: list[Any] = [None] * trainer.world_size
        dist.all_gather_object(parts, self.rows[stage])
        self.rows[stage] = merge_ranks(parts)

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self._start("val")

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self._batch_end(pl_module, batch, "val")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "val")

    def on_test_epoch_start(self, trainer, pl_module) -> None:
        self._start("test")

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, *_) -> None:
        self._batch_end(pl_module, batch, "test")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._end(trainer, "test")


def merge_ranks(parts: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per-rank rows back in dataset order, each image once.

    The unshuffled DistributedSampler deals index k*W + r to rank r and pads the last round
    with repeats of the first indices.
    """
    merged: dict[str, dict[str, Any]] = {}
    for k in range(max((len(p) for p in parts), default=0)):
        for part in parts:
            if k < len(part):
                merged.setdefault(part[k]["name"], part[k])
    return list(merged.values())


# Ground-truth lesion coverage (share of the image's pixels) that splits the per-image Dice.
COVERAGE_EDGES = (0.01, 0.05, 0.15)


def dice_by_coverage(
    dice: np.ndarray, coverage: np.ndarray, edges: tuple[float, ...] = COVERAGE_EDGES
) -> list[dict[str, Any]]:
    """Mean per-image Dice by ground-truth lesion size: where a model loses its per-image Dice.

    One entry per bin (``no lesion``, ``< 1%``, ``1-5%``, ... of the image), empty bins left out.
    """
    bounds = [0.0, *edges, np.inf]
    bins = [("no lesion", coverage == 0)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        label = (
            f"< {hi:.0%}" if lo == 0 else (f">= {lo:.0%}" if hi == np.inf else f"{lo:.0%}-{hi:.0%}")
        )
        bins.append((label, (coverage > 0) & (coverage >= lo) & (coverage < hi)))
    return [
        {"coverage": label, "n": int(sel.sum()), "dice": float(dice[sel].mean())}
        for label, sel in bins
        if sel.any()
    ]


def write_scores_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """``name,dice,iou`` per image, written via a temporary file and a rename."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "dice", "iou"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_artifacts(
    rows: list[dict[str, Any]], dataset, out_dir: Path, k: int = 4
) -> dict[str, Any]:
    """per_image.csv, best/worst-K side-by-side overlays (prediction | ground truth), a summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fields = ["name", "text", "dice", "iou", "hd95", "pred_area", "true_area"]
    with (out_dir / "per_image.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    for old in [*out_dir.glob("best[0-9]*_*.png"), *out_dir.glob("worst[0-9]*_*.png")]:
        old.unlink()  # an earlier evaluation's overlays (e.g. with a larger top_k)
    order = sorted(rows, key=lambda r: r["dice"])
    for tag, chosen in (("worst", order[:k]), ("best", order[::-1][:k])):
        for rank, r in enumerate(chosen, start=1):
            gray = dataset.images[r["index"]]
            gt = dataset.masks[r["index"]].astype(bool)
            left = overlay(gray, r["_pred"], f"prediction (Dice {r['dice']:.3f}): {r['text']}")
            right = overlay(gray, gt, "ground truth", color=(40, 200, 40))
            pair = Image.new(
                "RGB", (left.width + right.width + 4, max(left.height, right.height)), "white"
            )
            pair.paste(left, (0, 0))
            pair.paste(right, (left.width + 4, left.height - right.height))
            pair.save(out_dir / f"{tag}{rank}_{Path(r['name']).stem}.png")
    dice = np.array([r["dice"] for r in rows])
    iou = np.array([r["iou"] for r in rows])
    hd = np.array([r["hd95"] for r in rows])
    pixels = np.array([r["_pred"].size for r in rows])
    coverage = np.array([r["true_area"] for r in rows]) / np.maximum(pixels, 1)
    return {
        "dice_by_lesion_size": dice_by_coverage(dice, coverage),
        "n": len(rows),
        "dice": float(dice.mean()),
        "dice_ci95": bootstrap_ci(dice),
        "iou": float(iou.mean()),
        "iou_ci95": bootstrap_ci(iou),
        "hd95_median": float(np.nanmedian(hd)) if np.isfinite(hd).any() else None,
        "hd95_defined_for": int(np.isfinite(hd).sum()),
    }
