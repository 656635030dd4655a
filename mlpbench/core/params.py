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


# ---------------------------------------------------------------- one flat vector [W0, b0, W1, b1, ...]
def flat_layout(sizes):
    """``(woff, boff, n_params)`` of the flat vector ``[W0, b0, W1, b1, ...]``."""
    woff, boff, off = [], [], 0
    for fi, fo in zip(sizes[:-1], sizes[1:]):
        woff.append(off)
        boff.append(off + fi * fo)
        off += fi * fo + fo
    return np.array(woff, dtype=np.int64), np.array(boff, dtype=np.int64), off


def flat_views(flat, sizes):
    """``[(W, b), ...]`` as views of ``flat``."""
    woff, boff, _ = flat_layout(sizes)
    return [(flat[w : w + fi * fo].reshape(fi, fo), flat[b : b + fo].reshape(1, fo))
            for w, b, fi, fo in zip(woff, boff, sizes[:-1], sizes[1:])]


def flat_buffer(params):
    """The 1-D buffer behind ``params`` when they are its consecutive views ``W0, b0, W1, ...``; else None."""
    base = getattr(params[0][0], "base", None)
    if not isinstance(base, np.ndarray) or base.ndim != 1 or not base.flags.c_contiguous:
        return None
    start, off = base.__array_interface__["data"][0], 0
    for pair in params:
        for a in pair:
            if (not isinstance(a, np.ndarray) or a.base is not base or not a.flags.c_contiguous
                    or a.__array_interface__["data"][0] != start + off * base.itemsize):
                return None
            off += a.size
    return base if off == base.size else None


def flat_copy(params, dtype):
    """``(theta, copied)``: the vector behind ``params`` (``flat_buffer``), or a flat copy when they are not
    views of one (put it back with ``copy_into(params, flat_views(theta, sizes))``)."""
    theta = flat_buffer(params)
    if theta is not None:
        return theta, False
    return np.concatenate([a.reshape(-1) for pair in params for a in pair]).astype(dtype, copy=False), True


def copy_into(dst, src) -> None:
    """Copy every array of params ``src`` into the matching array of params ``dst``, in place."""
    for pair, src_pair in zip(dst, src):
        for d, s in zip(pair, src_pair):
            d[...] = s
