"""Where the suite looks for data and keeps its caches, decided once.

- ``data_root()``: ``$TMC_DATA_DIR``, else ``./data``; the dataset configs' default roots
  (``conf/dataset/*.yaml``, through the ``data_dir`` resolver) sit under it.
- ``cache_root()``: ``$TMC_CACHE_DIR``, else ``~/.cache/tmc_lightning``: the embedded dataset,
  decoded arrays (``decoded/``), fetched encoders (``encoders/``, or ``$TMC_WEIGHTS_DIR``) and
  the measured precision choices.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """``$TMC_DATA_DIR``, else ``data`` (relative to the working folder)."""
    return Path(os.environ.get("TMC_DATA_DIR") or "data").expanduser()


def cache_root() -> Path:
    """``$TMC_CACHE_DIR``, else ``~/.cache/tmc_lightning``."""
    env = os.environ.get("TMC_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tmc_lightning"


def weights_root() -> Path:
    """``$TMC_WEIGHTS_DIR``, else ``cache_root() / "encoders"``."""
    env = os.environ.get("TMC_WEIGHTS_DIR")
    return Path(env).expanduser() if env else cache_root() / "encoders"
