"""Mini-batch SGD on several threads: ``train_epochs_parallel`` (``@njit(parallel=True, cache=CACHE)``).

The math and the contract of ``batches.train_epochs`` (one call runs every
batch of a chunk of epochs, rows gathered by each epoch's order, the last
batch partial, ``history`` as defined there), with each batch's work split
over ``T`` threads in two ``prange`` regions and no reduction of gradient
partials:

1. **rows** (row-local work): thread ``t`` gathers its share of the batch's
   rows (``workspace.batch_rows``) and runs the forward pass (``layers.forward``),
   its part of the loss, the output error and every upstream gradient
   ``dA_i = (D_{i+1} @ W_i.T) * act'(A_i)`` for those rows, with the OLD
   weights; its bias-gradient sums go to its own row of ``bpart``.
2. **weights** (weight-local work): thread ``t`` computes rows ``[r0, r1)`` of
   every weight gradient ``dW_i = A_i.T @ D_{i+1}`` over the WHOLE batch (one
   BLAS GEMM, ``A_i``'s columns strided) and applies SGD to those rows of
   ``W_i``: each weight is written by one thread.

The biases (a few hundred values) are summed over ``bpart`` in thread order and
updated after region 2. Nothing depends on scheduling: a run gives the same
numbers on every run with the same ``T``; ``T`` changes only how the loss and
the bias sums are grouped (ulps; the weight gradients are the serial
kernel's GEMMs). BLAS must run on one thread inside (the backend pins it) and
its function pointers must be loaded first (``layers.touch_blas``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .batches import loss_sum
from .internals import cache_for
from .layers import _mm_nt, _mm_tn_rows, act_backward, forward, output_error, sgd_parts
from .workspace import GRADS_PER_LAYER, _view, batch_rows, workspace_plan
from .workspace import workspace_size as _workspace_size

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"batches": "8e504d905daf", "internals": "4baacdee097a", "layers": "0883e60d6457",
               "workspace": "2f040baff638"}
CACHE = cache_for(__name__, _DEPENDS_ON)


def workspace_size(sizes, nb) -> int:
    """Elements of ``train_epochs_parallel``'s ``work`` for layer ``sizes`` and ``nb`` rows per batch: the
    gathered batch and its targets, every layer's activations, then every layer's error ``D`` (region 2
    needs them all at once; ``workspace``)."""
    return _workspace_size(sizes, nb, sizes[0] + sizes[-1], GRADS_PER_LAYER)


@njit(cache=CACHE)
def _share(n, t, T):
    """Thread ``t``'s range of ``n`` items split into ``T`` near-equal contiguous parts."""
    return (n * t) // T, (n * (t + 1)) // T


@njit(cache=CACHE)
def _rows(t, T, theta, sizes, woff, boff, X, Y, order, s, m, nb, gather, work, off, bpart, lpart, ab, kind, mean,
          floor, eps, softmax):
    """Region 1 for thread ``t``: rows ``[r0, r1)`` of the batch starting at position ``s`` of ``order``."""
    L = sizes.shape[0] - 1
    n_out = sizes[L]
    zero = theta.dtype.type(0)
    r0, r1 = _share(m, t, T)
    k = r1 - r0
    bt = bpart[t]
    for i in range(L):
        for j in range(boff[i], boff[i] + sizes[i + 1]):
            bt[j] = zero
    lpart[t] = 0.0
    if k == 0:
        return
    A, Tg = batch_rows(X, Y, order, s, r0, k, nb, gather, work)
    D = _view(work, off[2 * L + 1] + r0 * n_out, k, n_out)
    a = forward(theta, sizes, woff, boff, A, work, off, r0, kind, floor, softmax, D, ab)  # softmax: probs to D
    lpart[t] = loss_sum(a, Tg, eps, softmax)  # this thread's part of the loss (the caller divides)
    output_error(D if softmax else a, Tg, mean, m, D, bt[boff[L - 1] : boff[L - 1] + n_out])
    for i in range(L - 1, 0, -1):
        fi, fo = sizes[i], sizes[i + 1]
        dA = _view(work, off[L + 1 + i] + r0 * fi, k, fi)
        _mm_nt(D, _view(theta, woff[i], fi, fo), dA, ab)
        act_backward(dA, _view(work, off[i] + r0 * fi, k, fi), kind, bt[boff[i - 1] : boff[i - 1] + fi])
        D = dA


@njit(cache=CACHE)
def _weights(t, T, theta, sizes, woff, X, s, m, gather, work, off, grad, ab, lr):
    """Region 2 for thread ``t``: rows ``[r0, r1)`` of each ``dW_i = A_i.T @ D_{i+1}``, then SGD on them."""
    L = sizes.shape[0] - 1
    for i in range(L):
        fi, fo = sizes[i], sizes[i + 1]
        r0, r1 = _share(fi, t, T)
        if r1 == r0:
            continue
        if i > 0 or gather:
            A = _view(work, off[i], m, fi)
        else:
            A = _view(X.reshape(X.size), s * fi, m, fi)
        _mm_tn_rows(A, r0, r1, _view(work, off[L + 2 + i], m, fo), _view(grad, woff[i], fi, fo), ab)
        for q in range(woff[i] + r0 * fo, woff[i] + r1 * fo):
            theta[q] -= lr * grad[q]


@njit(cache=CACHE, parallel=True)
def train_epochs_parallel(theta, sizes, woff, boff, X, Y, orders, gather, nb, work, grad, bpart, lr, kind, mean,
                          floor, eps, softmax, history):
    """``batches.train_epochs`` on ``bpart.shape[0]`` threads (module docstring); same arguments,
    plus ``bpart`` (``(T, n_params)``, the threads' bias-gradient sums), ``work`` of ``workspace_size``."""
    L = sizes.shape[0] - 1
    N = X.shape[0]
    n_in, n_out = sizes[0], sizes[L]
    T = bpart.shape[0]
    ab = np.zeros(2, theta.dtype)  # the BLAS wrappers' alpha / beta: [0, 1]
    ab[1] = 1
    off = workspace_plan(sizes, nb, n_in + n_out, GRADS_PER_LAYER)
    lpart = np.zeros(T, np.float64)
    n_batches = (N + nb - 1) // nb
    per_row = n_out if not softmax else 1
    for e in range(history.shape[0]):
        order = orders[e % orders.shape[0]]
        total = 0.0
        for s in range(0, N, nb):
            m = min(nb, N - s)
            for t in prange(T):
                _rows(t, T, theta, sizes, woff, boff, X, Y, order, s, m, nb, gather, work, off, bpart, lpart, ab,
                      kind, mean, floor, eps, softmax)
            acc = 0.0
            for t in range(T):
                acc += lpart[t]
            loss = -(acc / (m * per_row))
            total += loss
            if not np.isfinite(loss):
                history[e] = total / n_batches
                return e + 1
            for t in prange(T):
                _weights(t, T, theta, sizes, woff, X, s, m, gather, work, off, grad, ab, lr)
            for i in range(L):
                for j in range(boff[i], boff[i] + sizes[i + 1]):
                    sgd_parts(theta, bpart, j, lr)
        history[e] = total / n_batches
    return history.shape[0]
