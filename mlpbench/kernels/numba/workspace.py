"""A fused Numba kernel's flat workspace: where each buffer starts (``workspace_plan``) and the rows copied into it.

Every kernel that keeps a batch's activations and gradients in one preallocated
vector (``step``, ``loop``, ``batches``, ``batches_parallel``) takes its offsets
from ``workspace_plan``, and every kernel that gathers a batch by an epoch's row
order does it in ``batch_rows``.
``plan`` / ``workspace_size`` run the plan as Python, for the caller that allocates.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .internals import cache_for

# the source digests of the siblings compiled into these kernels (internals.cache_for)
_DEPENDS_ON = {"internals": "4baacdee097a"}
CACHE = cache_for(__name__, _DEPENDS_ON)

#: ``workspace_plan``'s ``grads``: where the upstream gradients (the layers' errors ``D_i``) go
GRADS_PAIR = 1  # two buffers as wide as the widest layer, alternating: ``D_L`` in the first
GRADS_IN_PLACE = 2  # ``D_L`` in place of the output's activations; two buffers for the hidden layers' errors
GRADS_PER_LAYER = 3  # one buffer per layer (the threaded batch kernel needs every ``D_i`` at once)


@njit(cache=CACHE)
def _view(buf, off, rows, cols):
    """``buf[off:off + rows * cols]`` as a ``(rows, cols)`` array."""
    return buf[off : off + rows * cols].reshape((rows, cols))


@njit(cache=CACHE)
def workspace_plan(sizes, nb, lead, grads):
    """The offsets of a workspace for ``nb`` rows through layers ``sizes``: an int64 array ``off`` of
    ``2 L + 3`` (``L = len(sizes) - 1``).

    ``off[0] = 0``: the lead region, ``nb * lead`` elements (the rows a kernel copies in: a gathered
    batch and its targets, ``batch_rows``; the whole-loop kernel's inputs; or nothing); ``off[i]``,
    ``i = 1..L``: layer ``i``'s activations (``nb * sizes[i]``), back to back; ``off[L + 1 + i]``,
    ``i = 1..L``: layer ``i``'s error ``D_i``, placed by ``grads`` (module constants): with a pair
    of buffers, ``D_i`` is in the first when ``L - i`` is even (``GRADS_PAIR``) or odd
    (``GRADS_IN_PLACE``, whose pair is as wide as the widest hidden layer), after the activations
    (from ``off[L] + nb * sizes[L]``); ``off[2 L + 2]``: the workspace's size.
    """
    L = len(sizes) - 1
    off = np.zeros(2 * L + 3, np.int64)
    pos = nb * lead
    widest = 0
    for i in range(1, L + 1):
        off[i] = pos
        pos += nb * sizes[i]
        if (grads == GRADS_PAIR or (grads == GRADS_IN_PLACE and i < L)) and sizes[i] > widest:
            widest = sizes[i]
    if grads == GRADS_PER_LAYER:
        for i in range(1, L + 1):
            off[L + 1 + i] = pos
            pos += nb * sizes[i]
    else:
        d0, d1 = pos, pos + nb * widest
        pos = d1 + nb * widest
        parity = 0 if grads == GRADS_PAIR else 1
        for i in range(1, L + 1):
            off[L + 1 + i] = d0 if (L - i) % 2 == parity else d1
        if grads == GRADS_IN_PLACE:
            off[2 * L + 1] = off[L]
    off[2 * L + 2] = pos
    return off


def plan(sizes, nb, lead, grads) -> np.ndarray:
    """``workspace_plan`` run as Python (plain integer arithmetic: no compilation), for the caller that
    allocates the workspace and passes or views its buffers."""
    fn = getattr(workspace_plan, "py_func", workspace_plan)  # the function itself under NUMBA_DISABLE_JIT
    return fn(np.asarray(sizes, dtype=np.int64), int(nb), int(lead), grads)


def workspace_size(sizes, nb, lead, grads) -> int:
    """Elements of the workspace ``workspace_plan`` lays out."""
    return int(plan(sizes, nb, lead, grads)[-1])


@njit(cache=CACHE, inline="always")  # into the batch loops: a call per batch costs tiny batches (batches._batch)
def batch_rows(X, Y, order, start, r0, k, nb, gather, work):
    """``(A, T)``: rows ``r0 .. r0 + k`` of the batch that starts at position ``start`` of ``order``.

    With ``gather``, rows ``order[start + r0 + r]`` of ``X`` / ``Y`` copied into the workspace's lead
    region (the batch's ``nb * n_in`` inputs, then its ``nb * n_out`` targets, each at row ``r0``);
    without, ``X``'s and ``Y``'s own rows ``start + r0 ..`` in order (views, no copy: full batch).
    """
    n_in, n_out = X.shape[1], Y.shape[1]
    if not gather:
        return (_view(X.reshape(X.size), (start + r0) * n_in, k, n_in),
                _view(Y.reshape(Y.size), (start + r0) * n_out, k, n_out))
    A = _view(work, r0 * n_in, k, n_in)
    T = _view(work, nb * n_in + r0 * n_out, k, n_out)
    for r in range(k):
        row = order[start + r0 + r]
        for j in range(n_in):
            A[r, j] = X[row, j]
        for j in range(n_out):
            T[r, j] = Y[row, j]
    return A, T
