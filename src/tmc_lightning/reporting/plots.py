"""The report's plots: Dice bars per configuration and validation curves per run."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from tmc_lightning.reporting.runs import Group, Run

MAX_TICK = 26  # longer configuration labels go to a legend line, the axis shows C1, C2, ...


def plot_bars(groups: list[Group], path: Path) -> None:
    fig = Figure(figsize=(max(6, 1.3 * len(groups) + 3), 4.5), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    named = all(len(g.label) <= MAX_TICK for g in groups)  # labels on the axis, no legend line
    ticks = [textwrap.fill(g.label, 12) if named else g.id for g in groups]
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
        ax.set_xticks(x, ticks, fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylim(bottom=bottom)
    axes[0].set_ylabel("Dice (%), mean ± std over seeds")
    # Above the bars, outside the axes: inside, it hid the top of a bar or an error bar.
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    if not named:
        fig.suptitle("; ".join(f"{g.id}: {g.label}" for g in groups), fontsize=7, wrap=True)
    fig.savefig(path, dpi=120)


def val_curve(run: Run) -> pd.Series | None:
    """Validation Dice per epoch from logs*/metrics.csv (a resumed run's later logs win)."""
    frames = []

    def order(path: Path) -> int:  # logs, logs-resume1, logs-resume2, ..., logs-resume10
        tail = path.parent.name.removeprefix("logs").removeprefix("-resume")
        return int(tail) if tail.isdigit() else 0

    for csv_path in sorted(run.path.glob("logs*/metrics.csv"), key=order):
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
        name = g.label if len(g.label) <= MAX_TICK else f"{g.id}: {g.label}"
        (line,) = ax.plot(df.index, mean, marker="o", ms=3, label=f"{name} (n={len(curves)})")
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
