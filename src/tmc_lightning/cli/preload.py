"""jemalloc under every ``tmc-*`` command, where it is installed: large CPU steps without faults.

A CPU train step frees and allocates the same activations every step. glibc's malloc hands every
block above its 32 MiB mmap ceiling back to the kernel when it is freed, so the next step
faults it in again, 4 KiB page by 4 KiB page, each page zeroed (``training/allocator.py`` keeps
the smaller blocks). jemalloc, told never to return freed pages
(``MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1``), reuses all of them. Measured on LViT
``paper`` at batch 8 (``experiments/alloc_bench/``): 1.35 million page faults and 3.0 kernel
seconds per step with glibc, about 200 and 0.02 s with jemalloc, the step 9% faster; at batch
2 the same speed.

A preload must be in place before the process starts, so a command that finds Debian's
``libjemalloc2`` (``apt install libjemalloc2``) and does not run under it yet starts itself
again, once, with ``LD_PRELOAD`` set, before anything heavy is imported. ``TMC_ALLOCATOR=glibc``
turns this off; a ``MALLOC_CONF`` or ``LD_PRELOAD`` of the user's own is kept. Only commands
re-execute (``tmc-*`` scripts and ``python -m tmc_lightning.<command>``): importing the package
from Python or pytest changes nothing.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Where Debian/Ubuntu (both architectures) and Fedora put the library
JEMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
    "/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2",
    "/usr/lib/libjemalloc.so.2",
)
KEEP_PAGES = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
SWITCH = "TMC_ALLOCATOR"  # auto (default): jemalloc where installed | glibc
DONE = "TMC_ALLOCATOR_PRELOADED"  # set in the re-executed process: never a second exec


def jemalloc_path() -> str | None:
    return next((p for p in JEMALLOC_PATHS if Path(p).is_file()), None)


def started_as_command(argv: list[str] | None = None) -> bool:
    """A ``tmc-*`` console script or ``python -m tmc_lightning.<command>``, not an import."""
    argv = list(getattr(sys, "orig_argv", sys.argv) if argv is None else argv)
    if any(Path(a).name.startswith("tmc-") for a in argv[1:2]):
        return True
    return any(
        a == "-m" and b.startswith("tmc_lightning.") for a, b in zip(argv, argv[1:], strict=False)
    )


def preload_command(env: dict[str, str], argv: list[str]) -> tuple[list[str], dict] | None:
    """The command line and environment to re-execute under jemalloc, or None to go on."""
    if not sys.platform.startswith("linux") or env.get(SWITCH, "auto") == "glibc":
        return None
    if env.get(DONE) or "jemalloc" in env.get("LD_PRELOAD", ""):
        return None
    lib = jemalloc_path()
    if lib is None or not started_as_command(argv):
        return None
    new = {**env, DONE: "1", "LD_PRELOAD": f"{lib} {env.get('LD_PRELOAD', '')}".strip()}
    new.setdefault("MALLOC_CONF", KEEP_PAGES)
    return [sys.executable, *argv[1:]], new


def preload_jemalloc() -> None:
    """Re-execute this command under jemalloc where that applies (see the module's text)."""
    got = preload_command(dict(os.environ), list(getattr(sys, "orig_argv", sys.argv)))
    if got is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(got[0][0], got[0], got[1])


if __name__ == "__main__":  # python -m tmc_lightning.cli.preload: what the commands run under
    print(os.environ.get("LD_PRELOAD") or "glibc malloc", os.environ.get("MALLOC_CONF", ""))
