"""Numba's blocked step kernel: one epoch (forward, loss, backward, SGD) over row blocks that stay in cache.

``train_step`` runs on one thread; ``train_step_parallel`` gives each thread its
own chunk of row blocks and its own gradient partial (no ``prange`` reduction
into shared array elements), summed in thread order afterwards. BLAS GEMMs with
``beta = 1`` (``numba_layers._mm_tn``) accumulate the weight gradients block
after block; a one-output layer's backward is one fused pass
(``numba_layers.single_output_backward``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .internals import cache_for
from .layers import _mm, _mm_nt, _mm_tn, act_backward, bias_act, output_error, sgd, single_output_backward
from .scalar import SIGMOID, bce_loss

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "internals": "31554a804d8f",
    "layers": "0dd173144cbe",
    "scalar": "a7215f199f1b",
}
CACHE = cache_for(__name__, _DEPENDS_ON)


@njit(cache=CACHE)
def _view(buf, off, rows, cols):
    return buf[off : off + rows * cols].reshape((rows, cols))


@njit(cache=CACHE)
def _blocks_of_thread(t, n_threads, theta, sizes, woff, boff, X, Y, Yhat, nb, work, gpart, kind, mean, floor):
    """Forward + backward of the row blocks ``t, t + n_threads, ...``, gradients summed into ``gpart``.

    ``work`` layout: the activations of layers 1..L (``nb * width`` each), then
    two ``nb * max_hidden`` upstream-gradient buffers. Weight gradients
    accumulate block after block in BLAS (``beta = 1``): no temporary.
    """
    L = sizes.shape[0] - 1
    N = X.shape[0]
    zero = theta.dtype.type(0)
    ab = np.zeros(2, theta.dtype)  # GEMM's alpha / beta: [0, 1]
    ab[1] = 1
    n_blocks = (N + nb - 1) // nb
    aoff = 0
    max_hidden = 0
    for i in range(1, L + 1):
        aoff += nb * sizes[i]
        if i < L and sizes[i] > max_hidden:
            max_hidden = sizes[i]
    d0 = aoff
    d1 = d0 + nb * max_hidden
    for i in range(L):
        for j in range(sizes[i + 1]):
            gpart[boff[i] + j] = zero
        if i > 0 and sizes[i + 1] == 1:  # accumulated by single_output_backward from zero
            for q in range(sizes[i] * sizes[i + 1]):
                gpart[woff[i] + q] = zero
    first = True
    for blk in range(t, n_blocks, n_threads):
        s = blk * nb
        e = min(s + nb, N)
        m = e - s
        # forward, layer by layer: BLAS into the block's buffer, then one fused pass
        A = X[s:e]
        off = 0
        for i in range(L):
            fi, fo = sizes[i], sizes[i + 1]
            Z = _view(work, off, m, fo)
            _mm(A, _view(theta, woff[i], fi, fo), Z, ab, False)
            bias_act(Z, theta[boff[i] : boff[i] + fo], kind if i < L - 1 else SIGMOID, floor)
            A = Z
            off += nb * fo
        Yhat[s:e] = A
        # backward: the output error in place of y_hat, then layer by layer
        D = A
        output_error(A, Y[s:e], mean, N, D, gpart[boff[L - 1] :])
        for i in range(L - 1, -1, -1):
            fi, fo = sizes[i], sizes[i + 1]
            if i > 0:
                off -= nb * fo
                A_in = _view(work, off - nb * fi, m, fi)
            else:
                A_in = X[s:e]
            gW = _view(gpart, woff[i], fi, fo)
            dA = _view(work, d0 if (L - 1 - i) % 2 == 0 else d1, m, fi) if i > 0 else D
            if i > 0 and fo == 1:
                single_output_backward(A_in, _view(theta, woff[i], fi, fo), D, gW, dA, kind, gpart[boff[i - 1] :])
            else:
                _mm_tn(A_in, D, gW, ab, not first)
                if i > 0:
                    _mm_nt(D, _view(theta, woff[i], fi, fo), dA, ab)
                    act_backward(dA, A_in, kind, gpart[boff[i - 1] :])
            D = dA
        first = False
    if first:  # no block for this thread: its weight gradients are zero
        for i in range(L):
            for q in range(0 if (i > 0 and sizes[i + 1] == 1) else sizes[i] * sizes[i + 1]):
                gpart[woff[i] + q] = zero


@njit(cache=CACHE)
def train_step(theta, sizes, woff, boff, X, Y, Yhat, nb, work, gpart, lr, kind, mean, floor, eps):
    """One epoch (forward, loss, backward, SGD) on one thread; returns the loss before the update."""
    _blocks_of_thread(0, 1, theta, sizes, woff, boff, X, Y, Yhat, nb, work[0], gpart[0], kind, mean, floor)
    loss = bce_loss(Yhat.reshape(Yhat.size), Y.reshape(Y.size), eps)
    sgd(theta, gpart[0], lr)
    return loss


@njit(cache=CACHE, parallel=True)
def train_step_parallel(theta, sizes, woff, boff, X, Y, Yhat, nb, work, gpart, lr, kind, mean, floor, eps):
    """``train_step`` with one chunk of row blocks per thread (``work.shape[0]`` threads).

    Each thread writes only its own ``work[t]`` / ``gpart[t]`` and its own rows
    of ``Yhat``; the partial gradients are summed in thread order afterwards,
    so the result does not depend on scheduling. BLAS must run single-threaded
    inside (the backend sets that).
    """
    T = work.shape[0]
    for t in prange(T):
        _blocks_of_thread(t, T, theta, sizes, woff, boff, X, Y, Yhat, nb, work[t], gpart[t], kind, mean, floor)
    loss = bce_loss(Yhat.reshape(Yhat.size), Y.reshape(Y.size), eps)
    P = theta.shape[0]
    for p in prange(P):
        g = gpart[0, p]
        for t in range(1, T):
            g += gpart[t, p]
        theta[p] -= lr * g
    return loss

