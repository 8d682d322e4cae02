"""Readers that turn a published dataset layout into a list of image/mask/text samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}


class DataError(ValueError):
    """A dataset on disk does not match what its layout promises; the message says how to fix it."""


@dataclass(frozen=True)
class Sample:
    """One image/mask/text triple."""

    image: Path
    mask: Path
    text: str

    @property
    def name(self) -> str:
        return self.image.name


def _read_sheet(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        df = pd.read_csv(path, sep=None, engine="python")  # sniffs "," or ";" (MosMedData+)
    else:
        df = pd.read_excel(path)
    df.columns = [str(c).strip() for c in df.columns]
    if "text" in df.columns and "Description" not in df.columns:
        df = df.rename(columns={"text": "Description"})
    missing = {"Image", "Description"} - set(df.columns)
    if missing:
        raise DataError(
            f"{path}: text sheet lacks column(s) {sorted(missing)}; found {list(df.columns)}. "
            "An LViT-layout sheet needs columns 'Image' (the mask file name) and 'Description'."
        )
    return df


def _find_sheet(root: Path, split: str) -> Path:
    stem = SPLIT_FOLDERS[split]
    names = [f"{stem}_text.xlsx", f"{stem}_text.csv"]
    if split in ("train", "val"):
        names += ["Train_Val_text.xlsx", "Train_Val_text.csv"]  # QaTa's release shares one sheet
    for folder in (root / f"{stem}_Folder", root):
        for name in names:
            if (folder / name).is_file():
                return folder / name
    raise DataError(
        f"no text sheet for split {split!r} under {root}: looked for {names} in "
        f"{root / (stem + '_Folder')} and {root}. Put the LViT text sheet there."
    )


def read_lvit(root: str | Path, split: str) -> list[Sample]:
    """Read one split of the LViT release layout (QaTa-COV19, MosMedData+, the synthetic set).

    ``ROOT/{Split}_Folder/{img,labelcol}`` plus a sheet keyed by mask file name. A QaTa mask
    ``mask_<name>`` belongs to image ``<name>``; MosMedData+ masks share the image's name.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"dataset root {root} does not exist (expected the LViT layout "
            "ROOT/{Train,Val,Test}_Folder/{img,labelcol}); set dataset.root or TMC_DATA_DIR."
        )
    folder = root / f"{SPLIT_FOLDERS[split]}_Folder"
    img_dir, mask_dir = folder / "img", folder / "labelcol"
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(f"missing folder {d} (LViT layout: {folder}/img and {folder}/labelcol)")
    sheet = _find_sheet(root, split)
    df = _read_sheet(sheet)
    masks = {p.name for p in mask_dir.iterdir()}
    shared = sheet.name.startswith("Train_Val")
    samples = []
    for row, (mask_name, text) in enumerate(
        zip(df["Image"], df["Description"], strict=True), start=2
    ):
        mask_name = str(mask_name).strip()
        if mask_name not in masks:
            if shared:
                continue  # the row belongs to the other split of a shared sheet
            raise DataError(f"{sheet} row {row}: mask {mask_dir / mask_name} does not exist")
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{sheet} row {row}: empty Description for {mask_name}; write its text")
        image_name = mask_name[5:] if mask_name.startswith("mask_") else mask_name
        image = img_dir / image_name
        if not image.is_file():
            raise DataError(f"{sheet} row {row}: image {image} for mask {mask_name} does not exist")
        samples.append(Sample(image=image, mask=mask_dir / mask_name, text=text.strip()))
    if not samples:
        raise DataError(f"split {split!r} of {root} is empty: no rows of {sheet} match {mask_dir}")
    return samples


MANIFEST_COLUMNS = ("image", "mask", "text", "split")


def read_manifest(path: str | Path, split: str) -> list[Sample]:
    """Read one split of a manifest: CSV or xlsx with columns image, mask, text, split.

    Paths are relative to the manifest's folder; ``split`` is train, val or test. This is the
    route for Duke-Breast (whose text is not public) and for users' own data.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"manifest {path} does not exist (expected a CSV or xlsx with columns "
            f"{', '.join(MANIFEST_COLUMNS)}); set dataset.manifest=/path/to/manifest.csv"
        )
    df = pd.read_excel(path) if path.suffix.lower() in (".xlsx", ".xls") else pd.read_csv(path)
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in MANIFEST_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(
            f"{path}: manifest lacks column(s) {missing}; found {list(df.columns)}. "
            f"It needs {', '.join(MANIFEST_COLUMNS)} (paths relative to the manifest)."
        )
    samples = []
    for row, rec in enumerate(df.to_dict("records"), start=2):
        if str(rec["split"]).strip().lower() != split:
            continue
        text = rec["text"]
        if not isinstance(text, str) or not text.strip():
            raise DataError(
                f"{path} row {row}: empty text for {rec['image']}; write its description"
            )
        files = {}
        for key in ("image", "mask"):
            p = path.parent / str(rec[key]).strip()
            if not p.is_file():
                raise DataError(f"{path} row {row}: {key} {p} does not exist")
            files[key] = p
        samples.append(Sample(image=files["image"], mask=files["mask"], text=text.strip()))
    if not samples:
        raise DataError(f"split {split!r} of manifest {path} is empty: no row has split={split}")
    return samples
