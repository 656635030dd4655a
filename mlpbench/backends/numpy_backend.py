"""The reference backend: ``kernels/reference.py`` on NumPy (bit for bit the lab in float64)."""

from __future__ import annotations

import numpy as np

from ..kernels import reference as ref
from .base import Backend
from .cpu_threads import numpy_blas_threads as blas_threads


class NumpyBackend(Backend):
    name = "numpy"
    requires = ("numpy",)
    prior_rank = 1
    outputs = ("sigmoid", "softmax")

    def describe(self) -> dict:
        return {"device": self.device, "threads": blas_threads()}

    def _forward(self, params, X, activation, output="sigmoid"):
        return ref.forward(np, params, X, activation, output)

    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        return ref.backward(np, params, cache, y, activation, grad_reduction, output)

    def _sgd_update(self, params, grads, lr) -> None:
        ref.sgd_update(params, grads, lr)

    def _loss(self, y, y_hat, output="sigmoid") -> float:
        return ref.bce_loss(np, y, y_hat) if output == "sigmoid" else float(ref.cross_entropy(np, y, y_hat))

    # Divergence shows up as inf/NaN in the arithmetic: it is reported by
    # TrainingDiverged, not by floating-point warnings mid-loop.
    def _train(self, *args, **head):
        with np.errstate(over="ignore", invalid="ignore"):
            return super()._train(*args, **head)

    def _train_batches(self, *args, **head):
        with np.errstate(over="ignore", invalid="ignore"):
            return super()._train_batches(*args, **head)
