"""Numba kernels for the softmax head and for mini-batch SGD (``@njit(cache=CACHE)``, no ``fastmath``).

The math of ``reference.py`` (``log_softmax``, ``cross_entropy``, ``output_error``
and ``backward`` with ``output="softmax"``); buffers and dispatch are in
``backends/numba_minibatch.py``. Generic over float32 / float64, any depth,
every activation, both heads.

* the softmax head, one call at a time: ``layer_log_softmax`` (BLAS, then a
  stable log-softmax per row: ``z - max(z)`` before ``exp``, so no overflow for
  any finite logits), ``softmax_error`` (``exp(log p) - onehot``, fused with the
  bias-gradient sum), ``cross_entropy``;
* ``train_epochs``: every mini-batch of one or more epochs in ONE call. Rows
  are gathered by each epoch's order (made in NumPy, ``base.epoch_orders``)
  into a preallocated batch buffer, the last partial batch included; per
  batch: forward, loss, backward, SGD on the flat parameter vector ``theta``
  (the layout of ``numba_layers``), matmuls through BLAS. The softmax head's
  probabilities come out of the forward pass's ``exp`` calls (no second
  ``exp`` in the backward).

The per-layer pieces shared with the full-batch kernels come from
``numba_layers`` (``bias_act``, ``act_backward``, ``output_error`` and the BLAS
wrappers ``_mm``, ``_mm_tn``, ``_mm_nt``) and ``numba_scalar`` (``_bce_term``):
cross-module calls, salted in ``_DEPENDS_ON``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .internals import cache_for
from .layers import _mm, _mm_nt, _mm_tn, act_backward, bias_act, output_error
from .scalar import _bce_term
from ..reference import ACT_CODES

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "..reference": "5580e4bf7917",
    "internals": "31554a804d8f",
    "layers": "0dd173144cbe",
    "scalar": "a7215f199f1b",
}
CACHE = cache_for(__name__, _DEPENDS_ON)

SIGMOID = ACT_CODES["sigmoid"]


# ---------------------------------------------------------------- the softmax head
@njit(cache=CACHE)
def log_softmax_rows(Z, b, P, probs):
    """``Z = log_softmax(Z + b)`` per row, in place; the row max is subtracted before ``exp``.

    With ``probs``, ``P`` gets the probabilities ``exp(s) / sum(exp(s))`` from the
    same ``exp`` calls (within an ulp or two of ``exp(Z)``, the reference's).
    """
    zero = Z.dtype.type(0)
    N, K = Z.shape
    for n in range(N):
        mx = Z[n, 0] + b[0]
        for j in range(K):
            v = Z[n, j] + b[j]
            Z[n, j] = v
            if v > mx:
                mx = v
        total = zero
        for j in range(K):
            s = Z[n, j] - mx
            Z[n, j] = s
            e = np.exp(s)
            total += e
            if probs:
                P[n, j] = e
        lse = np.log(total)  # total >= 1 (the max's own term): no log(0)
        for j in range(K):
            Z[n, j] -= lse
            if probs:
                P[n, j] /= total


@njit(cache=CACHE)
def layer_log_softmax(A, W, b, Z):
    """The softmax head's layer: ``Z = log_softmax(A @ W + b)`` (BLAS into ``Z``, then one pass per row)."""
    np.dot(A, W, Z)
    log_softmax_rows(Z, b, Z, False)


@njit(cache=CACHE)
def softmax_error(logp, T, mean, n_total, D, db):
    """``D = exp(logp) - T`` (divided by ``n_total`` when ``mean``), with ``db += D.sum(axis=0)``."""
    N, K = D.shape
    for n in range(N):
        for j in range(K):
            D[n, j] = np.exp(logp[n, j])
    output_error(D, T, mean, n_total, D, db)


@njit(cache=CACHE)
def cross_entropy(T, logp):
    """Mean over rows of ``-sum_k T_k logp_k``, summed in float64 (returned as float64)."""
    N, K = T.shape
    total = 0.0
    for n in range(N):
        for j in range(K):
            total += T[n, j] * logp[n, j]
    return -(total / N)


@njit(cache=CACHE)
def _bce(P, T, eps):
    """Mean binary cross-entropy (the lab's clip), summed in float64."""
    one = P.dtype.type(1)
    N, K = P.shape
    total = 0.0
    for n in range(N):
        for j in range(K):
            total += _bce_term(P[n, j], T[n, j], eps, one - eps, one)
    return -(total / (N * K))


# ---------------------------------------------------------------- mini-batch SGD
@njit(cache=CACHE)
def _view(buf, off, rows, cols):
    return buf[off : off + rows * cols].reshape((rows, cols))


def workspace_size(sizes, nb) -> int:
    """Elements of ``train_epochs``' ``work`` for layer ``sizes`` and ``nb`` rows per batch.

    Layout: the gathered batch (``nb * n_in``, then ``nb * n_out`` targets), the
    activations of layers 1..L (``nb * width`` each) and two upstream-gradient
    buffers (``nb * widest``).
    """
    widths = list(sizes[1:])
    return nb * (sizes[0] + sizes[-1] + sum(widths) + 2 * max(widths))


@njit(cache=CACHE)
def _batch(theta, sizes, woff, boff, A, T, m, work, act_off, d0, d1, grad, ab, lr, kind, mean, floor, eps, softmax):
    """Forward, loss, backward and SGD on one batch of ``m`` rows (``A``, ``T``); returns the loss before
    the update as float64, and applies no update when it is not finite."""
    L = sizes.shape[0] - 1
    n_out = sizes[L]
    zero = theta.dtype.type(0)
    D = _view(work, d0, m, n_out)
    a = A
    for i in range(L):
        fi, fo = sizes[i], sizes[i + 1]
        Z = _view(work, act_off[i + 1], m, fo)
        _mm(a, _view(theta, woff[i], fi, fo), Z, ab, False)
        b = theta[boff[i] : boff[i] + fo]
        if i < L - 1:
            bias_act(Z, b, kind, floor)
        elif softmax:
            log_softmax_rows(Z, b, D, True)  # the probabilities go to D, for the output error
        else:
            bias_act(Z, b, SIGMOID, floor)
        a = Z
    loss = cross_entropy(T, a) if softmax else _bce(a, T, eps)
    if not np.isfinite(loss):
        return loss
    db = grad[boff[L - 1] : boff[L - 1] + n_out]
    for j in range(n_out):
        db[j] = zero
    output_error(D if softmax else a, T, mean, m, D, db)
    other = d1
    for i in range(L - 1, -1, -1):
        fi, fo = sizes[i], sizes[i + 1]
        A_in = _view(work, act_off[i], m, fi) if i > 0 else A
        _mm_tn(A_in, D, _view(grad, woff[i], fi, fo), ab, False)
        if i > 0:  # the upstream gradient, from the old W_i
            dA = _view(work, other, m, fi)
            _mm_nt(D, _view(theta, woff[i], fi, fo), dA, ab)
            db = grad[boff[i - 1] : boff[i - 1] + fi]
            for j in range(fi):
                db[j] = zero
            act_backward(dA, A_in, kind, db)
            D = dA
            other = d0 if other == d1 else d1
    for p in range(theta.shape[0]):
        theta[p] -= lr * grad[p]
    return loss


@njit(cache=CACHE)
def train_epochs(theta, sizes, woff, boff, X, Y, orders, gather, nb, work, grad, lr, kind, mean, floor, eps,
                 softmax, history):
    """``len(history)`` epochs of mini-batch SGD in one call; returns the number of epochs recorded.

    Epoch ``e`` takes rows in the order ``orders[e % len(orders)]`` (int64), in
    batches of ``nb`` rows, the last one partial, gathered into ``work``
    (``workspace_size``); without ``gather`` the batches are ``X``'s rows in
    order (no copy: full batch). Each batch is one update (``mean``: gradients
    divided by its own row count). ``history[e]`` (float64) is the mean of the
    epoch's batch losses, each before its update, added in batch order. At the
    first non-finite batch loss the kernel stops without that update, records
    a non-finite ``history[e]`` and returns ``e + 1``. ``theta`` / ``grad``: the
    flat params and a gradient buffer of the same layout (``numba_layers``).
    """
    L = sizes.shape[0] - 1
    N = X.shape[0]
    n_in, n_out = sizes[0], sizes[L]
    ab = np.zeros(2, theta.dtype)  # the BLAS wrappers' alpha / beta: [0, 1]
    ab[1] = 1
    act_off = np.empty(L + 1, np.int64)  # where each layer's activations start in work (0: the batch)
    act_off[0] = 0
    off = nb * (n_in + n_out)
    widest = 0
    for i in range(1, L + 1):
        act_off[i] = off
        off += nb * sizes[i]
        widest = max(widest, sizes[i])
    d0, d1 = off, off + nb * widest
    Xf, Yf = X.reshape(X.size), Y.reshape(Y.size)
    n_batches = (N + nb - 1) // nb
    for e in range(history.shape[0]):
        order = orders[e % orders.shape[0]]
        total = 0.0
        for s in range(0, N, nb):
            m = min(nb, N - s)
            if gather:
                A, T = _view(work, 0, m, n_in), _view(work, nb * n_in, m, n_out)
                for r in range(m):
                    row = order[s + r]
                    for j in range(n_in):
                        A[r, j] = X[row, j]
                    for j in range(n_out):
                        T[r, j] = Y[row, j]
            else:
                A, T = _view(Xf, s * n_in, m, n_in), _view(Yf, s * n_out, m, n_out)
            loss = _batch(theta, sizes, woff, boff, A, T, m, work, act_off, d0, d1, grad, ab, lr, kind, mean,
                          floor, eps, softmax)
            total += loss
            if not np.isfinite(loss):
                history[e] = total / n_batches
                return e + 1
        history[e] = total / n_batches
    return history.shape[0]
