"""A backend's op on a case, made ready to time: the ``measure.Subject`` every benchmark builds the same way.

``mlpbench bench``, the asv suite (``bench/``) and the pytest-benchmark suite
(``tests/benchmarks/``) all call ``op_subject``; they differ only in who
drives the clock (``measure.measure`` here, asv or pytest-benchmark there).
What is timed is the contract's prepared path: ``train`` is
``prepare(...).run(epochs)``, ``step`` is ``prepare(...).step()``;
``forward`` / ``backward`` call the public methods on arrays converted once.
``epoch`` is one epoch of ``backend.train`` (``epochs=1``; with the case's
``batch_size``, one shuffled pass of mini-batches, seeded by the case's seed,
so every call draws the same order, on every backend): the contract has no
prepared mini-batch handle, and ``train`` is what a mini-batch fit calls (a
backend's fused ``_train_batches`` runs under it). A softmax head, or a
mini-batch ``train``, goes through ``train`` / ``step`` the same way (prepared
handles are full-batch sigmoid).
"""

from __future__ import annotations

import time

import numpy as np

from ..measure import engine as M
from .cases import case_data
from ..core.params import init_params


def op_subject(label, backend, case, X=None, y=None, *, backend_warmup=True) -> tuple:
    """``(Subject, warmup_s)`` for ``case.op`` on ``backend``; ``warmup_s`` is ``backend.warmup``'s seconds.

    Inputs are the case's data (or ``X`` / ``y``, NumPy arrays), its seeded
    params, converted to the backend once; nothing the caller gave is
    modified. ``backend.warmup`` (JIT compilation, device context) runs here,
    unless ``backend_warmup=False`` (a shape already warm), and is reported
    apart from every sample. ``step`` / ``train`` / ``epoch`` update this subject's own
    params in place (the cost does not depend on their values); two calls give
    two independent subjects (the A/A control's copy).
    """
    if X is None or y is None:
        X, y = case_data(case)
    dtype = np.dtype(case.dtype).name
    params = backend.params_from_numpy(init_params(case.layer_sizes, case.seed, dtype))
    bX = backend.asarray(np.ascontiguousarray(X, dtype=dtype))
    by = backend.asarray(np.ascontiguousarray(y, dtype=dtype))
    backend.synchronize()
    t0 = time.perf_counter()
    if backend_warmup and hasattr(backend, "warmup"):
        backend.warmup(list(case.layer_sizes), n_samples=int(X.shape[0]), dtype=dtype, activation=case.activation)
    warmup_s = time.perf_counter() - t0
    act, red, batch_size = case.activation, case.grad_reduction, case.batch_size
    head = {} if case.output == "sigmoid" else {"output": case.output}
    if case.op in ("step", "train") and not head and batch_size is None:
        handle = backend.prepare(params, bX, by, lr=case.lr, activation=act, grad_reduction=red)
        fn = handle.step if case.op == "step" else (lambda: handle.run(case.epochs))
    elif case.op == "step":
        def fn():
            return backend.step(params, bX, by, lr=case.lr, activation=act, grad_reduction=red, **head)
    elif case.op in ("train", "epoch"):
        kw = dict(lr=case.lr, epochs=case.epochs if case.op == "train" else 1, activation=act, grad_reduction=red,
                  **head)
        if batch_size is not None:
            kw.update(batch_size=batch_size, shuffle=True, shuffle_seed=case.seed)

        def fn():
            return backend.train(params, bX, by, **kw)
    elif case.op == "forward":
        def fn():
            return backend.forward(params, bX, activation=act, **head)[0]
    elif case.op == "backward":
        cache = backend.forward(params, bX, activation=act, **head)[1]

        def fn():
            return backend.backward(params, cache, bX, by, activation=act, grad_reduction=red, **head)
    else:
        raise ValueError(f"op must be one of ['forward', 'backward', 'step', 'train', 'epoch']; got {case.op!r}")
    return M.Subject(label, fn, sync=backend.synchronize), warmup_s


def synced(subject):
    """``subject``'s callable followed by its ``sync``: one call as an outside timer (asv, pytest-benchmark) sees it."""
    def call():
        out = subject.fn()
        M.settle(subject, out)
        return out

    return call


__all__ = ["op_subject", "synced"]
