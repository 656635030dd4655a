"""``auto``'s first call of a candidate: built, prepared and run once (what a fit pays), then probed for parity.

The first call is timed (imports, JIT compile or on-disk cache load, GPU
context), and so is the part of it spent compiling (``Backend.compile_seconds``),
which a later process with a warm on-disk cache does not pay. The probe runs
after the timing and is not counted: a strategy candidate (``numba[loop]``) is
probed on the path it runs, its prepared ``run`` at the timed rows
(``parity.probe_run``: no kernel it never uses is compiled); any other on every
op (``parity.probe``).

A fit with the lab's full-batch sigmoid head is timed through the contract's
prepared handle (``prepare(...).run(k)``); a mini-batch fit or a softmax head
through what such a fit calls, ``train(..., batch_size=, output=)`` (``TrainRun``:
``k`` epochs of shuffled mini-batches), and probed on it (``parity.probe`` with
the head and batches).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from ..measure import engine as measure
from ..suite import parity
from ..backends import backend_class
from ..core.params import init_params, macs


#: timing runs on at most this many rows (or two mini-batches): the per-epoch cost is linear in N beyond it
CAL_MAX_ROWS = 2048
#: epochs per timed call: about this many multiply-adds, between 1 and 256 epochs (tiny nets: many per call)
CALL_MACS = 100_000


def epochs_per_call(n_samples, layer_sizes) -> int:
    """Epochs per timed call: about ``CALL_MACS`` multiply-adds, 1 to 256 epochs."""
    return int(min(256, max(1, CALL_MACS // max(1, macs(n_samples, layer_sizes)))))


def calibration_rows(n_samples, batch_size=None) -> int:
    """Rows an epoch is timed on: ``CAL_MAX_ROWS`` at most, or two mini-batches when they are bigger."""
    return min(int(n_samples), max(CAL_MAX_ROWS, 2 * batch_size) if batch_size else CAL_MAX_ROWS)


class ParityFailure(Exception):
    """A candidate's parity probe failed (its message says which tensor)."""


class TrainRun:
    """``run(k)``: ``k`` epochs of ``backend.train`` with a head and / or mini-batches (shuffled, seeded)."""

    def __init__(self, backend, params, X, y, activation, output, batch_size):
        self.backend, self.params, self.X, self.y = backend, params, X, y
        self.kw = dict(lr=1e-6, activation=activation, output=output)
        if batch_size is not None:
            self.kw.update(batch_size=batch_size, shuffle=True, shuffle_seed=0)

    def run(self, epochs):
        return self.backend.train(self.params, self.X, self.y, epochs=epochs, **self.kw)


def handle(backend, layer_sizes, n_samples, dtype, activation, output="sigmoid", batch_size=None):
    """A prepared fit on random data (lr small enough never to diverge): what is timed.

    The full-batch sigmoid fit is the contract's ``prepare`` handle; any other a ``TrainRun``.
    """
    rng = np.random.RandomState(0)
    params = backend.params_from_numpy(init_params(layer_sizes, 0, dtype))
    X = backend.asarray(rng.rand(n_samples, layer_sizes[0]).astype(dtype))
    if output == "softmax":
        y = np.eye(layer_sizes[-1], dtype=dtype)[rng.randint(0, layer_sizes[-1], n_samples)]
    else:
        y = (rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype)
    y = backend.asarray(y)
    if output == "sigmoid" and batch_size is None:
        return backend.prepare(params, X, y, lr=1e-6, activation=activation)
    return TrainRun(backend, params, X, y, activation, output, batch_size)


def subject(cand, backend, prepared, k):
    """The engine's subject: ``k`` epochs of the prepared run."""
    return measure.Subject(cand.label, functools.partial(prepared.run, k), sync=backend.synchronize)


def load(cand, layer_sizes, n_samples, n_cal, dtype, activation, k, output="sigmoid", batch_size=None):
    """``(backend, handle, first-call seconds, of them compiling)``; ``ParityFailure`` if the probe fails."""
    cls = backend_class(cand.name)
    compiled0 = cls.compile_seconds()
    t0 = time.perf_counter()
    backend = cand.make()
    prepared = handle(backend, layer_sizes, n_cal, dtype, activation, output, batch_size)
    prepared.run(k)
    backend.synchronize()
    first = time.perf_counter() - t0
    compiled = min(first, max(0.0, cls.compile_seconds() - compiled0))
    if isinstance(prepared, TrainRun):
        ok, failure = parity.probe(backend, layer_sizes, n_samples, dtype, activation, output, batch_size)
    elif "strategy" in dict(cand.options):
        ok, failure = parity.probe_run(backend, layer_sizes, n_cal, dtype, activation)
    else:
        ok, failure = parity.probe(backend, layer_sizes, n_samples, dtype, activation)
    if not ok:
        raise ParityFailure(failure)
    return backend, prepared, first, compiled
