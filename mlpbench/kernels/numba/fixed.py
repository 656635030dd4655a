"""Numba's whole-loop kernel for tiny networks, compiled per shape: ``train_loop_fixed``.

``numba_loop.train_loop``'s arithmetic, for nets small enough (``numba_jit._use_fixed``)
that their params, activations and gradients fit in registers: shape and activation are
compile-time constants, the buffers live on the stack (LLVM unrolls every loop and keeps
each element in a register), the sigmoid's ``exp`` is inline arithmetic, and the loss's
``log`` waits until after the loop. The speed limit this reaches is in ``train_loop_fixed``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .internals import PUBLIC_ONLY, cache_for, literally
from .scalar import RELU, SIGMOID, TANH, _bce_term, _deriv

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "internals": "31554a804d8f",
    "scalar": "a7215f199f1b",
}
CACHE = cache_for(__name__, _DEPENDS_ON)

_STACK = 320  # elements of each stack buffer: more than any net ``numba_jit._use_fixed`` admits needs



def _stack_intrinsic():
    """``_stack_like(a)``: a 1-d C array of ``_STACK`` elements of ``a``'s dtype on the caller's stack (an
    ``alloca``), which LLVM sees alias nothing, so once the loops over it are unrolled its elements live in
    registers. Built from Numba internals; None when they are not there (or the fallbacks are forced)."""
    if PUBLIC_ONLY:
        return None
    try:
        from numba.core import cgutils
        from numba.np.arrayobj import make_array, populate_array
    except ImportError:
        return None

    @intrinsic
    def _stack_like(typingctx, a):
        aryty = types.Array(a.dtype, 1, "C")

        def codegen(context, builder, sig, args):
            lty = context.get_data_type(a.dtype)
            ptr = cgutils.alloca_once(builder, lty, size=_STACK)
            ary = make_array(aryty)(context, builder)
            itemsize = context.get_constant(types.intp, context.get_abi_sizeof(lty))
            populate_array(ary, data=ptr, shape=[context.get_constant(types.intp, _STACK)], strides=[itemsize],
                           itemsize=itemsize, meminfo=None)
            return ary._getvalue()

        return aryty(a), codegen

    return _stack_like


_stack_like = _stack_intrinsic()
if _stack_like is None:  # the public fallback: heap buffers (slower: LLVM must assume they alias theta)
    @njit(cache=CACHE)
    def _stack_like(a):
        return np.empty(_STACK, a.dtype)


@intrinsic
def _f64_from_bits(typingctx, i):
    """The float64 whose bits are the int64 ``i``."""
    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01  # ln 2 in 32 bits (k * _LN2_HI is exact), then the rest
_LN2_LO = 1.90821492927058770002e-10
_ROUND = 6755399441055744.0  # 1.5 * 2**52: x + _ROUND - _ROUND rounds x to an integer
_X_MIN = -708.0  # exp(-708) < 2**-1021: 1 + exp(x) == 1 from here down
# 2 / n! (n = 0..13): the Taylor series of 2 exp(r), the 2 exact, so that 2**(k - 1) scales it
_C = (2.0, 2.0, 1.0, 1 / 3, 1 / 12, 1 / 60, 1 / 360, 1 / 2520, 1 / 20160, 1 / 181440, 1 / 1814400,
      1 / 19958400, 1 / 239500800, 1 / 3113510400)


@njit(cache=CACHE)
def _exp(x):
    """``exp(x)`` of a float64 ``x <= 709.78`` (the sigmoid's clamp) in branch-free arithmetic, no libm
    call (a call clobbers every vector register: the params would be spilled around each one).

    ``2**k * exp(r)`` with ``|r| <= ln2 / 2`` (Cody-Waite), ``exp(r)`` as ``1 + (r + r**2 q(r))``, ``q``
    the Taylor series to ``r**13`` by Estrin's scheme (short dependency chains): under 1 ulp from the
    true value (``tests/test_numba_fixed.py``). Below -708 it returns ``exp(-708)`` (``1 + exp(x)`` is
    1 there either way); NaN in, NaN out.
    """
    xc = x if x > _X_MIN else _X_MIN
    kf = (xc * _LOG2E + _ROUND) - _ROUND
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    b0 = (_C[2] + _C[3] * r) + (_C[4] + _C[5] * r) * r2
    b1 = (_C[6] + _C[7] * r) + (_C[8] + _C[9] * r) * r2
    b2 = (_C[10] + _C[11] * r) + (_C[12] + _C[13] * r) * r2
    poly = _C[0] + (_C[1] * r + ((b0 + b1 * r4) + b2 * (r4 * r4)) * r2)  # 2 + (2r + small): ~0.5 ulp + 0.5
    res = poly * _f64_from_bits((np.int64(kf) + 1022) << 52)  # 2**(k - 1): 2**k overflows at k = 1024
    return res if x == x else x


@njit(cache=CACHE, inline="always")
def _leaf_sum(a, s, n):
    """``a[s:s+n].sum()`` in NumPy's order for ``n <= 128`` (one leaf, ``numba_scalar._pw_leaf``), inlined
    into the kernel so that ``a`` may be a stack buffer."""
    res = -(a.dtype.type(0))
    if n < 8:
        for i in range(n):
            res += a[s + i]
        return res
    r0, r1, r2, r3, r4, r5, r6, r7 = a[s], a[s + 1], a[s + 2], a[s + 3], a[s + 4], a[s + 5], a[s + 6], a[s + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[s + i]
        r1 += a[s + i + 1]
        r2 += a[s + i + 2]
        r3 += a[s + i + 3]
        r4 += a[s + i + 4]
        r5 += a[s + i + 5]
        r6 += a[s + i + 6]
        r7 += a[s + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[s + i]
        i += 1
    return res


@njit(cache=CACHE, inline="always")
def _fixed_forward(P, A, ai, ao, wo, bo, N, fi, fo, act, floor, zero, one):
    """One layer's ``A[ao:] = act(A[ai:] @ W + b)``, summed in registers in the reference's order."""
    for n in range(N):
        for j in range(fo):
            z = A[ai + n * fi] * P[wo + j]  # not 0 + ...: one add less on the epochs' dependency chain
            for k in range(1, fi):
                z += A[ai + n * fi + k] * P[wo + k * fo + j]
            z += P[bo + j]
            if act == RELU:
                z = zero if z <= zero else z
            elif act == TANH:
                z = np.tanh(z)
            else:  # one exp, computed in float64 whatever the dtype (_exp)
                z = one / (one + P.dtype.type(_exp(np.float64(-(floor if z < floor else z)))))
            A[ao + n * fo + j] = z


@njit(cache=CACHE, inline="always")
def _fixed_backward(P, A, D, ai, wo, bo, cur, nxt, N, fi, fo, kind, upstream, lr, zero, one):
    """One layer's update from its output gradient ``D[cur:]``; first (``upstream``) the gradient of its
    input into ``D[nxt:]``, which needs the old ``W``, the derivative taken from the saved activation."""
    if upstream:
        for n in range(N):
            for k in range(fi):
                s = D[cur + n * fo] * P[wo + k * fo]
                for j in range(1, fo):
                    s += D[cur + n * fo + j] * P[wo + k * fo + j]
                D[nxt + n * fi + k] = _deriv(s, A[ai + n * fi + k], kind, zero, one)
    for k in range(fi):  # weight gradient a.T @ dz, applied at once
        for j in range(fo):
            s = A[ai + k] * D[cur + j]
            for n in range(1, N):
                s += A[ai + n * fi + k] * D[cur + n * fo + j]
            P[wo + k * fo + j] -= lr * s
    if fo == 1:  # bias gradient in NumPy's column-sum order, applied at once
        P[bo] -= lr * _leaf_sum(D, cur, N)
    else:
        for j in range(fo):
            s = D[cur + j]
            for n in range(1, N):
                s += D[cur + n * fo + j]
            P[bo + j] -= lr * s


@njit(cache=CACHE, inline="always")
def _fixed_epochs(theta, X, Y, lr, epochs, mean, floor, eps, history, kind, N, L, s0, s1, s2, s3, s4):
    """The body of ``train_loop_fixed``: ``_epochs`` on stack copies of the params, data and buffers,
    one explicit call per layer so that every loop has a constant trip count."""
    dt = theta.dtype.type
    zero, one = dt(0), dt(1)
    lo, hi = eps, one - eps
    P, A, D, T, E = _stack_like(theta), _stack_like(theta), _stack_like(theta), _stack_like(theta), _stack_like(theta)
    half = _STACK // 2
    # params [W0, b0, W1, b1, ...] (params.flat_layout); activations of layers 0..L back to back
    w0, b0, w1, b1 = 0, s0 * s1, s0 * s1 + s1, s0 * s1 + s1 + s1 * s2
    w2 = b1 + s2
    b2 = w2 + s2 * s3
    w3 = b2 + s3
    b3 = w3 + s3 * s4
    a0, a1 = 0, N * s0
    a2 = a1 + N * s1
    a3 = a2 + N * s2
    a4 = a3 + N * s3
    n_out = s1 if L == 1 else (s2 if L == 2 else (s3 if L == 3 else s4))
    out_off = a1 if L == 1 else (a2 if L == 2 else (a3 if L == 3 else a4))
    n_params = (b0 if L == 1 else (b1 if L == 2 else (b2 if L == 3 else b3))) + n_out
    n_terms = N * n_out
    if n_params > _STACK or out_off + n_terms > _STACK or N * max(s1, s2, s3, s4) > half:
        raise ValueError("train_loop_fixed: the network is too large for its stack buffers")
    for q in range(n_params):
        P[q] = theta[q]
    for n in range(N):
        for k in range(s0):
            A[n * s0 + k] = X[n, k]
        for j in range(n_out):
            T[n * n_out + j] = Y[n, j]
    count = dt(n_terms)
    # Up to 7 binary labels: the loss is the log of the product of the clipped probabilities (p or 1 - p),
    # taken in float64 (>= 1e-56) and logged after the loop: no libm call in the epoch loop.
    binary = n_terms < 8
    for q in range(n_terms):
        if T[q] != zero and T[q] != one:
            binary = False
    done = epochs
    for epoch in range(epochs):
        _fixed_forward(P, A, a0, a1, w0, b0, N, s0, s1, SIGMOID if L == 1 else kind, floor, zero, one)
        if L >= 2:
            _fixed_forward(P, A, a1, a2, w1, b1, N, s1, s2, SIGMOID if L == 2 else kind, floor, zero, one)
        if L >= 3:
            _fixed_forward(P, A, a2, a3, w2, b2, N, s2, s3, SIGMOID if L == 3 else kind, floor, zero, one)
        if L >= 4:
            _fixed_forward(P, A, a3, a4, w3, b3, N, s3, s4, SIGMOID, floor, zero, one)
        # ---- loss (before the update)
        if binary:
            prod = 1.0
            for q in range(n_terms):
                p = A[out_off + q]
                p = lo if p < lo else (hi if p > hi else p)
                prod *= np.float64(p if T[q] == one else one - p)
            history[epoch] = prod
            bad = prod != prod
        else:
            for q in range(n_terms):
                E[q] = _bce_term(A[out_off + q], T[q], lo, hi, one)
            loss = -(_leaf_sum(E, 0, n_terms) / count)
            history[epoch] = loss
            bad = not np.isfinite(loss)
        if bad:
            done = epoch + 1
            break
        # ---- backward, updating each layer once its upstream gradient is out (D's halves alternate)
        for q in range(n_terms):
            d = A[out_off + q] - T[q]
            D[q] = d / dt(N) if mean else d
        if L >= 4:
            _fixed_backward(P, A, D, a3, w3, b3, 0, half, N, s3, s4, kind, True, lr, zero, one)
        if L >= 3:
            c = half if L == 4 else 0
            _fixed_backward(P, A, D, a2, w2, b2, c, half - c, N, s2, s3, kind, True, lr, zero, one)
        if L >= 2:
            c = 0 if L % 2 == 0 else half
            _fixed_backward(P, A, D, a1, w1, b1, c, half - c, N, s1, s2, kind, True, lr, zero, one)
        c = half if L % 2 == 0 else 0
        _fixed_backward(P, A, D, a0, w0, b0, c, half - c, N, s0, s1, kind, False, lr, zero, one)
    for q in range(n_params):
        theta[q] = P[q]
    if binary:
        for e in range(done):
            history[e] = -(dt(np.log(history[e])) / count)
    return done


@njit(cache=CACHE, error_model="numpy")  # IEEE division, as NumPy's: no zero check, no branch per sample
def train_loop_fixed(theta, X, Y, lr, epochs, mean, floor, eps, history, kind, n, n_layers, s0, s1, s2, s3, s4):
    """``numba_loop.train_loop`` compiled for one exact shape: ``n`` samples, ``n_layers`` (<= 4) layers
    of sizes ``s0 .. s4`` (unused ones 0) and the activation code ``kind``, all compile-time constants.
    One compilation per shape, activation and dtype (cached on disk): for tiny networks only. Needs
    Numba's ``literally`` (``numba_internals``); the backend does not call it otherwise. Same contract
    as ``train_loop`` (history as float64, stops at the first non-finite loss, returns the epochs run);
    ``error_model="numpy"``: IEEE division, as NumPy's, so no zero check splits the unrolled body.

    The limit, on the lab (AND, [2, 4, 1], N=4, relu), measured on the shared 2-core dev machine
    (AMD EPYC, load ~2): the kernel alone 0.060 us per epoch in float64, 0.063 in float32 (the
    former ``_epochs`` build: 0.130 / 0.110 in the same process); a whole prepared 5000-epoch fit
    in ``mlpbench bench --preset lab`` ~0.067-0.08 us per epoch, 405x NumPy and 16x the jax
    backend's ``train`` (float32: 403x, 23x). What bounds it: epoch k + 1 needs epoch k's params, so
    the epochs form one dependency chain of ~45 dependent float operations (forward 2 + 4 adds, the
    sigmoid's ``exp`` ~16 deep, its division, the output error, then the upstream and weight-gradient
    sums and the updates) at 3-4 cycles each (a dependent multiply + add costs 1.46 ns here). The
    ``exp`` alone is a third of the epoch (replacing it by two multiplies: 0.038 us); the rest is
    that chain plus throughput: the code is scalar, ~4 operations per sample where one vector could
    carry all 4 samples, because Numba compiles with LLVM's SLP vectorizer off
    (``NUMBA_SLP_VECTORIZE=0``, a process-wide setting a library should not flip) and the loop
    vectorizer never sees the fully unrolled loops. ``fastmath`` (FMA contraction, reassociation)
    stays off for parity.
    """
    literally(kind)
    literally(n)
    literally(n_layers)
    literally(s0)
    literally(s1)
    literally(s2)
    literally(s3)
    literally(s4)
    return _fixed_epochs(theta, X, Y, lr, epochs, mean, floor, eps, history, kind, n, n_layers, s0, s1, s2, s3, s4)
