"""Statistics over configurations: the paper's numbers beside ours and paired Wilcoxon tests."""

from __future__ import annotations

import csv
import math
from collections import defaultdict
from typing import Any

import numpy as np
from scipy.stats import wilcoxon

from tmc_lightning.metrics import bootstrap_mean_ci
from tmc_lightning.reporting.runs import (
    DATASET_ALIASES,
    PAPER_QATA_ABLATION,
    PAPER_QATA_BASELINES,
    PAPER_TMC,
    Group,
    ReportError,
)


def paper_dice(config: dict[str, Any], paper_dataset: str | None) -> float | None:
    """The paper's QaTa/MosMed/Breast Dice (%) for this configuration, or None if it has none."""
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


def per_image_dice(group: Group, split: str) -> dict[str, float] | None:
    """Dice per image name, averaged over the configuration's runs; None if a run lacks the CSV."""
    values: dict[str, list[float]] = defaultdict(list)
    for r in group.runs:
        path = r.path / f"per_image_{split}.csv"
        if not path.is_file():
            return None
        with path.open() as f:
            for row in csv.DictReader(f):
                values[row["name"]].append(float(row["dice"]))
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


def pick(groups: list[Group], ref: str) -> Group:
    """A configuration by id (C2 or 2), exact label, or a unique piece of its label."""
    ref_id = ref.upper() if ref.upper().startswith("C") else f"C{ref}"
    hits = [g for g in groups if g.id == ref_id or g.label == ref]
    hits = hits or [g for g in groups if ref in g.label]
    if len(hits) != 1:
        listing = "; ".join(f"{g.id}: {g.label}" for g in groups)
        found = "matches several" if hits else "matches none"
        raise ReportError(f"--compare {ref!r} {found} of the configurations ({listing})")
    return hits[0]
