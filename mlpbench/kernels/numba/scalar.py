"""Numba scalar helpers (activation, its derivative, a BCE term, a branch-free ``exp``), NumPy's pairwise
summation, and the loss.

The building blocks every other Numba kernel module calls (``@njit(cache=CACHE)``,
no ``fastmath``, generic over float32 / float64: constants take the arrays'
dtype). Sums follow NumPy's order bit for bit: ``_pw_leaf`` / ``_pairwise``
walk NumPy's pairwise-summation tree (leaves of <= 128, eight accumulators);
``_leaf_sum`` is one leaf, inlined into its caller.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .internals import cache_for
from ..reference import ACT_CODES

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"..reference": "5580e4bf7917", "internals": "4baacdee097a"}
CACHE = cache_for(__name__, _DEPENDS_ON)

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
def _few_binary(t, n):
    """Whether ``t[:n]`` are fewer than 8 labels, each 0 or 1: then the whole-loop kernels take the loss's
    logs as the log of a product of clipped probabilities (inlined: ``t`` may be a stack buffer)."""
    zero = t.dtype.type(0)
    one = t.dtype.type(1)
    binary = n < 8
    for q in range(n):
        if t[q] != zero and t[q] != one:
            binary = False
    return binary


# ---------------------------------------------------------------- sums in NumPy's order
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


@njit(cache=CACHE, inline="always")
def _leaf_sum(a, s, n):
    """``a[s:s+n].sum()`` in NumPy's order for ``n <= 128``: ``_pw_leaf``'s arithmetic, inlined into the
    kernel so that ``a`` may be a stack buffer (``fixed``)."""
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
