"""A whole training run's memory under each allocator: resident memory sampled every second.

    python experiments/alloc_bench/rss.py --arm glibc --out experiments/alloc_bench/rss
    python experiments/alloc_bench/rss.py --arm jemalloc-keep --out experiments/alloc_bench/rss

``run.py`` times single train steps of one shape; this runs the QaTa ``small_pretrained``
recipe of the ``qata_semi`` study (25% of the masks) for 2 epochs of 30 steps with its full
validation, rescoring and checkpoints, so every shape a real run allocates is in it. The
training process's resident memory (VmRSS) is written once a second to ``<out>/<arm>.csv``
(seconds, MiB) with the peak on the last line; above 14 GiB the run is stopped, so a leak
cannot take the machine down. Arms: ``glibc`` (the default: ``TMC_ALLOCATOR=glibc``) and
``jemalloc-keep`` (``TMC_ALLOCATOR=jemalloc``, freed pages never returned). Needs
``../shared/data/QaTa-COV19`` and ``make weights``; one arm at a time, on an idle machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
QATA = REPO.parent / "shared/data/QaTa-COV19"
OVERRIDES = (
    "experiment=qata_pretrained_cpu",
    "model=tmc",
    "trainer.max_epochs=2",
    "+trainer.limit_train_batches=30",
    "dataset.label_seed=0",
    "dataset.label_fraction=0.25",
    "semi=none",
    "seed=2",
    "callbacks.rich_progress=false",
    "logger=csv",
)
ARMS = {"glibc": "glibc", "jemalloc-keep": "jemalloc"}
STOP_AT = 14 << 30


def rss(pid: int) -> int:
    """The process's resident memory in bytes (0 once it is gone)."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE")
    except (OSError, IndexError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arm", choices=list(ARMS), required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    if not QATA.is_dir():
        sys.exit(f"error: {QATA} not found: this measurement trains on the real QaTa split")
    args.out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMC_ALLOCATOR": ARMS[args.arm], "WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as run_dir:
        cmd = [
            sys.executable, "-m", "tmc_lightning.train", *OVERRIDES,
            f"dataset.root={QATA}", f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        lines, peak, t0 = [], 0, time.time()
        with open(args.out / f"{args.arm}.log", "w") as log:
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            while proc.poll() is None:  # python -m re-executes in place: the pid stays
                now = rss(proc.pid)
                peak = max(peak, now)
                lines.append(f"{time.time() - t0:.0f},{now >> 20}")
                if now > STOP_AT:
                    proc.kill()
                    lines.append(f"stopped: above {STOP_AT >> 30} GiB")
                    break
                time.sleep(1)
        rc = proc.wait()
    lines.append(f"peak_MiB={peak >> 20},rc={rc},wall_s={time.time() - t0:.0f}")
    (args.out / f"{args.arm}.csv").write_text("seconds,rss_MiB\n" + "\n".join(lines) + "\n")
    print(args.arm, lines[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
