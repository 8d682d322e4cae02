"""Decoded, resized images and masks cached on disk per dataset version.

Decoding and resizing thousands of PNGs would otherwise open every run (and every epoch if
done per step). The key hashes each file's path, size and modification time plus the target
size, so editing, adding or removing a file invalidates the cache. Arrays are memory-mapped.
"""

from __future__ import annotations

import hashlib
import os
import uuid
import warnings
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
        cached = _load_valid(paths, len(samples), image_size)
        if cached is not None:
            return cached
    arrays = decode(samples)
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Write-then-rename: a killed process leaves at most a stray .tmp file, and two processes
    # building the same entry at once each write their own temporary file and the second
    # rename wins, with identical content; no reader ever sees half a file.
    for path, arr in zip(paths, arrays, strict=True):
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        with tmp.open("wb") as f:
            np.save(f, arr)
        os.replace(tmp, path)
    return arrays


def _load_valid(paths: list[Path], n: int, size: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The memory-mapped entry, or None (with a warning) if it is short, unreadable or not
    the arrays this dataset version needs: the caller then rebuilds it."""
    try:
        arrays = tuple(np.load(p, mmap_mode="r") for p in paths)
    except (OSError, ValueError, EOFError) as err:
        problem = f"unreadable ({str(err).splitlines()[0][:120]})"
    else:
        if all(a.shape == (n, size, size) and a.dtype == np.uint8 for a in arrays):
            return arrays  # type: ignore[return-value]
        problem = (
            f"of the wrong shape {[a.shape for a in arrays]} (expected ({n}, {size}, {size}) uint8)"
        )
    warnings.warn(f"decoded cache entry {paths[0].name} is {problem}; rebuilding it", stacklevel=3)
    return None
