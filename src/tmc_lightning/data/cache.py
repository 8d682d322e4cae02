"""Decoded, resized images and masks cached on disk per dataset version.

Decoding and resizing thousands of PNGs would otherwise open every run (and every epoch if
done per step). The key hashes each file's path, size and modification time plus the target
size, so editing, adding or removing a file invalidates the cache. Arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tmc_lightning.data.layouts import Sample

# Bumped when decoding changes (2: masks of 0 and any one other value are binarised exactly).
CACHE_VERSION = "2"


def cache_key(samples: list[Sample], image_size: int) -> str:
    h = hashlib.sha256(f"v{CACHE_VERSION}|{image_size}".encode())
    for s in samples:
        for p in (s.image, s.mask):
            st = p.stat()
            h.update(f"{p.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:20]


def cached_arrays(
    samples: list[Sample],
    image_size: int,
    cache_dir: Path | None,
    decode: Callable[[list[Sample]], tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """(images, masks) from ``cache_dir`` if this exact dataset version is there, else decoded
    with ``decode`` and stored (atomically: a crash leaves no half-written cache)."""
    if cache_dir is None:
        return decode(samples)
    key = cache_key(samples, image_size)
    paths = [cache_dir / f"{key}_{kind}.npy" for kind in ("images", "masks")]
    if all(p.is_file() for p in paths):
        return tuple(np.load(p, mmap_mode="r") for p in paths)  # type: ignore[return-value]
    arrays = decode(samples)
    cache_dir.mkdir(parents=True, exist_ok=True)
    for path, arr in zip(paths, arrays, strict=True):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    return arrays
