"""The benchmark process keeps the memory it frees: no subject pays the kernel for pages freed and asked again.

NumPy's step allocates its temporaries afresh at every call, and glibc hands
a block of 128 KiB or more back to the kernel when it is freed (``munmap``),
so every call faults the same pages in again: the kernel zeroes them, and
with transparent huge pages on ``madvise`` (NumPy asks for them on large
arrays) may compact memory first, at fault time. That cost is the kernel's
state, not the library's work, and it swings: measured (AMD EPYC, 2 cores,
N=16384, ``[32, 512, 1]`` float64, NumPy's prepared step, 20 calls among
torch's and jax's, ``python bench/heap_check.py system`` / ``keep``): a
median of 109.6 ms with single calls up to 265 ms and 1698 page faults each;
with freed memory kept, 75.9 ms, at most 84.3 ms, and no fault. torch and jax keep theirs
in their own caching allocators, the numba kernels in a workspace prepared
once; so, for the sweep, glibc is told to do the same (``mallopt``: blocks
of up to ``MMAP_THRESHOLD`` come from the heap, which is trimmed only past
``TRIM_THRESHOLD``). A process that does this holds its largest working set
until it ends, which a benchmark run can afford and a user's fit need not:
``mlpbench bench`` does it (``--heap system`` leaves glibc as it is), and a
results file says which (``config["heap"]``); ``backend="auto"`` and the
library never do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

#: glibc's ``mallopt`` parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: blocks up to this come from the heap (the sweep's largest array, N=16384 x 2048 float64, is 256 MiB; glibc
#: 2.36 takes 1 GiB, and says so: ``keep_freed`` reports a refusal)
MMAP_THRESHOLD = 1 << 30
#: the heap gives memory back to the kernel only when this much is free at its top
TRIM_THRESHOLD = (1 << 31) - 1
MODES = ("keep", "system")
#: what ``mlpbench bench`` does unless told ``--heap system``
DEFAULT = "keep"


def keep_freed() -> str:
    """Tell glibc to keep freed memory in this process; returns what holds now: ``"keep"``, or why not
    (``"system: ..."``, e.g. not glibc) - never raises."""
    if not sys.platform.startswith("linux"):
        return f"system: not glibc ({sys.platform})"
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError) as exc:
        return f"system: no mallopt ({exc})"
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1 or mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "system: mallopt refused the thresholds"
    return "keep"


__all__ = ["DEFAULT", "MMAP_THRESHOLD", "MODES", "TRIM_THRESHOLD", "keep_freed"]
