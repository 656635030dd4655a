"""Per-layer ``(W, b)`` parameters and the lab-exact initialisation."""

from __future__ import annotations

import numpy as np


def init_params(layer_sizes, seed=42, dtype="float64"):
    """Lab-exact init: ``RandomState(seed)``; per layer ``W = randn(fan_in, fan_out) * 0.5``, ``b = 0``.

    ``RandomState(42).randn`` draws the same stream as the lab's
    ``np.random.seed(42); np.random.randn``; NumPy's global RNG is never touched.
    Weights are drawn in float64 and then cast, so float32 params are the
    float64 ones rounded.
    """
    rng = np.random.RandomState(seed)
    dtype = np.dtype(dtype)
    params = []
    for fan_in, fan_out in zip(layer_sizes[:-1], layer_sizes[1:]):
        W = (rng.randn(fan_in, fan_out) * 0.5).astype(dtype, copy=False)
        b = np.zeros((1, fan_out), dtype=dtype)
        params.append((W, b))
    return params


def map_params(fn, params):
    """Apply ``fn`` to every array, keeping the ``[(W, b), ...]`` structure."""
    return [(fn(W), fn(b)) for W, b in params]


def copy_params(params):
    return map_params(lambda a: np.array(a, copy=True, order="C"), params)


def n_params(layer_sizes) -> int:
    return sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))



def macs(n_samples, layer_sizes) -> int:
    """Multiply-adds of one forward pass: ``N * sum(fan_in * fan_out)``."""
    return n_samples * sum(i * o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
