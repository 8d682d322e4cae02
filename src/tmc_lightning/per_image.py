"""Per-image evaluation artefacts: scores per case, bootstrap intervals, best/worst overlays."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch
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
    return {
        "n": len(rows),
        "dice": float(dice.mean()),
        "dice_ci95": bootstrap_ci(dice),
        "iou": float(iou.mean()),
        "iou_ci95": bootstrap_ci(iou),
        "hd95_median": float(np.nanmedian(hd)) if np.isfinite(hd).any() else None,
        "hd95_defined_for": int(np.isfinite(hd).sum()),
    }
