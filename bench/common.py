"""Shared by the asv benchmarks: the backend list, the grid, and setup that skips or warms up.

``MLPBENCH_ASV_BACKENDS=numpy,numba`` limits the backends (default: every
registered one). An unavailable backend is skipped by ``setup`` raising
``NotImplementedError``, asv's way to skip a parameter combination.
"""

import os

import numpy as np

from mlpbench import cases
from mlpbench.backends import backend_class, backend_names, get_backend
from mlpbench.params import init_params

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
    """Backend arrays for one case, built once, every op run once (compile / warm-up) before timing."""

    def __init__(self, name, n_samples, layer_sizes, dtype, dataset=None, seed=0):
        self.be = be = backend_or_skip(name)
        self.layer_sizes = list(layer_sizes)
        X, y = cases.make_data(n_samples, layer_sizes, dtype, seed, dataset)
        self.params_np = init_params(layer_sizes, 42 if dataset else seed, dtype)
        self.X, self.y = be.asarray(X), be.asarray(y)
        self.params = be.params_from_numpy(self.params_np)
        be.warmup(self.layer_sizes, n_samples=n_samples, dtype=np.dtype(dtype).name)
        self.cache = self.forward()[1]
        self.backward()
        self.step()
        be.synchronize()

    def forward(self):
        out = self.be.forward(self.params, self.X)
        self.be.synchronize()
        return out

    def backward(self):
        out = self.be.backward(self.params, self.cache, self.X, self.y, grad_reduction=cases.TIMING_REDUCTION)
        self.be.synchronize()
        return out

    def step(self):
        loss = self.be.step(self.params, self.X, self.y, lr=cases.TIMING_LR, grad_reduction=cases.TIMING_REDUCTION)
        self.be.synchronize()
        return loss
