"""The Numba CPU kernels (``@njit(cache=CACHE)``, no ``fastmath``): the math of ``reference.py``, one namespace.

The backend reaches every kernel through this module (``numba_jit._kernels``);
they are defined, by what they do, in

* ``numba_scalar``: activation, derivative and BCE-term helpers, NumPy's
  pairwise summation, ``bce_loss``;
* ``numba_layers``: per layer, a BLAS matmul plus one fused pass
  (``layer_forward``, ``output_error``, ``layer_backward``,
  ``single_output_backward``), ``sgd``, the accumulating GEMMs ``_mm*``,
  ``touch_blas``;
* ``numba_step``: ``train_step`` / ``train_step_parallel``, one epoch over row
  blocks that stay in cache;
* ``numba_loop``: ``train_loop``, all epochs in one call for small networks,
  and ``train_loop_fixed``, the same body compiled for one tiny shape.

Buffers, dispatch and conversions are in ``backends/numba_backend.py``. Every
kernel is generic over float32 / float64 (constants take the arrays' dtype:
``a.dtype.type(1)``, never a bare ``1.0`` that would promote float32), any depth
and every activation. Parameters live in ONE flat vector ``theta``: layer ``i``
holds ``W_i`` (``fan_in * fan_out``, row-major) at ``woff[i]`` and ``b_i`` at
``boff[i]``; gradients use the same layout, so SGD is one loop over all params.

Sums follow NumPy's order where NumPy's is cheap to reproduce: the loss and a
single-column bias gradient use NumPy's pairwise summation (bit for bit), a
multi-column bias gradient sums rows in order (as ``np.sum(axis=0)`` does);
matmuls are BLAS's (step) or sequential (loop).

Numba's on-disk cache checks only a kernel's own file, so each module that calls
another's kernels declares that module's source digest (``_DEPENDS_ON``,
``numba_internals.cache_for``); this one compiles nothing but carries them too,
for any module that imports kernels from here. The private helpers are
re-exported for kernel modules written against the single-file layout; a new
kernel module imports from the defining module, so a change elsewhere does not
make its constant stale.
"""

from __future__ import annotations

from .numba_internals import cache_for
from .numba_layers import (_gemm, _mm, _mm_nt, _mm_tn, act_backward, bias_act, layer_backward, layer_forward,
                           output_error, sgd, single_output_backward, touch_blas)
from .numba_loop import train_loop, train_loop_fixed
from .numba_scalar import RELU, SIGMOID, TANH, _bce_term, _deriv, _pairwise, _pw_leaf, _relu, _sigmoid, _sum, bce_loss
from .numba_step import train_step, train_step_parallel

# the source digests of the siblings compiled into these kernels (numba_internals.cache_for)
_DEPENDS_ON = {
    "numba_internals": "767357ef3f0e",
    "numba_layers": "9894e0035190",
    "numba_loop": "155f474f971d",
    "numba_scalar": "cc9932e1c942",
    "numba_step": "700d481a789c",
}
CACHE = cache_for(__name__, _DEPENDS_ON)

__all__ = ["RELU", "SIGMOID", "TANH", "_bce_term", "_deriv", "_gemm", "_mm", "_mm_nt", "_mm_tn", "_pairwise",
           "_pw_leaf", "_relu", "_sigmoid", "_sum", "act_backward", "bce_loss", "bias_act", "layer_backward",
           "layer_forward", "output_error", "sgd", "single_output_backward", "touch_blas", "train_loop",
           "train_loop_fixed", "train_step", "train_step_parallel"]
