"""Prompt robustness: score a checkpoint with the given texts, none, another image's, or one neutral.

``tmc-eval ckpt_path=... text_mode=[given,empty,shuffled,generic]``. Only the text changes
between modes: the same images, masks, tokenizer and network. A text-free model scores the same
in every mode, which is the check that the modes change nothing but the text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tmc_lightning.errors import ConfigError
from tmc_lightning.metrics import bootstrap_global_dice_ci, bootstrap_mean_ci

TEXT_MODES = ("given", "empty", "shuffled", "generic")
SHUFFLE_SEED = 0


def parse_modes(value: Any) -> list[str]:
    """``given`` | ``[given, empty]`` | ``all`` -> the modes, ``given`` first (drops are from it)."""
    items = [value] if isinstance(value, str) else list(value or ["given"])
    if items == ["all"]:
        items = list(TEXT_MODES)
    unknown = [m for m in items if m not in TEXT_MODES]
    if unknown:
        raise ConfigError(
            f"text_mode: {', '.join(map(str, unknown))} unknown; use any of {', '.join(TEXT_MODES)} "
            "or all, e.g. text_mode=[given,empty,shuffled,generic]"
        )
    return ["given"] + [m for m in dict.fromkeys(items) if m != "given"]


def derangement(n: int, seed: int = SHUFFLE_SEED) -> np.ndarray:
    """A permutation of ``range(n)`` with no fixed point, drawn with ``seed`` (n >= 2)."""
    if n < 2:
        raise ConfigError("text_mode=shuffled needs at least 2 images in the split")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    for i in range(n):  # swap each fixed point with its neighbour; none comes back
        if perm[i] == i:
            j = (i + 1) % n
            perm[i], perm[j] = perm[j], perm[i]
    return perm


def texts_for(
    mode: str, texts: list[str], generic_prompt: str | None = None
) -> tuple[list[str], dict[str, Any]]:
    """The texts each image gets under ``mode``, and what to report about them."""
    if mode == "given":
        return list(texts), {}
    if mode == "empty":
        return [""] * len(texts), {}
    if mode == "generic":
        if not (generic_prompt or "").strip():
            raise ConfigError(
                'text_mode=generic needs a neutral sentence: set generic_prompt="..." '
                '(e.g. "Pulmonary infection."); the checkpoint\'s dataset names none'
            )
        return [generic_prompt] * len(texts), {"prompt": generic_prompt}
    if mode == "shuffled":
        perm = derangement(len(texts))
        new = [texts[j] for j in perm]
        same = sum(a == b for a, b in zip(texts, new, strict=True))
        return new, {"seed": SHUFFLE_SEED, "same_text": same, "n": len(texts)}
    raise ConfigError(f"text_mode={mode!r}: use one of {', '.join(TEXT_MODES)}")


def global_dice(tp: np.ndarray, pred: np.ndarray, true: np.ndarray) -> float:
    denom = pred.sum() + true.sum()
    return float(2 * tp.sum() / denom) if denom else 1.0


def mode_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-image and global Dice with 95% CIs from one mode's per-image rows."""
    dice = np.array([r["dice"] for r in rows], dtype=np.float64)
    tp = np.array([r["tp"] for r in rows], dtype=np.float64)
    pred = np.array([r["pred_area"] for r in rows], dtype=np.float64)
    true = np.array([r["true_area"] for r in rows], dtype=np.float64)
    return {
        "dice": float(dice.mean()),
        "dice_ci95": bootstrap_mean_ci(dice),
        "dice_global": global_dice(tp, pred, true),
        "dice_global_ci95": bootstrap_global_dice_ci(tp, pred, true),
        "n": len(rows),
    }


def table(split: str, modes: dict[str, dict[str, Any]], model: str) -> str:
    """A Markdown table of one split's modes, with the drop from ``given``."""
    given = modes["given"]
    lines = [
        f"{model} on {split}: Dice per text mode (95% bootstrap CIs over images); drop = given − mode.",
        "",
        "| text mode | per-image Dice (95% CI) | drop | global Dice (95% CI) | drop | note |",
        "|---|---|---:|---|---:|---|",
    ]
    for mode, m in modes.items():
        note = ""
        if mode == "shuffled":
            note = f"{m['same_text']} of {m['n']} images drew an identical text"
        elif mode == "generic":
            note = f"“{m['prompt']}”"
        elif mode == "empty":
            note = "special tokens only"
        lo, hi = m["dice_ci95"]
        glo, ghi = m["dice_global_ci95"]
        lines.append(
            f"| {mode} | {m['dice']:.4f} ({lo:.4f}-{hi:.4f}) | {given['dice'] - m['dice']:+.4f} | "
            f"{m['dice_global']:.4f} ({glo:.4f}-{ghi:.4f}) | "
            f"{given['dice_global'] - m['dice_global']:+.4f} | {note} |"
        )
    return "\n".join(lines) + "\n"
