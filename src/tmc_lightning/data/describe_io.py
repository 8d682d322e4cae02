"""``tmc-data describe``: a description for every mask, written in the dataset's own layout.

Only the masks are read, so a dataset with masks but no reports gets its text sheet this way:

- LViT layout (QaTa-COV19, MosMedData+, the embedded set): an LViT text sheet for one split,
  columns ``Image`` (the mask's file name, as LViT's sheets key it) and ``Description``;
- a manifest (``dataset=custom``/``breast``): the manifest with its ``text`` column filled
  (a text already there is kept in ``text_given``).

The output is a new file (``.csv`` or ``.xlsx``); an existing file is never overwritten.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from tmc_lightning.data.describe import DescribeOptions, describe_mask
from tmc_lightning.data.imageio import read_mask
from tmc_lightning.data.layouts import SPLIT_FOLDERS, DataError, _load_table, detect_layout

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


def lvit_sheet(root: Path, split: str, opts: DescribeOptions) -> pd.DataFrame:
    """Image (mask file name) and Description for every mask of one LViT-layout split."""
    if split not in SPLIT_FOLDERS:
        raise DataError(f"split={split!r}: use one of {', '.join(SPLIT_FOLDERS)}")
    folder = root / f"{SPLIT_FOLDERS[split]}_Folder" / "labelcol"
    if not folder.is_dir():
        raise DataError(f"{folder} does not exist: the LViT layout keeps a split's masks there")
    masks = sorted(p for p in folder.iterdir() if p.suffix.lower() in MASK_SUFFIXES)
    if not masks:
        raise DataError(f"{folder} holds no mask images ({', '.join(MASK_SUFFIXES)})")
    rows = [{"Image": p.name, "Description": describe_mask(read_mask(p) > 0, opts)} for p in masks]
    return pd.DataFrame(rows, columns=["Image", "Description"])


def described_manifest(path: Path, opts: DescribeOptions) -> pd.DataFrame:
    """The manifest with its ``text`` column written from each row's mask."""
    df = _load_table(path, "manifest")
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "mask" not in df.columns:
        raise DataError(f"{path}: manifest lacks a mask column; found {list(df.columns)}")
    texts = []
    for row, rel in enumerate(df["mask"], start=2):
        mask = path.parent / str(rel).strip()
        if not mask.is_file():
            raise DataError(f"{path} row {row}: mask {mask} does not exist; fix the path")
        texts.append(describe_mask(read_mask(mask) > 0, opts))
    if "text" in df.columns and df["text"].notna().any():
        df["text_given"] = df["text"]
    df["text"] = texts
    return df


def write_table(df: pd.DataFrame, out: Path) -> None:
    """Write ``df`` to a new ``out`` (.csv or .xlsx), all at once."""
    suffix = out.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise DataError(f"out={out}: write a .csv or an .xlsx file")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=suffix)
    os.close(fd)
    try:
        if suffix == ".csv":
            df.to_csv(tmp, index=False)
        else:
            df.to_excel(tmp, index=False)
        try:  # a hard link fails if out exists: nothing another process wrote meanwhile is lost
            os.link(tmp, out)
        except FileExistsError:
            raise DataError(
                f"out={out} exists; describe never overwrites, pick a new file"
            ) from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def write_descriptions(dm, out: str | Path, opts: DescribeOptions, split: str = "train") -> Path:
    """Describe every mask of ``dm``'s dataset into the new file ``out``; returns it."""
    out = Path(out).expanduser()
    if out.exists():
        raise DataError(f"out={out} exists; describe never overwrites, pick a new file")
    root = dm.resolve_root()
    if root.suffix.lower() in (".csv", ".xlsx", ".xls"):  # a manifest
        if not root.is_file():
            raise DataError(f"manifest {root} does not exist; set dataset.manifest=...")
        df = described_manifest(root, opts)
    elif detect_layout(root) == "lvit":
        df = lvit_sheet(root, split, opts)
    else:
        raise DataError(
            f"{root}: describe writes LViT sheets and manifests; for Ariadne's layout, "
            "describe a manifest of the same files (dataset=custom)"
        )
    write_table(df, out)
    return out
