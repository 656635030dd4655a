"""Numba's whole-loop kernel: every epoch of full-batch SGD in one call, explicit loops, no BLAS.

For small networks (``numba_backend.choose_strategy``): no allocation per
epoch, sums in registers in the reference's order. ``train_loop_fixed`` is the
same body (``_epochs``, inlined) compiled for one exact tiny shape.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .numba_internals import cache_for, literally
from .numba_scalar import _PW_BLOCK, RELU, SIGMOID, TANH, _deriv, _pairwise, _pw_leaf, _relu, _sigmoid

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "numba_internals": "767357ef3f0e",
    "numba_scalar": "cc9932e1c942",
}
CACHE = cache_for(__name__, _DEPENDS_ON)


@njit(cache=CACHE, inline="always")
def _epochs(theta, sizes, woff, boff, L, N, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history):
    """The body of ``train_loop``; ``sizes`` / ``woff`` / ``boff`` are arrays or constant tuples."""
    zero = theta.dtype.type(0)
    one = theta.dtype.type(1)
    scale = theta.dtype.type(N)
    lo, hi = eps, one - eps
    half = dbuf.shape[0] // 2
    n_in = sizes[0]
    for n in range(N):
        for k in range(n_in):
            acts[n * n_in + k] = X[n, k]
    out_off = 0
    for i in range(L):
        out_off += N * sizes[i]
    n_out = sizes[L]
    count = theta.dtype.type(N * n_out)
    Yf = Y.reshape(Y.size)
    frames, partials = np.empty(192, np.int64), np.empty(64, theta.dtype)  # pairwise-sum stacks
    n_terms = N * n_out
    # Few binary labels: the loss's logs as the log of products of 4 clipped probabilities (p or 1 - p,
    # >= eps each, so a product of 4 cannot underflow even in float32): one log per 4 samples.
    binary = n_terms < 8
    for q in range(n_terms):
        if Yf[q] != zero and Yf[q] != one:
            binary = False
    for epoch in range(epochs):
        # ---- forward: z = a @ W + b summed in a register, then the activation
        ai = 0
        for i in range(L):
            fi, fo = sizes[i], sizes[i + 1]
            ao = ai + N * fi
            wo, bo = woff[i], boff[i]
            code = SIGMOID if i == L - 1 else kind
            for n in range(N):
                x0 = ai + n * fi
                r = ao + n * fo
                for j in range(fo):
                    z = zero
                    for k in range(fi):
                        z += acts[x0 + k] * theta[wo + k * fo + j]
                    z += theta[bo + j]
                    if code == RELU:
                        z = _relu(z, zero)
                    elif code == TANH:
                        z = np.tanh(z)
                    else:
                        z = _sigmoid(z, floor, one)
                    acts[r + j] = z
            ai = ao
        # ---- loss (before the update), NumPy's pairwise order
        if binary:
            total = -(one - one)
            for g in range(0, n_terms, 4):
                prod = one
                for q in range(g, min(g + 4, n_terms)):
                    p = acts[out_off + q]
                    p = lo if p < lo else (hi if p > hi else p)
                    prod *= p if Yf[q] == one else one - p
                total += np.log(prod)
        elif n_terms <= _PW_BLOCK:  # one leaf: skip the (not inlined) tree walk
            total = _pw_leaf(True, acts, out_off, Yf, 0, N * n_out, lo, hi, one)
        else:
            total = _pairwise(True, acts, out_off, Yf, 0, N * n_out, lo, hi, one, frames, partials)
        loss = -(total / count)  # the mean over all N * n_out outputs
        history[epoch] = loss
        if not np.isfinite(loss):
            return epoch + 1
        # ---- backward, updating each layer once its upstream gradient is out
        for q in range(N * n_out):
            d = acts[out_off + q] - Yf[q]
            dbuf[q] = d / scale if mean else d
        cur = 0
        ao = out_off
        for i in range(L - 1, -1, -1):
            fi, fo = sizes[i], sizes[i + 1]
            ai = ao - N * fi
            wo, bo = woff[i], boff[i]
            if i > 0:  # upstream gradient (old W_i), derivative from the saved activation
                nxt = half - cur
                for n in range(N):
                    d0 = cur + n * fo
                    for k in range(fi):
                        s = zero
                        w = wo + k * fo
                        for j in range(fo):
                            s += dbuf[d0 + j] * theta[w + j]
                        dbuf[nxt + n * fi + k] = _deriv(s, acts[ai + n * fi + k], kind, zero, one)
            # weight gradient a.T @ dz, applied at once
            for k in range(fi):
                for j in range(fo):
                    s = zero
                    for n in range(N):
                        s += acts[ai + n * fi + k] * dbuf[cur + n * fo + j]
                    theta[wo + k * fo + j] -= lr * s
            # bias gradient in NumPy's column-sum order, applied at once
            if fo == 1:
                if N <= _PW_BLOCK:
                    s = _pw_leaf(False, dbuf, cur, dbuf, cur, N, one, one, one)
                else:
                    s = _pairwise(False, dbuf, cur, dbuf, cur, N, one, one, one, frames, partials)
                theta[bo] -= lr * s
            else:
                for j in range(fo):
                    s = dbuf[cur + j]
                    for n in range(1, N):
                        s += dbuf[cur + n * fo + j]
                    theta[bo + j] -= lr * s
            if i > 0:
                cur = nxt
            ao = ai
    return epochs


@njit(cache=CACHE)
def train_loop(theta, sizes, woff, boff, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history):
    """Every epoch of full-batch SGD in one call, explicit loops, no BLAS, no allocation per epoch.

    ``acts`` holds the activations of layers 0..L back to back (``N * width``
    each; the kernel copies ``X`` into layer 0), ``dbuf`` two ``N * max width``
    gradient buffers. Sums run in registers in the reference's order (matmul
    sums over the inner index in order; bias sums as ``np.sum(axis=0)``).
    Layer ``i``'s params are updated as soon as its upstream gradient (which
    needs the old ``W_i``) is computed, so there is no gradient buffer and no
    separate update pass; the arithmetic is ``W -= lr * dW`` all the same.
    The loss of epoch ``k`` (before its update) goes to ``history[k]`` as
    float64. Stops at the first non-finite loss, without applying that
    update; returns the number of epochs recorded.

    The loss of up to 7 binary labels is the log of products of 4 clipped
    probabilities (one ``log`` per 4 samples instead of one per sample; within
    a few ulp of the sum of logs, the gradients untouched).

    The limit, on the lab (AND, [2, 4, 1], N=4, float64, the fixed-shape
    build), measured in one ``measure`` run on the 2-core dev machine (load
    average ~6 from other work): the kernel alone ~0.105 us per epoch (a
    5000-epoch fit minus a 1-epoch fit), a whole prepared fit 0.154 us per
    epoch, NumPy 41 us: 244x (169x before the per-fit setup was trimmed;
    131-146x at load 20-37). The floor is the 4 sigmoid ``exp`` calls per
    epoch: scalar libm calls (this llvmlite has no SVML; ``fastmath`` is
    forbidden) on a dependency chain that runs through every epoch (epoch
    k+1 needs epoch k's params): the 4 ``exp`` of such a chain alone took
    0.079 us per epoch in the same run. Against NumPy the kernel alone is
    ~390x; what a fit adds (params copy, checks, the history) costs ~50 us,
    a third of a 5000-epoch lab fit. Against the jax backend's ``train``
    (a jitted ``lax.scan``): 6.8x (float64) and 11x (float32) in one run at
    load ~6, bounded by XLA's per-iteration while-loop overhead on its side.
    """
    return _epochs(theta, sizes, woff, boff, sizes.shape[0] - 1, X.shape[0], X, Y, acts, dbuf,
                   lr, epochs, kind, mean, floor, eps, history)


@njit(cache=CACHE)
def train_loop_fixed(theta, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history,
                     n, n_layers, s0, s1, s2, s3, s4):
    """``train_loop`` compiled for one exact shape: ``n`` samples, ``n_layers`` (<= 4) layers of
    sizes ``s0 .. s4`` (unused ones 0), all compile-time constants, so that LLVM unrolls the
    tiny loops. One compilation per shape and dtype (cached on disk): for tiny networks only.
    Needs Numba's ``literally`` (``numba_internals``); the backend does not call it otherwise.
    """
    literally(n)
    literally(n_layers)
    literally(s0)
    literally(s1)
    literally(s2)
    literally(s3)
    literally(s4)
    sizes = (np.int64(s0), np.int64(s1), np.int64(s2), np.int64(s3), np.int64(s4))
    w1 = s0 * s1 + s1
    w2 = w1 + s1 * s2 + s2
    w3 = w2 + s2 * s3 + s3
    woff = (np.int64(0), np.int64(w1), np.int64(w2), np.int64(w3))
    boff = (np.int64(s0 * s1), np.int64(w1 + s1 * s2), np.int64(w2 + s2 * s3), np.int64(w3 + s3 * s4))
    return _epochs(theta, sizes, woff, boff, n_layers, n, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history)
