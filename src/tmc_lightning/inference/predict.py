"""Segment images from a text prompt: ``tmc-predict ckpt_path=... input=... text="..."``.

``input`` is one image, a folder of images (all with the same ``text``), or a CSV with columns
``image`` and ``text`` (paths relative to the CSV). Per image it writes ``<stem>_mask.png`` (0/255,
original size), ``<stem>_overlay.png`` (fill, contour and the prompt) and, with ``prob=true``,
``<stem>_prob.png`` (probability x 255). All inputs are checked before anything is written: each
image's size is read from its header first (at most ``MAX_SIDE`` pixels a side, see
:func:`tmc_lightning.data.imageio.header_size`), then every image is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from rich.progress import track

from tmc_lightning.data.imageio import header_size, read_image
from tmc_lightning.data.layouts import DataError
from tmc_lightning.inference.overlay import overlay
from tmc_lightning.inference.predictor import Predictor

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


@dataclass(frozen=True)
class Job:
    image: Path
    text: str


def collect_jobs(source: str | Path, text: str | None) -> list[Job]:
    """The (image, prompt) pairs named by ``source``; raises before any output is written."""
    source = Path(source).expanduser()
    if source.is_dir():
        images = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DataError(f"input folder {source} holds no images ({sorted(IMAGE_SUFFIXES)})")
        return [Job(p, text or "") for p in images]
    if source.suffix.lower() == ".csv":
        df = pd.read_csv(source)
        missing = {"image", "text"} - set(df.columns)
        if missing:
            raise DataError(
                f"{source}: needs columns 'image' and 'text'; missing {sorted(missing)}"
            )
        jobs = []
        for row, (img, prompt) in enumerate(zip(df["image"], df["text"], strict=True), start=2):
            path = (source.parent / str(img)).resolve()
            if not path.is_file():
                raise DataError(f"{source} row {row}: image {path} does not exist")
            jobs.append(Job(path, "" if pd.isna(prompt) else str(prompt)))
        if not jobs:
            raise DataError(f"{source} has no rows")
        return jobs
    if source.is_file():
        return [Job(source, text or "")]
    raise DataError(f"input {source} does not exist; pass an image, a folder of images or a CSV")


def predict(
    ckpt_path: str,
    source: str,
    text: str | None,
    out: str,
    prob: bool = False,
    batch_size: int = 8,
    device: str = "cpu",
    threshold: float = 0.5,
) -> list[Path]:
    predictor = Predictor.from_checkpoint(ckpt_path, device)
    jobs = collect_jobs(source, text)
    for job in jobs:  # validate every prompt and image before writing anything
        predictor.check_text(job.text, str(job.image))
    for job in jobs:  # every image's size from its header, before any is decoded
        header_size(job.image)
    grays = {job.image: read_image(job.image) for job in jobs}
    out_dir = Path(out)
    names = [job.image.stem for job in jobs]
    if len(set(names)) != len(names):
        raise DataError(
            "two inputs share a file name stem; their outputs would overwrite each other"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    batches = [jobs[i : i + batch_size] for i in range(0, len(jobs), batch_size)]
    for batch in track(batches, description="Segmenting", disable=len(batches) < 2):
        probs = predictor.probabilities([grays[j.image] for j in batch], [j.text for j in batch])
        for job, p in zip(batch, probs, strict=True):
            mask = p > threshold
            stem = out_dir / job.image.stem
            Image.fromarray(mask.astype(np.uint8) * 255).save(f"{stem}_mask.png")
            overlay(grays[job.image], mask, job.text).save(f"{stem}_overlay.png")
            written += [Path(f"{stem}_mask.png"), Path(f"{stem}_overlay.png")]
            if prob:
                Image.fromarray((p * 255).round().astype(np.uint8)).save(f"{stem}_prob.png")
                written.append(Path(f"{stem}_prob.png"))
    print(f"wrote {len(written)} files for {len(jobs)} image(s) to {out_dir}")
    if predictor.uses_text:
        print(predictor.convention_note())
    return written
