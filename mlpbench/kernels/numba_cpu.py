"""The Numba CPU kernels, one namespace for the backend (``numba_jit._kernels``); no code of its own.

Defined, by what they do, in ``numba_scalar`` (helpers, NumPy-order sums,
``bce_loss``), ``numba_layers`` (per-layer kernels, ``sgd``, the GEMMs),
``numba_step`` (one epoch over row blocks), ``numba_loop`` (all epochs in one
call) and ``numba_fixed`` (the same, compiled per tiny shape). Every kernel is
generic over float32 / float64 and any depth; params and gradients live in one
flat vector ``theta`` (``params.flat_layout``), so SGD is one loop. The private helpers are re-exported for kernel modules written
against the former single file; a new one imports from the defining module, so
that its ``_DEPENDS_ON`` (``numba_internals.cache_for``) names what it compiles in.
"""

from __future__ import annotations

from .numba_internals import cache_for
from .numba_layers import (_gemm, _mm, _mm_nt, _mm_tn, act_backward, bias_act, layer_backward, layer_forward,
                           output_error, sgd, single_output_backward, touch_blas)
from .numba_fixed import train_loop_fixed
from .numba_loop import _epochs, train_loop
from .numba_scalar import (_PW_BLOCK, RELU, SIGMOID, TANH, _bce_term, _deriv, _pairwise, _pw_leaf, _relu, _sigmoid,
                           _sum, _term, bce_loss)
from .numba_step import _blocks_of_thread, _view, train_step, train_step_parallel

# the source digests of the modules re-exported here, for a module importing from this one (cache_for)
_DEPENDS_ON = {
    "numba_fixed": "f1bc7723d5bf",
    "numba_internals": "767357ef3f0e",
    "numba_layers": "dcc2928245b7",
    "numba_loop": "7cb3053ca37c",
    "numba_scalar": "cc9932e1c942",
    "numba_step": "2dd4c78992d2",
}
CACHE = cache_for(__name__, _DEPENDS_ON)

__all__ = ["RELU", "SIGMOID", "TANH", "_PW_BLOCK", "_bce_term", "_blocks_of_thread", "_deriv", "_epochs", "_gemm",
           "_mm", "_mm_nt", "_mm_tn", "_pairwise", "_pw_leaf", "_relu", "_sigmoid", "_sum", "_term", "_view",
           "act_backward", "bce_loss", "bias_act", "layer_backward", "layer_forward", "output_error", "sgd",
           "single_output_backward", "touch_blas", "train_loop", "train_loop_fixed", "train_step",
           "train_step_parallel"]
