"""Numba kernels for the MLP (``@njit(cache=CACHE)``, no ``fastmath``): the math of ``reference.py``.

Only kernels live here; buffers, dispatch and conversions are in
``backends/numba_backend.py``. Every kernel is generic over float32 / float64
(constants take the dtype of the arrays: ``a.dtype.type(1)``, never a bare
``1.0`` that would promote float32 to float64), any depth and every activation.

Parameters live in ONE flat vector ``theta``: layer ``i`` holds ``W_i``
(``fan_in * fan_out``, row-major) at ``woff[i]`` and ``b_i`` at ``boff[i]``;
gradients use the same layout, so the SGD update is one loop over all params.

Kernels:

* per layer (BLAS + one fused pass): ``layer_forward``, ``output_error``,
  ``layer_backward`` (``act_backward``: the derivative in place, from the
  saved activation, fused with the bias-gradient sum); ``bce_loss``; ``sgd``;
* ``train_step`` / ``train_step_parallel``: one epoch (forward, loss,
  backward, SGD) over row blocks that stay in cache; BLAS GEMMs with
  ``beta = 1`` accumulate the weight gradients block after block, and a
  one-output layer's backward is one fused pass (``single_output_backward``).
  The parallel one gives each thread its own chunk of blocks and its own
  gradient partial (no ``prange`` reduction into shared array elements);
* ``train_loop``: all epochs in one call, explicit loops, no BLAS, no
  allocation per epoch, for small networks; ``train_loop_fixed`` is the same
  body compiled for one exact (tiny) shape.

Sums follow NumPy's order where NumPy's is cheap to reproduce: the loss and a
single-column bias gradient use NumPy's pairwise summation (bit for bit), a
multi-column bias gradient sums rows in order (as ``np.sum(axis=0)`` does);
matmuls are BLAS's (step) or sequential (loop).
"""

from __future__ import annotations

import numpy as np
from numba import config, njit, prange
from numba.extending import overload

from .numba_internals import CACHE, HAVE_XXGEMM, literally, xxgemm_type
from .reference import ACT_CODES

RELU, TANH, SIGMOID = ACT_CODES["relu"], ACT_CODES["tanh"], ACT_CODES["sigmoid"]

_PW_BLOCK = 128  # NumPy's pairwise-summation block


# ---------------------------------------------------------------- scalar helpers
@njit(cache=CACHE)
def _relu(z, zero):
    # NaN passes through, like np.maximum(0, z)
    return zero if z <= zero else z


@njit(cache=CACHE)
def _sigmoid(z, floor, one):
    return one / (one + np.exp(-(floor if z < floor else z)))


@njit(cache=CACHE)
def _deriv(s, a, kind, zero, one):
    """``s * act'(a)`` from the activation's output ``a`` (the reference's formulas)."""
    if kind == RELU:
        return s * (one if a > zero else zero)
    if kind == TANH:
        return s * (one - a * a)
    return s * (a * (one - a))


@njit(cache=CACHE)
def _bce_term(p, t, lo, hi, one):
    """``t log(clip(p)) + (1 - t) log(1 - clip(p))``; for t in {0, 1} one log, bit-identical."""
    p = lo if p < lo else (hi if p > hi else p)
    if t == 0:
        return np.log(one - p)
    if t == one:
        return np.log(p)
    return t * np.log(p) + (one - t) * np.log(one - p)


@njit(cache=CACHE)
def _term(bce, p, i, t, j, lo, hi, one):
    return _bce_term(p[i], t[j], lo, hi, one) if bce else p[i]


@njit(cache=CACHE)
def _pw_leaf(bce, p, ps, t, ts, n, lo, hi, one):
    """One leaf (n <= 128) of NumPy's pairwise sum: 8 accumulators, as in NumPy's C loop."""
    if n < 8:
        res = -(one - one)
        for i in range(n):
            res += _term(bce, p, ps + i, t, ts + i, lo, hi, one)
        return res
    r0 = _term(bce, p, ps, t, ts, lo, hi, one)
    r1 = _term(bce, p, ps + 1, t, ts + 1, lo, hi, one)
    r2 = _term(bce, p, ps + 2, t, ts + 2, lo, hi, one)
    r3 = _term(bce, p, ps + 3, t, ts + 3, lo, hi, one)
    r4 = _term(bce, p, ps + 4, t, ts + 4, lo, hi, one)
    r5 = _term(bce, p, ps + 5, t, ts + 5, lo, hi, one)
    r6 = _term(bce, p, ps + 6, t, ts + 6, lo, hi, one)
    r7 = _term(bce, p, ps + 7, t, ts + 7, lo, hi, one)
    i = 8
    stop = n - n % 8
    while i < stop:
        a, b = ps + i, ts + i
        r0 += _term(bce, p, a, t, b, lo, hi, one)
        r1 += _term(bce, p, a + 1, t, b + 1, lo, hi, one)
        r2 += _term(bce, p, a + 2, t, b + 2, lo, hi, one)
        r3 += _term(bce, p, a + 3, t, b + 3, lo, hi, one)
        r4 += _term(bce, p, a + 4, t, b + 4, lo, hi, one)
        r5 += _term(bce, p, a + 5, t, b + 5, lo, hi, one)
        r6 += _term(bce, p, a + 6, t, b + 6, lo, hi, one)
        r7 += _term(bce, p, a + 7, t, b + 7, lo, hi, one)
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += _term(bce, p, ps + i, t, ts + i, lo, hi, one)
        i += 1
    return res


@njit(cache=CACHE)
def _pairwise(bce, p, ps, t, ts, n, lo, hi, one, frames, partials):
    """NumPy's pairwise sum of ``p[ps:ps+n]`` (``bce``: of the BCE terms against ``t[ts:]``), bit for bit.

    NumPy recurses (halves rounded down to a multiple of 8, leaves of <= 128);
    this walks the same tree with explicit stacks (``frames``: int64, >= 3 * 64;
    ``partials``: >= 64) because cached recursive kernels are not reliable.
    """
    if n <= _PW_BLOCK:
        return _pw_leaf(bce, p, ps, t, ts, n, lo, hi, one)
    val = -(one - one)
    frames[0], frames[1], frames[2] = 0, n, 0
    sp, vp = 1, 0
    while sp > 0:
        f = 3 * (sp - 1)
        off, m, state = frames[f], frames[f + 1], frames[f + 2]
        if m <= _PW_BLOCK:
            val = _pw_leaf(bce, p, ps + off, t, ts + off, m, lo, hi, one)
            sp -= 1
            continue
        half = m // 2
        half -= half % 8
        if state == 0:  # descend left
            frames[f + 2] = 1
            g = f + 3
            frames[g], frames[g + 1], frames[g + 2] = off, half, 0
            sp += 1
        elif state == 1:  # left done (in val): keep it, descend right
            partials[vp] = val
            vp += 1
            frames[f + 2] = 2
            g = f + 3
            frames[g], frames[g + 1], frames[g + 2] = off + half, m - half, 0
            sp += 1
        else:  # right done: combine
            vp -= 1
            val = partials[vp] + val
            sp -= 1
    return val


@njit(cache=CACHE)
def _sum(a, start, n):
    """``a[start:start+n].sum()`` in NumPy's order (allocates two tiny stacks only when n > 128)."""
    one = a.dtype.type(1)
    if n <= _PW_BLOCK:
        return _pw_leaf(False, a, start, a, start, n, one, one, one)
    return _pairwise(False, a, start, a, start, n, one, one, one, np.empty(192, np.int64), np.empty(64, a.dtype))


@njit(cache=CACHE)
def bce_loss(p, t, eps):
    """Mean BCE of flat ``p`` (predictions) against flat ``t``, as ``reference.bce_loss``."""
    one = p.dtype.type(1)
    n = p.shape[0]
    if n <= _PW_BLOCK:  # one leaf: no stacks to allocate (a prepared step at N=1 is ~2 us in all)
        total = _pw_leaf(True, p, 0, t, 0, n, eps, one - eps, one)
    else:
        total = _pairwise(True, p, 0, t, 0, n, eps, one - eps, one, np.empty(192, np.int64),
                          np.empty(64, p.dtype))
    return -(total / p.dtype.type(n))


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

if HAVE_XXGEMM:
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


if config.DISABLE_JIT:  # plain Python (NUMBA_DISABLE_JIT=1, e.g. for coverage): NumPy stands in for _gemm

    def _mm(A, B, C, ab, accumulate):  # noqa: F811
        C[...] = C + A @ B if accumulate else A @ B

    def _mm_tn(A, B, C, ab, accumulate):  # noqa: F811
        C[...] = C + A.T @ B if accumulate else A.T @ B

    def _mm_nt(A, B, C, ab):  # noqa: F811
        C[...] = A @ B.T


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


# ---------------------------------------------------------------- one epoch over row blocks
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


# ---------------------------------------------------------------- all epochs in one call
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

    The limit, on the lab (AND, [2, 4, 1], N=4, float64, the fixed-shape
    build), measured in one ``measure`` run on the 2-core dev machine (load
    average ~6 from other work): the kernel alone ~0.105 us per epoch (a
    5000-epoch fit minus a 1-epoch fit), a whole prepared fit 0.154 us per
    epoch, NumPy 41 us: 244x (169x before the per-fit setup was trimmed;
    131-146x at load 20-37). The floor is the 4 sigmoid ``exp`` calls per
    epoch: scalar libm calls (this llvmlite has no SVML; ``fastmath`` is
    forbidden) on a dependency chain that runs through every epoch (epoch
    k+1 needs epoch k's params): the 4 ``exp`` of such a chain alone took
    0.079 us per epoch in the same run. Against NumPy the kernel alone is
    ~390x; what a fit adds (params copy, checks, the history) costs ~50 us,
    a third of a 5000-epoch lab fit. Against the jax backend's ``train``
    (a jitted ``lax.scan``): 6.8x (float64) and 11x (float32) in one run at
    load ~6, bounded by XLA's per-iteration while-loop overhead on its side.
    """
    return _epochs(theta, sizes, woff, boff, sizes.shape[0] - 1, X.shape[0], X, Y, acts, dbuf,
                   lr, epochs, kind, mean, floor, eps, history)


@njit(cache=CACHE)
def train_loop_fixed(theta, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history,
                     n, n_layers, s0, s1, s2, s3, s4):
    """``train_loop`` compiled for one exact shape: ``n`` samples, ``n_layers`` (<= 4) layers of
    sizes ``s0 .. s4`` (unused ones 0), all compile-time constants, so that LLVM unrolls the
    tiny loops. One compilation per shape and dtype (cached on disk): for tiny networks only.
    Needs Numba's ``literally`` (``numba_internals``); the backend does not call it otherwise.
    """
    literally(n)
    literally(n_layers)
    literally(s0)
    literally(s1)
    literally(s2)
    literally(s3)
    literally(s4)
    sizes = (np.int64(s0), np.int64(s1), np.int64(s2), np.int64(s3), np.int64(s4))
    w1 = s0 * s1 + s1
    w2 = w1 + s1 * s2 + s2
    w3 = w2 + s2 * s3 + s3
    woff = (np.int64(0), np.int64(w1), np.int64(w2), np.int64(w3))
    boff = (np.int64(s0 * s1), np.int64(w1 + s1 * s2), np.int64(w2 + s2 * s3), np.int64(w3 + s3 * s4))
    return _epochs(theta, sizes, woff, boff, n_layers, n, X, Y, acts, dbuf, lr, epochs, kind, mean, floor, eps, history)
