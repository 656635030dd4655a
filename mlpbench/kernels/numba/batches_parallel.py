"""Mini-batch SGD on several threads: ``train_epochs_parallel`` (``@njit(parallel=True, cache=CACHE)``).

The math and the contract of ``numba_batches.train_epochs`` (one call runs every
batch of a chunk of epochs, rows gathered by each epoch's order, the last
batch partial, ``history`` as defined there), with each batch's work split
over ``T`` threads in two ``prange`` regions and no reduction of gradient
partials:

1. **rows** (row-local work): thread ``t`` gathers its share of the batch's
   rows and runs the forward pass, its part of the loss, the output error and
   every upstream gradient ``dA_i = (D_{i+1} @ W_i.T) * act'(A_i)`` for those
   rows, with the OLD weights; its bias-gradient sums go to its own row of
   ``bpart``.
2. **weights** (weight-local work): thread ``t`` computes rows ``[r0, r1)`` of
   every weight gradient ``dW_i = A_i.T @ D_{i+1}`` over the WHOLE batch (one
   BLAS GEMM, ``A_i``'s columns strided) and applies SGD to those rows of
   ``W_i``: each weight is written by one thread.

The biases (a few hundred values) are summed over ``bpart`` in thread order and
updated after region 2. Nothing depends on scheduling: a run gives the same
numbers on every run with the same ``T``; ``T`` changes only how the loss and
the bias sums are grouped (ulps; the weight gradients are the serial
kernel's GEMMs). BLAS must run on one thread inside (the backend pins it) and
its function pointers must be loaded first (``numba_layers.touch_blas``).
"""

from __future__ import annotations

import numpy as np
from numba import config, njit, prange

from .batches import _view, log_softmax_rows
from .internals import HAVE_XXGEMM, cache_for
from .layers import _gemm, _mm, _mm_nt, act_backward, bias_act, output_error
from .scalar import SIGMOID, _bce_term

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "batches": "5eac115046e4",
    "internals": "31554a804d8f",
    "layers": "0dd173144cbe",
    "scalar": "a7215f199f1b",
}
CACHE = cache_for(__name__, _DEPENDS_ON)

_N, _T = ord("N"), ord("T")


def workspace_size(sizes, nb) -> int:
    """Elements of ``train_epochs_parallel``'s ``work`` for layer ``sizes`` and ``nb`` rows per batch.

    Layout: the gathered batch (``nb * n_in``, then ``nb * n_out`` targets), then
    per layer 1..L its activations and its error ``D`` (``nb * width`` each):
    region 2 needs every layer's ``D`` at once.
    """
    return nb * (sizes[0] + sizes[-1] + 2 * sum(sizes[1:]))


@njit(cache=CACHE)
def _share(n, t, T):
    """Thread ``t``'s range of ``n`` items split into ``T`` near-equal contiguous parts."""
    return (n * t) // T, (n * (t + 1)) // T


@njit(cache=CACHE)
def _rows(t, T, theta, sizes, woff, boff, X, Y, order, s, m, gather, work, act_off, err_off, bpart, lpart,
          ab, kind, mean, floor, eps, softmax):
    """Region 1 for thread ``t``: rows ``[r0, r1)`` of the batch starting at position ``s`` of ``order``."""
    L = sizes.shape[0] - 1
    n_in, n_out = sizes[0], sizes[L]
    zero = theta.dtype.type(0)
    one = theta.dtype.type(1)
    r0, r1 = _share(m, t, T)
    k = r1 - r0
    bt = bpart[t]
    for i in range(L):
        for j in range(boff[i], boff[i] + sizes[i + 1]):
            bt[j] = zero
    lpart[t] = 0.0
    if k == 0:
        return
    if gather:
        A = _view(work, r0 * n_in, k, n_in)
        Tg = _view(work, m * n_in + r0 * n_out, k, n_out)
        for r in range(k):
            row = order[s + r0 + r]
            for j in range(n_in):
                A[r, j] = X[row, j]
            for j in range(n_out):
                Tg[r, j] = Y[row, j]
    else:
        A = _view(X.reshape(X.size), (s + r0) * n_in, k, n_in)
        Tg = _view(Y.reshape(Y.size), (s + r0) * n_out, k, n_out)
    a = A
    for i in range(L):
        fi, fo = sizes[i], sizes[i + 1]
        Z = _view(work, act_off[i + 1] + r0 * fo, k, fo)
        _mm(a, _view(theta, woff[i], fi, fo), Z, ab, False)
        b = theta[boff[i] : boff[i] + fo]
        if i < L - 1:
            bias_act(Z, b, kind, floor)
        elif softmax:
            log_softmax_rows(Z, b, _view(work, err_off[L] + r0 * fo, k, fo), True)
        else:
            bias_act(Z, b, SIGMOID, floor)
        a = Z
    # this thread's part of the loss (a sum; the caller divides), then the output error
    total = 0.0
    for n in range(k):
        for j in range(n_out):
            if softmax:
                total += Tg[n, j] * a[n, j]
            else:
                total += _bce_term(a[n, j], Tg[n, j], eps, one - eps, one)
    lpart[t] = total
    D = _view(work, err_off[L] + r0 * n_out, k, n_out)
    output_error(D if softmax else a, Tg, mean, m, D, bt[boff[L - 1] : boff[L - 1] + n_out])
    for i in range(L - 1, 0, -1):
        fi, fo = sizes[i], sizes[i + 1]
        dA = _view(work, err_off[i] + r0 * fi, k, fi)
        _mm_nt(D, _view(theta, woff[i], fi, fo), dA, ab)
        act_backward(dA, _view(work, act_off[i] + r0 * fi, k, fi), kind, bt[boff[i - 1] : boff[i - 1] + fi])
        D = dA


if config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1, e.g. for coverage)
    def _mm_tn_rows(A, r0, r1, D, C, ab):
        C[r0:r1] = A[:, r0:r1].T @ D
elif HAVE_XXGEMM:
    @njit(cache=CACHE)
    def _mm_tn_rows(A, r0, r1, D, C, ab):
        """Rows ``[r0, r1)`` of the row-major ``C = A.T @ D``: one GEMM on ``A``'s strided columns."""
        m, fi = A.shape
        fo = D.shape[1]
        # as column-major: C[r0:r1].T = D.T @ A[:, r0:r1], A's columns strided by fi
        _gemm(_N, _T, fo, r1 - r0, m, ab[1:], D, fo, A[:, r0:], fi, ab[:1], C[r0:], fo)
else:  # the public fallback (numba_internals): np.dot on a contiguous copy of the columns
    @njit(cache=CACHE)
    def _mm_tn_rows(A, r0, r1, D, C, ab):
        np.dot(np.ascontiguousarray(A[:, r0:r1].T), D, C[r0:r1])


@njit(cache=CACHE)
def _weights(t, T, theta, sizes, woff, X, s, m, gather, work, act_off, err_off, grad, ab, lr):
    """Region 2 for thread ``t``: rows ``[r0, r1)`` of each ``dW_i = A_i.T @ D_{i+1}``, then SGD on them."""
    L = sizes.shape[0] - 1
    for i in range(L):
        fi, fo = sizes[i], sizes[i + 1]
        r0, r1 = _share(fi, t, T)
        if r1 == r0:
            continue
        if i > 0 or gather:
            A = _view(work, act_off[i], m, fi)
        else:
            A = _view(X.reshape(X.size), s * fi, m, fi)
        _mm_tn_rows(A, r0, r1, _view(work, err_off[i + 1], m, fo), _view(grad, woff[i], fi, fo), ab)
        for q in range(woff[i] + r0 * fo, woff[i] + r1 * fo):
            theta[q] -= lr * grad[q]


@njit(cache=CACHE, parallel=True)
def train_epochs_parallel(theta, sizes, woff, boff, X, Y, orders, gather, nb, work, grad, bpart, lr, kind, mean,
                          floor, eps, softmax, history):
    """``numba_batches.train_epochs`` on ``bpart.shape[0]`` threads (module docstring); same arguments,
    plus ``bpart`` (``(T, n_params)``, the threads' bias-gradient sums), ``work`` of ``workspace_size``."""
    L = sizes.shape[0] - 1
    N = X.shape[0]
    n_in, n_out = sizes[0], sizes[L]
    T = bpart.shape[0]
    ab = np.zeros(2, theta.dtype)  # the BLAS wrappers' alpha / beta: [0, 1]
    ab[1] = 1
    act_off = np.empty(L + 1, np.int64)  # layer i's activations (0: the gathered batch)
    err_off = np.empty(L + 1, np.int64)  # layer i's error D_i (i >= 1)
    act_off[0] = 0
    err_off[0] = 0
    off = nb * (n_in + n_out)
    for i in range(1, L + 1):
        act_off[i] = off
        err_off[i] = off + nb * sizes[i]
        off += 2 * nb * sizes[i]
    lpart = np.zeros(T, np.float64)
    n_batches = (N + nb - 1) // nb
    per_row = n_out if not softmax else 1
    for e in range(history.shape[0]):
        order = orders[e % orders.shape[0]]
        total = 0.0
        for s in range(0, N, nb):
            m = min(nb, N - s)
            for t in prange(T):
                _rows(t, T, theta, sizes, woff, boff, X, Y, order, s, m, gather, work, act_off, err_off, bpart,
                      lpart, ab, kind, mean, floor, eps, softmax)
            acc = 0.0
            for t in range(T):
                acc += lpart[t]
            loss = -(acc / (m * per_row))
            total += loss
            if not np.isfinite(loss):
                history[e] = total / n_batches
                return e + 1
            for t in prange(T):
                _weights(t, T, theta, sizes, woff, X, s, m, gather, work, act_off, err_off, grad, ab, lr)
            for i in range(L):
                for j in range(boff[i], boff[i] + sizes[i + 1]):
                    g = bpart[0, j]
                    for t in range(1, T):
                        g += bpart[t, j]
                    theta[j] -= lr * g
        history[e] = total / n_batches
    return history.shape[0]
