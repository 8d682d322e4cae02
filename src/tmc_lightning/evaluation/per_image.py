"""Per-image evaluation artefacts: scores per case, bootstrap intervals, best/worst overlays."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tmc_lightning.data.imageio import read_image, read_mask
from tmc_lightning.inference.overlay import overlay
from tmc_lightning.losses import task_loss
from tmc_lightning.metrics import (
    GlobalDiceIoU,
    PerImageDiceIoU,
    bootstrap_mean_ci,
    check_resolution,
    upsample_logits,
)
from tmc_lightning.utils import autocast_for


def hd95(pred: np.ndarray, gt: np.ndarray) -> float:
    """95th-percentile symmetric Hausdorff distance in pixels (MONAI's); NaN if either is empty."""
    if not pred.any() or not gt.any():
        return float("nan")
    from monai.metrics import compute_hausdorff_distance  # seconds to import; only here

    p = torch.from_numpy(np.ascontiguousarray(pred))[None, None]
    g = torch.from_numpy(np.ascontiguousarray(gt))[None, None]
    with warnings.catch_warnings():  # MONAI 1.5 warns about its own internal argument
        warnings.simplefilter("ignore", FutureWarning)
        return float(compute_hausdorff_distance(p, g, percentile=95, directed=False)[0, 0])


@torch.no_grad()
def score_split(
    module: torch.nn.Module,
    loader: Any,
    device: torch.device,
    precision: str = "32-true",
    with_hd95: bool = True,
    resolution: str = "model",
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One pass over a split: a row per image and the split's metrics.

    Rows: name, text, Dice, IoU, HD95, predicted and true area (pixels), the predicted mask.
    Metrics: per-image and global Dice/IoU (the training metrics' own classes) and the task
    loss, as training's validation logs them.

    ``resolution`` (:mod:`~tmc_lightning.metrics`): ``model`` scores the logits
    against the masks at the model's input size; ``original`` upsamples each image's logits to
    its mask file's own size (:func:`upsample_logits`, as ``tmc-predict`` does) and scores them
    against that file, image by image (a batch's originals differ in size). Rows, HD95 and the
    metrics are then at the original size; the metrics also keep the model-size Dice/IoU under
    ``model_resolution`` (the same logits, no second pass). The loss is always the training
    loss, at the model's size.
    """
    resolution = check_resolution(resolution)
    samples = getattr(loader.dataset, "samples", None) if resolution == "original" else None
    if resolution == "original" and samples is None:
        raise ValueError("eval_resolution=original needs a loader over a dataset with .samples")
    # One process scores the whole split (training's final scoring does it on rank zero
    # alone under DDP), so the metrics never wait for other processes to sync.
    local = {"sync_on_compute": False}
    per_image, global_ = PerImageDiceIoU(**local).to(device), GlobalDiceIoU(**local).to(device)
    at_model = (PerImageDiceIoU(**local).to(device), GlobalDiceIoU(**local).to(device))
    rows, losses = [], []
    autocast = autocast_for(device, precision)
    for batch in loader:
        image, mask = batch["image"].to(device), batch["mask"].to(device)
        with autocast:
            logits = module(
                image, batch["input_ids"].to(device), batch["attention_mask"].to(device)
            )
        logits = logits.float()
        losses.append((task_loss(logits, mask, module.hparams.dice_weight).item(), len(image)))
        start = len(rows)
        if samples is None:
            scored = [(0, logits, mask)]  # the whole batch at the model's size
        else:
            for m in at_model:
                m.update(logits, mask)
            scored = [
                (j, upsample_logits(logits[j : j + 1], gt.shape[-2:]), gt)
                for j, gt in enumerate(original_masks(samples, batch["name"], start, device))
            ]
        for offset, lg, gt in scored:
            per_image.update(lg, gt)
            global_.update(lg, gt)
            dice, iou = per_image.last_scores
            preds = (lg > 0)[:, 0].cpu().numpy()
            gts = (gt > 0.5)[:, 0].cpu().numpy()
            for j in range(len(preds)):
                k = offset + j  # the item's place in the batch
                rows.append(
                    {
                        "index": start + k,
                        "name": batch["name"][k],
                        "text": batch["text"][k],
                        "dice": float(dice[j]),
                        "iou": float(iou[j]),
                        "hd95": hd95(preds[j], gts[j]) if with_hd95 else float("nan"),
                        "pred_area": int(preds[j].sum()),
                        "tp": int((preds[j] & gts[j]).sum()),
                        "true_area": int(gts[j].sum()),
                        "_pred": preds[j],
                    }
                )
    metrics: dict[str, Any] = {
        k: float(v) for k, v in {**per_image.compute(), **global_.compute()}.items()
    }
    metrics["loss"] = sum(loss * n for loss, n in losses) / max(sum(n for _, n in losses), 1)
    metrics["resolution"] = resolution
    if samples is not None:
        metrics["model_resolution"] = {
            k: float(v) for m in at_model for k, v in m.compute().items()
        }
    return rows, metrics


def original_masks(
    samples: list[Any], names: list[str], start: int, device: torch.device
) -> list[torch.Tensor]:
    """The masks of a batch's images (items ``start``, ``start + 1``, ...) read from their files
    at their own size, each ``(1, 1, H, W)`` in {0, 1}.

    The decoded cache holds the masks resized to the model's size only, so the originals are
    read here, one batch at a time (no split is held in memory at full size).
    """
    out = []
    for j, name in enumerate(names):
        sample = samples[start + j]
        if sample.name != name:  # the loader must serve the split in order
            raise ValueError(
                f"eval_resolution=original: item {start + j} is {name!r} but the split lists "
                f"{sample.name!r} there; score with an unshuffled, unsharded loader"
            )
        gt = torch.from_numpy(read_mask(sample.mask))
        out.append(gt[None, None].to(device=device, dtype=torch.float32))
    return out


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
            if r["_pred"].shape != gt.shape:  # scored at the original size: draw it there
                sample = dataset.samples[r["index"]]
                gray, gt = read_image(sample.image), read_mask(sample.mask).astype(bool)
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
        "dice_ci95": bootstrap_mean_ci(dice),
        "iou": float(iou.mean()),
        "iou_ci95": bootstrap_mean_ci(iou),
        "hd95_median": float(np.nanmedian(hd)) if np.isfinite(hd).any() else None,
        "hd95_defined_for": int(np.isfinite(hd).sum()),
    }
