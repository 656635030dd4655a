"""Numba per-layer kernels: fused bias + activation, output error, fused backward, SGD, and the GEMM with ``beta``.

Each forward / backward layer is a BLAS matmul plus ONE fused pass; a bias
gradient sums rows in order (``np.sum(axis=0)``'s order), one column in NumPy's
pairwise order. ``sgd`` updates every parameter of the flat vector ``theta`` in
one loop (layer ``i``: ``W_i`` row-major at ``woff[i]``, ``b_i`` at ``boff[i]``;
gradients alike). ``_mm`` /
``_mm_tn`` / ``_mm_nt`` are row-major GEMMs that can accumulate (``beta = 1``,
through ``numba_xxgemm``: ``numba_internals``; ``np.dot`` otherwise), which the
blocked step kernel (``numba_step``) uses to sum weight gradients block after
block without a temporary.
"""

from __future__ import annotations

import numpy as np
from numba import config, njit
from numba.extending import overload

from .internals import HAVE_XXGEMM, cache_for, xxgemm_type
from .scalar import RELU, TANH, _deriv, _relu, _sigmoid, _sum

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "internals": "31554a804d8f",
    "scalar": "a7215f199f1b",
}
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
def layer_forward(A, W, b, Z, kind, floor):
    """``Z = act(A @ W + b)``: BLAS into the preallocated ``Z``, then the fused bias + activation."""
    np.dot(A, W, Z)
    bias_act(Z, b, kind, floor)


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
elif HAVE_XXGEMM:
    @njit(cache=CACHE)
    def _mm(A, B, C, ab, accumulate):
        """Row-major ``C = A @ B`` (``C += A @ B`` when ``accumulate``); ``ab`` holds [0, 1]."""
        m, k = A.shape
        n = B.shape[1]
        _gemm(_N, _N, n, m, k, ab[1:], B, n, A, k, ab[1:] if accumulate else ab[:1], C, n)

    @njit(cache=CACHE)
    def _mm_tn(A, B, C, ab, accumulate):
        """Row-major ``C = A.T @ B`` (``+=`` when ``accumulate``)."""
        k, m = A.shape
        n = B.shape[1]
        _gemm(_N, _T, n, m, k, ab[1:], B, n, A, m, ab[1:] if accumulate else ab[:1], C, n)

    @njit(cache=CACHE)
    def _mm_nt(A, B, C, ab):
        """Row-major ``C = A @ B.T``."""
        m, k = A.shape
        n = B.shape[0]
        _gemm(_T, _N, n, m, k, ab[1:], B, k, A, k, ab[:1], C, n)
else:  # the public fallback (numba_internals): np.dot, plus a temporary where C accumulates
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
def touch_blas(a):
    """One 1x1 GEMM in ``a``'s dtype: loads the BLAS function pointer (needs the GIL) before any
    parallel region calls it."""
    ab = np.zeros(2, a.dtype)
    ab[1] = 1
    _mm(a[:1, :1], a[:1, :1], a[:1, :1].copy(), ab, False)


# ---------------------------------------------------------------- backward of a one-output layer, one pass
@njit(cache=CACHE)
def single_output_backward(A, W, D, dW, dA, kind, db_prev):
    """For a layer with ONE output (``W`` of shape ``(fan_in, 1)``), in one pass over ``A``:
    ``dW += A.T @ D``, ``dA = (D @ W.T) * act'(A)`` and ``db_prev += dA.sum(axis=0)``.

    BLAS would run this as a matrix-vector product, a rank-1 update and a third
    pass for the derivative, each streaming ``A`` / ``dA`` through memory
    (measured at N=16384, [32, 2048, 1], float64, one thread: 38 ms against
    16 ms here); this loop reads each row once and vectorizes over ``fan_in``.
    """
    zero = D.dtype.type(0)
    one = D.dtype.type(1)
    m, fi = A.shape
    w = W.reshape(fi)
    g = dW.reshape(fi)
    for n in range(m):
        dz = D[n, 0]
        a_row = A[n]
        d_row = dA[n]
        if fi > 1:
            for k in range(fi):
                a = a_row[k]
                g[k] += a * dz
                d = _deriv(zero + dz * w[k], a, kind, zero, one)  # zero + : the sum BLAS would form
                d_row[k] = d
                db_prev[k] += d
        else:
            g[0] += a_row[0] * dz
            d_row[0] = _deriv(zero + dz * w[0], a_row[0], kind, zero, one)
    if fi == 1:  # a one-column bias gradient: NumPy's pairwise order
        db_prev[0] += _sum(dA.reshape(m), 0, m)

