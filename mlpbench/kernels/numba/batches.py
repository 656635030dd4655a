"""Numba kernels for the softmax head and for mini-batch SGD (``@njit(cache=CACHE)``, no ``fastmath``).

The math of ``reference.py`` (``log_softmax``, ``cross_entropy``, ``output_error``
and ``backward`` with ``output="softmax"``); buffers and dispatch are in
``backends/numba/minibatch.py``. Generic over float32 / float64, any depth,
every activation, both heads.

* the softmax head, one call at a time: ``softmax_error`` (``exp(log p) - onehot``,
  fused with the bias-gradient sum), ``cross_entropy`` (its forward pass is
  ``layers.forward``, its log-softmax ``layers.log_softmax_rows``);
* ``train_epochs``: every mini-batch of one or more epochs in ONE call. Rows
  are gathered by each epoch's order (made in NumPy, ``base.epoch_orders``)
  into a preallocated batch buffer (``workspace.batch_rows``), the last partial
  batch included; per batch: forward (``layers.forward``), loss, backward, SGD
  on the flat parameter vector ``theta`` (the layout of ``layers``), matmuls
  through BLAS. The softmax head's probabilities come out of the forward pass's
  ``exp`` calls (no second ``exp`` in the backward).

The per-layer pieces shared with the full-batch kernels come from ``layers``
(``forward``, ``act_backward``, ``output_error`` and the BLAS wrappers) and
``scalar`` (``_bce_term``): cross-module calls, salted in ``_DEPENDS_ON``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .internals import cache_for
from .layers import _mm_nt, _mm_tn, act_backward, forward, output_error
from .scalar import _bce_term
from .workspace import GRADS_PAIR, _view, batch_rows, workspace_plan
from .workspace import workspace_size as _workspace_size

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a", "layers": "0883e60d6457", "scalar": "7f02aca1655e",
               "workspace": "2f040baff638"}
CACHE = cache_for(__name__, _DEPENDS_ON)


# ---------------------------------------------------------------- the softmax head
@njit(cache=CACHE)
def softmax_error(logp, T, mean, n_total, D, db):
    """``D = exp(logp) - T`` (divided by ``n_total`` when ``mean``), with ``db += D.sum(axis=0)``."""
    N, K = D.shape
    for n in range(N):
        for j in range(K):
            D[n, j] = np.exp(logp[n, j])
    output_error(D, T, mean, n_total, D, db)


@njit(cache=CACHE)
def loss_sum(P, T, eps, softmax):
    """The sum, in float64 and in row order, of the loss terms of predictions ``P`` against targets ``T``:
    ``T_k logp_k`` (``softmax``: ``P`` holds log-probabilities) or the BCE terms with the lab's clip ``eps``."""
    one = P.dtype.type(1)
    N, K = P.shape
    total = 0.0
    for n in range(N):
        for j in range(K):
            total += T[n, j] * P[n, j] if softmax else _bce_term(P[n, j], T[n, j], eps, one - eps, one)
    return total


@njit(cache=CACHE)
def cross_entropy(T, logp):
    """Mean over rows of ``-sum_k T_k logp_k``, summed in float64 (returned as float64)."""
    return -(loss_sum(logp, T, logp.dtype.type(0), True) / T.shape[0])


# ---------------------------------------------------------------- mini-batch SGD
def workspace_size(sizes, nb) -> int:
    """Elements of ``train_epochs``' ``work`` for layer ``sizes`` and ``nb`` rows per batch: the gathered
    batch and its targets, every layer's activations and a pair of gradient buffers (``workspace``)."""
    return _workspace_size(sizes, nb, sizes[0] + sizes[-1], GRADS_PAIR)


@njit(cache=CACHE, inline="always")  # as batch_rows: a call per batch cost tiny batches ~15% ([8, 16, 1], 8 rows)
def _batch(theta, sizes, woff, boff, A, T, work, off, grad, ab, lr, kind, mean, floor, eps, softmax):
    """Forward, loss, backward and SGD on one batch (``A``, ``T``); returns the loss before the update as
    float64, and applies no update when it is not finite. ``work`` is laid out by ``off``
    (``workspace_plan(sizes, nb, n_in + n_out, GRADS_PAIR)``)."""
    L = sizes.shape[0] - 1
    m = A.shape[0]
    n_out = sizes[L]
    zero = theta.dtype.type(0)
    D = _view(work, off[2 * L + 1], m, n_out)
    a = forward(theta, sizes, woff, boff, A, work, off, 0, kind, floor, softmax, D, ab)  # softmax: probs to D
    total = loss_sum(a, T, eps, softmax)
    loss = -(total / m) if softmax else -(total / (m * n_out))
    if not np.isfinite(loss):
        return loss
    db = grad[boff[L - 1] : boff[L - 1] + n_out]
    for j in range(n_out):
        db[j] = zero
    output_error(D if softmax else a, T, mean, m, D, db)
    for i in range(L - 1, -1, -1):
        fi, fo = sizes[i], sizes[i + 1]
        A_in = _view(work, off[i], m, fi) if i > 0 else A
        _mm_tn(A_in, D, _view(grad, woff[i], fi, fo), ab, False)
        if i > 0:  # the upstream gradient, from the old W_i
            dA = _view(work, off[L + 1 + i], m, fi)
            _mm_nt(D, _view(theta, woff[i], fi, fo), dA, ab)
            db = grad[boff[i - 1] : boff[i - 1] + fi]
            for j in range(fi):
                db[j] = zero
            act_backward(dA, A_in, kind, db)
            D = dA
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
    flat params and a gradient buffer of the same layout (``layers``).
    """
    L = sizes.shape[0] - 1
    N = X.shape[0]
    ab = np.zeros(2, theta.dtype)  # the BLAS wrappers' alpha / beta: [0, 1]
    ab[1] = 1
    off = workspace_plan(sizes, nb, sizes[0] + sizes[L], GRADS_PAIR)
    n_batches = (N + nb - 1) // nb
    for e in range(history.shape[0]):
        order = orders[e % orders.shape[0]]
        total = 0.0
        for s in range(0, N, nb):
            A, T = batch_rows(X, Y, order, s, 0, min(nb, N - s), nb, gather, work)
            loss = _batch(theta, sizes, woff, boff, A, T, work, off, grad, ab, lr, kind, mean, floor, eps, softmax)
            total += loss
            if not np.isfinite(loss):
                history[e] = total / n_batches
                return e + 1
        history[e] = total / n_batches
    return history.shape[0]
