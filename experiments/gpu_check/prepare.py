"""Fetch what the GPU check needs on a machine without network: wheels and a QaTa subset.

    .venv/bin/python experiments/gpu_check/prepare.py [--qata ../shared/data/QaTa-COV19]
        [--train 1500] [--val 300]

- ``.whl/``: Python 3.12 manylinux wheels of what that machine lacks (hydra-core, omegaconf,
  antlr4-python3-runtime, pytest and its small dependencies), one version each, fetched with
  ``pip download --no-deps --only-binary=:all: --python-version 3.12``; antlr4 4.9.3 (which
  omegaconf pins) is published only as source, so its pure-Python wheel is built here.
- ``experiments/gpu_check/data/QaTa-COV19``: the first ``--train``/``--val`` triples of the
  shared QaTa-COV19 train/val split, in the LViT layout with CSV sheets.

Both are ignored by git; together they stay under 64 MiB (checked).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WHEELS = REPO / ".whl"
DATA = REPO / "experiments" / "gpu_check" / "data" / "QaTa-COV19"
# Exact versions: the ones this suite is tested with here, all pure Python.
BINARY = [
    "hydra-core==1.3.8",
    "omegaconf==2.3.1",
    "pytest==9.2.0",
    "pluggy==1.7.0",
    "iniconfig==2.3.1",
]  # fmt: skip  (packaging, PyYAML: transformers brings them)
SOURCE_ONLY = ["antlr4-python3-runtime==4.9.3"]
LIMIT = 64 * 2**20


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def fetch_wheels() -> None:
    shutil.rmtree(WHEELS, ignore_errors=True)
    WHEELS.mkdir()
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(WHEELS)]
    subprocess.run(
        [*base, "--only-binary=:all:", "--python-version", "3.12", "--implementation", "cp",
         "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64", *BINARY],
        check=True,
    )  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", str(WHEELS), *SOURCE_ONLY],
        check=True,
    )


def copy_subset(qata: Path, n_train: int, n_val: int) -> None:
    import pandas as pd

    from tmc_lightning.data.layouts import read_lvit

    shutil.rmtree(DATA, ignore_errors=True)
    for split, title, n in (("train", "Train", n_train), ("val", "Val", n_val)):
        samples = read_lvit(qata, split)[:n]
        folder = DATA / f"{title}_Folder"
        (folder / "img").mkdir(parents=True)
        (folder / "labelcol").mkdir()
        for s in samples:
            shutil.copy2(s.image, folder / "img" / s.image.name)
            shutil.copy2(s.mask, folder / "labelcol" / s.mask.name)
        sheet = pd.DataFrame({"Image": [s.mask.name for s in samples],
                              "Description": [s.text for s in samples]})  # fmt: skip
        sheet.to_csv(folder / f"{title}_text.csv", index=False)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--qata", type=Path, default=REPO.parent / "shared" / "data" / "QaTa-COV19")
    ap.add_argument("--train", type=int, default=1500)
    ap.add_argument("--val", type=int, default=300)
    args = ap.parse_args(argv)
    fetch_wheels()
    copy_subset(args.qata, args.train, args.val)
    total = size(WHEELS) + size(DATA)
    print(f"{WHEELS}: {size(WHEELS) / 2**20:.1f} MiB; {DATA}: {size(DATA) / 2**20:.1f} MiB")
    if total > LIMIT:
        print(
            f"error: {total / 2**20:.1f} MiB is over the 64 MiB a device run carries",
            file=sys.stderr,
        )
        return 1
    print("carry both to the GPU machine: run(carry=['.whl', 'experiments/gpu_check/data'])")
    return 0


if __name__ == "__main__":
    sys.exit(main())
