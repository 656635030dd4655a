"""Numba's whole-loop kernel for tiny networks, compiled per shape: ``train_loop_fixed``.

``loop.train_loop``'s arithmetic, for nets small enough (``backends/numba/jit._use_fixed``)
that their params, activations and gradients fit in registers: shape and activation are
compile-time constants, the buffers live on the stack (LLVM unrolls every loop and keeps
each element in a register), the sigmoid's ``exp`` is inline arithmetic, and the loss's
``log`` waits until after the loop. The speed limit this reaches is in ``train_loop_fixed``.

What it shares with the other Numba kernels, and where register allocation forbids sharing:

* shared: a layer's forward and backward arithmetic (``loop``'s, compiled inlined into
  the caller, ``dense_forward_inlined`` / ``dense_backward_inlined``, so that the stack
  buffers never escape into a call), and ``scalar``'s helpers
  (``_exp``, ``_deriv``, ``_bce_term``, ``_leaf_sum``). The only differences are
  arguments: sums start from ``-0.0`` (``loop`` starts from ``+0.0``, as BLAS does), which
  LLVM folds away without ``fastmath``, and the sigmoid's ``exp`` is ``scalar._exp``.
* not the BLAS forward pass (``layers.forward``): a BLAS call is an opaque call that clobbers
  every vector register and takes the buffers' addresses, so the params could not stay in
  registers across it (and BLAS is slower than unrolled code at these sizes);
* not ``workspace.workspace_plan``: its offsets are an int64 array filled at run time, and an
  element of a stack buffer lives in a register only when every index into it is a constant
  (LLVM's SROA); here the offsets (``a0 ..``, ``w0 ..``, the halves of ``D``) are arithmetic on
  the literal sizes, which LLVM folds;
* not ``train_loop``'s epoch loop: its loop over layers has a run-time index, so the sizes it
  reads are not constants and no inner loop has a constant trip count (compiled with the sizes
  as constant tuples, that body ran 0.130 us per epoch against 0.060 here); ``train_loop_fixed``
  calls each layer explicitly instead;
* not ``train_loop``'s loss: a ``log`` per epoch (a libm call, which clobbers registers as a
  BLAS call does) becomes the product of the clipped probabilities, logged after the loop.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.extending import intrinsic

from .internals import PUBLIC_ONLY, cache_for, literally
from .loop import dense_backward_inlined, dense_forward_inlined
from .scalar import SIGMOID, _bce_term, _few_binary, _leaf_sum

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a", "loop": "baef718511be", "scalar": "7f02aca1655e"}
CACHE = cache_for(__name__, _DEPENDS_ON)

_STACK = 320  # elements of each stack buffer: more than any net ``backends/numba/jit._use_fixed`` admits needs


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


@njit(cache=CACHE, error_model="numpy")  # IEEE division, as NumPy's: no zero check, no branch per sample
def train_loop_fixed(theta, X, Y, lr, epochs, mean, floor, eps, history, kind, N, L, s0, s1, s2, s3, s4):
    """``loop.train_loop`` compiled for one exact shape: ``N`` samples, ``L`` (<= 4) layers
    of sizes ``s0 .. s4`` (unused ones 0) and the activation code ``kind``, all compile-time constants.
    One compilation per shape, activation and dtype (cached on disk): for tiny networks only. Needs
    Numba's ``literally`` (``internals``); the backend does not call it otherwise. Same contract
    as ``train_loop`` (history as float64, stops at the first non-finite loss, returns the epochs run);
    ``error_model="numpy"``: IEEE division, as NumPy's, so no zero check splits the unrolled body.

    The limit, on the lab (AND, [2, 4, 1], N=4, relu), measured on the shared 2-core dev machine
    (AMD EPYC, load ~2): the kernel alone 0.060 us per epoch in float64, 0.063 in float32 (the generic
    epoch loop compiled with constant sizes: 0.130 / 0.110 in the same process); a whole prepared
    5000-epoch fit in ``mlpbench bench --preset lab`` ~0.067-0.08 us per epoch, 405x NumPy and 16x the jax
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
    literally(N)
    literally(L)
    literally(s0)
    literally(s1)
    literally(s2)
    literally(s3)
    literally(s4)
    # The epochs run on stack copies of the params, data and buffers, one explicit call per layer so that every
    # loop has a constant trip count. In this function's own body, not an inlined helper's: Numba inlines a
    # helper by deep-copying its IR block by block, which took 7.7 s of a 16 s compilation of the lab's shape.
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
    binary = _few_binary(T, n_terms)
    z0 = -zero  # the sums start from -0.0, which adds nothing (loop._dense_forward)
    frames, partials = np.empty(192, np.int64), np.empty(64, theta.dtype)  # dense_backward's stacks (N > 128)
    done = epochs
    for epoch in range(epochs):
        dense_forward_inlined(P, A, a0, a1, w0, b0, N, s0, s1, SIGMOID if L == 1 else kind, floor, z0, True)
        if L >= 2:
            dense_forward_inlined(P, A, a1, a2, w1, b1, N, s1, s2, SIGMOID if L == 2 else kind, floor, z0, True)
        if L >= 3:
            dense_forward_inlined(P, A, a2, a3, w2, b2, N, s2, s3, SIGMOID if L == 3 else kind, floor, z0, True)
        if L >= 4:
            dense_forward_inlined(P, A, a3, a4, w3, b3, N, s3, s4, SIGMOID, floor, z0, True)
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
            dense_backward_inlined(P, A, D, a3, w3, b3, 0, half, N, s3, s4, kind, True, lr, z0, frames, partials)
        if L >= 3:
            c = half if L == 4 else 0
            dense_backward_inlined(P, A, D, a2, w2, b2, c, half - c, N, s2, s3, kind, True, lr, z0, frames, partials)
        if L >= 2:
            c = 0 if L % 2 == 0 else half
            dense_backward_inlined(P, A, D, a1, w1, b1, c, half - c, N, s1, s2, kind, True, lr, z0, frames, partials)
        c = half if L % 2 == 0 else 0
        dense_backward_inlined(P, A, D, a0, w0, b0, c, half - c, N, s0, s1, kind, False, lr, z0, frames, partials)
    for q in range(n_params):
        theta[q] = P[q]
    if binary:
        for e in range(done):
            history[e] = -(dt(np.log(history[e])) / count)
    return done
