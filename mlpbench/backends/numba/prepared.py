"""The Numba backend's prepared step: ``NumbaBackend.prepare`` returns a ``NumbaPrepared``.

Everything a step needs is resolved once, at the first ``step()``: the step
kernel for the shape (``NumbaBackend._stepper``, ``steps``: kernel, workspace, threads),
its ~15 arguments packed into one tuple, and the compiled entry point for
their types (``kernels/numba/internals.compiled_entry``: no dispatcher typing
per call; the public dispatcher when Numba's internals are not there). Every
later ``step()`` is one call, plus a thread scope only where the stepper has
one (a parallel or pinned kernel, whose work dwarfs the scope's cost);
measured at N=1, ``[32, 4, 1]``: ~2.5 us per step against ~30 us through
``step``. ``run(epochs)`` is the backend's ``train`` path (the whole-loop
kernel for small nets) and resolves nothing it does not use: resolving the
step costs ~0.3 ms, as much as 3000 epochs of the lab.
"""

from __future__ import annotations

import contextlib

from ...core.params import flat_buffer
from ..base import Backend, Prepared


def prepare(backend, params, X, y, lr, activation, grad_reduction) -> Prepared:
    """``NumbaBackend._prepare``: a ``NumbaPrepared``, or the generic handle for params that are not
    views of one flat vector (``params_from_numpy`` makes them so)."""
    theta = flat_buffer(params)
    if theta is None:
        return Backend._prepare(backend, params, X, y, lr, activation, grad_reduction)
    return NumbaPrepared(backend, params, X, y, lr, activation, grad_reduction, theta)


class NumbaPrepared(Prepared):
    """A fit bound to one step kernel and its packed arguments (params as views of one flat vector)."""

    def __init__(self, backend, params, X, y, lr, activation, grad_reduction, theta):
        super().__init__(backend, params, X, y, lr, activation, grad_reduction)
        self.theta = theta
        self.stepper = None

    def _resolve(self):
        from ...kernels.numba.internals import compiled_entry
        from .jit import _constants

        X = self.X
        sizes = [X.shape[1]] + [W.shape[1] for W, _ in self.params]
        stepper = self.backend._stepper(sizes, X.shape[0], X.dtype)
        args = stepper.bind(self.theta, X, self.y, _constants(X.dtype, self.lr, self.activation, self.grad_reduction))
        self._args, self._call = args, compiled_entry(stepper.kernel, args)
        self._scoped = stepper.scope is not contextlib.nullcontext
        self.stepper = stepper

    def step(self) -> float:
        """One fused epoch; the loss before the update."""
        if self.stepper is None:
            self._resolve()
        if self._scoped:
            with self.stepper.scope():
                return self._call(*self._args)
        return self._call(*self._args)
