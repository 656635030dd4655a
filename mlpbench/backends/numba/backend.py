"""The Numba backend: the kernels of ``kernels/numba/`` behind the Backend contract.

This module owns buffers, dispatch and conversions; the kernels own the math.
``train`` works on the params' flat vector (``params_from_numpy`` makes them
views of one; other params are copied into one and back), allocates every
buffer once per call and then runs either

* ``"loop"``: all epochs inside one compiled call (small networks), or
* ``"step"``: one compiled call per epoch over row blocks, BLAS per layer
  (with a per-epoch ``callback``, and for larger networks; ``steps``);

``strategy="auto"`` picks with ``choose_strategy``. Mini-batches, and the
softmax head's training, run in ``minibatch`` (``kernels/numba/batches.py``).
Numba is imported on first use, never by ``import mlpbench``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time

import numpy as np

from ...core import validation as v
from ...core.validation import require_array, require_cache, require_params, require_X, require_y
from ...kernels.reference import ACT_CODES, bce_eps, sigmoid_floor
from ...core.params import copy_into, flat_buffer, flat_copy, flat_layout, flat_views, macs
from . import machine_rules as rules, minibatch
from ..base import Backend, head
from .jit import _constants, _ensure_compiled, _fixed_loop, _kernels, _use_fixed, compiled_seconds, jit_notes
from .steps import Stepper, make_stepper
from ..cpu_threads import blas_threads, numba_threads, numpy_blas_threads, scoped_threads

STRATEGIES = ("loop", "step")

# Crossover between the whole-loop kernel (explicit loops, one thread, no BLAS)
# and the blocked BLAS step, in multiply-adds per forward pass,
# N * sum(fan_in * fan_out). Measured (a crossover sweep,
# 2-core AMD EPYC, float64, [32, H, 1]): the loop kernel wins at
# 528 MACs (N=1, H=16: 1.9 vs 2.2 us per epoch; N=4, H=4: 1.3 vs 2.3 us) and
# loses from 2112 (N=16, H=4: 3.9 vs 2.7 us; N=1, H=64: 7.0 vs 3.5 us): its
# sums are sequential dependency chains, BLAS's are not. Not a ``machine_rules`` rule:
# at this size both sides are latency-bound (the loop's add chains, BLAS's per-call
# overhead), so the crossover moves with neither the caches nor the SIMD width.
LOOP_MAX_MACS = 1024

def choose_strategy(n_samples, layer_sizes) -> str:
    """``"loop"`` for small networks, ``"step"`` otherwise (see ``LOOP_MAX_MACS``)."""
    return "loop" if macs(n_samples, layer_sizes) <= LOOP_MAX_MACS else "step"


#: the shape ``warmup`` runs every strategy on: small, but above ``FIXED_MAX_MACS`` (no per-shape compile)
WARMUP_SHAPE = (2, [4, 16, 1])


class NumbaBackend(Backend):
    """Numba kernels on the CPU: ``NumbaBackend(threads=None, strategy="auto")``.

    ``threads``: Numba threads of the parallel step and mini-batch kernels, BLAS
    threads of the one-call-at-a-time methods (``forward``, ``backward``); ``None``
    leaves Numba's and BLAS's defaults. The step and batch kernels run BLAS on
    one thread and share the cores through ``prange`` instead (never both).
    ``strategy``: ``"loop"`` (all epochs in one compiled call), ``"step"``
    (one fused call per epoch, BLAS per layer) or ``"auto"`` (``choose_strategy``).
    ``last_run`` records what the last ``train`` used (strategy, threads, block rows).
    """

    name = "numba"
    requires = ("numba", "scipy", "llvmlite")
    requires_note = "(Numba's np.dot needs SciPy)"
    prior_rank = 0
    install_hint = 'pip install "mlpbench[numba]"'
    strategies = STRATEGIES
    outputs = ("sigmoid", "softmax")

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Also unavailable with a ``NUMBA_NUM_THREADS`` Numba refuses at import (named, not Numba's message)."""
        env = os.environ.get("NUMBA_NUM_THREADS", "").strip()
        if env and not (env.isdigit() and int(env) > 0):
            return False, f"environment variable NUMBA_NUM_THREADS={env!r} must be a positive integer (or unset)"
        return super().availability()

    @classmethod
    def strategy_applies(cls, strategy, n_samples, layer_sizes, dtype) -> bool:
        """For ``auto``: the BLAS-free whole-loop kernel is worth timing only near or below the crossover."""
        return strategy != "loop" or macs(n_samples, layer_sizes) <= 16 * LOOP_MAX_MACS

    def __init__(self, threads=None, strategy="auto"):
        if threads is not None:
            threads = v.check_positive_int("threads", threads)
            import numba

            if threads > numba.config.NUMBA_NUM_THREADS:
                raise ValueError(f"threads must be <= {numba.config.NUMBA_NUM_THREADS} "
                                 f"(NUMBA_NUM_THREADS); got {threads}")
        self.threads = threads
        self.strategy = v.check_choice("strategy", strategy, ("auto",) + STRATEGIES)
        self._steppers = {}
        #: what the last ``train`` ran: strategy, numba and BLAS threads, rows per block
        self.last_run = {}

    def __repr__(self):
        return f"<NumbaBackend threads={self.threads} strategy={self.strategy!r}>"

    @classmethod
    def compile_seconds(cls) -> float:
        return compiled_seconds()

    def describe(self) -> dict:
        """device, threads ("numba=N blas=M"), the mini-batch kernel's thread thresholds per dtype and where they
        come from (``machine_rules.batch_thresholds``: tuned here or the rule) and, once measured in this process,
        the JIT first-call times."""
        numba = self.threads if self.threads is not None else numba_threads()
        blas = self.threads if self.threads is not None else (
            blas_threads() if "numba" in sys.modules else numpy_blas_threads())
        limits = "; ".join("{}: {} rows per thread, {:.3g} MACs per batch ({})".format(
            dt, *rules.batch_thresholds(np.dtype(dt).itemsize)) for dt in ("float64", "float32"))
        return {"device": "cpu", "threads": f"numba={numba} blas={'?' if blas is None else blas}",
                "batch_threads": limits, "notes": jit_notes()}

    # ------------------------------------------------------------ plumbing
    def params_from_numpy(self, params):
        """Backend-owned copies: views of one flat vector, so ``sgd_update`` is one kernel call."""
        sizes, dtype = require_params(params)
        flat = np.empty(flat_layout(sizes)[2], dtype=dtype)
        views = flat_views(flat, sizes)
        copy_into(views, params)
        return views

    def check_inputs(self, params, X, y=None):
        sizes, dt = require_params(params)
        X = require_X(X, sizes, dt)
        return X, (None if y is None else require_y(y, X.shape[0], sizes, dt))

    def check_cache(self, params, cache):
        sizes, dt = require_params(params)
        return require_cache(cache, sizes, dt)

    def _scope(self):
        """``threads`` applied to Numba and BLAS for one call (nothing when ``threads`` is None)."""
        return scoped_threads(self.threads, blas=self.threads) if self.threads is not None else contextlib.nullcontext()

    # ------------------------------------------------------------ the math, one call at a time
    def _forward(self, params, X, activation, output="sigmoid"):
        """Layer by layer, the fused kernels' layer (``layers.layer_forward``) with NumPy's choice of BLAS call.

        Not ``layers.forward`` itself: it takes the params' flat vector, and finding it
        (``flat_buffer``, ~8 us) doubled a one-row ``forward`` call.
        """
        kernels = _kernels()
        dt = X.dtype
        floor = dt.type(sigmoid_floor(dt))
        acts = [X]
        with self._scope():
            for i, (W, b) in enumerate(params):
                last = i == len(params) - 1
                Z = np.empty((X.shape[0], W.shape[1]), dtype=dt)
                args = (acts[-1], np.ascontiguousarray(W), np.ascontiguousarray(b).reshape(-1), Z,
                        kernels.SIGMOID if last else ACT_CODES[activation], floor, last and output == "softmax",
                        None, None)
                _ensure_compiled("layer_forward", kernels.layer_forward, args)
                kernels.layer_forward(*args)
                acts.append(Z)
        return acts[-1], acts

    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        kernels = _kernels()
        act_code = ACT_CODES[activation]
        mean = grad_reduction == "mean"
        acts = cache
        sizes, dt = [a.shape[1] for a in acts], acts[0].dtype
        n_rows = acts[0].shape[0]
        grads = flat_views(np.zeros(flat_layout(sizes)[2], dtype=dt), sizes)
        D = np.empty_like(acts[-1])
        with self._scope():
            args = (acts[-1], y, mean, n_rows, D, grads[-1][1].reshape(-1))
            if output == "softmax":
                minibatch.softmax_error(*args)
            else:
                _ensure_compiled("output_error", kernels.output_error, args)
                kernels.output_error(*args)
            for i in range(len(params) - 1, -1, -1):
                dA = np.empty((n_rows, sizes[i]), dtype=dt) if i > 0 else D
                db_prev = grads[i - 1][1].reshape(-1) if i > 0 else grads[0][1].reshape(-1)
                args = (acts[i], np.ascontiguousarray(params[i][0]), D, grads[i][0], dA, act_code, db_prev, i == 0)
                _ensure_compiled("layer_backward", kernels.layer_backward, args)
                kernels.layer_backward(*args)
                D = dA
        return grads

    def _sgd_update(self, params, grads, lr) -> None:
        kernels = _kernels()
        sizes, dt = require_params(params)
        gsizes, gdt = require_params(grads, name="grads")
        if gsizes != sizes or gdt != dt:
            raise ValueError(f"grads must match params: layer sizes {sizes} and dtype {dt.name}; "
                             f"got {gsizes} and {gdt.name}")
        lr = dt.type(lr)
        fp, fg = flat_buffer(params), flat_buffer(grads)
        if fp is not None and fg is not None:
            _ensure_compiled("sgd", kernels.sgd, (fp, fg, lr))
            kernels.sgd(fp, fg, lr)  # all params in one call
            return
        for pair, gpair in zip(params, grads):
            for p, g in zip(pair, gpair):
                if p.flags.c_contiguous:
                    kernels.sgd(p.reshape(-1), np.ascontiguousarray(g).reshape(-1), lr)
                else:  # a foreign, non-contiguous array: update it where it is
                    p -= lr * g

    def _loss(self, y, y_hat, output="sigmoid") -> float:
        kernels = _kernels()
        y_hat = require_array("y_hat", y_hat)
        y = require_array("y", y)
        if y.shape != y_hat.shape or y.dtype != y_hat.dtype:
            raise ValueError(f"y and y_hat must have the same shape and dtype; got {y.shape} {y.dtype.name} "
                             f"and {y_hat.shape} {y_hat.dtype.name}")
        if output == "softmax":
            return minibatch.cross_entropy(y, y_hat)
        eps = y_hat.dtype.type(bce_eps(y_hat.dtype))
        args = (y_hat.reshape(-1), y.reshape(-1), eps)
        _ensure_compiled("bce_loss", kernels.bce_loss, args)
        return float(kernels.bce_loss(*args))

    # ------------------------------------------------------------ training
    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output="sigmoid"):
        """All epochs on the params' flat vector, buffers allocated once; see the class docstring."""
        if output == "softmax":  # the mini-batch kernel, one batch of every row per epoch
            return minibatch.train_full(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output)
        sizes = [X.shape[1]] + [W.shape[1] for W, _ in params]
        theta, foreign = flat_copy(params, X.dtype)  # foreign: not our views of one vector; train a copy, copy it back
        consts = _constants(X.dtype, lr, activation, grad_reduction)
        strategy = self.strategy if self.strategy != "auto" else choose_strategy(X.shape[0], sizes)
        if callback is not None:
            strategy = "step"  # a callback needs control back after every epoch
        if strategy == "loop":
            with self._scope():
                history = self._epoch_loop(epochs, self._loop_kernel(theta, sizes, X, y, consts), None, epochs)
        else:
            history = self._train_steps(theta, sizes, X, y, consts, epochs, callback)
        if foreign:
            copy_into(params, flat_views(theta, sizes))
        return self.finish(history, params, lr, params_finite=bool(np.isfinite(theta).all()))

    def _loop_kernel(self, theta, sizes, X, y, consts):
        """The ``"loop"`` strategy as ``_epoch_loop``'s ``run``: every epoch in one call of ``train_loop``, or of
        ``train_loop_fixed`` compiled for this shape (tiny nets), its workspace allocated here."""
        n_rows = X.shape[0]
        lr, kind, tail = consts[0], consts[1], consts[2:]
        fixed = None
        if _use_fixed(n_rows, sizes):
            fixed = _fixed_loop((theta, X, y, lr, 1) + tail + (np.empty(1),), kind, n_rows, sizes)
        self.last_run = {"strategy": "loop", "fixed_shape": fixed is not None, "numba_threads": 1,
                         "blas_threads": self.threads, "block_rows": n_rows}
        if fixed is not None:
            return lambda done, out: fixed(theta, X, y, lr, len(out), *tail, out)
        kernels = _kernels()
        ws = kernels.workspace
        off = ws.plan(sizes, n_rows, sizes[0], ws.GRADS_PAIR)
        work, split = np.empty(off[-1], dtype=X.dtype), off[len(sizes) - 1] + n_rows * sizes[-1]
        acts, grads = work[:split], work[split:]  # two arrays: loop.train_loop
        head = (theta, np.array(sizes, dtype=np.int64)) + flat_layout(sizes)[:2] + (X, y, acts, grads, lr)
        _ensure_compiled("train_loop", kernels.train_loop, head + (1,) + consts[1:] + (np.empty(1),))
        return lambda done, out: kernels.train_loop(*head, len(out), *consts[1:], out)

    def _stepper(self, sizes, n_rows, dt) -> Stepper:
        """The fused one-epoch kernel for this shape (``steps``), cached per (shape, dtype, threads): ``step``
        allocates nothing."""
        key = (tuple(sizes), n_rows, dt, self.threads)
        stepper = self._steppers.get(key)
        if stepper is None:
            if len(self._steppers) > 16:
                self._steppers.clear()
            stepper = self._steppers[key] = make_stepper(sizes, n_rows, dt, self.threads)
        return stepper

    def _train_steps(self, theta, sizes, X, y, consts, epochs, callback):
        """The ``"step"`` strategy: one step kernel call per epoch; returns the history recorded."""
        stepper = self._stepper(sizes, X.shape[0], X.dtype)
        args = stepper.bind(theta, X, y, consts)
        self.last_run = dict(stepper.info)

        def epoch(done, out):
            out[0] = stepper.kernel(*args)
            return 1

        with stepper.scope():
            return self._epoch_loop(epochs, epoch, callback)

    #: mini-batch SGD with no Python per batch: one compiled call per epoch or more (``minibatch``)
    _train_batches = minibatch.train_batches

    def _step(self, params, X, y, lr, activation, grad_reduction, output="sigmoid") -> float:
        """One epoch through the fused step kernel, in place on the params' flat buffer.

        Params made by ``params_from_numpy`` are views of one vector; any other
        params take the generic forward / backward / update path.
        """
        theta = flat_buffer(params)
        if theta is None:
            return super()._step(params, X, y, lr, activation, grad_reduction, **head(output))
        if output == "softmax":
            return minibatch.step(self, params, X, y, lr, activation, grad_reduction, output)
        stepper = self._stepper([X.shape[1]] + [W.shape[1] for W, _ in params], X.shape[0], X.dtype)
        args = stepper.bind(theta, X, y, _constants(X.dtype, lr, activation, grad_reduction))
        with stepper.scope():
            return float(stepper.kernel(*args))

    def _prepare(self, params, X, y, lr, activation, grad_reduction):
        """The step kernel, its packed arguments and its compiled entry point, once (``prepared``)."""
        from .prepared import prepare

        return prepare(self, params, X, y, lr, activation, grad_reduction)

    def warmup(self, layer_sizes, n_samples=4, dtype="float64", activation="relu") -> float:
        """Compile (or load from cache) the kernels for ``dtype``: ``train`` and ``step`` on this shape
        with this backend's strategy, then on a tiny shape once per strategy. Returns the seconds it took."""
        t0 = time.perf_counter()
        dt = v.check_dtype(dtype)
        super().warmup(layer_sizes, n_samples, dt.name, activation)
        tiny_rows, tiny_sizes = WARMUP_SHAPE
        for strategy in STRATEGIES:
            Backend.warmup(NumbaBackend(self.threads, strategy), tiny_sizes, tiny_rows, dt.name, activation)
        return time.perf_counter() - t0
