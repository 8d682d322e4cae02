"""What ``tmc-data check`` reports about a dataset before training (no Hydra here).

Prints per split: counts, image sizes, mask coverage, text lengths and distinct texts,
duplicates, unreadable files, images without masks. Exits 1 when something would stop training
(a train or val split that does not load, unreadable files, image/mask size mismatches).
"""

from __future__ import annotations

import hashlib
import re
import statistics
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tmc_lightning.data.describe import (
    convention_line,
    measure_convention,
    side_figures,
    side_share,
)
from tmc_lightning.data.imageio import binarize_mask
from tmc_lightning.data.layouts import DataError, Sample, SplitAbsent
from tmc_lightning.errors import ConfigError

REQUIRED = ("train", "val")

# A laterality convention is named only from at least this many one-sided texts whose masks lie
# on average at least this much in one half of the image (plain: the named half; radiographic:
# the other). Below either, the report says "inconclusive" and gives the figures: LViT's MoNuSeg
# texts ("upper right", about nuclei density) put 59% and 53% in the named halves, which is no
# evidence either way; QaTa's put 97% and 96% (1069 texts).
LATERALITY_MIN_TEXTS = 20
LATERALITY_MIN_SHARE = 0.70
# Patient leakage is measured on the images whose file name carries a group (dataset.
# group_pattern matches); a split with fewer than this many, or this share, of such images is
# "inconclusive" (QaTa: about half its names carry a sub-S* subject, the other half none).
LEAK_MIN_IMAGES = 10
LEAK_MIN_SHARE = 0.10


def check_group_pattern(pattern: str) -> None:
    """``dataset.group_pattern`` must compile (tmc-data check groups file names by it)."""
    try:
        re.compile(pattern)
    except re.error as err:
        raise ConfigError(
            f"dataset.group_pattern={pattern!r} is not a regular expression ({err}); e.g. "
            r"'^(.+)_\d+$' (the name without its trailing _<slice>)"
        ) from None


def _stats(values: list[float], fmt: str = "{:.1f}") -> str:
    if not values:
        return "-"
    return (
        "min "
        + fmt.format(min(values))
        + ", mean "
        + fmt.format(statistics.fmean(values))
        + ", max "
        + fmt.format(max(values))
    )


def inspect_split(samples: list[Sample], used: set[Path] | None = None) -> dict[str, Any]:
    """Facts about one split's files; decodes each mask once at its native size.

    ``used``: every image and mask path that some split uses. A file in this split's image
    folder(s) outside it has no mask or text (default: outside this split's own files, which
    miscounts when splits share a folder, e.g. a manifest or Ariadne's carved validation).
    """
    sizes: Counter[tuple[int, int]] = Counter()
    coverage, unreadable, mismatched, digests, sides = [], [], [], {}, []
    for s in samples:
        try:
            with Image.open(s.image) as im:
                im.load()
                isize = im.size
            with Image.open(s.mask) as mk:
                m = np.asarray(mk.convert("L") if mk.mode not in ("I;16", "I", "F") else mk).astype(
                    np.float64
                )
                msize = mk.size
        except OSError as err:
            unreadable.append(f"{s.image.name} / {s.mask.name}: {err}")
            continue
        sizes[isize] += 1
        if isize != msize:
            mismatched.append(f"{s.image} {isize} vs {s.mask} {msize}")
        binary = binarize_mask(m)
        coverage.append(float(binary.mean()) * 100)
        sides.append(side_share(s.text, binary))
        digests.setdefault(hashlib.sha1(s.image.read_bytes()).hexdigest(), []).append(s.image.name)
    texts = [s.text for s in samples]
    if used is None:
        used = {p for s in samples for p in (s.image, s.mask)}
    folders = {s.image.parent for s in samples}
    orphans = sorted(
        p.name
        for d in folders
        for p in d.iterdir()
        if p.is_file() and not p.name.startswith(".") and p not in used
    )
    return {
        "count": len(samples),
        "sizes": sizes,
        "coverage": coverage,
        "empty_masks": sum(c == 0 for c in coverage),
        "text_words": [len(t.split()) for t in texts],
        "distinct_texts": len(set(texts)),
        "duplicate_images": [names for names in digests.values() if len(names) > 1],
        "unreadable": unreadable,
        "mismatched": mismatched,
        "images_without_masks": orphans,
        "digests": set(digests),
        "convention": measure_convention(sides),
    }


def report(dm) -> int:
    """Print the report for a DataModule; return the exit code (0 = ready to train)."""
    fatal = 0
    seen: dict[str, set[str]] = {}
    print(f"dataset {dm.name!r} at {dm.resolve_root()}")
    loaded: dict[str, list[Sample] | DataError] = {}
    notes: dict[str, list[str]] = {}
    for split in ("train", "val", "test"):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                loaded[split] = dm.read_split(split)
            except DataError as err:
                loaded[split] = err
        notes[split] = [str(w.message) for w in caught]
    used = {p for v in loaded.values() if isinstance(v, list) for s in v for p in (s.image, s.mask)}
    for split, samples in loaded.items():
        print(f"\n[{split}]")
        if isinstance(samples, DataError):
            err = samples
            # A missing train/val split, or a test split that exists but does not load, stops
            # training; a dataset without a test split (QaTa's public release) trains fine.
            stops = split in REQUIRED or not isinstance(err, SplitAbsent)
            fatal += stops
            print(f"  {'ERROR' if stops else 'absent'}: {err}")
            continue
        for note in notes[split]:  # case-insensitive and other-extension matches
            print(f"  note: {note}")
        info = inspect_split(samples, used)
        seen[split] = info["digests"]
        sizes = ", ".join(f"{w}x{h} ({n})" for (w, h), n in info["sizes"].most_common(5))
        print(f"  triples: {info['count']}")
        print(f"  image sizes: {sizes}{' ...' if len(info['sizes']) > 5 else ''}")
        print(
            f"  mask coverage %: {_stats(info['coverage'], '{:.2f}')}; empty masks: {info['empty_masks']}"
        )
        print(
            f"  text length (words): {_stats(info['text_words'])}; distinct texts: {info['distinct_texts']}"
        )
        print(
            f"  duplicate images (same bytes): {len(info['duplicate_images'])}"
            + (f", e.g. {info['duplicate_images'][:2]}" if info["duplicate_images"] else "")
        )
        print(
            f"  images without masks/text: {len(info['images_without_masks'])}"
            + (f", e.g. {info['images_without_masks'][:3]}" if info["images_without_masks"] else "")
        )
        if split == "train":
            print(f"  {laterality_line(info['convention'], dm.hparams.get('convention'))}")
        for key, label in (
            ("unreadable", "unreadable files"),
            ("mismatched", "image/mask size mismatches"),
        ):
            if info[key]:
                fatal += 1
                print(f"  ERROR {label}: {len(info[key])}, e.g. {info[key][:3]}")
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        if a in seen and b in seen and (n := len(seen[a] & seen[b])):
            print(f"\nWARNING: {n} identical image(s) appear in both {a} and {b}")
    splits = {k: v for k, v in loaded.items() if isinstance(v, list)}
    for line in leakage_lines(splits, dm.hparams.get("group_pattern")):
        print(line)
    print("\nready to train" if not fatal else f"\n{fatal} problem(s) would stop training")
    return 1 if fatal else 0


def judge_convention(measured: dict[str, Any]) -> dict[str, Any]:
    """``measured`` (from :func:`measure_convention`), "inconclusive" below the thresholds.

    Adds ``strength``: the weakest side's mean mask share on the side the verdict names.
    """
    out = dict(measured)
    verdict = measured["convention"]
    if verdict not in ("plain", "radiographic"):
        return out
    left, right = measured["left_texts_in_image_left"], measured["right_texts_in_image_right"]
    shares = [x for x in (left, right) if x is not None]
    strength = min(shares) if verdict == "plain" else min(1 - x for x in shares)
    n = measured["n_left"] + measured["n_right"]
    out["strength"] = strength
    if n < LATERALITY_MIN_TEXTS or strength < LATERALITY_MIN_SHARE:
        out["convention"] = "inconclusive"
        out["leaning"] = verdict
    return out


def laterality_line(measured: dict[str, Any], configured: str | None) -> str:
    """The report's laterality line; "inconclusive", with the figures, below the thresholds."""
    judged = judge_convention(measured)
    if judged["convention"] != "inconclusive":
        return convention_line(judged, configured)
    return (
        f"laterality convention (measured): inconclusive: {side_figures(judged)}; naming one needs "
        f">= {LATERALITY_MIN_TEXTS} one-sided texts with >= {100 * LATERALITY_MIN_SHARE:.0f}% "
        f"of their masks on one side (closest: {judged['leaning']}); "
        f"dataset.convention={configured}"
    )


def group_of(name: str, pattern: re.Pattern[str]) -> str | None:
    """The group (patient, volume) a file name belongs to: the pattern's first group (or whole
    match) on the name without its extension; None where it does not match."""
    m = pattern.search(Path(name).stem)
    if m is None:
        return None
    return m.group(1) if m.re.groups else m.group(0)


def measure_leakage(splits: dict[str, list[Sample]], pattern: str) -> dict[str, dict[str, Any]]:
    """Per split: images, images with a group, groups, and (val/test) what train shares."""
    rx = re.compile(pattern)
    groups = {
        split: [group_of(s.image.name, rx) for s in samples] for split, samples in splits.items()
    }
    train = {g for g in groups.get("train", []) if g is not None}
    out: dict[str, dict[str, Any]] = {}
    for split, names in groups.items():
        grouped = [g for g in names if g is not None]
        shared = {g for g in grouped if g in train} if split != "train" else set()
        enough = len(grouped) >= LEAK_MIN_IMAGES and len(grouped) >= LEAK_MIN_SHARE * len(names)
        out[split] = {
            "images": len(names),
            "grouped": len(grouped),
            "groups": len(set(grouped)),
            "in_train_images": sum(g in shared for g in grouped),
            "in_train_groups": len(shared),
            "conclusive": enough,
        }
    return out


def leakage_lines(splits: dict[str, list[Sample]], pattern: str | None) -> list[str]:
    """The report's patient-leakage section."""
    lines = ["", "[patient leakage]"]
    if not pattern:
        return lines + [
            "  not measured: set dataset.group_pattern to a regex whose first group names the "
            r"patient or volume in a file name, e.g. '^(.+)_\d+$' (name minus its _<slice>)"
        ]
    if "train" not in splits:
        return lines + ["  not measured: the train split does not load"]
    lines.append(f"  dataset.group_pattern='{pattern}' (on file names without extension)")
    leaks, measured = [], measure_leakage(splits, pattern)
    for split, m in measured.items():
        line = f"  {split}: {m['images']} images, {m['grouped']} with a group, {m['groups']} groups"
        if m["grouped"] < m["images"]:
            line += f" ({m['images'] - m['grouped']} names carry no group: not counted)"
        if split != "train":
            if not m["conclusive"]:
                line += (
                    f"; inconclusive: fewer than {LEAK_MIN_IMAGES} images or "
                    f"{100 * LEAK_MIN_SHARE:.0f}% of the split carry a group"
                )
            else:
                share = 100 * m["in_train_images"] / m["grouped"]
                line += (
                    f"; {m['in_train_images']} of {m['grouped']} images ({share:.0f}%) in "
                    f"{m['in_train_groups']} of {m['groups']} groups also in train"
                )
                if m["in_train_images"]:
                    leaks.append(f"{m['in_train_images']} {split}")
        lines.append(line)
    if leaks:
        lines.append(
            f"  WARNING: {' and '.join(leaks)} images come from patients/volumes that are also in "
            "train: scores on them partly measure memory of a patient (MosMedData+: "
            "tmc-data prepare mosmed split=patient re-splits by volume)"
        )
    elif any(m["conclusive"] for split, m in measured.items() if split != "train"):
        lines.append("  no val/test image shares a group with train")
    return lines
