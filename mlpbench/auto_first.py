"""``auto``'s first call of a candidate: built, prepared and run once (what a fit pays), then probed for parity.

The first call is timed (imports, JIT compile or on-disk cache load, GPU
context), and so is the part of it spent compiling (``Backend.compile_seconds``),
which a later process with a warm on-disk cache does not pay. The probe runs
after the timing and is not counted: a strategy candidate (``numba[loop]``) is
probed on the path it runs, its prepared ``run`` at the timed rows
(``parity.probe_run``: no kernel it never uses is compiled); any other on every
op (``parity.probe``).
"""

from __future__ import annotations

import functools
import time

import numpy as np

from . import measure, parity
from .backends import backend_class
from .params import init_params


class ParityFailure(Exception):
    """A candidate's parity probe failed (its message says which tensor)."""


def handle(backend, layer_sizes, n_samples, dtype, activation):
    """A prepared fit on random data (lr small enough never to diverge): what is timed."""
    rng = np.random.RandomState(0)
    params = backend.params_from_numpy(init_params(layer_sizes, 0, dtype))
    X = backend.asarray(rng.rand(n_samples, layer_sizes[0]).astype(dtype))
    y = backend.asarray((rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype))
    return backend.prepare(params, X, y, lr=1e-6, activation=activation)


def subject(cand, backend, prepared, k):
    """The engine's subject: ``k`` epochs of the prepared run."""
    return measure.Subject(cand.label, functools.partial(prepared.run, k), sync=backend.synchronize)


def load(cand, layer_sizes, n_samples, n_cal, dtype, activation, k):
    """``(backend, handle, first-call seconds, of them compiling)``; ``ParityFailure`` if the probe fails."""
    cls = backend_class(cand.name)
    compiled0 = cls.compile_seconds()
    t0 = time.perf_counter()
    backend = cand.make()
    prepared = handle(backend, layer_sizes, n_cal, dtype, activation)
    prepared.run(k)
    backend.synchronize()
    first = time.perf_counter() - t0
    compiled = min(first, max(0.0, cls.compile_seconds() - compiled0))
    if "strategy" in dict(cand.options):
        ok, failure = parity.probe_run(backend, layer_sizes, n_cal, dtype, activation)
    else:
        ok, failure = parity.probe(backend, layer_sizes, n_samples, dtype, activation)
    if not ok:
        raise ParityFailure(failure)
    return backend, prepared, first, compiled
