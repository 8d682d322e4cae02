"""Export a dataset for nnU-Net v2: ``tmc-export nnunet dataset=qata out=/path/to/nnUNet_raw``.

Writes an nnU-Net v2 raw dataset ``out/DatasetXXX_Name/``:

- ``imagesTr/<case>_0000.png`` + ``labelsTr/<case>.png``: our train and val splits together
  (nnU-Net runs its own cross-validation); ``splits_final.json`` holds one fold that is exactly
  our train/val split, so nnU-Net's fold 0 trains and validates on the cases ours do
  (``nnUNetv2_plan_and_preprocess`` copies it into ``$nnUNet_preprocessed``; folds 1-4 are then
  undefined and nnU-Net falls back to a random 80:20 split for them).
- ``imagesTs/<case>_0000.png`` + ``labelsTs/<case>.png``: the test split, or the val split when
  the dataset has no test split (QaTa's shared release), so predictions are scored on the split
  our runs report. nnU-Net itself ignores ``labelsTs``; :func:`score_predictions` uses it.
- ``dataset.json`` (channel_names, labels, numTraining, file_ending) and ``cases.csv`` (case,
  split, source image and mask, text), so each case maps back to its text and files.

Images are written at their own size as one gray 8-bit channel (what our loaders feed the models
before resizing); labels are uint8 {0, 1} at the same size. The case name is the image's file
stem. Everything is written to a temporary sibling folder and renamed at the end, so a bad input
leaves no partial dataset behind.
"""

from __future__ import annotations

import csv
import json
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from tmc_lightning.data.imageio import check_pair, read_image, read_mask
from tmc_lightning.data.layouts import DataError, Sample
from tmc_lightning.metrics import GlobalDiceIoU, PerImageDiceIoU
from tmc_lightning.utils import atomic_folder

LABELS = {"background": 0, "lesion": 1}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def dataset_folder(out: str | Path, dataset_id: int, name: str) -> Path:
    """``out/DatasetXXX_Name`` after checking the id and name nnU-Net accepts."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset_id={dataset_id} must be 1-999 (nnU-Net's DatasetXXX number)")
    if not NAME_RE.match(name):
        raise ValueError(
            f"dataset_name={name!r} must be letters, digits, '_' or '-' (it becomes the folder "
            "name DatasetXXX_<name>); set dataset_name=..."
        )
    return Path(out).expanduser() / f"Dataset{int(dataset_id):03d}_{name}"


def read_splits(dm) -> tuple[dict[str, list[Sample]], str]:
    """Our train, val and (if present) test samples, and which split goes to imagesTs."""
    splits = {s: dm.read_split(s) for s in ("train", "val")}
    held_out = "test" if dm.has_split("test") else "val"
    if held_out == "test":
        splits["test"] = dm.read_split("test")
    return splits, held_out


def _unique_ids(samples: list[Sample], where: str) -> list[str]:
    ids = [s.image.stem for s in samples]
    seen: dict[str, Path] = {}
    for case, s in zip(ids, samples, strict=True):
        if case in seen:
            raise DataError(
                f"two images would both become nnU-Net case {case!r} in {where}: {seen[case]} "
                f"and {s.image}; rename one of them"
            )
        seen[case] = s.image
    return ids


def _write_case(job: tuple[Sample, Path, Path]) -> None:
    sample, image_path, label_path = job
    check_pair(sample.image, sample.mask)
    Image.fromarray(read_image(sample.image)).save(image_path)
    Image.fromarray(read_mask(sample.mask)).save(label_path)


def export_nnunet(
    dm,
    out: str | Path,
    dataset_id: int = 501,
    dataset_name: str = "tmc",
    channel_name: str = "zscore",
    overwrite: bool = False,
    workers: int = 4,
) -> Path:
    """Write ``dm``'s splits as nnU-Net v2 raw dataset ``out/DatasetXXX_<name>``; returns it.

    Refuses an existing folder (or another name under the same id) unless ``overwrite``.
    """
    target = dataset_folder(out, dataset_id, dataset_name)
    _check_target(target, int(dataset_id), overwrite)
    splits, held_out = read_splits(dm)
    parts = {
        "Tr": (splits["train"] + splits["val"], "imagesTr (train + val)"),
        "Ts": (splits[held_out], "imagesTs"),
    }
    ids = {key: _unique_ids(samples, where) for key, (samples, where) in parts.items()}
    with atomic_folder(target, replace=True) as tmp:  # overwrite: swapped after a whole build
        _write_cases(tmp, parts, ids, workers)
        n_train = len(splits["train"])
        _write_json(
            tmp / "dataset.json",
            {
                "name": dataset_name,
                "description": f"{dm.name} from {dm.resolve_root()}, exported by tmc-export: train "
                f"+ val in imagesTr (fold 0 of splits_final.json = our split), {held_out} in imagesTs",
                "channel_names": {"0": channel_name},
                "labels": LABELS,
                "numTraining": len(ids["Tr"]),
                "file_ending": ".png",
            },
        )
        _write_json(
            tmp / "splits_final.json", [{"train": ids["Tr"][:n_train], "val": ids["Tr"][n_train:]}]
        )
        _write_index(tmp / "cases.csv", splits, held_out)
    return target


def _check_target(target: Path, dataset_id: int, overwrite: bool) -> None:
    """Refuse an existing dataset folder (unless ``overwrite``) or another name for the id."""
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target} already exists; set overwrite=true to replace it or choose another "
            "dataset_id / dataset_name"
        )
    others = sorted(p.name for p in target.parent.glob(f"Dataset{dataset_id:03d}_*"))
    others = [n for n in others if n != target.name and not n.startswith(".")]
    if others:
        raise FileExistsError(
            f"{target.parent} already holds {others[0]} with id {dataset_id:03d}; nnU-Net "
            "needs one name per id: choose another dataset_id"
        )


def _write_cases(
    tmp: Path, parts: dict[str, tuple[list[Sample], str]], ids: dict[str, list[str]], workers: int
) -> None:
    """Every image and label PNG, decoded and written by ``workers`` threads."""
    jobs = []
    for key, (samples, _) in parts.items():
        for sub in (f"images{key}", f"labels{key}"):
            (tmp / sub).mkdir(parents=True)
        jobs += [
            (s, tmp / f"images{key}" / f"{c}_0000.png", tmp / f"labels{key}" / f"{c}.png")
            for s, c in zip(samples, ids[key], strict=True)
        ]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        for _ in pool.map(_write_case, jobs):  # re-raises the first failure
            pass


def _write_index(path: Path, splits: dict[str, list[Sample]], held_out: str) -> None:
    """``cases.csv``: each case's split, folder, source files and text."""
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["case", "split", "folder", "image", "mask", "text"])
        for split, folder in (("train", "imagesTr"), ("val", "imagesTr"), (held_out, "imagesTs")):
            for s in splits[split]:
                w.writerow([s.image.stem, split, folder, s.image, s.mask, s.text])


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")


def score_predictions(pred_dir: str | Path, labels_dir: str | Path) -> dict[str, float]:
    """Our metrics (per-image and global Dice / IoU) for nnU-Net's predicted PNGs.

    ``labels_dir`` is the export's ``labelsTs``; every label needs a prediction of the same name.
    """
    per_image, global_ = PerImageDiceIoU(), GlobalDiceIoU()
    labels = sorted(Path(labels_dir).glob("*.png"))
    if not labels:
        raise DataError(f"no label PNGs in {labels_dir}; pass the export's labelsTs folder")
    for label in labels:
        pred = Path(pred_dir) / label.name
        if not pred.is_file():
            raise DataError(f"no prediction {pred} for label {label}; run nnUNetv2_predict first")
        with Image.open(pred) as im:
            p = torch.from_numpy(np.asarray(im) > 0)[None, None]  # (1, 1, H, W)
        g = torch.from_numpy(read_mask(label))[None, None].float()
        if p.shape != g.shape:
            raise DataError(
                f"prediction {pred} is {tuple(p.shape[2:])}, label {tuple(g.shape[2:])}"
            )
        logits = p.float() * 2 - 1  # metrics threshold logits at 0
        per_image.update(logits, g)
        global_.update(logits, g)
    scores = {**per_image.compute(), **global_.compute()}
    return {"n": len(labels), **{k: float(v) for k, v in scores.items()}}
