"""``tmc-data prepare``: the public downloads, as they come, into the layouts the readers take.

- QaTa-COV19 (Kaggle, Qatar University / Tampere University): ``QaTa-COV19/QaTa-COV19-v2/``
  ``{Train Set,Test Set}/{Images,Ground-truths}``, a ground truth named ``mask_<image>``, plus
  LViT's text sheets (``Train_text.xlsx``, ``Val_text.xlsx``, ``Test_text.xlsx``; column
  ``Image`` names the mask), which also define LViT's train/val split of ``Train Set``.
- MosMedData+ (the Kaggle release LViT points to): ``frames/*.png`` and ``masks/*.png``, a mask
  named as its frame, plus LViT's three sheets (xlsx, or ``;``-separated CSV ``Image;text``).
- MedVLSM's text-prompted sets: ``images/``, ``masks/`` and ``anns/{train,val,test}.json``
  (records with ``img_name``, ``mask_name``, ``bbox``, ``segment_id``, ``prompts`` p0 .. p9).

Everything is checked before anything is written: every sheet row needs its image and mask,
every file in the download's folders needs a row, the counts per split must be the dataset's
(unless ``strict_counts=false``). All problems come in one report (:class:`PrepareError`).
The output is written into a temporary sibling of ``out`` and renamed at the end; sources are
linked (or copied), never moved or modified.
"""

from __future__ import annotations

import fnmatch
import json
import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tmc_lightning.data.layouts import (
    IMAGE_SUFFIXES,
    PROMPT_LEVELS,
    DataError,
    _read_sheet,
)

SPLITS = ("train", "val", "test")
# The sizes of LViT's splits, which every published score on these sets uses.
EXPECTED_COUNTS = {
    "qata": {"train": 5716, "val": 1429, "test": 2113},
    "mosmed": {"train": 2183, "val": 273, "test": 273},
}
SHEET_SUFFIXES = (".xlsx", ".xls", ".csv")
# How many seeded shuffles split=patient tries, keeping the one closest to LViT's sizes.
PATIENT_TRIES = 500


class PrepareError(DataError):
    """The download does not match what ``tmc-data prepare`` expects; the message lists every
    problem found (nothing was written)."""


@dataclass
class Item:
    """One triple to write: where its files are and the text its sheet gives."""

    split: str
    image: Path
    mask: Path
    text: str
    group: str | None = None


@dataclass
class Plan:
    """What would be written, and what was found wrong."""

    items: list[Item] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        c = Counter(i.split for i in self.items)
        return {s: c[s] for s in SPLITS if c[s]}


# -- looking things up ---------------------------------------------------------------------------
def _stem(name: str) -> str:
    """A sheet's or a file's name without an image/sheet extension, lower case."""
    base, suffix = os.path.splitext(name.strip())
    return (base if suffix.lower() in IMAGE_SUFFIXES else name.strip()).lower()


class _Index:
    """The files of one folder by lower-case stem; each file marked when a row uses it."""

    def __init__(self, folder: Path, plan: Plan) -> None:
        self.folder = folder
        self.by_stem: dict[str, Path] = {}
        self.used: set[Path] = set()
        seen: dict[str, list[str]] = {}
        for p in sorted(folder.iterdir()):
            if p.name.startswith(".") or not (p.is_file() or p.is_symlink()):
                continue
            seen.setdefault(_stem(p.name), []).append(p.name)
            self.by_stem.setdefault(_stem(p.name), p)
        for stem, names in seen.items():
            if len(names) > 1:
                plan.problems.append(
                    f"ambiguous: {len(names)} files in {folder} share the name {stem}: "
                    f"{', '.join(names)}; keep one"
                )

    def take(self, stem: str) -> Path | None:
        p = self.by_stem.get(stem)
        if p is not None:
            self.used.add(p)
        return p

    def extras(self) -> list[Path]:
        return sorted(set(self.by_stem.values()) - self.used)


def _folder(root: Path, names: tuple[str, ...], what: str, key: str) -> Path:
    """The folder under ``root`` (or one or two levels down) that holds all of ``names``."""
    candidates = [root, *sorted(root.glob("*")), *sorted(root.glob("*/*"))]
    for c in candidates:
        if c.is_dir() and all((c / n).is_dir() for n in names):
            return c
    raise PrepareError(
        f"src={root}: found no folder holding {' and '.join(names)} ({what}) in it or up to two "
        f"levels below; point src at the unpacked download, or set {key} to the folder names "
        "your copy uses"
    )


def find_sheet(text_dir: Path, pattern: str, split: str, plan: Plan) -> Path | None:
    """The one sheet under ``text_dir`` whose file name matches ``pattern`` (case-insensitive)."""
    matches = sorted(
        p
        for p in text_dir.rglob("*")
        if p.is_file()
        and p.suffix.lower() in SHEET_SUFFIXES
        and not p.name.startswith((".", "~$"))
        and fnmatch.fnmatch(p.name.lower(), pattern.lower())
    )
    if len(matches) == 1:
        return matches[0]
    what = "no file" if not matches else f"{len(matches)} files ({', '.join(map(str, matches))})"
    plan.problems.append(
        f"sheet: {what} under text={text_dir} match sheets.{split}={pattern!r} (.xlsx or .csv); "
        f"set sheets.{split} to the {split} sheet's file name"
    )
    return None


def _rows(sheet: Path, plan: Plan) -> list[tuple[int, str, str]]:
    try:
        df = _read_sheet(sheet)
    except DataError as err:
        plan.problems.append(f"sheet: {err}")
        return []
    rows = []
    for row, name, text in zip(range(2, len(df) + 2), df["Image"], df["Description"], strict=True):
        name = "" if not isinstance(name, str) else name.strip()
        if not name:
            plan.problems.append(f"sheet: {sheet} row {row}: empty Image; name the file or delete")
            continue
        if not isinstance(text, str) or not text.strip():
            plan.problems.append(f"sheet: {sheet} row {row}: empty text for {name}; write it")
            continue
        rows.append((row, name, text.strip()))
    return rows


def _match_rows(
    split: str,
    sheet: Path,
    rows: list[tuple[int, str, str]],
    images: _Index,
    masks: _Index,
    mask_prefix: str,
    plan: Plan,
    listed: dict[str, str],
) -> None:
    """Each row's image and mask, or a problem per missing file."""
    for row, name, text in rows:
        key = _stem(name)
        if mask_prefix and key.startswith(mask_prefix.lower()):
            key = key[len(mask_prefix) :]
        where = f"{sheet.name} row {row} ({split})"
        if key in listed:
            plan.problems.append(f"sheet: {where}: {name} is already listed in {listed[key]}")
            continue
        listed[key] = where
        image = images.take(key)
        mask = masks.take((mask_prefix + key).lower())
        if image is None:
            plan.problems.append(f"missing image: {where}: no {key}.* in {images.folder}")
        if mask is None:
            plan.problems.append(
                f"missing mask: {where}: no {mask_prefix}{key}.* in {masks.folder}"
            )
        if image is not None and mask is not None:
            plan.items.append(Item(split, image, mask, text))


def _extras(plan: Plan, *indexes: _Index) -> None:
    for index in indexes:
        for p in index.extras():
            plan.problems.append(f"extra file: {p} has no row in any sheet; move it out")


def _check_counts(plan: Plan, dataset: str, strict: bool) -> None:
    counts = Counter(i.split for i in plan.items)
    for split, want in EXPECTED_COUNTS[dataset].items():
        if counts.get(split, 0) != want:
            msg = f"count: {split} has {counts.get(split, 0)} triples, {dataset} has {want}"
            if strict:
                plan.problems.append(msg + " (strict_counts=false accepts another count)")
            else:
                plan.notes.append(msg + " (accepted: strict_counts=false)")


# -- the three downloads -------------------------------------------------------------------------
def plan_qata(
    src: Path, text: Path, layout: dict[str, str], sheets: dict[str, str], strict: bool
) -> Plan:
    """QaTa-COV19 (Train Set split into LViT's train/val by its sheets; Test Set = test)."""
    plan = Plan()
    names = (layout["train_dir"], layout["test_dir"])
    root = _folder(src, names, "QaTa-COV19-v2's sets", "qata.train_dir / qata.test_dir")
    listed: dict[str, str] = {}
    indexes = []
    for split_set, splits in (
        (layout["train_dir"], ("train", "val")),
        (layout["test_dir"], ("test",)),
    ):
        folder = root / split_set
        missing = [n for n in (layout["images"], layout["masks"]) if not (folder / n).is_dir()]
        if missing:
            plan.problems.append(
                f"folder: {folder} lacks {', '.join(missing)}; set qata.images / qata.masks to the "
                "folder names your copy uses"
            )
            continue
        images = _Index(folder / layout["images"], plan)
        masks = _Index(folder / layout["masks"], plan)
        indexes += [images, masks]
        for split in splits:
            sheet = find_sheet(text, sheets[split], split, plan)
            if sheet is not None:
                rows = _rows(sheet, plan)
                _match_rows(split, sheet, rows, images, masks, layout["mask_prefix"], plan, listed)
    _extras(plan, *indexes)
    _check_counts(plan, "qata", strict)
    return plan


def plan_mosmed(
    src: Path,
    text: Path,
    layout: dict[str, str],
    sheets: dict[str, str],
    strict: bool,
    split: str = "lvit",
    seed: int = 0,
    group_pattern: str = r"^(.+)_\d+$",
) -> Plan:
    """MosMedData+ (``frames/``, ``masks/`` and LViT's three sheets); ``split=patient``
    re-splits by volume after the checks."""
    if split not in ("lvit", "patient"):
        raise PrepareError(f"split={split!r}: use lvit (LViT's split) or patient (by volume)")
    plan = Plan()
    names = (layout["images"], layout["masks"])
    root = _folder(src, names, "MosMedData+'s frames and masks", "mosmed.images / mosmed.masks")
    images = _Index(root / layout["images"], plan)
    masks = _Index(root / layout["masks"], plan)
    listed: dict[str, str] = {}
    for s in SPLITS:
        sheet = find_sheet(text, sheets[s], s, plan)
        if sheet is not None:
            _match_rows(s, sheet, _rows(sheet, plan), images, masks, "", plan, listed)
    _extras(plan, images, masks)
    _check_counts(plan, "mosmed", strict)
    if split == "patient" and not plan.problems:
        resplit_by_group(plan, group_pattern, seed, EXPECTED_COUNTS["mosmed"])
    return plan


def resplit_by_group(plan: Plan, pattern: str, seed: int, target: dict[str, int]) -> None:
    """Give every group (patient, volume) to one split, sizes as close to ``target`` as found.

    Tries :data:`PATIENT_TRIES` seeded shuffles of the groups; each fills test, then val, with
    whole groups while they fit (a group that overshoots is taken only if that lands closer),
    the rest is train. Keeps the shuffle whose val and test sizes are nearest the target's
    (scaled to the number of items). Notes how far each split lands from the target.
    """
    rx = re.compile(pattern)
    by_group: dict[str, list[Item]] = {}
    for item in plan.items:
        m = rx.search(_stem(item.image.name))
        item.group = (m.group(1) if m.re.groups else m.group(0)) if m else item.image.stem
        by_group.setdefault(item.group, []).append(item)
    total, want_total = len(plan.items), sum(target.values())
    goal = {s: round(target[s] * total / want_total) for s in ("val", "test")}
    groups = sorted(by_group)
    best: tuple[int, dict[str, str]] | None = None
    rng = random.Random(seed)
    for _ in range(PATIENT_TRIES):
        order = groups[:]
        rng.shuffle(order)
        assign, sizes = {}, {"val": 0, "test": 0}
        for g in order:
            n = len(by_group[g])
            for s in ("test", "val"):
                gap = goal[s] - sizes[s]
                if gap > 0 and abs(gap - n) < gap:  # taking it brings the split closer
                    assign[g], sizes[s] = s, sizes[s] + n
                    break
            else:
                assign[g] = "train"
        cost = sum(abs(goal[s] - sizes[s]) for s in sizes)
        if best is None or cost < best[0]:
            best = (cost, assign)
        if cost == 0:
            break
    assert best is not None
    for g, s in best[1].items():
        for item in by_group[g]:
            item.split = s
    counts = Counter(i.split for i in plan.items)
    n_groups = Counter(best[1].values())
    per_split = "; ".join(
        f"{s} {counts[s]} slices from {n_groups[s]} volumes "
        f"({counts[s] - target[s]:+d} vs LViT's {target[s]})"
        for s in SPLITS
    )
    plan.notes.append(f"split=patient (seed {seed}): {per_split}")


def plan_medvlsm(
    images: Path, masks: Path, anns: Path, files: dict[str, str | None], text_level: str
) -> tuple[Plan, list[dict[str, Any]]]:
    """MedVLSM's JSON annotations: one manifest row per record, every prompt level kept."""
    plan = Plan()
    for key, d in (("images", images), ("masks", masks), ("anns", anns)):
        if not d.is_dir():
            raise PrepareError(f"{key}={d} is not a folder; point {key} at MedVLSM's {key}/")
    if text_level not in PROMPT_LEVELS:
        raise PrepareError(f"text_level={text_level!r}: use one of p0 .. p9")
    img_index, mask_index = _Index(images, plan), _Index(masks, plan)
    records: list[dict[str, Any]] = []
    for split in SPLITS:
        name = files.get(split)
        if not name:
            continue
        path = anns / name
        if not path.is_file():
            plan.problems.append(
                f"annotations: {path} does not exist; set anns_files.{split} to the file's name "
                "(or null when the set has no such split)"
            )
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            plan.problems.append(f"annotations: {path} is not JSON ({err}); re-download it")
            continue
        if not isinstance(data, list):
            plan.problems.append(f"annotations: {path} is not a list of records")
            continue
        for k, rec in enumerate(data):
            where = f"{path.name} record {k} ({split})"
            if not isinstance(rec, dict) or not {"img_name", "mask_name", "prompts"} <= set(rec):
                plan.problems.append(
                    f"annotations: {where} lacks img_name, mask_name or prompts; re-download it"
                )
                continue
            image = img_index.take(_stem(str(rec["img_name"])))
            mask = mask_index.take(_stem(str(rec["mask_name"])))
            if image is None:
                plan.problems.append(
                    f"missing image: {where}: no {_stem(str(rec['img_name']))}.* in {images}"
                )
            if mask is None:
                plan.problems.append(
                    f"missing mask: {where}: no {_stem(str(rec['mask_name']))}.* in {masks}"
                )
            prompts = rec["prompts"] if isinstance(rec["prompts"], dict) else {}
            options = {
                lv: [str(v).strip() for v in (val if isinstance(val, list) else [val])] or [""]
                for lv, val in prompts.items()
                if lv in PROMPT_LEVELS and val is not None
            }
            # One text as itself; several alternatives as a JSON list (read_manifest parses it).
            levels = {
                lv: opts[0] if len(opts) == 1 else json.dumps(opts, ensure_ascii=False)
                for lv, opts in options.items()
            }
            first = options.get(text_level, [""])
            if not first[0]:
                plan.problems.append(
                    f"annotations: {where} has no {text_level} prompt for the text column; set "
                    "text_level to a level every record has"
                )
            if image is not None and mask is not None:
                plan.items.append(Item(split, image, mask, first[0]))
                records.append({"segment_id": str(rec.get("segment_id", "")), "levels": levels})
    _extras(plan, img_index, mask_index)
    return plan, records
