"""Numba's whole-loop kernel: every epoch of full-batch SGD in one call, explicit loops, no BLAS.

For small networks (``backends/numba/backend.choose_strategy``): no allocation per
epoch, sums in registers in the reference's order. A layer's arithmetic is
``dense_forward`` / ``dense_backward``, shared with ``fixed.train_loop_fixed``
(the tiniest nets: the same layers compiled per shape).
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .internals import cache_for
from .scalar import (_PW_BLOCK, RELU, SIGMOID, TANH, _deriv, _exp, _few_binary, _leaf_sum, _pairwise, _pw_leaf,
                     _relu, _sigmoid)
from .workspace import GRADS_PAIR, workspace_plan

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a", "scalar": "7f02aca1655e", "workspace": "2f040baff638"}
CACHE = cache_for(__name__, _DEPENDS_ON)


def _dense_forward(P, A, ai, ao, wo, bo, N, fi, fo, act, floor, z0, exp64):
    """One layer, ``A[ao:] = act(A[ai:] @ W + b)`` (``N`` rows; ``W`` row-major at ``P[wo:]``, ``b`` at
    ``P[bo:]``), each sum in a register in the reference's order, started from ``z0``: ``+0.0``, as
    BLAS starts its sums, or ``-0.0``, which adds nothing (one add less on the dependency chain; the
    sums then differ only in the sign of an exact zero). The sigmoid's ``exp``: ``np.exp``, or with
    ``exp64`` ``scalar._exp`` in float64 whatever the dtype (no libm call)."""
    zero = P.dtype.type(0)
    one = P.dtype.type(1)
    for n in range(N):
        for j in range(fo):
            z = z0
            for k in range(fi):
                z += A[ai + n * fi + k] * P[wo + k * fo + j]
            z += P[bo + j]
            if act == RELU:
                z = _relu(z, zero)
            elif act == TANH:
                z = np.tanh(z)
            elif exp64:
                z = one / (one + P.dtype.type(_exp(np.float64(-(floor if z < floor else z)))))
            else:
                z = _sigmoid(z, floor, one)
            A[ao + n * fo + j] = z


def _dense_backward(P, A, D, ai, wo, bo, cur, nxt, N, fi, fo, kind, upstream, lr, z0, frames, partials):
    """One layer's update from its output gradient ``D[cur:]``, sums started from ``z0`` (``_dense_forward``).

    First (``upstream``) the gradient of its input into ``D[nxt:]``, which needs the old ``W``,
    the derivative taken from the saved activation ``A[ai:]``; then ``W -= lr * A.T @ D`` and
    ``b -= lr * D.sum(axis=0)``, applied at once (no gradient buffer), a one-column bias sum in
    NumPy's pairwise order (``frames`` / ``partials``: ``scalar._pairwise``'s stacks, for N > 128).
    """
    zero = P.dtype.type(0)
    one = P.dtype.type(1)
    if upstream:
        for n in range(N):
            for k in range(fi):
                s = z0
                for j in range(fo):
                    s += D[cur + n * fo + j] * P[wo + k * fo + j]
                D[nxt + n * fi + k] = _deriv(s, A[ai + n * fi + k], kind, zero, one)
    for k in range(fi):
        for j in range(fo):
            s = z0
            for n in range(N):
                s += A[ai + n * fi + k] * D[cur + n * fo + j]
            P[wo + k * fo + j] -= lr * s
    if fo == 1:
        if N <= _PW_BLOCK:
            s = _leaf_sum(D, cur, N)  # _pw_leaf's sum, inlined (D may be a stack buffer)
        else:
            s = _pairwise(False, D, cur, D, cur, N, one, one, one, frames, partials)
        P[bo] -= lr * s
    else:
        for j in range(fo):
            s = D[cur + j]
            for n in range(1, N):
                s += D[cur + n * fo + j]
            P[bo + j] -= lr * s


# A layer's arithmetic, compiled twice from the one source: as functions of their own for ``train_loop``, and
# inlined into the caller at Numba's IR level for ``fixed.train_loop_fixed``, whose stack buffers must not
# escape into a call (they would leave the registers). Inlined the same way, ``train_loop`` ran 5-15% slower
# per epoch (measured at [8, 8, 1], N=8, float64).
dense_forward = njit(cache=CACHE)(_dense_forward)
dense_backward = njit(cache=CACHE)(_dense_backward)
dense_forward_inlined = njit(cache=CACHE, inline="always")(_dense_forward)
dense_backward_inlined = njit(cache=CACHE, inline="always")(_dense_backward)


@njit(cache=CACHE)
def train_loop(theta, sizes, woff, boff, X, Y, acts, grads, lr, epochs, kind, mean, floor, eps, history):
    """Every epoch of full-batch SGD in one call, explicit loops, no BLAS, no allocation per epoch.

    ``acts`` and ``grads`` are the two regions of the workspace
    ``workspace.workspace_plan(sizes, N, n_in, GRADS_PAIR)`` lays out, split where the activations
    end (two arrays, so that LLVM checks once whether they overlap and vectorizes; one array cost
    10-20% at [8, 8, 1], N=8): the activations of layers 0..L (the kernel copies ``X`` into layer
    0), then the two gradient buffers.
    Sums run in registers in the reference's order (matmul sums over the inner index in order;
    bias sums as ``np.sum(axis=0)``). Layer ``i``'s params are updated as soon as its upstream
    gradient (which needs the old ``W_i``) is computed, so there is no gradient buffer and no
    separate update pass; the arithmetic is ``W -= lr * dW`` all the same. The loss of epoch
    ``k`` (before its update) goes to ``history[k]`` as float64. Stops at the first non-finite
    loss, without applying that update; returns the number of epochs recorded.

    The loss of up to 7 binary labels is the log of products of 4 clipped
    probabilities (one ``log`` per 4 samples instead of one per sample; within
    a few ulp of the sum of logs, the gradients untouched).

    The lab's shape runs ``fixed.train_loop_fixed`` (its docstring has the speed limit).
    """
    L = sizes.shape[0] - 1
    N = X.shape[0]
    zero = theta.dtype.type(0)
    one = theta.dtype.type(1)
    scale = theta.dtype.type(N)
    lo, hi = eps, one - eps
    off = workspace_plan(sizes, N, sizes[0], GRADS_PAIR)
    g0 = off[L] + N * sizes[L]  # where grads starts in the plan: subtracted from its offsets
    n_in = sizes[0]
    for n in range(N):
        for k in range(n_in):
            acts[n * n_in + k] = X[n, k]
    out_off, err_out = off[L], off[2 * L + 1] - g0
    n_out = sizes[L]
    count = theta.dtype.type(N * n_out)
    Yf = Y.reshape(Y.size)
    frames, partials = np.empty(192, np.int64), np.empty(64, theta.dtype)  # pairwise-sum stacks
    n_terms = N * n_out
    # Few binary labels: the loss's logs as the log of products of 4 clipped probabilities (p or 1 - p,
    # >= eps each, so a product of 4 cannot underflow even in float32): one log per 4 samples.
    binary = _few_binary(Yf, n_terms)
    for epoch in range(epochs):
        for i in range(L):
            dense_forward(theta, acts, off[i], off[i + 1], woff[i], boff[i], N, sizes[i], sizes[i + 1],
                          SIGMOID if i == L - 1 else kind, floor, zero, False)
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
            total = _pw_leaf(True, acts, out_off, Yf, 0, n_terms, lo, hi, one)
        else:
            total = _pairwise(True, acts, out_off, Yf, 0, n_terms, lo, hi, one, frames, partials)
        loss = -(total / count)  # the mean over all N * n_out outputs
        history[epoch] = loss
        if not np.isfinite(loss):
            return epoch + 1
        # ---- backward, updating each layer once its upstream gradient is out
        for q in range(n_terms):
            d = acts[out_off + q] - Yf[q]
            grads[err_out + q] = d / scale if mean else d
        for i in range(L - 1, -1, -1):
            dense_backward(theta, acts, grads, off[i], woff[i], boff[i], off[L + 2 + i] - g0, off[L + 1 + i] - g0,
                           N, sizes[i], sizes[i + 1], kind, i > 0, lr, zero, frames, partials)
    return epochs
