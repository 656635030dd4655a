"""A third-party backend in one file: the reference math on NumPy, with a ``threads`` option.

Register it with one call, ``register_backend("threaded_numpy", ThreadedNumpyBackend)``,
or from a distribution's ``mlpbench.backends`` entry point
(``threaded_numpy = "plugins.threaded_numpy:ThreadedNumpyBackend"``).
"""

from __future__ import annotations

import contextlib

import numpy as np

from mlpbench.backends.base import Backend
from mlpbench.kernels import reference as ref


class ThreadedNumpyBackend(Backend):
    name = "threaded_numpy"
    requires = ("numpy", "threadpoolctl")
    package = "threadpoolctl"
    install_hint = "pip install threadpoolctl"

    def __init__(self, threads=None):
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise ValueError(f"threads must be a positive int or None; got {threads!r}")
        self.threads = threads

    def _blas(self):
        """NumPy's BLAS limited to ``threads`` for one call (unlimited when None)."""
        if self.threads is None:
            return contextlib.nullcontext()
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=self.threads, user_api="blas")

    def _forward(self, params, X, activation):
        with self._blas():
            return ref.forward(np, params, X, activation)

    def _backward(self, params, cache, X, y, activation, grad_reduction):
        with self._blas():
            return ref.backward(np, params, cache, y, activation, grad_reduction)

    def _sgd_update(self, params, grads, lr):
        ref.sgd_update(params, grads, lr)

    def _loss(self, y, y_hat):
        return ref.bce_loss(np, y, y_hat)

    def _train(self, *args):
        with np.errstate(over="ignore", invalid="ignore"):
            return super()._train(*args)
