"""Numba's blocked step kernel: one epoch (forward, loss, backward, SGD) over row blocks that stay in cache.

``train_step`` runs on one thread; ``train_step_parallel`` gives each thread its
own chunk of row blocks and its own gradient partial (no ``prange`` reduction
into shared array elements), summed in thread order afterwards. The forward
pass is ``layers.forward``; BLAS GEMMs with ``beta = 1`` (``layers._mm_tn``)
accumulate the weight gradients block after block; a one-output layer's
backward is one fused pass (``layers.single_output_backward``).

Bounds at N=16384, ``[32, 2048, 1]`` (issue 25's targets: 60% of the float64 peak,
50% of the float32 peak, float32 1.6x faster), on the 2-core AMD EPYC (Zen 4):
the committed runs (``docs/results/amd-epyc-2c/standard-1``, ``-2``, a noisy day: samples
66-109 ms) have medians of 85.5 / 72.5 ms in float64, 51.4 / 59.4% of the run's peak (~103
GFLOP/s, ~52 per core), and 52.2 / 50.3 ms in float32, 40.9 / 42.7% (~210 GFLOP/s): float32
1.64 / 1.44x faster; single-point runs of ``mlpbench bench`` on idle stretches of the same
day reached 64-67 ms (60-65%) and 39-41 ms (53-55%), 1.62-1.75x. One
thread, CPU time, under load (float64 at 90 rows per block: 135 ms; float32 at 181: 78 ms):
the forward GEMM, depth 32 (the input width), 56 / 29 ms, 72% / 69% of a core's
peak; the weight-gradient GEMM 45 / 33 ms, 90% / 62%; the elementwise passes
(bias + ReLU, the one-column output layer, ``single_output_backward``) 33 / 13 ms,
a quarter of the float64 step: a 90-row block's activations (1.5 MB) live in L3,
not the 1 MiB L2. ``single_output_backward`` in L1-sized column tiles
(``machine_rules.l1_tile``) takes 15-17% off that pass alone, which is within the
noise of a whole step (float64, one thread, CPU time, three alternating rounds:
120-135 ms tiled, 124-128 ms untiled). Two threads scale 1.9x. So 60% of the 2-core float64 peak needs
the depth-32 GEMM near peak (BLAS's choice) or the elementwise quarter gone. A row
pass fusing the last hidden layer's bias and activation with the output layer, its
error and its backward (one read of each row from L3, the rest in L1) measured no
gain per block (float64, 85 rows: 0.126 ms against 0.122 for the separate passes;
float32, 181 rows: 0.148 against 0.137) and was not kept: the passes are bound by
their stores (``dA`` and the gradient rows), which the fusion does not remove. No
float64 operation runs in the float32 build (``tests/test_numba_float32_ir.py``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from .internals import cache_for
from .layers import _mm_nt, _mm_tn, act_backward, forward, output_error, sgd, sgd_parts, single_output_backward
from .scalar import bce_loss
from .workspace import _view

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a", "layers": "0883e60d6457", "scalar": "7f02aca1655e",
               "workspace": "2f040baff638"}
CACHE = cache_for(__name__, _DEPENDS_ON)


@njit(cache=CACHE)
def _blocks_of_thread(t, n_threads, theta, sizes, woff, boff, off, X, Y, Yhat, nb, tile, work, gpart, kind, mean,
                      floor):
    """Forward + backward of the row blocks ``t, t + n_threads, ...``, gradients summed into ``gpart``.

    ``work`` is laid out by ``off`` (``workspace.workspace_plan(sizes, nb, 0, GRADS_IN_PLACE)``):
    the activations of layers 1..L, the output error in place of the output's, two upstream-gradient
    buffers for the hidden layers. Weight gradients accumulate block after block in BLAS
    (``beta = 1``): no temporary.
    """
    L = sizes.shape[0] - 1
    N = X.shape[0]
    zero = theta.dtype.type(0)
    ab = np.zeros(2, theta.dtype)  # GEMM's alpha / beta: [0, 1]
    ab[1] = 1
    n_blocks = (N + nb - 1) // nb
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
        A = forward(theta, sizes, woff, boff, X[s:e], work, off, 0, kind, floor, False, None, ab)
        for r in range(m):  # not ``Yhat[s:e] = A``: a slice assignment compiles Numba's shape-mismatch message
            for c in range(A.shape[1]):  # (string formatting: 4 of train_step's 18 s of first compile)
                Yhat[s + r, c] = A[r, c]
        # backward: the output error in place of y_hat, then layer by layer
        D = A
        output_error(A, Y[s:e], mean, N, D, gpart[boff[L - 1] :])
        for i in range(L - 1, -1, -1):
            fi, fo = sizes[i], sizes[i + 1]
            A_in = _view(work, off[i], m, fi) if i > 0 else X[s:e]
            gW = _view(gpart, woff[i], fi, fo)
            dA = _view(work, off[L + 1 + i], m, fi) if i > 0 else D
            if i > 0 and fo == 1:
                single_output_backward(A_in, _view(theta, woff[i], fi, fo), D, gW, dA, kind, gpart[boff[i - 1] :],
                                       tile)
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
def train_step(theta, sizes, woff, boff, off, X, Y, Yhat, nb, tile, work, gpart, lr, kind, mean, floor, eps):
    """One epoch (forward, loss, backward, SGD) on one thread; returns the loss before the update."""
    _blocks_of_thread(0, 1, theta, sizes, woff, boff, off, X, Y, Yhat, nb, tile, work[0], gpart[0], kind, mean,
                      floor)
    loss = bce_loss(Yhat.reshape(Yhat.size), Y.reshape(Y.size), eps)
    sgd(theta, gpart[0], lr)
    return loss


@njit(cache=CACHE, parallel=True)
def train_step_parallel(theta, sizes, woff, boff, off, X, Y, Yhat, nb, tile, work, gpart, lr, kind, mean, floor,
                        eps):
    """``train_step`` with one chunk of row blocks per thread (``work.shape[0]`` threads).

    Each thread writes only its own ``work[t]`` / ``gpart[t]`` and its own rows
    of ``Yhat``; the partial gradients are summed in thread order afterwards,
    so the result does not depend on scheduling. BLAS must run single-threaded
    inside (the backend sets that).
    """
    T = work.shape[0]
    for t in prange(T):
        _blocks_of_thread(t, T, theta, sizes, woff, boff, off, X, Y, Yhat, nb, tile, work[t], gpart[t], kind, mean,
                          floor)
    loss = bce_loss(Yhat.reshape(Yhat.size), Y.reshape(Y.size), eps)
    for p in prange(theta.shape[0]):
        sgd_parts(theta, gpart, p, lr)
    return loss

