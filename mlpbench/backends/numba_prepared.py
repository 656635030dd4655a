"""The Numba backend's prepared step: ``NumbaBackend.prepare`` returns a ``NumbaPrepared``.

Everything a step needs is resolved once, at ``prepare``: the step kernel for
the shape (``NumbaBackend._stepper``: kernel, workspace, threads), its ~15
arguments packed into one tuple, and the compiled entry point for their types
(``kernels/numba_internals.compiled_entry``: no dispatcher typing per call;
the public dispatcher when Numba's internals are not there). ``step()`` is
then one call, plus a thread scope only where the stepper has one (a parallel
or pinned kernel, whose work dwarfs the scope's cost); measured at N=1,
``[32, 4, 1]``, float64: ~2.2 us per step against ~30 us through ``step``.
"""

from __future__ import annotations

import contextlib

from .base import Prepared


class NumbaPrepared(Prepared):
    """A fit bound to one step kernel and its packed arguments (params as views of one flat vector)."""

    def __init__(self, backend, params, X, y, lr, activation, grad_reduction, stepper, args, call):
        super().__init__(backend, params, X, y, lr, activation, grad_reduction)
        self.stepper, self._args, self._call = stepper, args, call
        self._scoped = stepper.scope is not contextlib.nullcontext

    def step(self) -> float:
        """One fused epoch; the loss before the update."""
        if self._scoped:
            with self.stepper.scope():
                return self._call(*self._args)
        return self._call(*self._args)
