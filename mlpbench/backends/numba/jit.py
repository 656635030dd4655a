"""The Numba backend's compile-on-demand: the kernels module, first-call (JIT / cache load) times, per-shape kernels.

Plain Python (no ``@njit`` here): the compiled code lives in ``kernels/numba/`` (``scalar``, ``layers``,
``step``, ``loop``, ``fixed``; ``batches`` and ``batches_parallel``: the softmax head and mini-batches).
"""

from __future__ import annotations

import functools
import time
from types import SimpleNamespace

import numpy as np

from ...core.params import macs
from ...kernels.reference import ACT_CODES, bce_eps, sigmoid_floor
from ..cpu_threads import kept_openmp


@functools.lru_cache(maxsize=None)
def _kernels():
    """The full-batch kernels the backend calls, by name, and the workspace plan (imports numba on first use)."""
    from ...kernels.numba import fixed, layers, loop, scalar, step, workspace

    return SimpleNamespace(
        SIGMOID=scalar.SIGMOID, bce_loss=scalar.bce_loss, layer_forward=layers.layer_forward,
        layer_backward=layers.layer_backward, output_error=layers.output_error, sgd=layers.sgd,
        touch_blas=layers.touch_blas, train_loop=loop.train_loop, train_loop_fixed=fixed.train_loop_fixed,
        train_step=step.train_step, train_step_parallel=step.train_step_parallel, workspace=workspace)


@functools.lru_cache(maxsize=None)
def _batch_kernels():
    """The mini-batch and softmax kernels module (``kernels/numba/batches.py``; imports numba)."""
    from ...kernels.numba import batches

    return batches


@functools.lru_cache(maxsize=None)
def _parallel_batch_kernels():
    """Mini-batch SGD on several threads (``kernels/numba/batches_parallel.py``; imports numba)."""
    from ...kernels.numba import batches_parallel

    return batches_parallel


def _constants(dt, lr, activation, grad_reduction) -> tuple:
    """Every kernel's scalar arguments, in their order: lr, activation code, mean?, sigmoid floor, BCE clip."""
    return (dt.type(lr), ACT_CODES[activation], grad_reduction == "mean", dt.type(sigmoid_floor(dt)),
            dt.type(bce_eps(dt)))


# ---------------------------------------------------------------- first-call (JIT) times
#: ``"kernel[dtype]" -> (seconds, "compiled" | "cache load")``, per process
JIT_SECONDS: dict = {}


def _ensure_compiled(name, fn, args):
    """Compile (or load from the on-disk cache) ``fn`` for ``args``' types, timing it once."""
    key = f"{name}[{args[0].dtype.name}]"
    if key in JIT_SECONDS or not hasattr(fn, "compile"):  # no dispatcher under NUMBA_DISABLE_JIT=1
        return
    import numba

    hits = sum(fn.stats.cache_hits.values())
    t0 = time.perf_counter()
    with kept_openmp():  # loading the parallel layer sets the OpenMP thread count
        fn.compile(tuple(numba.typeof(a) for a in args))
    dt = time.perf_counter() - t0
    JIT_SECONDS[key] = (dt, "cache load" if sum(fn.stats.cache_hits.values()) > hits else "compiled")


def compiled_seconds() -> float:
    """Seconds of ``JIT_SECONDS`` spent compiling (not loading from the on-disk cache) in this process."""
    return sum(s for s, how in JIT_SECONDS.values() if how == "compiled")


def jit_notes() -> str:
    if not JIT_SECONDS:
        return ""
    parts = [f"{k} {s:.2f}s ({how})" for k, (s, how) in sorted(JIT_SECONDS.items())]
    return "first call: " + ", ".join(parts)


# ---------------------------------------------------------------- tiny networks: one kernel per shape
# Networks this small get ``train_loop_fixed`` compiled for their exact shape
# (sizes and N as constants: LLVM unrolls every loop). Measured on the lab
# (AND, [2, 4, 1], N=4, float64): 0.17 us per epoch against 0.40 us for the
# generic loop kernel. Each new shape costs one compilation (~2-8 s, then
# ~0.2 s to load from the on-disk cache), so only the tiniest nets qualify.
FIXED_MAX_MACS = 64
FIXED_MAX_LAYERS = 4
_FIXED: dict = {}


def _use_fixed(n_samples, sizes) -> bool:
    return macs(n_samples, sizes) <= FIXED_MAX_MACS and len(sizes) - 1 <= FIXED_MAX_LAYERS


def _fixed_loop(args, kind, n_samples, sizes):
    """``train_loop_fixed`` for this shape and activation code ``kind``, as a callable of ``args`` (its
    arguments before the literals), or None if it cannot be had.

    Called through the overload's entry point (``kernels/numba/internals``): a
    literal-specialised Numba dispatcher otherwise re-runs type inference
    (milliseconds) on every call.
    """
    literals = [kind, n_samples, len(sizes) - 1] + list(sizes) + [0] * (5 - len(sizes))
    key = (args[0].dtype.name, tuple(literals))
    if key not in _FIXED:
        from ...kernels.numba.internals import fixed_shape_entry

        fn = _kernels().train_loop_fixed
        hits = sum(fn.stats.cache_hits.values()) if hasattr(fn, "stats") else 0
        t0 = time.perf_counter()
        with kept_openmp():  # compiling may load the parallel layer, which sets the OpenMP thread count
            entry = fixed_shape_entry(fn, args, literals)
        _FIXED[key] = None if entry is None else functools.partial(_call_with_literals, entry, tuple(literals))
        if entry is not None:
            how = "cache load" if sum(fn.stats.cache_hits.values()) > hits else "compiled"
            JIT_SECONDS[f"train_loop_fixed[{key[0]} N={n_samples} {'-'.join(map(str, sizes))} act={kind}]"] = (
                time.perf_counter() - t0, how)
    return _FIXED[key]


def _call_with_literals(entry, literals, *args):
    return entry(*args, *literals)


@functools.lru_cache(maxsize=None)
def _touch_blas(dtype):
    """Load the BLAS pointer for ``dtype`` on this thread (with the GIL) before a parallel kernel uses it."""
    _kernels().touch_blas(np.zeros((1, 1), dtype=dtype))
