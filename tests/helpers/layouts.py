"""Tiny datasets in the layouts the readers take (LViT, Ariadne), written into tmp folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

TEXT = "Bilateral pulmonary infection, two infected areas, upper left lung and lower right lung."


def pair(img_dir, mask_dir, name, mask_name, size=(32, 32)):
    img_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], 100, np.uint8)).save(img_dir / name)
    m = np.zeros(size[::-1], np.uint8)
    m[4:10, 4:10] = 255
    Image.fromarray(m).save(mask_dir / mask_name)


def make_lvit(root, n=3, mosmed=False):
    for split, stem in (("train", "Train"), ("val", "Val")):
        rows = []
        for i in range(n):
            name = f"{split}{i}.png"
            mask = name if mosmed else f"mask_{name}"
            pair(root / f"{stem}_Folder" / "img", root / f"{stem}_Folder" / "labelcol", name, mask)
            rows.append({"Image": mask, "Description": TEXT})
        pd.DataFrame(rows).to_excel(root / f"{stem}_Folder" / f"{stem}_text.xlsx", index=False)
    return root


def make_lvit_shared_sheet(root):
    """QaTa's release variant: one Train_Val_text.xlsx at the root instead of a sheet per split."""
    make_lvit(root)
    frames = [pd.read_excel(root / f"{s}_Folder" / f"{s}_text.xlsx") for s in ("Train", "Val")]
    for s in ("Train", "Val"):
        (root / f"{s}_Folder" / f"{s}_text.xlsx").unlink()
    pd.concat(frames).to_excel(root / "Train_Val_text.xlsx", index=False)
    return root


def make_ariadne(root, n=5):
    rows = []
    for i in range(n):
        pair(root / "Train" / "Images", root / "Train" / "GTs", f"c{i}.png", f"mask_c{i}.png")
        rows.append({"Image": f"mask_c{i}.png", "Description": TEXT})
    (root / "prompt").mkdir(parents=True)
    pd.DataFrame(rows).to_csv(root / "prompt" / "train.csv", index=False)
    return root


VAL_TEXTS = [
    "Bilateral pulmonary infection, two infected areas, all left lung and all right lung.",
    "Unilateral pulmonary infection, one infected area, lower left lung.",
    "Unilateral pulmonary infection, one infected area, lower left lung.",  # a repeat
    "Unilateral pulmonary infection, one infected area, middle right lung.",
    "Bilateral pulmonary infection, two infected areas, lower left lung and lower right lung.",
    "Unilateral pulmonary infection, one infected area, upper right lung.",
]


def make_lvit_dataset(root: Path, size: int = 48, texts: list[str] = VAL_TEXTS) -> Path:
    """A tiny QaTa-like set in the LViT layout (``mask_<image>``, CSV sheets), 2 train + val."""
    rng = np.random.default_rng(0)
    for stem, split_texts in (("Train", texts[:2]), ("Val", texts)):
        folder = root / f"{stem}_Folder"
        (folder / "img").mkdir(parents=True)
        (folder / "labelcol").mkdir()
        rows = []
        for i, text in enumerate(split_texts):
            name = f"covid_{stem.lower()}_{i}.png"
            yy, xx = np.mgrid[:size, :size]
            lungs = 90 + 60 * np.cos((xx - size / 2) / size * 3) + rng.normal(0, 8, (size, size))
            Image.fromarray(lungs.clip(0, 255).astype(np.uint8)).save(folder / "img" / name)
            mask = np.zeros((size, size), np.uint8)
            mask[size // 2 :, 4 : size // 3] = 255
            Image.fromarray(mask).save(folder / "labelcol" / f"mask_{name}")
            rows.append({"Image": f"mask_{name}", "Description": text})
        pd.DataFrame(rows).to_csv(folder / f"{stem}_text.csv", index=False)
    return root
