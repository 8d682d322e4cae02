"""Keep freed memory in the process: glibc's malloc settings for training on the CPU.

A CPU train step allocates and frees the same large activations every step. With glibc's
defaults, a freed block of more than a few MiB goes back to the kernel (``munmap``, or a trim
of the heap top) and the next step's allocation of it faults every 4 KiB page in again, each
page zeroed by the kernel. On the 2-core machine ``tmc-bench`` counted 150,000-210,000 page
faults and 0.7-0.9 kernel seconds per TMC ``paper`` step (batch 2), 110,000-160,000 and
0.3-0.4 s per LViT step; with this setting 4,000-37,000 and at most 0.09 s
(``experiments/bench_cpu/bench_cpu.md``).

:func:`keep_freed_memory` raises the mmap threshold to its maximum (32 MiB: smaller blocks come
from the heap and are reused) and stops trimming the heap top, so after the first steps a
step's memory is served from what the previous one freed. The cost is that the process keeps
its peak memory instead of shrinking between steps. Only glibc (Linux) has these settings;
elsewhere nothing changes. ``perf.keep_freed_memory=false`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD = 32 << 20  # glibc's upper limit on 64-bit systems
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes an int: never trim below 2 GiB of free heap top
TOP_PAD = 64 << 20  # grow the heap in 64 MiB steps rather than page by page


def keep_freed_memory() -> str:
    """Set glibc malloc to reuse freed memory instead of returning it; says what was done."""
    if not sys.platform.startswith("linux"):
        return f"left as it is ({sys.platform} has no glibc mallopt)"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return "left as it is (no glibc mallopt here, e.g. musl)"
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    settings = {
        M_MMAP_THRESHOLD: MMAP_THRESHOLD,
        M_TRIM_THRESHOLD: TRIM_THRESHOLD,
        M_TOP_PAD: TOP_PAD,
    }
    failed = [param for param, value in settings.items() if mallopt(param, value) != 1]
    if failed:
        return f"partly set: mallopt refused parameter(s) {failed}"
    return "glibc malloc keeps freed memory (mmap threshold 32 MiB, no heap trimming)"


def set_up_memory(keep: bool, off: str) -> str:
    """What serves this process's memory, set up: says which, for metrics.json and tmc-bench.

    Under jemalloc (``TMC_ALLOCATOR=jemalloc``: cli/preload.py) glibc's malloc
    is not used and there is nothing to set; else ``keep`` applies :func:`keep_freed_memory`,
    and ``off`` says how glibc's defaults were asked for.
    """
    if "jemalloc" in os.environ.get("LD_PRELOAD", ""):
        return f"jemalloc (LD_PRELOAD, MALLOC_CONF={os.environ.get('MALLOC_CONF', '')})"
    return keep_freed_memory() if keep else off
