"""jemalloc under the ``tmc-*`` commands, when asked for (``TMC_ALLOCATOR=jemalloc``).

A CPU train step frees and allocates the same activations every step. glibc's malloc hands every
block above its 32 MiB mmap ceiling back to the kernel when it is freed, so the next step
faults it in again, 4 KiB page by 4 KiB page, each page zeroed (``training/allocator.py`` keeps
the smaller blocks). jemalloc, told never to return freed pages
(``MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1``), reuses all of them. Measured on LViT
``paper`` at batch 8 on a 2-core CPU (``experiments/alloc_bench/``): 1.4 million page faults
and 3.1 kernel seconds per step with glibc, 208 and 0.02 s with jemalloc, the step 12% faster
(13.0 -> 11.5 s); at batch 2 within glibc's own spread between rounds.

It is not the default: over a whole run it keeps far more memory than glibc. Freed memory of
every size the run served, validation's included, is kept and never given back (one arena,
``narenas:1``, does not bound it). A QaTa
``small_pretrained`` run (2 epochs of 30 steps, full validation) peaked at 8.3 GiB against
glibc's 2.7 GiB, and a 480-step study run passed 22 GiB and thrashed a 24 GiB machine in its
fourth epoch (``experiments/alloc_bench/README.md``). Use it for long runs of one large batch
size where the memory is there, and watch the first epochs.

A preload must be in place before the process starts, so a command run with
``TMC_ALLOCATOR=jemalloc`` that does not run under it yet starts itself again, once, with
``LD_PRELOAD`` set to Debian's ``libjemalloc2`` (``apt install libjemalloc2``), before anything
heavy is imported. A ``MALLOC_CONF`` of the user's own is kept; a process with an
``LD_PRELOAD`` of its own (another allocator, say) is left as it is. Only commands re-execute
(``tmc-*`` scripts and ``python -m tmc_lightning.<command>``): importing the package from Python
or pytest changes nothing, and if the restart itself fails the command goes on under glibc.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

# Where Debian/Ubuntu (this machine's architecture) and Fedora put the library
JEMALLOC_PATHS = (
    f"/usr/lib/{platform.machine()}-linux-gnu/libjemalloc.so.2",
    "/usr/lib64/libjemalloc.so.2" if platform.machine() == "x86_64" else "",
)
KEEP_PAGES = "dirty_decay_ms:-1,muzzy_decay_ms:-1"
SWITCH = "TMC_ALLOCATOR"  # glibc (default) | jemalloc
CHOICES = ("glibc", "jemalloc")
DONE = "TMC_ALLOCATOR_PRELOADED"  # set in the re-executed process: never a second exec


def jemalloc_path() -> str | None:
    return next((p for p in JEMALLOC_PATHS if p and Path(p).is_file()), None)


def started_as_command(argv: list[str]) -> bool:
    """A ``tmc-*`` console script or ``python -m tmc_lightning.<command>``, not an import."""
    if any(Path(a).name.startswith("tmc-") for a in argv[1:2]):
        return True
    return any(
        a == "-m" and b.startswith("tmc_lightning.") for a, b in zip(argv, argv[1:], strict=False)
    )


def preload_command(env: dict[str, str], argv: list[str]) -> tuple[list[str], dict] | None:
    """The command line and environment to re-execute under jemalloc, or None to go on.

    Raises ValueError (the message for the user) for an unknown ``TMC_ALLOCATOR`` or for
    ``jemalloc`` where the library is not installed.
    """
    if not started_as_command(argv):
        return None
    choice = env.get(SWITCH, "glibc").strip().lower() or "glibc"
    if choice not in CHOICES:
        raise ValueError(
            f"{SWITCH}={env[SWITCH]!r} is not one of {', '.join(CHOICES)}: "
            f"unset it (glibc) or set {SWITCH}=jemalloc"
        )
    if choice == "glibc":
        return None
    if env.get(DONE) or env.get("LD_PRELOAD"):  # restarted already, or the user's own preload
        return None
    lib = jemalloc_path() if sys.platform.startswith("linux") else None
    if lib is None:
        raise ValueError(
            f"{SWITCH}=jemalloc, but libjemalloc.so.2 is not in "
            f"{' or '.join(p for p in JEMALLOC_PATHS if p)}: install it "
            f"(Debian/Ubuntu: apt install libjemalloc2) or unset {SWITCH}"
        )
    new = {**env, DONE: "1", "LD_PRELOAD": lib}
    new.setdefault("MALLOC_CONF", KEEP_PAGES)
    return [sys.executable, *argv[1:]], new


def preload_jemalloc() -> None:
    """Re-execute this command under jemalloc where asked for (see the module's text)."""
    try:
        got = preload_command(dict(os.environ), list(getattr(sys, "orig_argv", sys.argv)))
    except ValueError as err:  # one line, before anything started: nothing to clean up
        sys.exit(f"error: {err}")
    if got is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        try:
            os.execve(got[0][0], got[0], got[1])
        except OSError:  # no executable to restart (an embedded interpreter): go on with glibc
            os.environ[DONE] = "1"


if __name__ == "__main__":  # python -m tmc_lightning.cli.preload: what the commands run under
    print(os.environ.get("LD_PRELOAD") or "glibc malloc", os.environ.get("MALLOC_CONF", ""))
