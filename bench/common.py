"""Shared by the asv benchmarks: the backend list, the grid, and setup that skips or warms up.

``MLPBENCH_ASV_BACKENDS=numpy,numba`` limits the backends (default: every
registered one). An unavailable backend is skipped by ``setup`` raising
``NotImplementedError``, asv's way to skip a parameter combination. What asv
times is built by ``mlpbench.suite.subjects.op_subject``, as ``mlpbench bench``
builds it: the same prepared path, warm-up apart.
"""

import os

from mlpbench.suite import cases
from mlpbench.backends import backend_class, backend_names, get_backend
from mlpbench.suite.subjects import op_subject, synced

GRID = cases.asv_grid()
BACKENDS = [b for b in os.environ.get("MLPBENCH_ASV_BACKENDS", "").split(",") if b] or backend_names()
DTYPES = list(GRID["dtypes"])
FEATURES = GRID["features"]


def backend_or_skip(name):
    """A ready backend, or ``NotImplementedError`` (asv: skip) with the reason it cannot run here."""
    try:
        ok, reason = backend_class(name).availability()
    except Exception as exc:  # a broken backend module skips its benchmarks, not the suite
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        raise NotImplementedError(f"backend {name!r} unavailable: {reason}")
    return get_backend(name)


class Prepared:
    """One op of one case on one backend, warmed up (compilation, first call) before asv times ``self()``."""

    def __init__(self, name, n_samples=None, layer_sizes=None, dtype=None, *, op="step", case=None):
        self.be = backend_or_skip(name)
        self.case = case or cases.Case(op, n_samples, tuple(layer_sizes), dtype)
        self.layer_sizes = list(self.case.layer_sizes)
        self.subject = op_subject(name, self.be, self.case)[0]
        self.call = synced(self.subject)
        self.call()  # the first call: outside every timing

    def __call__(self):
        return self.call()
