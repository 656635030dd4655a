"""Numba's whole-loop kernel: every epoch of full-batch SGD in one call, explicit loops, no BLAS.

For small networks (``numba_backend.choose_strategy``): no allocation per
epoch, sums in registers in the reference's order. The tiniest nets get
``numba_fixed.train_loop_fixed``, the same arithmetic compiled per shape.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .internals import cache_for
from .scalar import _PW_BLOCK, RELU, SIGMOID, TANH, _deriv, _pairwise, _pw_leaf, _relu, _sigmoid

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "internals": "31554a804d8f",
    "scalar": "a7215f199f1b",
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

    The lab's shape runs ``numba_fixed.train_loop_fixed`` (its docstring has the speed limit).
    """
    return _epochs(theta, sizes, woff, boff, sizes.shape[0] - 1, X.shape[0], X, Y, acts, dbuf,
                   lr, epochs, kind, mean, floor, eps, history)
