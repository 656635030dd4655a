"""The Numba backend's mini-batch SGD and softmax training: ``kernels/numba/batches.py`` behind ``NumbaBackend``.

``train_batches`` is ``NumbaBackend._train_batches``: no Python per batch. The
epochs' row orders come from the contract's ``orders`` iterator (NumPy), are
stacked ``ORDER_ELEMS`` indices at a time and handed to ``train_epochs``,
which runs every batch of those epochs in one compiled call (one call per
epoch with a ``callback``; the contract's ``_epoch_loop``): on one thread
(``batches.train_epochs``), or, for batches big enough to share
(``parallel_batches``), on Numba's threads
(``batches_parallel.train_epochs_parallel``), BLAS pinned to one thread
inside either way. Buffers are allocated once per fit. The softmax
head's full-batch ``train`` and ``step`` are the same kernel with one batch of
all rows, in order, not gathered (``train_full``, ``step``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from ...core.params import copy_into, flat_copy, flat_layout, flat_views
from ..cpu_threads import blas_controller, blas_threads, numba_threads, scoped_threads
from . import machine_rules as rules
from .jit import _batch_kernels, _constants, _ensure_compiled, _parallel_batch_kernels, _touch_blas

#: row indices (int64) per kernel call: a fit of many epochs over many rows is handed over in chunks (8 MB)
ORDER_ELEMS = 2**20

# When a batch is split over the threads (``train_epochs_parallel``: two fork/joins per
# batch, each thread's rows, then each thread's weight rows): ``machine_rules.batch_threads``,
# a rule over the SIMD width (rows per thread) and the core's MAC rate (MACs per batch).
# The measurements its coefficients reproduce, on 2 idle cores of an AMD EPYC (Zen 4,
# AVX-512), N=16384, softmax head, ms per epoch, one thread / two (min of 12 runs):
# [64, 512, 10] float64 batch 16: 83 / 74, 64: 64 / 41, 256: 64 / 35, 1024: 64 / 35;
# float32 batch 16: 51 / 60 (slower: 8-row GEMMs), 64: 37 / 29, 1024: 32 / 18;
# [64, 64, 10] float64 batch 16: 14 / 15, 32: 12 / 10, 64: 11 / 8.2, 256: 10.4 / 6.0;
# float32 batch 32: 8.0 / 11, 64: 6.1 / 5.6. Hence 32 rows per thread there and
# 2**18 multiply-adds per batch's forward pass in float64 (2**19 in float32).
# Where ``mlpbench tune`` measured both kernels on this machine, its thresholds replace the rule's
# (``machine_rules.batch_thresholds``).


def parallel_batches(sizes, nb, threads, itemsize=8) -> int:
    """Threads for batches of ``nb`` rows of a net of layer ``sizes`` in a dtype of ``itemsize`` bytes
    (1: the single-thread kernel; ``machine_rules.batch_threads``)."""
    return rules.batch_threads(sizes, nb, threads, itemsize)


def _run(backend, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders, output):
    """The loop behind ``train_batches`` / ``train_full``; ``orders`` None: full batch, in order, no gather.
    Returns the history recorded (stops at a non-finite loss) and whether the params are finite."""
    kernels = _batch_kernels()
    dt, n_rows = X.dtype, X.shape[0]
    sizes = [X.shape[1]] + [W.shape[1] for W, _ in params]
    woff, boff, n_params = flat_layout(sizes)
    theta, foreign = flat_copy(params, dt)
    nb = min(batch_size, n_rows)
    pin = blas_controller() is not None  # BLAS on one thread, as in the step kernels
    # without threadpoolctl BLAS cannot be pinned: then no Numba threads either (no oversubscription)
    threads = parallel_batches(sizes, nb, backend.threads or numba_threads(), dt.itemsize) if pin else 1
    if threads > 1:
        threaded = _parallel_batch_kernels()
        name, fn = "train_epochs_parallel", threaded.train_epochs_parallel
        work = np.empty(threaded.workspace_size(sizes, nb), dtype=dt)
        extra = (np.zeros((threads, n_params), dtype=dt),)  # the threads' bias-gradient sums
        _touch_blas(dt)
    else:
        name, fn, extra = "train_epochs", kernels.train_epochs, ()
        work = np.empty(kernels.workspace_size(sizes, nb), dtype=dt)
    head = (theta, np.array(sizes, dtype=np.int64), woff, boff, X, y)
    consts = ((np.int64(nb), work, np.empty(n_params, dtype=dt)) + extra
              + _constants(dt, lr, activation, grad_reduction) + (output == "softmax",))
    fixed = np.zeros((1, 1), dtype=np.int64) if orders is None else None
    scope = scoped_threads(threads if threads > 1 else None, blas=1) if pin else contextlib.nullcontext()
    backend.last_run = {"strategy": "batches", "kernel": name, "numba_threads": threads,
                        "blas_threads": 1 if pin else blas_threads(), "batch_rows": nb}

    def run(done, out):  # len(out) epochs in one call; their row orders stacked
        block = fixed if orders is None else np.array([next(orders) for _ in range(len(out))], dtype=np.int64)
        args = head + (block, orders is not None) + consts + (out,)
        _ensure_compiled(name, fn, args)
        return fn(*args)

    chunk = 1 if callback is not None else max(1, ORDER_ELEMS // n_rows)
    with scope:
        history = backend._epoch_loop(epochs, run, callback, chunk)
    if foreign:
        copy_into(params, flat_views(theta, sizes))
    return history, bool(np.isfinite(theta).all())


def train_batches(backend, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders,
                  output="sigmoid"):
    """``NumbaBackend._train_batches``: every batch of an epoch (of many epochs) in one compiled call."""
    history, finite = _run(backend, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size,
                           orders, output)
    return backend.finish(history, params, lr, params_finite=finite)


def train_full(backend, params, X, y, lr, epochs, activation, grad_reduction, callback, output):
    """Full-batch training on the batch kernel (one batch of all rows per epoch): the softmax head's ``_train``."""
    history, finite = _run(backend, params, X, y, lr, epochs, activation, grad_reduction, callback, X.shape[0],
                           None, output)
    return backend.finish(history, params, lr, params_finite=finite)


def step(backend, params, X, y, lr, activation, grad_reduction, output) -> float:
    """One full-batch update on the batch kernel; the loss before it (no update when it is not finite)."""
    history, _ = _run(backend, params, X, y, lr, 1, activation, grad_reduction, None, X.shape[0], None, output)
    return float(history[0])


def softmax_error(y_hat, y, mean, n_rows, D, db) -> None:
    """The softmax head's output error for ``NumbaBackend._backward``: ``D = exp(y_hat) - y``, ``db += sum``."""
    kernels = _batch_kernels()
    args = (y_hat, y, mean, n_rows, D, db)
    _ensure_compiled("softmax_error", kernels.softmax_error, args)
    kernels.softmax_error(*args)


def cross_entropy(y, y_hat) -> float:
    """``NumbaBackend._loss`` for the softmax head: mean categorical cross-entropy of log-probabilities."""
    kernels = _batch_kernels()
    _ensure_compiled("cross_entropy", kernels.cross_entropy, (y, y_hat))
    return float(kernels.cross_entropy(y, y_hat))
