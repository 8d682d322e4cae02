"""Statistics over configurations: the paper's numbers beside ours and paired Wilcoxon tests."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from tmc_lightning.metrics import bootstrap_indices, bootstrap_mean_ci
from tmc_lightning.reporting.runs import (
    DATASET_ALIASES,
    PAPER_QATA_ABLATION,
    PAPER_QATA_BASELINES,
    PAPER_TMC,
    Group,
    ReportError,
)


def paper_dice(config: dict[str, Any], paper_dataset: str | None) -> float | None:
    """The paper's QaTa/MosMed/Breast Dice (%) for this configuration, or None if it has none.

    The paper trained on every mask: a run that hid some (``dataset.label_fraction`` < 1) has no
    paper figure beside it.
    """
    if float(config.get("dataset.label_fraction") or 1.0) < 1.0:
        return None
    name = str(paper_dataset or config.get("dataset.name", "")).lower()
    dataset = next((v for k, v in DATASET_ALIASES.items() if name.startswith(k)), None)
    model = str(config.get("model.name", "")).lower()
    if model == "tmc":
        if config.get("text_encoder.pretrained") is False:
            return None  # the paper's rows all use a pretrained text encoder
        mcm = bool(config.get("model.mcm", True))
        align = (
            bool(config.get("model.align", True))
            and float(config.get("loss.align_weight") or 0) > 0
        )
        if mcm and align:
            return PAPER_TMC.get(dataset)
        return PAPER_QATA_ABLATION.get((mcm, align)) if dataset == "qata" else None
    return PAPER_QATA_BASELINES.get(model) if dataset == "qata" else None


def per_run_dice(group: Group, split: str) -> list[tuple[Any, dict[str, float]]] | None:
    """Each run's seed and Dice per image name; None if a run lacks the CSV."""
    out = []
    for r in group.runs:
        path = r.path / f"per_image_{split}.csv"
        if not path.is_file():
            return None
        with path.open() as f:
            out.append(
                (
                    r.config.get("seed"),
                    {row["name"]: float(row["dice"]) for row in csv.DictReader(f)},
                )
            )
    return out


def per_image_dice(group: Group, split: str) -> dict[str, float] | None:
    """Dice per image name, averaged over the configuration's runs; None if a run lacks the CSV."""
    runs = per_run_dice(group, split)
    if runs is None:
        return None
    values: dict[str, list[float]] = defaultdict(list)
    for _, dice in runs:
        for name, d in dice.items():
            values[name].append(d)
    return {name: float(np.mean(v)) for name, v in values.items()}


def paired_test(a: Group, b: Group) -> dict[str, Any]:
    """Wilcoxon signed-rank test on per-image Dice of A vs B (test split, else val)."""
    for split in ("test", "val"):
        da, db = per_image_dice(a, split), per_image_dice(b, split)
        if da is not None and db is not None:
            break
    else:
        return {"a": a, "b": b, "error": "per_image_<split>.csv missing in some runs (older runs?)"}
    names = sorted(set(da) & set(db))
    if not names:
        return {"a": a, "b": b, "error": f"no image names in common on {split}"}
    x, y = np.array([da[n] for n in names]), np.array([db[n] for n in names])
    diff = x - y
    out = {"a": a, "b": b, "split": split, "n": len(names), "median_diff": float(np.median(diff))}
    out["mean_diff"] = float(diff.mean())
    out["mean_diff_ci"] = bootstrap_mean_ci(diff)
    if np.all(diff == 0):
        out.update(statistic=math.nan, p=1.0, note="identical per-image Dice")
    else:
        res = wilcoxon(x, y)
        out.update(statistic=float(res.statistic), p=float(res.pvalue))
    return out


def pick(groups: list[Group], ref: str, flag: str = "--compare") -> Group:
    """A configuration by id (C2 or 2), exact label, or a unique piece of its label."""
    ref_id = ref.upper() if ref.upper().startswith("C") else f"C{ref}"
    hits = [g for g in groups if g.id == ref_id or g.label == ref]
    hits = hits or [g for g in groups if ref in g.label]
    if len(hits) != 1:
        listing = "; ".join(f"{g.id}: {g.label}" for g in groups)
        found = "matches several" if hits else "matches none"
        raise ReportError(f"{flag} {ref!r} {found} of the configurations ({listing})")
    return hits[0]


def gap_closed(
    groups: list[Group], low: Group, high: Group, contrasts: list[tuple[Group, Group]] = ()
) -> dict[str, Any]:
    """How much of the Dice gap between a floor and a ceiling configuration each other one closes.

    E.g. 25% of the masks (floor) against 100% (ceiling), and the semi-supervised methods
    between. Per-image Dice is averaged over each configuration's seeds, on the images every
    configuration has (test split where all have it, else val). A configuration's share is
    ``mean(X - floor) / mean(ceiling - floor)``; a contrast (A, B) is A's share minus B's (what
    A adds over B, e.g. the text's loss). The 95% CIs resample images with
    :func:`~tmc_lightning.metrics.bootstrap_indices`, the same draws for every ratio.
    """
    ends = (low, high)
    for split in ("test", "val"):
        dice = {g.id: per_image_dice(g, split) for g in groups}
        if all(dice[g.id] is not None for g in ends):
            break
    else:
        return {"error": f"per_image_<split>.csv missing in runs of {low.label} or {high.label}"}
    skipped = [g for g in groups if dice[g.id] is None]  # older runs without the CSV
    groups = [g for g in groups if dice[g.id] is not None]
    names = sorted(set.intersection(*(set(dice[g.id]) for g in groups)))
    if len(names) < 2:
        return {"error": f"fewer than 2 images in common on {split}"}
    x = {g.id: np.array([dice[g.id][n] for n in names]) for g in groups}
    draws = bootstrap_indices(len(names))
    gap = x[high.id] - x[low.id]
    gap_b = gap[draws].mean(axis=1)
    gap_ci = tuple(np.percentile(gap_b, [2.5, 97.5]).tolist())
    if gap_ci[0] <= 0:
        return {
            "error": f"{high.label} is not clearly above {low.label} (95% CI of the gap "
            f"{100 * gap_ci[0]:+.2f} to {100 * gap_ci[1]:+.2f} Dice points): no gap to share"
        }

    def share(diff: np.ndarray) -> tuple[float, tuple[float, float]]:
        boot = diff[draws].mean(axis=1) / gap_b
        return float(diff.mean() / gap.mean()), tuple(np.percentile(boot, [2.5, 97.5]).tolist())

    by_seed = {g.id: dict(per_run_dice(g, split)) for g in groups}
    rows = []
    for g in groups:
        if g.id not in (low.id, high.id):
            value, ci = share(x[g.id] - x[low.id])
            seeds = seed_shares(by_seed[g.id], by_seed[low.id], by_seed[high.id])
            rows.append(
                {
                    "group": g,
                    "share": value,
                    "ci": ci,
                    "dice": float(x[g.id].mean()),
                    "seeds": seeds,
                }
            )
    pairs = []
    for a, b in contrasts:
        if a.id in x and b.id in x:
            value, ci = share(x[a.id] - x[b.id])
            pairs.append({"a": a, "b": b, "share": value, "ci": ci})
    return {
        "split": split,
        "n": len(names),
        "low": low,
        "high": high,
        "gap": float(gap.mean()),
        "gap_ci": gap_ci,
        "rows": rows,
        "contrasts": pairs,
        "skipped": skipped,
    }


def seed_shares(x: dict, low: dict, high: dict) -> dict[Any, float]:
    """The share closed seed by seed (runs paired by their seed), where all three have it."""
    out = {}
    for seed in sorted(set(x) & set(low) & set(high), key=str):
        names = sorted(set(x[seed]) & set(low[seed]) & set(high[seed]))
        gap = np.mean([high[seed][n] - low[seed][n] for n in names]) if names else 0.0
        if gap > 0:
            out[seed] = float(np.mean([x[seed][n] - low[seed][n] for n in names]) / gap)
    return out
