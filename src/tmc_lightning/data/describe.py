"""Descriptions written from masks, and the laterality convention measured from masks and text.

``describe_mask`` turns a binary mask into a QaTa-style sentence ("Bilateral pulmonary
infection, two infected areas, all left lung and lower right lung."): laterality, the number
of infected areas (connected components above a minimum size) and the zones they occupy.

No lung mask is available, so the lungs are approximated by fractions of the image: the
midline splits left from right, and the band ``lung_top``..``lung_bottom`` of the image height
is cut into upper, middle and lower thirds. That is an approximation: a lesion near a
boundary may be given the neighbouring level. Which image half is the "left" lung is the
dataset's laterality convention: ``plain`` (the image's left half, as QaTa-COV19's texts use
it, measured by :func:`measure_convention`) or ``radiographic`` (the patient's left, shown on
the image's right).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from tmc_lightning.data import synthetic

LEVELS = ("upper", "middle", "lower")
SIDES = ("left", "right")
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
VOCABULARIES = ("qata", "zones")


@dataclass(frozen=True)
class DescribeOptions:
    vocabulary: str = (
        "qata"  # qata: one phrase per lung ("middle lower left lung"); zones: per zone
    )
    convention: str = "plain"  # plain: "left" = the image's left half; radiographic: its right
    min_area: float = 0.001  # components smaller than this share of the image are noise
    min_share: float = 0.2  # a lesion occupies a level (or side) holding this share of its pixels
    lung_top: float = 0.15  # the lungs' vertical band, as fractions of the image height
    lung_bottom: float = 0.85
    midline: float = 0.5  # left/right split, as a fraction of the image width

    def __post_init__(self) -> None:
        if self.vocabulary not in VOCABULARIES:
            raise ValueError(
                f"vocabulary={self.vocabulary!r}: use one of {', '.join(VOCABULARIES)}"
            )
        if self.convention not in ("plain", "radiographic"):
            raise ValueError(
                f"convention={self.convention!r}: use plain or radiographic (what 'left' means)"
            )
        if not 0 <= self.lung_top < self.lung_bottom <= 1:
            raise ValueError("need 0 <= lung_top < lung_bottom <= 1 (fractions of the height)")


def _shares(values: np.ndarray, n: int) -> np.ndarray:
    return np.bincount(values, minlength=n) / max(len(values), 1)


def _occupied(shares: np.ndarray, min_share: float) -> list[int]:
    """Indices holding at least ``min_share`` of the pixels, and always the largest."""
    keep = set(np.flatnonzero(shares >= min_share).tolist()) | {int(np.argmax(shares))}
    return sorted(keep)


def lesions(mask: np.ndarray, opts: DescribeOptions = DescribeOptions()) -> list[dict[str, list]]:
    """Each infected area's sides and, per side, the levels it occupies."""
    mask = np.asarray(mask) > 0
    h, w = mask.shape
    labels, n = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if not n:
        return []
    sizes = np.bincount(labels.ravel())[1:]
    out = []
    for k in np.flatnonzero(sizes >= max(opts.min_area * h * w, 1)) + 1:
        ys, xs = np.nonzero(labels == k)
        half = (xs >= opts.midline * w).astype(np.int64)  # 0 = image-left, 1 = image-right
        t = (ys / h - opts.lung_top) / (opts.lung_bottom - opts.lung_top)
        level = np.clip(np.floor(3 * t), 0, 2).astype(np.int64)
        sides = {}
        for img_half in _occupied(_shares(half, 2), opts.min_share):
            side = SIDES[img_half] if opts.convention == "plain" else SIDES[1 - img_half]
            on_side = level[half == img_half]
            sides[side] = [LEVELS[i] for i in _occupied(_shares(on_side, 3), opts.min_share)]
        out.append(sides)
    return out


def _count(n: int) -> str:
    word = NUMBERS[n] if n < len(NUMBERS) else str(n)
    return f"{word} infected area" + ("" if n == 1 else "s")


def describe_mask(mask: np.ndarray, opts: DescribeOptions = DescribeOptions()) -> str:
    """A QaTa-style description of ``mask`` (or, ``vocabulary=zones``, the embedded set's)."""
    if opts.vocabulary == "zones":  # as the generator: each lesion named by its main zone
        found = lesions(mask, dataclasses.replace(opts, min_share=1.0))
        return synthetic.describe({(lvs[0], side) for les in found for side, lvs in les.items()})
    found = lesions(mask, opts)
    if not found:
        return "No pulmonary infection."
    phrases = []
    for side in SIDES:
        levels = {lv for les in found for lv in les.get(side, [])}
        if not levels:
            continue
        spans = any(
            len(les.get(side, [])) == len(LEVELS) for les in found
        )  # one lesion, all levels
        words = "all" if spans else " ".join(lv for lv in LEVELS if lv in levels)
        phrases.append(f"{words} {side} lung")
    laterality = "Bilateral" if len(phrases) == 2 else "Unilateral"
    return f"{laterality} pulmonary infection, {_count(len(found))}, {' and '.join(phrases)}."


# ------------------------------------------------------------------ reading descriptions back

_LATERALITY_RE = re.compile(r"\b(unilateral|bilateral)\b", re.IGNORECASE)
_COUNT_RE = re.compile(r"\b(" + "|".join(NUMBERS) + r"|\d+)\s+infected\s+areas?\b", re.IGNORECASE)
_SIDE_PHRASE_RE = re.compile(
    r"((?:\b(?:all|upper|middle|lower|higher)\W*)+)\s*(left|right)\b", re.IGNORECASE
)
_SIDE_RE = re.compile(r"\b(left|right)\b", re.IGNORECASE)


def parse_description(text: str) -> dict[str, Any]:
    """Laterality, count and zones of a QaTa-style sentence (None where it says nothing)."""
    lat = _LATERALITY_RE.search(text)
    count = _COUNT_RE.search(text)
    zones: dict[str, set[str]] = {}
    for levels, side in _SIDE_PHRASE_RE.findall(text):
        words = {w.lower().replace("higher", "upper") for w in re.findall(r"[a-z]+", levels, re.I)}
        zones.setdefault(side.lower(), set()).update(set(LEVELS) if "all" in words else words)
    n = None
    if count:
        word = count.group(1).lower()
        n = NUMBERS.index(word) if word in NUMBERS else int(word)
    return {
        "laterality": lat.group(1).lower() if lat else None,
        "count": n,
        "zones": {side: frozenset(v) for side, v in zones.items()},
    }


def agreement(ours: str, theirs: str) -> dict[str, bool | None]:
    """Whether two descriptions agree on laterality, count and zones (None: one says nothing)."""
    a, b = parse_description(ours), parse_description(theirs)
    out: dict[str, bool | None] = {}
    for key in ("laterality", "count", "zones"):
        out[key] = None if a[key] in (None, {}) or b[key] in (None, {}) else a[key] == b[key]
    return out


def text_sides(text: str) -> set[str]:
    """The sides a text names ("left", "right")."""
    return {m.lower() for m in _SIDE_RE.findall(text)}


def side_share(text: str, mask: np.ndarray) -> tuple[str, float] | None:
    """For a text naming one side only: that side and the mask's share in the image's left half."""
    sides = text_sides(text)
    mask = np.asarray(mask) > 0
    total = mask.sum()
    if len(sides) != 1 or not total:
        return None
    return sides.pop(), float(mask[:, : mask.shape[1] // 2].sum() / total)


def measure_convention(shares: Iterable[tuple[str, float] | None]) -> dict[str, Any]:
    """What "left" means in a dataset's texts, from :func:`side_share` of its (text, mask) pairs.

    For texts naming only "left" (only "right"), the mean share of the mask's pixels in the
    image's left half. "left" masks mostly in the image's left half and "right" masks mostly in
    its right half: ``plain``; the reverse: ``radiographic``.
    """
    by_side: dict[str, list[float]] = {"left": [], "right": []}
    for item in shares:
        if item is not None:
            by_side[item[0]].append(item[1])
    left, right = (float(np.mean(v)) if v else None for v in (by_side["left"], by_side["right"]))
    verdict = "unknown"  # no one-sided text at all
    if left is not None or right is not None:
        plain = (left is None or left > 0.5) and (right is None or right < 0.5)
        radiographic = (left is None or left < 0.5) and (right is None or right > 0.5)
        verdict = "plain" if plain else "radiographic" if radiographic else "unclear"
    return {
        "convention": verdict,
        "n_left": len(by_side["left"]),
        "n_right": len(by_side["right"]),
        "left_texts_in_image_left": left,  # mean share of the mask in the image's left half
        "right_texts_in_image_right": None if right is None else 1 - right,
    }


def side_figures(measured: dict[str, Any]) -> str:
    """Where the masks of the one-sided texts lie, in words (the evidence for a convention)."""
    parts = []
    if measured["left_texts_in_image_left"] is not None:
        parts.append(
            f"masks of {measured['n_left']} 'left'-only texts lie "
            f"{100 * measured['left_texts_in_image_left']:.0f}% in the image's left half"
        )
    if measured["right_texts_in_image_right"] is not None:
        parts.append(
            f"of {measured['n_right']} 'right'-only texts "
            f"{100 * measured['right_texts_in_image_right']:.0f}% in its right half"
        )
    return ", ".join(parts)


def convention_line(measured: dict[str, Any], configured: str | None) -> str:
    """One line for tmc-data check: the measured convention and the configured one."""
    if measured["convention"] == "unknown":
        return "laterality convention: no text names one side only; nothing to measure"
    line = f"laterality convention (measured): {measured['convention']}: {side_figures(measured)}"
    line += f"; dataset.convention={configured}"
    if configured not in (None, "unknown") and configured != measured["convention"]:
        line += f"  WARNING: the texts read as {measured['convention']}; set dataset.convention"
    return line
