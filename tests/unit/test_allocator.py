"""perf.keep_freed_memory: freed activations stay in the process instead of going to the kernel.

The page faults this saves per train step are measured by benchmarks (bench_cpu.md); here the
mechanism is checked deterministically with glibc's own statistics (``mallinfo2``).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# In a fresh process: malloc 20 MiB, write it, free it, and report where it lived. With glibc's
# defaults a block that size is mmapped (counted in hblkhd) and unmapped when freed; with the
# memory kept it comes from the heap and stays there, free, for the next allocation (fordblks).
PROBE = """
import ctypes, sys
from tmc_lightning.training.allocator import keep_freed_memory
class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]
libc = ctypes.CDLL("libc.so.6")
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = [ctypes.c_void_p]
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "keep":
    keep_freed_memory()
size = 20 << 20
block = libc.malloc(size)
ctypes.memset(block, 1, size)
mapped = libc.mallinfo2().hblkhd
libc.free(block)
print(mapped, libc.mallinfo2().fordblks)
"""


def probe(mode: str) -> tuple[int, int]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    mapped, free_in_heap = out.stdout.split()
    return int(mapped), int(free_in_heap)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt is Linux-only")
def test_a_freed_block_stays_in_the_heap_for_reuse():
    size = 20 << 20
    mapped, free_in_heap = probe("default")
    assert mapped >= size and free_in_heap < size  # glibc's defaults: mmapped, then unmapped
    mapped, free_in_heap = probe("keep")
    assert mapped < size and free_in_heap >= size  # kept: from the heap, and kept there


def test_keep_freed_memory_says_what_it_did():
    from tmc_lightning.training.allocator import keep_freed_memory

    said = keep_freed_memory()
    if sys.platform.startswith("linux"):
        assert said.startswith("glibc malloc keeps freed memory"), said
    else:
        assert said.startswith("left as it is"), said
