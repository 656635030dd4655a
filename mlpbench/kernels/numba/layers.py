"""Numba per-layer kernels: the forward pass, fused bias + activation, log-softmax, output error, fused backward,
SGD, and the GEMM with ``beta``.

``forward`` is THE forward pass of every BLAS kernel (``step``, ``batches``,
``batches_parallel``), into the buffers ``workspace.workspace_plan`` lays out;
``layer_forward``, its layer (a BLAS matmul plus ONE fused pass), is also the
backend's one-call ``forward``, layer by layer. A backward layer is the same (matmuls, then one fused pass); a bias
gradient sums rows in order (``np.sum(axis=0)``'s order), one column in NumPy's
pairwise order. ``sgd`` updates every parameter of the flat vector ``theta`` in
one loop (layer ``i``: ``W_i`` row-major at ``woff[i]``, ``b_i`` at ``boff[i]``;
gradients alike). ``_mm`` / ``_mm_tn`` / ``_mm_nt`` are row-major GEMMs that can
accumulate (``beta = 1``, through ``numba_xxgemm``: ``internals``; ``np.dot``
otherwise), which the blocked step kernel (``step``) uses to sum weight gradients
block after block without a temporary.
"""

from __future__ import annotations

import numpy as np
from numba import config, njit
from numba.extending import overload

from .internals import HAVE_XXGEMM, cache_for, xxgemm_type
from .scalar import RELU, SIGMOID, TANH, _deriv, _relu, _sigmoid, _sum
from .workspace import _view

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a", "scalar": "7f02aca1655e", "workspace": "2f040baff638"}
CACHE = cache_for(__name__, _DEPENDS_ON)


# ---------------------------------------------------------------- per-layer kernels
@njit(cache=CACHE)
def bias_act(Z, b, kind, floor):
    """``Z = act(Z + b)`` in place: ONE pass after the matmul."""
    zero = Z.dtype.type(0)
    one = Z.dtype.type(1)
    N, F = Z.shape
    if kind == RELU:
        for n in range(N):
            for j in range(F):
                Z[n, j] = _relu(Z[n, j] + b[j], zero)
    elif kind == TANH:
        for n in range(N):
            for j in range(F):
                Z[n, j] = np.tanh(Z[n, j] + b[j])
    else:
        for n in range(N):
            for j in range(F):
                Z[n, j] = _sigmoid(Z[n, j] + b[j], floor, one)


@njit(cache=CACHE)
def log_softmax_rows(Z, b, P, probs):
    """``Z = log_softmax(Z + b)`` per row, in place; the row max is subtracted before ``exp``
    (no overflow for any finite logits).

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
def output_error(P, T, mean, n_total, D, db):
    """``D = P - T`` (divided by ``n_total`` when ``mean``) fused with ``db += D.sum(axis=0)``.

    ``D`` may be ``P`` itself (in place).
    """
    N, F = D.shape
    scale = P.dtype.type(n_total)
    if F == 1:
        for n in range(N):
            d = P[n, 0] - T[n, 0]
            D[n, 0] = d / scale if mean else d
        db[0] += _sum(D.reshape(N), 0, N)
    else:
        for n in range(N):
            for j in range(F):
                d = P[n, j] - T[n, j]
                d = d / scale if mean else d
                D[n, j] = d
                db[j] += d


@njit(cache=CACHE)
def act_backward(D, A, kind, db):
    """``D *= act'(A)`` in place, from the saved activation ``A``, fused with ``db += D.sum(axis=0)``."""
    zero = D.dtype.type(0)
    one = D.dtype.type(1)
    N, F = D.shape
    for n in range(N):
        for j in range(F):
            D[n, j] = _deriv(D[n, j], A[n, j], kind, zero, one)
        if F > 1:
            for j in range(F):
                db[j] += D[n, j]
    if F == 1:
        db[0] += _sum(D.reshape(N), 0, N)


@njit(cache=CACHE)
def layer_backward(A, W, D, dW, dA, kind, db_prev, first_layer):
    """Weight gradient ``dW = A.T @ D`` (BLAS); unless ``first_layer``, the upstream gradient
    ``dA = (D @ W.T) * act'(A)`` with ``db_prev += dA.sum(axis=0)``."""
    np.dot(A.T, D, dW)
    if not first_layer:
        np.dot(D, W.T, dA)
        act_backward(dA, A, kind, db_prev)


@njit(cache=CACHE)
def sgd(theta, grad, lr):
    """``theta -= lr * grad`` over every parameter at once (flat vectors)."""
    for i in range(theta.shape[0]):
        theta[i] -= lr * grad[i]


@njit(cache=CACHE)
def sgd_parts(theta, parts, p, lr):
    """``theta[p] -= lr * parts[:, p].sum()``: the threads' partial gradients of parameter ``p`` summed in
    thread order (so the result does not depend on scheduling), then its update."""
    g = parts[0, p]
    for t in range(1, parts.shape[0]):
        g += parts[t, p]
    theta[p] -= lr * g


# ---------------------------------------------------------------- GEMM with beta (accumulating)
def _gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    """Fortran (column-major) ``C = alpha op(A) op(B) + beta C`` through SciPy's BLAS, the
    library Numba's ``np.dot`` calls. ``alpha`` / ``beta`` are 1-element arrays. Jitted code only."""
    raise NotImplementedError("_gemm is callable from jitted code only")


@overload(_gemm, jit_options={"cache": CACHE})
def _gemm_impl(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
    fn, kind = xxgemm_type(C.dtype)

    def impl(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc):
        fn(kind, transa, transb, m, n, k, alpha.ctypes, A.ctypes, lda, B.ctypes, ldb, beta.ctypes, C.ctypes, ldc)

    return impl


_N, _T = ord("N"), ord("T")

if config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1, e.g. for coverage): NumPy stands in for _gemm
    def _mm(A, B, C, ab, accumulate):
        C[...] = C + A @ B if accumulate else A @ B

    def _mm_tn(A, B, C, ab, accumulate):
        C[...] = C + A.T @ B if accumulate else A.T @ B

    def _mm_nt(A, B, C, ab):
        C[...] = A @ B.T

    def _mm_tn_rows(A, r0, r1, D, C, ab):
        C[r0:r1] = A[:, r0:r1].T @ D
elif HAVE_XXGEMM:
    @njit(cache=CACHE)
    def _gemm_rows(transa, transb, m, n, k, A, lda, B, ldb, C, ab, accumulate):
        """Row-major ``C (m x n) = op(A) @ op(B)`` (``C +=`` when ``accumulate``; ``ab`` holds [0, 1]), as the
        column-major GEMM ``C.T = op(B).T @ op(A).T``; ``lda`` / ``ldb``: the row strides of ``A`` / ``B``."""
        _gemm(transb, transa, n, m, k, ab[1:], B, ldb, A, lda, ab[1:] if accumulate else ab[:1], C, n)

    @njit(cache=CACHE)
    def _mm(A, B, C, ab, accumulate):
        """Row-major ``C = A @ B`` (``C += A @ B`` when ``accumulate``)."""
        _gemm_rows(_N, _N, A.shape[0], B.shape[1], A.shape[1], A, A.shape[1], B, B.shape[1], C, ab, accumulate)

    @njit(cache=CACHE)
    def _mm_tn(A, B, C, ab, accumulate):
        """Row-major ``C = A.T @ B`` (``+=`` when ``accumulate``)."""
        _gemm_rows(_T, _N, A.shape[1], B.shape[1], A.shape[0], A, A.shape[1], B, B.shape[1], C, ab, accumulate)

    @njit(cache=CACHE)
    def _mm_nt(A, B, C, ab):
        """Row-major ``C = A @ B.T``."""
        _gemm_rows(_N, _T, A.shape[0], B.shape[0], A.shape[1], A, A.shape[1], B, B.shape[1], C, ab, False)

    @njit(cache=CACHE)
    def _mm_tn_rows(A, r0, r1, D, C, ab):
        """Rows ``[r0, r1)`` of the row-major ``C = A.T @ D``: one GEMM on ``A``'s columns ``r0:r1``, strided."""
        _gemm_rows(_T, _N, r1 - r0, D.shape[1], A.shape[0], A[:, r0:], A.shape[1], D, D.shape[1], C[r0:], ab, False)
else:  # the public fallback (internals): np.dot, plus a temporary where C accumulates
    @njit(cache=CACHE)
    def _mm(A, B, C, ab, accumulate):
        if accumulate:
            C += np.dot(A, B)
        else:
            np.dot(A, B, C)

    @njit(cache=CACHE)
    def _mm_tn(A, B, C, ab, accumulate):
        if accumulate:
            C += np.dot(np.ascontiguousarray(A.T), B)
        else:
            np.dot(np.ascontiguousarray(A.T), B, C)

    @njit(cache=CACHE)
    def _mm_nt(A, B, C, ab):
        np.dot(A, np.ascontiguousarray(B.T), C)

    @njit(cache=CACHE)
    def _mm_tn_rows(A, r0, r1, D, C, ab):
        np.dot(np.ascontiguousarray(A[:, r0:r1].T), D, C[r0:r1])


@njit(cache=CACHE)
def layer_forward(A, W, b, Z, kind, floor, softmax, P, ab):
    """One layer, ``Z = act(A @ W + b)``: one GEMM into ``Z``, then one fused pass, ``bias_act`` with the
    activation code ``kind``, or with ``softmax`` the log-softmax (``log_softmax_rows``), whose
    probabilities go to ``P`` unless it is None. ``ab`` ([0, 1]) runs the GEMM through ``_mm``, as every
    fused kernel does; ``ab`` None through ``np.dot``, which takes a GEMV for one row or one column, as
    NumPy does (the backend's one-call ``forward``). Both None tests are settled when Numba compiles
    (branch pruning)."""
    if ab is None:
        np.dot(A, W, Z)
    else:
        _mm(A, W, Z, ab, False)
    if not softmax:
        bias_act(Z, b, kind, floor)
    elif P is None:
        log_softmax_rows(Z, b, Z, False)
    else:
        log_softmax_rows(Z, b, P, True)


@njit(cache=CACHE, inline="always")  # into each fused kernel, as its own loop was (as batches._batch)
def forward(theta, sizes, woff, boff, A, work, off, r0, kind, floor, softmax, P, ab):
    """The forward pass of every fused BLAS kernel: ``layer_forward`` for each layer of the rows ``A``;
    returns the last layer's activations.

    Layer ``i``'s activations go to ``work`` at ``off[i] + r0 * sizes[i]`` (``off``:
    ``workspace.workspace_plan``; ``r0``: where ``A``'s rows start in their batch). The hidden
    layers take the activation code ``kind``; the last one the sigmoid, or with ``softmax`` the
    log-softmax, its probabilities to ``P`` unless it is None.
    """
    L = sizes.shape[0] - 1
    m = A.shape[0]
    a = A
    for i in range(L):
        fi, fo = sizes[i], sizes[i + 1]
        Z = _view(work, off[i + 1] + r0 * fo, m, fo)
        last = i == L - 1
        layer_forward(a, _view(theta, woff[i], fi, fo), theta[boff[i] : boff[i] + fo], Z,
                      SIGMOID if last else kind, floor, last and softmax, P, ab)
        a = Z
    return a


@njit(cache=CACHE)
def touch_blas(a):
    """One 1x1 GEMM in ``a``'s dtype: loads the BLAS function pointer (needs the GIL) before any
    parallel region calls it."""
    ab = np.zeros(2, a.dtype)
    ab[1] = 1
    _mm(a[:1, :1], a[:1, :1], a[:1, :1].copy(), ab, False)


# ---------------------------------------------------------------- backward of a one-output layer, one pass
@njit(cache=CACHE)
def single_output_backward(A, W, D, dW, dA, kind, db_prev, tile):
    """For a layer with ONE output (``W`` of shape ``(fan_in, 1)``), in one pass over ``A``:
    ``dW += A.T @ D``, ``dA = (D @ W.T) * act'(A)`` and ``db_prev += dA.sum(axis=0)``.

    BLAS would run this as a matrix-vector product, a rank-1 update and a third
    pass for the derivative, each streaming ``A`` / ``dA`` through memory
    (measured at N=16384, [32, 2048, 1], float64, one thread: 38 ms against
    16 ms here); this loop reads each row once and vectorizes over ``fan_in``.
    Columns go in tiles of ``tile`` (the backend's ``machine_rules.l1_tile``): the
    tile's ``W``, ``dW`` and ``db_prev`` stay in L1 while every row passes, each
    element summed in the same row order as untiled (the same bits). Measured on
    the Zen 4 VM, 90 rows x 2048, ms per block: float64 0.083 untiled, 0.069 in
    tiles of 512; float32 0.038, 0.032 in tiles of 1024.
    """
    zero = D.dtype.type(0)
    one = D.dtype.type(1)
    m, fi = A.shape
    w = W.reshape(fi)
    g = dW.reshape(fi)
    if fi == 1:  # a one-column bias gradient: NumPy's pairwise order
        for n in range(m):
            g[0] += A[n, 0] * D[n, 0]
            dA[n, 0] = _deriv(zero + D[n, 0] * w[0], A[n, 0], kind, zero, one)
        db_prev[0] += _sum(dA.reshape(m), 0, m)
        return
    for c0 in range(0, fi, tile):
        c1 = min(c0 + tile, fi)
        t = c1 - c0
        wt, gt, bt = w[c0:c1], g[c0:c1], db_prev[c0:c1]
        for n in range(m):
            dz = D[n, 0]
            a_row = A[n, c0:c1]
            d_row = dA[n, c0:c1]
            for k in range(t):
                a = a_row[k]
                gt[k] += a * dz
                d = _deriv(zero + dz * wt[k], a, kind, zero, one)  # zero + : the sum BLAS would form
                d_row[k] = d
                bt[k] += d
