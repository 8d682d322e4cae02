"""What ``tmc-data check`` reports about a dataset before training (no Hydra here).

Prints per split: counts, image sizes, mask coverage, text lengths and distinct texts,
duplicates, unreadable files, images without masks. Exits 1 when something would stop training
(a train or val split that does not load, unreadable files, image/mask size mismatches).
"""

from __future__ import annotations

import hashlib
import statistics
import warnings
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from tmc_lightning.data.describe import convention_line, measure_convention, side_share
from tmc_lightning.data.imageio import binarize_mask
from tmc_lightning.data.layouts import DataError, Sample, SplitAbsent

REQUIRED = ("train", "val")


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
            print(f"  {convention_line(info['convention'], dm.hparams.get('convention'))}")
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
    print("\nready to train" if not fatal else f"\n{fatal} problem(s) would stop training")
    return 1 if fatal else 0
