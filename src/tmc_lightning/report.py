"""Aggregate finished training runs into tables, plots and a paired test: ``tmc-report DIR``.

A run folder is one that ``tmc-train`` wrote: ``config.yaml`` and ``metrics.json`` (plus
``logs/metrics.csv`` and ``per_image_<split>.csv``). Runs are grouped into configurations by
config keys (seeds never group); each configuration gets mean ± sample std over its runs of
Dice and IoU under both protocols of spec section 4, next to the paper's number where known.
Everything lands in ``--out`` (default ``DIR/report``) at once, or not at all.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from omegaconf import OmegaConf
from scipy.stats import wilcoxon

DEFAULT_KEYS = ("model.name", "model.mcm", "model.align", "loss.align_weight", "dataset.name")
SPLITS = ("val", "test")
METRICS = ("dice", "iou", "dice_global", "iou_global")
METRIC_TITLES = {
    "dice": "Dice",
    "iou": "IoU",
    "dice_global": "Dice (global)",
    "iou_global": "IoU (global)",
}
# Keys that may differ between the seeds of one configuration without making it two.
RUN_SPECIFIC = ("seed", "ckpt_path", "dataset.root", "dataset.cache_dir", "logger.")

# The paper's test Dice (%, per-image protocol), spec section 1.
PAPER_TMC = {"qata": 84.77, "mosmed": 78.50, "breast": 88.73}
PAPER_QATA_ABLATION = {(True, False): 84.11, (False, True): 83.96}  # (mcm, align) -> Dice
PAPER_QATA_BASELINES = {
    "unet": 79.94,
    "unetpp": 76.96,
    "unet++": 76.96,
    "attunet": 77.27,
    "attention_unet": 77.27,
    "nnunet": 77.16,
    "transunet": 76.98,
    "uctransnet": 79.26,
    "lvit": 83.71,  # also the paper's "neither module" ablation row (spec section 2)
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


def _show(value: Any) -> str:
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
    varying = [k for i, k in enumerate(keys) if len({_show(v[i]) for v in by_values}) > 1]
    shorts = [_short(k) for k in varying]
    names = [s if shorts.count(s) == 1 else k for s, k in zip(shorts, varying, strict=True)]
    groups = []
    ordered = sorted(by_values, key=lambda vs: tuple(_sort_key(v) for v in vs))
    for n, values in enumerate(ordered, start=1):
        g = Group(values, sorted(by_values[values], key=_run_order), id=f"C{n}")
        shown = dict(zip(keys, values, strict=True))
        g.label = ", ".join(f"{nm}={_show(shown[k])}" for nm, k in zip(names, varying, strict=True))
        g.label = g.label or _show(shown.get("model.name", "all runs"))
        groups.append(g)
    return groups, varying


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


def paper_dice(config: dict[str, Any], paper_dataset: str | None) -> float | None:
    """The paper's QaTa/MosMed/Breast Dice (%) for this configuration, or None if it has none."""
    name = str(paper_dataset or config.get("dataset.name", "")).lower()
    dataset = next((v for k, v in DATASET_ALIASES.items() if name.startswith(k)), None)
    model = str(config.get("model.name", "")).lower()
    if model == "tmc":
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


# ---------------------------------------------------------------- tables


def _cell(stat: tuple[float, float, int] | None) -> str:
    if stat is None:
        return "—"
    mean, std, _ = stat
    return f"{mean:.2f}" if math.isnan(std) else f"{mean:.2f} ± {std:.2f}"


def _delta(g: Group) -> float | None:
    test = g.stats.get("test_dice")
    return None if g.paper is None or test is None else test[0] - g.paper


def table_rows(groups: list[Group]) -> tuple[list[str], list[list[str]]]:
    header = ["#", "configuration", "n"]
    header += [f"{s} {METRIC_TITLES[m]}" for s in SPLITS for m in METRICS]
    header += ["paper Dice", "Δ Dice (test − paper)"]
    rows = []
    for g in groups:
        row = [g.id, g.label, str(len(g.runs))]
        row += [_cell(g.stats.get(f"{s}_{m}")) for s in SPLITS for m in METRICS]
        d = _delta(g)
        row += [f"{g.paper:.2f}" if g.paper is not None else "—", "—" if d is None else f"{d:+.2f}"]
        rows.append(row)
    return header, rows


def write_csv(groups: list[Group], keys: list[str], path: Path) -> None:
    fields = ["id", "label", *keys, "n"]
    fields += [f"{s}_{m}_{x}" for s in SPLITS for m in METRICS for x in ("mean", "std")]
    fields += ["paper_dice", "delta_dice"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(fields)
        for g in groups:
            cfg = g.runs[0].config
            row: list[Any] = [g.id, g.label, *(_show(cfg.get(k)) for k in keys), len(g.runs)]
            for s in SPLITS:
                for m in METRICS:
                    mean, std, _ = g.stats.get(f"{s}_{m}", (math.nan, math.nan, 0))
                    row += ["" if math.isnan(mean) else mean, "" if math.isnan(std) else std]
            d = _delta(g)
            row += ["" if g.paper is None else g.paper, "" if d is None else d]
            w.writerow(row)


TEX_ESCAPES = str.maketrans(
    {c: "\\" + c for c in "_&%#$"}
    | {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "—": "--", "−": "-", "±": r"$\pm$"}
)


def _tex(text: str) -> str:
    return text.translate(TEX_ESCAPES)


def write_tex(groups: list[Group], path: Path) -> None:
    _, rows = table_rows(groups)
    sub = " & ".join(["Dice", "IoU", r"Dice\textsubscript{g}", r"IoU\textsubscript{g}"] * 2)
    lines = [
        r"% Needs \usepackage{booktabs}. Values in %, mean $\pm$ sample std over seeds.",
        r"\begin{table}[t]",
        r"\centering",
        r"\small",
        r"\begin{tabular}{ll" + "r" * 11 + "}",
        r"\toprule",
        r" & & & \multicolumn{4}{c}{Validation} & \multicolumn{4}{c}{Test} & & \\",
        r"\cmidrule(lr){4-7} \cmidrule(lr){8-11}",
        rf"\# & Configuration & $n$ & {sub} & Paper & $\Delta$ \\",
        r"\midrule",
    ]
    lines += [" & ".join(_tex(c) for c in row) + r" \\" for row in rows]
    lines += [
        r"\bottomrule",
        r"\end{tabular}",
        r"\caption{Dice and IoU (\%) per configuration: per-image mean and global "
        r"(\textsubscript{g}) protocols; Paper: the paper's test Dice; $\Delta$: test Dice "
        r"minus Paper.}",
        r"\label{tab:tmc-report}",
        r"\end{table}",
    ]
    path.write_text("\n".join(lines) + "\n")


def write_markdown(
    root: Path, groups, varying, constants, test, notes, plots, wandb_dir, path: Path
) -> None:
    header, rows = table_rows(groups)
    n_runs = sum(len(g.runs) for g in groups)
    out = [f"# Report: {root}", ""]
    out.append(
        f"{n_runs} runs in {len(groups)} configurations (rows named by: {', '.join(varying) or 'none varies'})."
    )
    if constants:
        out.append(
            "Same in every run: "
            + ", ".join(f"`{k}={_show(v)}`" for k, v in constants.items())
            + "."
        )
    out += [
        "",
        "Values in %: mean ± sample std (ddof=1) over runs (seeds). Per-image: Dice/IoU per image,"
        " averaged (the paper's protocol); global: tp/fp/fn summed over the split. Paper: the "
        "paper's test Dice for this row where it has one; Δ = test Dice − paper.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(header) - 2)) + "|",
    ]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    out += ["", "## Paired test (Wilcoxon signed-rank on per-image Dice)", ""]
    if test is None:
        out.append("Only one configuration: nothing to compare.")
    elif "error" in test:
        out.append(f"{test['a'].id} vs {test['b'].id}: not run ({test['error']}).")
    else:
        a, b = test["a"], test["b"]
        out += [
            f"A = {a.id} ({a.label}), B = {b.id} ({b.label}); {test['split']} split, per-image Dice "
            "averaged over each configuration's seeds, paired by image name.",
            "",
            "| n images | median Dice A − B | mean Dice A − B | statistic | p-value |",
            "|---:|---:|---:|---:|---:|",
            f"| {test['n']} | {100 * test['median_diff']:+.3f} | {100 * test['mean_diff']:+.3f} | "
            f"{test['statistic']:.1f} | {test['p']:.4g} |",
        ]
        if test.get("note"):
            out += ["", test["note"] + "."]
    out += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    out += [
        "",
        "## Runs",
        "",
        "| config | seed | val Dice | test Dice | folder |",
        "|---|---:|---:|---:|---|",
    ]
    for g in groups:
        for r in g.runs:
            v, t = (r.metrics.get(s, {}).get("dice") for s in SPLITS)
            cells = ["—" if x is None else f"{100 * x:.2f}" for x in (v, t)]
            out.append(
                f"| {g.id} | {r.config.get('seed', '—')} | {cells[0]} | {cells[1]} | {_rel(r.path, root)} |"
            )
    if notes:
        out += ["", "## Notes", ""] + [f"- {n}" for n in notes]
    if wandb_dir:
        out += ["", f"W&B offline run: `{wandb_dir}` (upload with `wandb sync <that folder>`)."]
    path.write_text("\n".join(out) + "\n")


def _rel(path: Path, root: Path) -> str:
    return str(path.relative_to(root)) if path != root else "."


# ---------------------------------------------------------------- plots


def plot_bars(groups: list[Group], path: Path) -> None:
    fig = Figure(figsize=(max(6, 1.3 * len(groups) + 3), 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    x = np.arange(len(groups))
    stats = [g.stats[k] for g in groups for k in g.stats if k.endswith(("_dice", "_dice_global"))]
    lows = [mean - (0 if math.isnan(std) else std) for mean, std, _ in stats]
    lows += [g.paper for g in groups if g.paper is not None]
    bottom = max(0.0, 10 * math.floor((min(lows, default=5) - 5) / 10))  # zoom on the differences
    for ax, metric, title in zip(
        axes, ("dice", "dice_global"), ("per-image Dice", "global Dice"), strict=True
    ):
        for k, (split, color) in enumerate((("val", "tab:blue"), ("test", "tab:orange"))):
            stats = [g.stats.get(f"{split}_{metric}", (math.nan, math.nan, 0)) for g in groups]
            means = [s[0] for s in stats]
            errs = [0 if math.isnan(s[1]) else s[1] for s in stats]
            ax.bar(
                x + (k - 0.5) * 0.38, means, 0.38, yerr=errs, capsize=3, color=color, label=split
            )
        if metric == "dice":
            papers = [(i, g.paper) for i, g in enumerate(groups) if g.paper is not None]
            if papers:
                ax.scatter(
                    *zip(*papers, strict=True),
                    marker="_",
                    s=400,
                    color="k",
                    zorder=3,
                    label="paper (test)",
                )
        ax.set_title(title)
        ax.set_xticks(x, [g.id for g in groups])
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(bottom=bottom)
    axes[0].set_ylabel("Dice (%), mean ± std over seeds")
    # Above the bars, outside the axes: inside, it hid the top of a bar or an error bar.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle("; ".join(f"{g.id}: {g.label}" for g in groups), fontsize=7, wrap=True)
    fig.savefig(path, dpi=120)


def val_curve(run: Run) -> pd.Series | None:
    """Validation Dice per epoch from logs*/metrics.csv (a resumed run's later logs win)."""
    frames = []
    for csv_path in sorted(run.path.glob("logs*/metrics.csv")):
        df = pd.read_csv(csv_path)
        if {"epoch", "val/dice"} <= set(df.columns):
            frames.append(df[["epoch", "val/dice"]].dropna())
    if not frames:
        return None
    df = pd.concat(frames).drop_duplicates("epoch", keep="last").sort_values("epoch")
    # Training ends by re-validating the best checkpoint, logged at epoch = epochs trained:
    # that is no epoch of the curve.
    trained = run.metrics.get("epochs_trained")
    if trained is not None:
        df = df[df["epoch"] < trained]
    return pd.Series(100 * df["val/dice"].to_numpy(), index=df["epoch"].astype(int).to_numpy())


def plot_curves(groups: list[Group], path: Path) -> int:
    """Mean validation Dice per epoch per configuration, ± std band; returns curves drawn."""
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    drawn = 0
    for g in groups:
        curves = [c for c in (val_curve(r) for r in g.runs) if c is not None and len(c)]
        if not curves:
            continue
        df = pd.concat(curves, axis=1)  # epochs x runs; early-stopped runs leave NaN
        mean, std = df.mean(axis=1), df.std(axis=1, ddof=1).fillna(0)
        (line,) = ax.plot(df.index, mean, label=f"{g.id}: {g.label} (n={len(curves)})")
        ax.fill_between(df.index, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        drawn += 1
    if not drawn:
        ax.text(
            0.5,
            0.5,
            "no val/dice in any run's logs/metrics.csv",
            ha="center",
            transform=ax.transAxes,
        )
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel("validation Dice (%), per-image")
    ax.grid(alpha=0.3)
    if drawn:
        ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)
    return drawn


# ---------------------------------------------------------------- W&B


def log_wandb(out_dir: Path, groups: list[Group], root: Path, plots: list[Path]) -> Path:
    """Log the table (and plots) as an offline W&B run in ``out_dir/wandb``; returns its folder."""
    try:
        import wandb
    except ImportError:
        raise ReportError("--wandb: wandb is not installed (pip install wandb)") from None
    mode = "online" if os.environ.get("WANDB_MODE") == "online" else "offline"
    header, rows = table_rows(groups)
    run = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "tmc-lightning"),
        job_type="report",
        name=f"report-{root.name}",
        dir=str(out_dir),
        mode=mode,
        config={"source": str(root), "configurations": len(groups)},
    )
    run.log(
        {
            "report": wandb.Table(columns=header, data=rows),
            **{p.stem: wandb.Image(str(p)) for p in plots},
        }
    )
    run_dir = Path(run.dir).parent  # .../wandb/offline-run-<stamp>-<id>/files -> the run folder
    run.finish()
    return run_dir


# ---------------------------------------------------------------- driver


def build_report(
    root: str | Path,
    out: str | Path | None = None,
    group_by: list[str] | None = None,
    paper_dataset: str | None = None,
    compare: tuple[str, str] | None = None,
    use_wandb: bool = False,
    skip_incomplete: bool = False,
) -> Path:
    """Write report.md/.csv/.tex, runs.csv and plots for the runs under ``root``; returns --out."""
    root = Path(root).resolve()
    out = Path(out).resolve() if out else root / "report"
    runs = load_runs(root, skip=out, skip_incomplete=skip_incomplete)
    keys = list(group_by or DEFAULT_KEYS)
    keys = [k for k in keys if any(k in r.config for r in runs)] if group_by is None else keys
    groups, varying = group_runs(runs, keys)
    for g in groups:
        summarise(g)
        papers = {paper_dice(r.config, paper_dataset) for r in g.runs}
        g.paper = papers.pop() if len(papers) == 1 else None  # pooled rows of different kinds
    constants = {k: runs[0].config.get(k) for k in keys if k not in varying}
    notes = [
        f"{g.id} mixes runs that differ in {', '.join(m)} (not a grouping key): add them with --group-by"
        for g in groups
        if (m := mixed_keys(g))
    ]
    if compare:
        a, b = pick(groups, compare[0]), pick(groups, compare[1])
    else:
        split = "test" if all("test_dice" in g.stats for g in groups) else "val"
        ranked = sorted(groups, key=lambda g: -np.nan_to_num(g.score(split), nan=-1.0))
        a, b = (ranked + [None])[:2]
    test = paired_test(a, b) if b is not None else None

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp's 0700 would outlive the rename
    try:
        plots = [tmp / "ablation_bars.png", tmp / "val_dice_curves.png"]
        plot_bars(groups, plots[0])
        if not plot_curves(groups, plots[1]):
            notes.append("no run has val/dice in logs/metrics.csv: the curve plot is empty")
        wandb_dir = None
        if use_wandb:
            wandb_dir = log_wandb(tmp, groups, root, plots)
            if tmp in wandb_dir.parents:  # where it will be once the folder is renamed
                wandb_dir = out / wandb_dir.relative_to(tmp)
        write_csv(groups, keys, tmp / "report.csv")
        write_tex(groups, tmp / "report.tex")
        write_markdown(
            root, groups, varying, constants, test, notes, plots, wandb_dir, tmp / "report.md"
        )
        with (tmp / "runs.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(
                ["config", "label", "seed", "path", *(f"{s}_{m}" for s in SPLITS for m in METRICS)]
            )
            for g in groups:
                for r in g.runs:
                    vals = [r.metrics.get(s, {}).get(m, "") for s in SPLITS for m in METRICS]
                    w.writerow([g.id, g.label, r.config.get("seed", ""), _rel(r.path, root), *vals])
        if out.exists():  # replace an earlier report only once the new one is complete
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _wandb_default() -> bool:
    if os.environ.get("WANDB_MODE") in (None, "", "disabled"):
        return False
    try:
        import wandb  # noqa: F401
    except ImportError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="tmc-report",
        description="Tables (md/csv/LaTeX), plots and a paired test over tmc-train run folders.",
    )
    p.add_argument(
        "dir", type=Path, help="a multirun/<group>/<date> or outputs/ folder (searched recursively)"
    )
    p.add_argument("--out", type=Path, help="output folder (default: DIR/report)")
    p.add_argument(
        "--group-by",
        nargs="+",
        metavar="KEY",
        help=f"config keys that define a configuration (default: {' '.join(DEFAULT_KEYS)}); "
        "comma- or space-separated; seed never groups",
    )
    p.add_argument(
        "--paper-dataset",
        choices=sorted(PAPER_TMC),
        help="compare with the paper's numbers for this dataset (default: each run's dataset.name)",
    )
    p.add_argument(
        "--compare", nargs=2, metavar=("A", "B"), help="configurations to test (id C1, or label)"
    )
    p.add_argument(
        "--wandb",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="log the table to an offline W&B run in the report folder "
        "(default: on when wandb is installed and WANDB_MODE is set)",
    )
    p.add_argument(
        "--skip-incomplete", action="store_true", help="ignore runs without final scores"
    )
    args = p.parse_args(argv)
    keys = [k for item in args.group_by for k in item.split(",") if k] if args.group_by else None
    try:
        out = build_report(
            args.dir,
            args.out,
            keys,
            args.paper_dataset,
            tuple(args.compare) if args.compare else None,
            _wandb_default() if args.wandb is None else args.wandb,
            args.skip_incomplete,
        )
    except ReportError as err:
        print(f"tmc-report: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'report.md'} (+ report.csv, report.tex, runs.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
