"""Readers that turn a published dataset layout into a list of image/mask/text samples."""

from __future__ import annotations

import json
import os
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

SPLIT_FOLDERS = {"train": "Train", "val": "Val", "test": "Test"}


class DataError(ValueError):
    """A dataset on disk does not match what its layout promises; the message says how to fix it."""


class SplitAbsent(DataError):
    """The dataset has no such split at all (QaTa's public release has no test split).

    Only this is treated as "no test split"; a split that exists but is broken is a DataError.
    """


def _load_table(path: Path, what: str) -> pd.DataFrame:
    """A CSV (``,`` or ``;``, sniffed) or Excel sheet; an unreadable one is one clear DataError."""
    try:
        if path.suffix.lower() == ".csv":
            return pd.read_csv(path, sep=None, engine="python", encoding="utf-8-sig")
        return pd.read_excel(path)
    except UnicodeDecodeError as err:
        raise DataError(
            f"{path}: the {what} is not UTF-8 text (byte {err.start}: {err.reason}); "
            "save it as CSV UTF-8 (e.g. Excel: Save As > CSV UTF-8) or as .xlsx"
        ) from None
    except (ValueError, zipfile.BadZipFile, OSError, pd.errors.ParserError) as err:
        raise DataError(
            f"{path}: cannot read the {what} ({type(err).__name__}: {err}); re-save it as a "
            "valid .xlsx or a UTF-8 CSV"
        ) from None


@dataclass(frozen=True)
class Sample:
    """One image/mask/text triple."""

    image: Path
    mask: Path
    text: str
    # A manifest's prompt level with several alternatives (MedVLSM's p7-p9): training draws one
    # per item per epoch, evaluation uses ``text`` (the first). Empty: ``text`` is the only one.
    alternatives: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.image.name


def _read_sheet(path: Path) -> pd.DataFrame:
    df = _load_table(path, "text sheet")  # "," or ";" (MosMedData+'s Image;text CSV)
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
    raise (DataError if (root / f"{stem}_Folder").is_dir() else SplitAbsent)(
        f"no text sheet for split {split!r} under {root}: looked for {names} in "
        f"{root / (stem + '_Folder')} and {root}. Put the LViT text sheet there."
    )


# Image formats a sheet's ``.png`` may stand for (any case): a release whose images are .tif
# or .jpg while its masks and sheet keys say .png still loads, matched by the file stem.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


class _Folder:
    """The file names of one folder, looked up exactly first, then case-insensitively, and
    (images) by stem with another image extension."""

    def __init__(self, path: Path) -> None:
        names = [p.name for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
        self.path, self.exact = path, set(names)
        self.lower = {n.lower(): n for n in names}
        self.stems: dict[str, list[str]] = {}
        for n in names:
            stem, suffix = os.path.splitext(n)
            if suffix.lower() in IMAGE_SUFFIXES:
                self.stems.setdefault(stem.lower(), []).append(n)
        self.folded = 0
        self.by_stem: list[tuple[str, str]] = []

    def find(self, name: str) -> str | None:
        if name in self.exact:
            return name
        hit = self.lower.get(name.lower())
        self.folded += hit is not None
        return hit

    def find_image(self, name: str, where: str) -> str | None:
        """``name``, or the one image with its stem and another image extension."""
        hit = self.find(name)
        if hit is not None:
            return hit
        candidates = sorted(self.stems.get(os.path.splitext(name)[0].lower(), []))
        if len(candidates) > 1:
            raise DataError(
                f"{where}: image {name} is absent and {len(candidates)} files share its stem in "
                f"{self.path}: {', '.join(candidates)}; keep one of them (or name it exactly)"
            )
        if candidates:
            self.by_stem.append((name, candidates[0]))
            return candidates[0]
        return None


def _warn_stem_matches(folders: list[_Folder], sheet: Path) -> None:
    pairs = [p for f in folders for p in f.by_stem]
    if pairs:
        warnings.warn(
            f"{sheet}: {len(pairs)} image(s) found under another extension than the sheet "
            f"implies (e.g. {pairs[0][0]} -> {pairs[0][1]}); rename them to silence this warning",
            stacklevel=3,
        )


def _pair(
    rows: list[tuple[int, object, object]],
    sheet: Path,
    img_dir: Path,
    mask_dir: Path,
    elsewhere: tuple[Path, ...] = (),
    listed: set[str] | None = None,
) -> list[Sample]:
    """Sheet rows (row number, mask name, text) -> samples, with one clear error per problem.

    ``elsewhere``: the sheet also lists other splits' masks (QaTa's shared ``Train_Val_text``),
    so a row whose mask lies in one of these folders is skipped; a mask found in none of them
    is still an error. ``listed``: the mask names (lower case) the whole sheet gives text to,
    when ``rows`` is only part of it (Ariadne's validation carved out of ``train.csv``); a mask
    file in ``mask_dir`` listed nowhere is an error. Default: the names ``rows`` use.
    """
    for d in (img_dir, mask_dir):
        if not d.is_dir():
            raise DataError(
                f"missing folder {d} (expected images in {img_dir} and masks in {mask_dir}); "
                "create it or point dataset.root at the dataset's top folder"
            )
    images, masks = _Folder(img_dir), _Folder(mask_dir)
    others = [_Folder(d) for d in elsewhere if d.is_dir()]
    samples, used = [], set()
    for row, raw_mask, text in rows:
        mask_name = str(raw_mask).strip()
        found = masks.find(mask_name)
        if found is None:
            if any(o.find(mask_name) for o in others):
                continue
            where = " or ".join(str(d) for d in (mask_dir, *elsewhere))
            raise DataError(
                f"{sheet} row {row}: mask {mask_name} does not exist in {where}; add the mask "
                "file or delete the row"
            )
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{sheet} row {row}: empty Description for {mask_name}; write its text")
        base = mask_name[5:] if mask_name.lower().startswith("mask_") else mask_name
        image = images.find_image(base, f"{sheet} row {row}")
        if image is None:
            raise DataError(
                f"{sheet} row {row}: image {img_dir / base} for mask {found} does not exist; add "
                "the image (same name as the mask, without a 'mask_' prefix) or delete the row"
            )
        used.add(found)
        samples.append(Sample(image=img_dir / image, mask=mask_dir / found, text=text.strip()))
    if listed is None:
        unlisted = sorted(masks.exact - used)
    else:
        unlisted = sorted(n for n in masks.exact if n.lower() not in listed)
    if unlisted:
        raise DataError(
            f"{len(unlisted)} mask(s) in {mask_dir} have no text row in {sheet} "
            f"(e.g. {unlisted[:3]}); add their rows to the sheet or move the files out"
        )
    _warn_stem_matches([images], sheet)
    folded = images.folded + masks.folded
    if folded:
        warnings.warn(
            f"{sheet}: {folded} file name(s) matched only case-insensitively; rename them to "
            "match the sheet exactly to silence this warning",
            stacklevel=2,
        )
    if not samples:
        raise DataError(
            f"split in {mask_dir} is empty: no rows of {sheet} match its masks; put the split's "
            "masks there or fix the sheet's Image column (it names mask files)"
        )
    return samples


def _sheet_rows(df: pd.DataFrame) -> list[tuple[int, object, object]]:
    return list(zip(range(2, len(df) + 2), df["Image"], df["Description"], strict=True))


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
    sheet = _find_sheet(root, split)
    df = _read_sheet(sheet)
    elsewhere: tuple[Path, ...] = ()
    if sheet.name.startswith("Train_Val"):  # one sheet for both: skip the other split's rows
        other = SPLIT_FOLDERS["val" if split == "train" else "train"]
        elsewhere = (root / f"{other}_Folder" / "labelcol",)
    return _pair(_sheet_rows(df), sheet, folder / "img", folder / "labelcol", elsewhere)


ARIADNE_VAL_FRACTION = 0.2


def read_ariadne(root: str | Path, split: str) -> list[Sample]:
    """Read one split of Ariadne's Thread's layout.

    ``ROOT/{Train,Val,Test}/{Images,GTs}`` (or ``Ground-truths``) with ``ROOT/prompt/{split}.csv``
    (columns Image = mask file name, Description). Without ``val.csv``, the last 20% of
    ``train.csv`` (rows from the Train folder) is the validation split.
    """
    root = Path(root)
    prompt = root / "prompt"
    if not prompt.is_dir():
        raise DataError(
            f"dataset root {root} "
            + ("has no prompt/ folder" if root.is_dir() else "does not exist")
            + " (expected Ariadne's layout "
            "ROOT/{Train,Test}/{Images,GTs} and ROOT/prompt/{train,test}.csv); set dataset.root"
        )
    sheet, folder, part = prompt / f"{split}.csv", root / SPLIT_FOLDERS[split], None
    if split in ("train", "val") and not (prompt / "val.csv").is_file():
        sheet, folder = prompt / "train.csv", root / "Train"
        part = split
    if not sheet.is_file():
        raise (DataError if folder.is_dir() else SplitAbsent)(
            f"missing prompt sheet {sheet} for split {split!r} (Ariadne layout: "
            f"prompt/{sheet.name} with columns Image, Description for {folder}); add it"
        )
    df = _read_sheet(sheet)
    rows = _sheet_rows(df)
    listed = None
    if part is not None:
        listed = {str(m).strip().lower() for _, m, _ in rows}
        cut = int(round(len(rows) * (1 - ARIADNE_VAL_FRACTION)))
        rows = rows[:cut] if part == "train" else rows[cut:]
    masks = next(
        (folder / n for n in ("GTs", "Ground-truths") if (folder / n).is_dir()), folder / "GTs"
    )
    # A validation split carved out of train.csv shares the Train folders: a mask there needs a
    # row somewhere in train.csv, not in this split's part of it.
    return _pair(rows, sheet, folder / "Images", masks, listed=listed)


LAYOUTS = {"lvit": read_lvit, "ariadne": read_ariadne}


def detect_layout(root: str | Path) -> str:
    """``lvit`` or ``ariadne`` from the folders under ``root``."""
    root = Path(root)
    if any((root / f"{s}_Folder").is_dir() for s in SPLIT_FOLDERS.values()):
        return "lvit"
    if (root / "prompt").is_dir():
        return "ariadne"
    raise DataError(
        f"cannot tell the layout of {root}: expected the LViT layout (Train_Folder/img, "
        "Train_Folder/labelcol + Train_text.xlsx) or Ariadne's (Train/Images, Train/GTs + "
        "prompt/train.csv). Set dataset.root to the folder that holds them"
        + ("" if root.is_dir() else f" ({root} does not exist; set dataset.root or TMC_DATA_DIR)")
    )


MANIFEST_COLUMNS = ("image", "mask", "text", "split")


PROMPT_LEVELS = tuple(f"p{i}" for i in range(10))


def prompt_cell(value: object) -> list[str]:
    """A prompt-level cell of a manifest: one text, or a JSON list of alternatives."""
    if value is None or (isinstance(value, float) and value != value):  # empty cell (NaN)
        return [""]
    text = str(value).strip()
    if text.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list) and items and all(isinstance(t, str) for t in items):
            return [t.strip() for t in items]
    return [text]


def read_manifest(path: str | Path, split: str, prompt: str | None = None) -> list[Sample]:
    """Read one split of a manifest: CSV or xlsx with columns image, mask, text, split.

    Paths are relative to the manifest's folder; ``split`` is train, val or test. This is the
    route for Duke-Breast (whose text is not public) and for users' own data.

    ``prompt``: a prompt-level column (``p0`` .. ``p9``, as ``tmc-data prepare medvlsm`` writes
    them) to read instead of ``text``; a cell may hold a JSON list of alternatives. ``p0`` is
    the empty prompt (a text-free run).
    """
    if prompt is not None and prompt not in PROMPT_LEVELS:
        raise DataError(f"dataset.prompt={prompt!r}: use one of p0 .. p9, or null for 'text'")
    path = Path(path).expanduser()
    if not path.is_file():
        raise DataError(
            f"manifest {path} does not exist (expected a CSV or xlsx with columns "
            f"{', '.join(MANIFEST_COLUMNS)}); set dataset.manifest=/path/to/manifest.csv"
        )
    df = _load_table(path, "manifest")
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in (*MANIFEST_COLUMNS, prompt) if c and c not in df.columns]
    if prompt is not None and "text" in missing:
        missing.remove("text")
    if prompt is not None and prompt in missing:
        levels = [c for c in df.columns if c in PROMPT_LEVELS]
        raise DataError(
            f"{path}: dataset.prompt={prompt}, but the manifest has no column {prompt} (its "
            f"prompt levels: {', '.join(levels) or 'none'}); pick one of those or write the "
            "manifest with `tmc-data prepare medvlsm`"
        )
    if missing:
        raise DataError(
            f"{path}: manifest lacks column(s) {missing}; found {list(df.columns)}. "
            f"It needs {', '.join(MANIFEST_COLUMNS)} (paths relative to the manifest)."
        )
    samples, folders = [], {}
    for row, rec in enumerate(df.to_dict("records"), start=2):
        if str(rec["split"]).strip().lower() != split:
            continue
        alternatives: tuple[str, ...] = ()
        if prompt is None:
            text = rec["text"]
            if not isinstance(text, str) or not text.strip():
                raise DataError(
                    f"{path} row {row}: empty text for {rec['image']}; write its description"
                )
        else:
            options = prompt_cell(rec[prompt])
            if prompt != "p0" and not all(options):
                raise DataError(
                    f"{path} row {row}: empty {prompt} prompt for {rec['image']}; write it, "
                    "or pick another level (dataset.prompt); only p0 is empty by design"
                )
            text = options[0]
            alternatives = tuple(options) if len(options) > 1 else ()
        files = {}
        for key in ("image", "mask"):
            p = path.parent / str(rec[key]).strip()
            if key == "image" and not p.is_file() and p.parent.is_dir():
                if p.parent not in folders:
                    folders[p.parent] = _Folder(p.parent)
                found = folders[p.parent].find_image(p.name, f"{path} row {row}")
                p = p.parent / found if found else p
            if not p.is_file():
                raise DataError(
                    f"{path} row {row}: {key} {p} does not exist; fix the path (relative to the "
                    "manifest's folder) or delete the row"
                )
            files[key] = p
        samples.append(
            Sample(files["image"], files["mask"], text.strip(), alternatives=alternatives)
        )
    _warn_stem_matches(list(folders.values()), path)
    if not samples:
        raise SplitAbsent(
            f"split {split!r} of manifest {path} is empty: no row has split={split}; give some "
            f"rows split={split}"
        )
    return samples
