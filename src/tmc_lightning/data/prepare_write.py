"""Writing a prepared dataset: the LViT layout or a manifest, all at once or nothing."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from tmc_lightning.data.layouts import PROMPT_LEVELS, SPLIT_FOLDERS
from tmc_lightning.data.prepare import SPLITS, Plan, PrepareError
from tmc_lightning.utils import atomic_folder, write_text_atomic


def raise_if_problems(plan: Plan, what: str) -> None:
    if plan.problems:
        kinds = Counter(p.split(":", 1)[0] for p in plan.problems)
        head = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
        raise PrepareError(
            f"{what}: {len(plan.problems)} problem(s) ({head}); nothing was written:\n  "
            + "\n  ".join(plan.problems)
        )


def check_out(out: Path) -> None:
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise PrepareError(
            f"out={out} exists and is not an empty folder; name a new folder (prepare never "
            "writes over anything)"
        )


def _place(src: Path, dst: Path, copy: bool) -> None:
    if copy:
        shutil.copy2(src, dst)
    else:
        os.symlink(src.resolve(), dst)


def write_lvit(plan: Plan, out: Path, copy: bool, record: dict[str, Any]) -> Path:
    """The LViT layout: ``{Train,Val,Test}_Folder/{img,labelcol}`` + ``<Split>_text.csv``."""
    out = out.expanduser().absolute()
    check_out(out)
    # replace=True only ever swaps an empty folder the user made for it (check_out above)
    with atomic_folder(out, replace=True) as tmp:
        for split in SPLITS:
            items = [i for i in plan.items if i.split == split]
            if not items:
                continue
            folder = tmp / f"{SPLIT_FOLDERS[split]}_Folder"
            (folder / "img").mkdir(parents=True)
            (folder / "labelcol").mkdir()
            with open(folder / f"{SPLIT_FOLDERS[split]}_text.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["Image", "Description"])
                for i in items:
                    _place(i.image, folder / "img" / i.image.name, copy)
                    _place(i.mask, folder / "labelcol" / i.mask.name, copy)
                    w.writerow([i.mask.name, i.text])
        record = {**record, "counts": plan.counts(), "notes": plan.notes}
        (tmp / "prepared.json").write_text(json.dumps(record, indent=2) + "\n")
    return out


def write_manifest(
    plan: Plan, records: list[dict[str, Any]], out: Path, record: dict[str, Any]
) -> Path:
    """A manifest CSV (image, mask, text, split, segment_id, p0 .. p9), paths relative to it."""
    out = out.expanduser().absolute()
    if out.exists():
        raise PrepareError(f"out={out} exists; name a new manifest file (never overwritten)")
    if out.suffix.lower() != ".csv":
        raise PrepareError(f"out={out}: name a .csv manifest, e.g. out=kvasir/manifest.csv")
    levels = [lv for lv in PROMPT_LEVELS if any(lv in r["levels"] for r in records)]
    text = io.StringIO(newline="")
    w = csv.writer(text)
    w.writerow(["image", "mask", "text", "split", "segment_id", *levels])
    for item, rec in zip(plan.items, records, strict=True):
        w.writerow(
            [
                os.path.relpath(item.image.absolute(), out.parent),
                os.path.relpath(item.mask.absolute(), out.parent),
                item.text,
                item.split,
                rec["segment_id"],
                *(rec["levels"].get(lv, "") for lv in levels),
            ]
        )
    side = out.with_suffix(".prepared.json")
    write_text_atomic(side, json.dumps({**record, "counts": plan.counts()}, indent=2) + "\n")
    write_text_atomic(out, text.getvalue())  # the manifest last: its presence means done
    return out
