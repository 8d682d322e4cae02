"""Run folders: find, load and group ``tmc-train`` runs into configurations."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import OmegaConf

from tmc_lightning.errors import MOVED_KEYS

LABEL_KEY = "label"  # a run's own name for its configuration (config key ``label``)
DEFAULT_KEYS = ("model.name", "model.mcm", "model.align", "loss.align_weight", "dataset.name")
SPLITS = ("val", "test")
METRICS = ("dice", "iou", "dice_global", "iou_global")
METRIC_TITLES = {
    "dice": "Dice",
    "iou": "IoU",
    "dice_global": "Dice (global)",
    "iou_global": "IoU (global)",
}
# The precision a run actually trained in (metrics.json; ``trainer.precision`` may say only
# "auto"), added to its config so that --group-by can split by it and mixed rows are noted.
PRECISION_KEY = "trainer.precision_used"
# Keys that may differ between the seeds of one configuration without making it two.
RUN_SPECIFIC = ("seed", "ckpt_path", "dataset.root", "dataset.cache_dir", "logger.")

# The paper's test Dice (%, per-image protocol), docs/design.md §1.
PAPER_TMC = {"qata": 84.77, "mosmed": 78.50, "breast": 88.73}
# (mcm, align) -> Dice; "neither" repeats LViT's number (docs/design.md §1)
PAPER_QATA_ABLATION = {(True, False): 84.11, (False, True): 83.96, (False, False): 83.71}
PAPER_QATA_BASELINES = {
    "unet": 79.94,
    "unetpp": 76.96,
    "unet++": 76.96,
    "attunet": 77.27,
    "attention_unet": 77.27,
    "nnunet": 77.16,
    "transunet": 76.98,
    "uctransnet": 79.26,
    "lvit": 83.71,  # also the paper's "neither module" ablation row (docs/design.md §1)
}
DATASET_ALIASES = {"qata": "qata", "mosmed": "mosmed", "breast": "breast", "duke": "breast"}


class ReportError(ValueError):
    """The input folder holds no usable runs, or the options name something that is not there."""


@dataclass
class Run:
    path: Path
    config: dict[str, Any]  # flattened: "model.name" -> "tmc"
    metrics: dict[str, Any]


@dataclass
class Group:
    """One configuration: the runs (seeds) that share the grouping keys' values."""

    values: tuple
    runs: list[Run]
    id: str = ""
    label: str = ""
    stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # mean, std, n
    paper: float | None = None

    def score(self, split: str, metric: str = "dice") -> float:
        return self.stats.get(f"{split}_{metric}", (math.nan, math.nan, 0))[0]


# ---------------------------------------------------------------- finding and grouping runs


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def find_runs(root: Path, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """Run folders under ``root``: (finished ones, ones with config.yaml but no metrics.json)."""
    done, unfinished = [], []
    for cfg in sorted(root.rglob("config.yaml")):
        folder = cfg.parent
        rel = folder.relative_to(root).parts
        if any(p.startswith(".") or p == "wandb" for p in rel) or (skip and skip in folder.parents):
            continue  # .hydra/, temporary folders, wandb's own config.yaml, an earlier report
        if (folder / "metrics.json").is_file():
            done.append(folder)
        elif (folder / "tokenizer.json").is_file() or (folder / "checkpoints").is_dir():
            unfinished.append(folder)
    return done, unfinished


def load_run(folder: Path) -> Run:
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        config = _flatten(OmegaConf.to_container(OmegaConf.load(folder / "config.yaml")))
    except Exception as err:  # noqa: BLE001 - any parse failure is the same problem for the user
        raise ReportError(f"cannot read run folder {folder}: {err}") from None
    for key in MOVED_KEYS:  # saved before the recipe left dataset/: optim.lr and loss.* hold it
        config.pop(f"dataset.{key}", None)
    used = metrics.get("precision")
    if isinstance(used, dict) and used.get("used") is not None:
        config[PRECISION_KEY] = str(used["used"])
    return Run(folder, config, metrics)


def load_runs(root: Path, skip: Path | None = None, skip_incomplete: bool = False) -> list[Run]:
    if not root.is_dir():
        raise ReportError(
            f"{root} is not a folder; pass a multirun/<group>/<date> or outputs/ folder"
        )
    done, unfinished = find_runs(root, skip)
    runs = [load_run(p) for p in done]
    unscored = [r.path for r in runs if not any(s in r.metrics for s in SPLITS)]
    bad = unfinished + unscored
    if bad and not skip_incomplete:
        names = "\n  ".join(str(p) for p in bad[:10]) + ("\n  ..." if len(bad) > 10 else "")
        raise ReportError(
            f"{len(bad)} run folder(s) under {root} have no final val/test scores in "
            f"metrics.json (unfinished, crashed, fast_dev_run or run_test=false):\n  {names}\n"
            "finish them (python -m tmc_lightning.train ckpt_path=<run>/checkpoints/last.ckpt), "
            "remove them, or pass --skip-incomplete"
        )
    runs = [r for r in runs if r.path not in unscored]
    if not runs:
        raise ReportError(
            f"no finished run folders under {root}: a run folder holds config.yaml and "
            "metrics.json as written by tmc-train; pass a multirun/<group>/<date> or outputs/ folder"
        )
    return runs


def _sort_key(value: Any) -> tuple:
    if value is None:
        return (2, "")
    if isinstance(value, bool | int | float):
        return (0, float(value))
    return (1, str(value))


def show_value(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _short(key: str) -> str:
    parts = key.split(".")
    return parts[-2] if parts[-1] == "name" and len(parts) > 1 else parts[-1]


def _run_order(run: Run) -> tuple:
    return _sort_key(run.config.get("seed")), str(run.path)


def group_runs(runs: list[Run], keys: list[str]) -> tuple[list[Group], list[str]]:
    """Configurations sorted by their key values, and the keys whose values vary (row names)."""
    keys = [k for k in keys if k != "seed"]
    missing = [k for k in keys if all(k not in r.config for r in runs)]
    if missing:
        raise ReportError(
            f"--group-by {' '.join(missing)}: no run's config.yaml has this key "
            f"(examples of keys: {', '.join(sorted(runs[0].config)[:8])})"
        )
    by_values: dict[tuple, list[Run]] = defaultdict(list)
    for r in runs:
        by_values[tuple(r.config.get(k) for k in keys)].append(r)
    varying = [k for i, k in enumerate(keys) if len({show_value(v[i]) for v in by_values}) > 1]
    shorts = [_short(k) for k in varying]
    names = [s if shorts.count(s) == 1 else k for s, k in zip(shorts, varying, strict=True)]
    groups = []
    ordered = sorted(by_values, key=lambda vs: tuple(_sort_key(v) for v in vs))
    for n, values in enumerate(ordered, start=1):
        g = Group(values, sorted(by_values[values], key=_run_order), id=f"C{n}")
        shown = dict(zip(keys, values, strict=True))
        g.label = ", ".join(
            show_value(shown[k]) if k == LABEL_KEY else f"{nm}={show_value(shown[k])}"
            for nm, k in zip(names, varying, strict=True)
        )
        named = shown.get(LABEL_KEY) or g.runs[0].config.get(LABEL_KEY)
        g.label = g.label or show_value(named or shown.get("model.name", "all runs"))
        groups.append(g)
    return groups, varying


def default_keys(runs: list[Run]) -> list[str]:
    """By label where every run names its configuration, else by the usual ablation keys."""
    if all(r.config.get(LABEL_KEY) not in (None, "") for r in runs):
        return [LABEL_KEY]
    return [k for k in DEFAULT_KEYS if any(k in r.config for r in runs)]


def mixed_keys(group: Group) -> list[str]:
    """Config keys (other than seeds and paths) that differ between a configuration's runs.

    A key that holds each run's own seed (e.g. ``dataset.seed: ${seed}``) follows the seed.
    """
    keys = set().union(*(r.config for r in group.runs))
    return sorted(
        k
        for k in keys
        if not k.startswith(RUN_SPECIFIC)
        and len({repr(r.config.get(k)) for r in group.runs}) > 1
        and not all(r.config.get(k) == r.config.get("seed") for r in group.runs)
    )


# ---------------------------------------------------------------- numbers


def summarise(group: Group) -> None:
    """Mean and sample std (ddof=1; NaN for one run) over runs, in percent."""
    for split in SPLITS:
        for metric in METRICS:
            vals = [
                r.metrics[split][metric] for r in group.runs if metric in r.metrics.get(split, {})
            ]
            if vals:
                a = 100 * np.asarray(vals, dtype=float)
                std = float(a.std(ddof=1)) if len(a) > 1 else math.nan
                group.stats[f"{split}_{metric}"] = (float(a.mean()), std, len(a))
