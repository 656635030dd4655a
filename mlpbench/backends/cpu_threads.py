"""Thread counts and scoped thread settings of the CPU backends: Numba's threads and the BLAS pools."""

from __future__ import annotations

import contextlib
import functools
import os
import sys


def numpy_blas_threads():
    """Threads of NumPy's BLAS (threadpoolctl when installed), else ``None``."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return None
    counts = [p["num_threads"] for p in threadpool_info() if p.get("user_api") == "blas"]
    return max(counts) if counts else None


def numba_threads() -> int:
    """Numba's thread count, read without importing Numba when it is not loaded yet."""
    if "numba" in sys.modules:
        with kept_openmp():  # the first call launches Numba's thread pool, which sets the OpenMP thread count
            return sys.modules["numba"].get_num_threads()
    env = os.environ.get("NUMBA_NUM_THREADS")
    if env and env.isdigit():
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@functools.lru_cache(maxsize=None)
def blas_controller():
    """A threadpoolctl controller that sees NumPy's and SciPy's BLAS (Numba's np.dot uses SciPy's); or None."""
    try:
        import scipy.linalg.cython_blas  # noqa: F401  (load SciPy's BLAS so the controller sees it)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def blas_threads():
    """Threads of the BLAS libraries Numba's kernels call (NumPy's and SciPy's), else ``None``."""
    ctl = blas_controller()
    if ctl is None:
        return None
    counts = [lib.num_threads for lib in ctl.select(user_api="blas").lib_controllers]
    return max(counts) if counts else None


@functools.lru_cache(maxsize=None)
def _openmp_libs() -> tuple:
    """threadpoolctl controllers of the OpenMP runtimes loaded when the BLAS controller was made (torch's libgomp)."""
    ctl = blas_controller()
    return () if ctl is None else tuple(ctl.select(user_api="openmp").lib_controllers)


@contextlib.contextmanager
def kept_openmp():
    """Put the calling thread's OpenMP thread count back after the block (Numba's OpenMP layer changes it)."""
    omp = _openmp_libs()
    before = [lib.get_num_threads() for lib in omp]
    try:
        yield
    finally:
        for lib, n in zip(omp, before):
            if lib.get_num_threads() != n:
                lib.set_num_threads(n)


@contextlib.contextmanager
def scoped_threads(numba_threads=None, blas=None):
    """Set Numba's threads (this thread) and the BLAS threads for the block; restore both after.

    A parallel Numba kernel on the OpenMP threading layer also sets the calling
    thread's OpenMP thread count (the one torch reads): it is put back too.
    """
    old = None
    omp = _openmp_libs()
    omp_before = [lib.get_num_threads() for lib in omp]
    if numba_threads is not None:
        import numba

        old = numba.get_num_threads()
        numba.set_num_threads(numba_threads)
    ctl = blas_controller() if blas is not None else None
    try:
        if ctl is not None:
            with ctl.limit(limits=blas, user_api="blas"):
                yield
        else:
            yield
    finally:
        if old is not None:
            sys.modules["numba"].set_num_threads(old)
        for lib, n in zip(omp, omp_before):
            if lib.get_num_threads() != n:
                lib.set_num_threads(n)
