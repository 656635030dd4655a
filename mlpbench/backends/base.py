"""The Backend contract and the default training loop."""

from __future__ import annotations

import math

import numpy as np

from ..params import map_params


class TrainingDiverged(FloatingPointError):
    """Training produced a non-finite loss or non-finite parameters.

    ``epoch`` is the 1-based epoch where it was detected and ``history`` the
    losses up to and including it. The model keeps its pre-fit params.
    """

    def __init__(self, epoch, history, lr):
        self.epoch = epoch
        self.history = history
        self.lr = lr
        super().__init__(
            f"training diverged at epoch {epoch} (loss {history[-1] if len(history) else float('nan')}) "
            f"with lr={lr}: lower the learning rate, or use grad_reduction='mean' for large batches"
        )


class Backend:
    """One way to run the MLP's math. Subclasses override the array plumbing and the math.

    Params are ``[(W, b), ...]`` of this backend's arrays; grads have the same
    structure. ``train`` updates params in place and returns the loss per
    epoch as a float64 NumPy array.
    """

    name = "base"
    device = "cpu"
    #: the distribution whose version ``available_backends()`` reports
    package = "numpy"
    install_hint = ""

    def __init__(self, **options):
        if options:
            raise TypeError(f"backend {self.name!r} takes no options; got {sorted(options)}")

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} device={self.device!r}>"

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)``; cheap and never raises."""
        return True, ""

    # ------------------------------------------------------------ plumbing
    def asarray(self, a):
        return np.ascontiguousarray(a)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        """Wait for queued device work; a no-op on the CPU. Every timing calls it."""

    def params_from_numpy(self, params):
        """Backend-owned copies of NumPy params (the user's arrays are never touched)."""
        return map_params(lambda a: self.asarray(np.array(a, copy=True, order="C")), params)

    def params_to_numpy(self, params):
        return map_params(lambda a: np.array(self.to_numpy(a), copy=True, order="C"), params)

    @classmethod
    def describe(cls) -> dict:
        """Row fields for ``available_backends()``: at least ``device`` and ``threads``."""
        return {"device": cls.device, "threads": None}

    def warmup(self, layer_sizes, n_samples=4, dtype="float64", activation="relu") -> float:
        """Compile / load kernels and create contexts for this shape; return the seconds it took.

        Benchmarks call it before timing so that JIT compilation and GPU context
        creation are reported apart from steady state.
        """
        import time

        from ..params import init_params

        t0 = time.perf_counter()
        rng = np.random.RandomState(0)
        params = self.params_from_numpy(init_params(layer_sizes, 0, dtype))
        X = self.asarray(rng.rand(n_samples, layer_sizes[0]).astype(dtype))
        y = self.asarray((rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype))
        self.train(params, X, y, lr=1e-3, epochs=2, activation=activation)
        self.step(params, X, y, lr=1e-3, activation=activation)
        self.synchronize()
        return time.perf_counter() - t0

    # ------------------------------------------------------------ the math
    def forward(self, params, X, *, activation="relu"):
        """Return ``(y_hat, cache)``; the cache is whatever ``backward`` needs."""
        raise NotImplementedError

    def backward(self, params, cache, X, y, *, activation="relu", grad_reduction="sum"):
        """Return grads ``[(dW, db), ...]`` for the forward pass that made ``cache``."""
        raise NotImplementedError

    def sgd_update(self, params, grads, lr) -> None:
        """``p -= lr * g`` in place for every parameter."""
        raise NotImplementedError

    def loss(self, y, y_hat) -> float:
        """Mean binary cross-entropy."""
        raise NotImplementedError

    def step(self, params, X, y, *, lr, activation="relu", grad_reduction="sum") -> float:
        """One epoch of full-batch gradient descent; returns the loss before the update."""
        y_hat, cache = self.forward(params, X, activation=activation)
        loss = self.loss(y, y_hat)
        grads = self.backward(params, cache, X, y, activation=activation, grad_reduction=grad_reduction)
        self.sgd_update(params, grads, lr)
        return loss

    def train(self, params, X, y, *, lr, epochs, activation="relu", grad_reduction="sum", callback=None):
        """The lab's loop: forward, loss, backward, update, per epoch.

        ``callback(epoch, loss)`` is called after each epoch (1-based). Raises
        ``TrainingDiverged`` at the first non-finite loss, or when the final
        params are non-finite.
        """
        history = np.empty(epochs, dtype=np.float64)
        for epoch in range(epochs):
            loss = self.step(params, X, y, lr=lr, activation=activation, grad_reduction=grad_reduction)
            history[epoch] = loss
            if not math.isfinite(loss):
                raise TrainingDiverged(epoch + 1, history[: epoch + 1], lr)
            if callback is not None:
                callback(epoch + 1, loss)
        self.check_finite(params, history, lr)
        return history

    def check_finite(self, params, history, lr) -> None:
        """Raise ``TrainingDiverged`` if the last update left a non-finite parameter."""
        for W, b in params:
            if not (bool(np.isfinite(self.to_numpy(W)).all()) and bool(np.isfinite(self.to_numpy(b)).all())):
                raise TrainingDiverged(len(history), history, lr)
