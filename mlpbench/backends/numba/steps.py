"""The Numba backend's ``"step"`` strategy: one fused kernel call per epoch (``kernels/numba/step.py``).

``make_stepper`` settles, once per (shape, dtype, threads), the kernel (one
thread, or one chunk of row blocks per Numba thread), the rows per block, the
threads of Numba and BLAS, and allocates the workspace
(``workspace.workspace_plan``); ``Stepper.bind`` packs a fit's arguments for
it. ``NumbaBackend`` caches steppers, so a ``step`` allocates nothing.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from ...core.params import flat_layout, macs
from ..cpu_threads import blas_controller, blas_threads, numba_threads, scoped_threads
from . import machine_rules as rules
from .jit import _ensure_compiled, _kernels, _touch_blas

# The block size and the thread thresholds are rules over this CPU's caches and SIMD width
# (``machine_rules``: what each trades, and the measurements on the 2-core AMD EPYC the
# coefficients reproduce). The thresholds' reasons, measured there:
#
# Threads, at N=16384, [32, 2048, 1], float64 (ms per epoch): prange on 2 Numba
# threads with BLAS on 1 inside: 74; one thread, BLAS on 1: 145; one thread, BLAS
# on 2: 367 (per-block GEMMs too small to split). BLAS on 2 threads never won in
# the serial step either (N=1024, H=512: 5.5 ms vs 2.2 ms on 1), so the step
# kernels always run BLAS on one thread.
#
# That gain needs idle cores. On a shared machine (2 cores, load average 6-18
# from other processes; prepared steps, ``measure`` rounds, p50 per step) the
# fork/join waits on descheduled workers, and GNU OpenMP's workers spin after
# each region against NumPy's spinning OpenBLAS pool in the same process:
# float32 [32, 512, 1] at N=256 (4.2M MACs): 46 ms on 2 threads vs 0.35 ms on
# one; N=1024 (17M): 20 vs 4.1 ms; N=4096, [32, 1024, 1] (138M): 42 vs 36 ms;
# N=16384, [32, 2048, 1] float64 (1.1G): 363 vs 335 ms (same). At N=64 (1.1M
# MACs, just above the old 2**20 bar) the same fight gave NumPy's own step a
# p10-p90 of 0.2-48 ms and numba 0.11x NumPy in one run. So prange only from a
# ~20 ms serial step (2**26 MACs there: ``machine_rules.step_parallel_min_macs``),
# where a lost core costs little and a free one halves the time; below, one
# thread, which measured stable (p10-p90 of 0.25-0.45 ms at N=64 under the same
# load). A serial step pins BLAS to one thread from ``machine_rules.pin_min_macs``
# (2**20 MACs there): its per-block GEMMs do not gain from two.


def block_rows(n_samples, layer_sizes, n_threads=1) -> int:
    """Rows per block of the step kernel, either dtype (``machine_rules.step_block_rows`` on float64
    bytes: all rows when they fit; at least one block per thread)."""
    ws = _kernels().workspace
    row_elems = ws.workspace_size(layer_sizes, 1, 0, ws.GRADS_IN_PLACE)
    return rules.step_block_rows(row_elems, 8, n_samples, n_threads)


@dataclass
class Stepper:
    """The fused one-epoch kernel for one (shape, dtype, threads), with its workspace allocated once."""

    kernel: object
    layout: tuple  # (sizes, weight offsets, bias offsets, workspace offsets) as int64 arrays
    workspace: tuple  # (y_hat, rows per block, column tile, per-thread work, per-thread grads)
    scope: object  # () -> context manager applying the threads
    info: dict  # what ``last_run`` reports

    def bind(self, theta, X, y, consts) -> tuple:
        """The kernel's arguments for params ``theta`` (flat), ``X``, ``y`` and ``jit._constants``; the
        kernel compiled (or loaded) for their types."""
        args = (theta,) + self.layout + (X, y) + self.workspace + consts
        _ensure_compiled(self.info["kernel"], self.kernel, args)
        return args


def make_stepper(sizes, n_rows, dt, threads) -> Stepper:
    """The step kernel for ``n_rows`` rows through layers ``sizes`` in dtype ``dt`` with the backend's
    ``threads`` (None: Numba's default), its workspace allocated."""
    kernels = _kernels()
    work_macs = macs(n_rows, sizes)
    n_threads = threads if threads is not None else numba_threads()
    # BLAS runs single-threaded inside the step kernels; the cores are shared through
    # prange instead (one chunk of row blocks per Numba thread). Without threadpoolctl
    # BLAS threads cannot be pinned, so no prange either (no oversubscription).
    pinned = blas_controller() is not None
    parallel = pinned and n_threads > 1 and work_macs >= rules.step_parallel_min_macs()
    rows = block_rows(n_rows, sizes, n_threads if parallel else 1)
    used_threads = min(n_threads, -(-n_rows // rows)) if parallel else 1
    woff, boff, n_params = flat_layout(sizes)
    ws = kernels.workspace
    off = ws.plan(sizes, rows, 0, ws.GRADS_IN_PLACE)  # activations, the output error in place, a pair
    work = np.empty((used_threads, off[-1]), dtype=dt)
    grad_parts = np.empty((used_threads, n_params), dtype=dt)
    y_hat = np.empty((n_rows, sizes[-1]), dtype=dt)
    if used_threads > 1:
        _touch_blas(dt)
    name = "train_step_parallel" if used_threads > 1 else "train_step"
    # Small single-threaded work: BLAS does not thread such sizes, so skip the (~16 us) pinning.
    if used_threads > 1 or threads is not None or (pinned and work_macs >= rules.pin_min_macs()):
        def scope():
            return scoped_threads(used_threads if used_threads > 1 else threads, blas=1 if pinned else None)
    else:
        scope = contextlib.nullcontext
    info = {"strategy": "step", "kernel": name, "numba_threads": used_threads,
            "blas_threads": 1 if pinned else blas_threads(), "block_rows": rows}
    return Stepper(getattr(kernels, name), (np.array(sizes, dtype=np.int64), woff, boff, off),
                   (y_hat, rows, rules.l1_tile(np.dtype(dt).itemsize), work, grad_parts), scope, info)
