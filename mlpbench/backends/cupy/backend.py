"""The CuPy GPU backend: the reference math on an NVIDIA GPU, its hot parts fused into CUDA kernels.

Training strategies (``CupyBackend(strategy=...)``; ``choose_strategy`` is the rule for ``"auto"``):

* ``"persistent"``: nets that fit one thread block train in ONE kernel launch
  for all epochs (``kernels/cuda/sources.py``, ``train_persistent``);
* ``"graph"``: one epoch (cuBLAS matmuls and the fused kernels) is captured
  once as a CUDA graph and replayed every epoch;
* ``"step"``: the same epoch launched kernel by kernel; forced by a callback,
  which needs each epoch's loss on the host.

Both heads: the softmax head's training step is one fused kernel after the
last matmul (bias, stable log-softmax, cross-entropy terms, ``softmax -
onehot`` and its bias-gradient sums); the one-block trainer has the sigmoid
head only, so a softmax fit takes ``"graph"`` (or ``"step"``). Mini-batches
(``batch_size=``) are ``minibatch.train_batches``: one epoch of batches
captured once as a CUDA graph and replayed, rows gathered on the device by the
epoch's permutation.

Buffers are allocated once per fit; the loss history stays on the device and
is copied back once at the end. Matmuls go straight to cuBLAS (``gemmEx`` into
preallocated outputs, no temporaries); float32 never uses TF32 unless
``allow_tf32=True``. CuPy is imported on first use: ``import mlpbench`` and
``available_backends()`` never need a GPU, and a bare ``import cupy``
succeeding proves nothing, so ``availability()`` also launches a kernel.
"""

from __future__ import annotations

import numbers

import numpy as np

from ...core import validation as v
from ...kernels.cuda import sources as kc
from ...kernels.cuda.cublas import CUDA_DATA_TYPE, gemm
from ...kernels import reference as ref
from ..base import Backend
from .minibatch import train_batches
from .support import (STRATEGIES, Workspace, capture, choose_strategy, device_name, flat, pointer_table, probe, read_loss,
                      short_error, sizes_of)


def _runtime():
    """``(cupy, cublas)``, imported on first use. The tests swap in a CPU emulation here."""
    import cupy
    from cupy_backends.cuda.libs import cublas

    return cupy, cublas


class CupyBackend(Backend):
    """CuPy on one CUDA device: ``CupyBackend(device=0, strategy="auto", allow_tf32=False)``."""

    name = "cupy"
    device = "cuda"
    requires = ("cupy",)
    package = "cupy-cuda13x"
    gpu = True
    prior_rank = 0
    install_hint = 'pip install "mlpbench[gpu]"  (cupy-cuda13x; needs an NVIDIA GPU and driver)'
    strategies = STRATEGIES
    outputs = ("sigmoid", "softmax")

    def __init__(self, device=0, strategy="auto", allow_tf32=False):
        if not isinstance(device, (numbers.Integral, np.integer)) or isinstance(device, (bool, np.bool_)):
            raise TypeError(f"device must be a CUDA device index (int); got {type(device).__name__}")
        if device < 0:
            raise ValueError(f"device must be >= 0; got {device}")
        v.check_choice("strategy", strategy, ("auto",) + STRATEGIES)
        if not isinstance(allow_tf32, (bool, np.bool_)):
            raise TypeError(f"allow_tf32 must be True or False; got {type(allow_tf32).__name__}")
        ok, reason = self.availability()
        if not ok:
            raise self.unavailable(reason)
        self._cp, self._cublas = _runtime()
        count = int(self._cp.cuda.runtime.getDeviceCount())
        if device >= count:
            raise ValueError(f"device must be < {count} (the CUDA devices here); got {device}")
        self.device_id, self.strategy, self.allow_tf32 = int(device), strategy, bool(allow_tf32)
        self._dev = self._cp.cuda.Device(self.device_id)
        self.device = f"cuda:{self.device_id} ({device_name(self._cp, self.device_id)})"
        self._modules, self._functions = {}, {}
        #: what the last ``train`` ran: its strategy, and why
        self.last_run = {}
        self._step_workspaces = {}

    def __repr__(self):
        return (f"<CupyBackend device={self.device!r} strategy={self.strategy!r} "
                f"allow_tf32={self.allow_tf32}>")

    @classmethod
    def availability(cls):
        ok, reason, _ = probe()
        return ok, reason

    @classmethod
    def strategy_applies(cls, strategy, n_samples, layer_sizes, dtype) -> bool:
        """Whether ``strategy`` can run this size: "persistent" only when the net fits one block."""
        if strategy == "persistent":
            return kc.persistent_plan(n_samples, layer_sizes, dtype).fits
        return strategy in STRATEGIES

    def describe(self) -> dict:
        ok, _, info = probe()
        row = {"device": self.device, "threads": None}
        if ok and "driver" in info:
            row.update(driver=info["driver"], runtime=info["runtime"],
                       notes=f"{info['count']} GPU(s); CUDA driver {info['driver']}, runtime {info['runtime']}")
        return row

    # ------------------------------------------------------------ plumbing
    def asarray(self, a):
        with self._dev:
            if isinstance(a, self._cp.ndarray):
                return self._cp.ascontiguousarray(a)
            return self._cp.asarray(np.ascontiguousarray(a))

    def to_numpy(self, a) -> np.ndarray:
        if isinstance(a, self._cp.ndarray):
            return self._cp.asnumpy(a)
        return np.asarray(a)

    def synchronize(self) -> None:
        self._dev.synchronize()

    def _fn(self, kernel, dtype, act=None):
        """The compiled kernel (its module compiled with NVRTC and loaded on first use, then cached)."""
        dtype = np.dtype(dtype).name
        key = (kernel, dtype, act)
        fn = self._functions.get(key)
        if fn is None:
            kind = "persistent" if kernel == "train_persistent" else "layers"
            module = self._modules.get((kind, dtype))
            if module is None:
                src = kc.source(kind, (dtype,))
                module = self._cp.RawModule(code=src.code, options=kc.OPTIONS,
                                            name_expressions=list(src.name_expressions))
                self._modules[(kind, dtype)] = module
            fn = self._functions[key] = module.get_function(kc.name_expression(kernel, dtype, act))
        return fn

    def _preload(self, dtype, activation):
        """Compile and load every kernel an epoch launches and create the cuBLAS handle (before a capture)."""
        for k in ("bias_act", "act_backward_colsum"):
            self._fn(k, dtype, activation)
        self._fn("bias_act", dtype, "sigmoid")
        for k in ("output_error_colsum", "colsum_finish", "loss_finish", "sgd_multi", "all_finite_multi",
                  "softmax_error_colsum", "gather_batch", "epoch_finish"):
            self._fn(k, dtype)
        self._cp.cuda.device.get_cublas_handle()

    def warmup(self, layer_sizes, n_samples=4, dtype="float64", activation="relu") -> float:
        import time

        t0 = time.perf_counter()
        with self._dev:
            self._preload(dtype, activation)
            self._fn("train_persistent", dtype, activation)
        super().warmup(layer_sizes, n_samples, dtype, activation)
        return time.perf_counter() - t0

    def check_inputs(self, params, X, y=None):
        """``(X, y)`` after checking the arrays live here and fit together."""
        cp = self._cp
        arrays = [X] + ([] if y is None else [y]) + flat(params)
        if not all(isinstance(a, cp.ndarray) for a in arrays):
            raise TypeError("the cupy backend works on its own arrays: convert with asarray() / params_from_numpy()")
        dtype = X.dtype
        if dtype.name not in CUDA_DATA_TYPE or any(a.dtype != dtype for a in arrays):
            found = sorted({a.dtype.name for a in arrays})
            raise TypeError(f"X, y and the params must share one dtype, float32 or float64; got {found}")
        if X.ndim != 2 or (y is not None and (y.ndim != 2 or y.shape[0] != X.shape[0])):
            raise ValueError(f"X must be (N, n_features) and y (N, n_outputs); got {X.shape} and "
                             f"{None if y is None else y.shape}")
        sizes = [X.shape[1]]
        for W, b in params:
            if W.ndim != 2 or W.shape[0] != sizes[-1] or b.shape != (1, W.shape[1]):
                raise ValueError(f"params do not chain: W {W.shape}, b {b.shape} after a layer of {sizes[-1]}")
            if not (W.flags.c_contiguous and b.flags.c_contiguous):
                raise ValueError("params must be C-contiguous (params_from_numpy makes them so)")
            sizes.append(W.shape[1])
        if y is not None and y.shape[1] != sizes[-1]:
            raise ValueError(f"y has {y.shape[1]} outputs but the net has {sizes[-1]}")
        return cp.ascontiguousarray(X), (None if y is None else cp.ascontiguousarray(y))

    def check_cache(self, params, cache):
        if len(cache) != len(params) + 1:
            raise ValueError("cache must be the activations [X, a1, ..., y_hat] that forward() returned")
        return list(cache)

    # ------------------------------------------------------------ launches
    def _gemm(self, C, A, B, trans_a=False, trans_b=False):
        gemm(self._cp, self._cublas, C, A, B, trans_a, trans_b, self.allow_tf32)

    def _enqueue_forward(self, params, acts, activation, output="sigmoid", fused=False):
        """The forward pass into ``acts``; ``fused``: the softmax head is left to the backward's fused kernel."""
        dtype = acts[0].dtype
        T = dtype.type
        floor = T(ref.sigmoid_floor(dtype))
        last = len(params) - 1
        for l, (W, b) in enumerate(params):
            Z = acts[l + 1]
            self._gemm(Z, acts[l], W)
            if l == last and output == "softmax":
                if not fused:
                    self._fn("bias_log_softmax", dtype)((kc.grid_blocks(Z.shape[0]),), (kc.THREADS,),
                                                        (Z, b, np.int32(Z.shape[0]), np.int32(Z.shape[1])))
                continue
            fn = self._fn("bias_act", dtype, "sigmoid" if l == last else activation)
            fn((kc.grid_blocks(Z.size),), (kc.THREADS,), (Z, b, np.int64(Z.size), np.int32(Z.shape[1]), floor))

    def _enqueue_backward(self, params, acts, y, ws, activation, grad_reduction, with_loss, output="sigmoid",
                          fused=False):
        dtype = y.dtype
        T = dtype.type
        n, n_out = y.shape
        eps = ref.bce_eps(dtype)
        divisor = T(n) if grad_reduction == "mean" else T(1)
        L = len(params)
        if output == "softmax":  # fused: the forward's log-softmax of the last layer, here in the same pass
            self._fn("softmax_error_colsum", dtype)(
                (1, ws.chunks), (kc.SOFTMAX_THREADS,),
                (acts[L], params[L - 1][1], y, ws.dz[L - 1], ws.partial, ws.loss_partial, np.int32(n),
                 np.int32(n_out), np.int32(ws.rows_per_chunk), np.int32(fused), divisor),
                shared_mem=kc.SOFTMAX_SHARED_BYTES)
            parts, count = ws.chunks, n
        else:
            self._fn("output_error_colsum", dtype)(
                (kc.col_tiles(n_out), ws.chunks), (kc.COLSUM_TX, kc.COLSUM_TY),
                (acts[L], y, ws.dz[L - 1], ws.partial, ws.loss_partial, np.int32(n), np.int32(n_out),
                 np.int32(ws.rows_per_chunk), divisor, T(eps), T(1 - eps)),
                shared_mem=kc.OUTPUT_SHARED_BYTES)
            parts, count = ws.loss_parts, n * n_out
        if with_loss:
            self._fn("loss_finish", dtype)(
                (1,), (1,), (ws.loss_partial, np.int32(parts), np.float64(count), ws.history, ws.counter,
                             np.int32(ws.history.size)))
        for l in range(L - 1, -1, -1):
            dz = ws.dz[l]
            dW, db = ws.grads[l]
            out = dz.shape[1]
            self._fn("colsum_finish", dtype)((-(-out // kc.THREADS),), (kc.THREADS,),
                                             (ws.partial, db, np.int32(ws.chunks), np.int32(out)))
            self._gemm(dW, acts[l], dz, trans_a=True)
            if l > 0:
                da = ws.dz[l - 1]
                self._gemm(da, dz, params[l][0], trans_b=True)
                self._fn("act_backward_colsum", dtype, activation)(
                    (kc.col_tiles(da.shape[1]), ws.chunks), (kc.COLSUM_TX, kc.COLSUM_TY),
                    (da, acts[l], ws.partial, np.int32(n), np.int32(da.shape[1]), np.int32(ws.rows_per_chunk)),
                    shared_mem=kc.COLSUM_SHARED_BYTES)

    def _enqueue_sgd(self, table, dtype, lr):
        ptrs, gptrs, offsets, total = table
        self._fn("sgd_multi", dtype)((kc.grid_blocks(total),), (kc.THREADS,),
                                     (ptrs, gptrs, offsets, np.int32(ptrs.size), dtype.type(lr)))

    def _workspace(self, params, sizes, n_rows, dtype, epochs=1) -> Workspace:
        """A ``Workspace`` of ``n_rows`` rows with the device pointer tables of ``params`` and its grads (SGD)."""
        ws = Workspace(self._cp, sizes, n_rows, dtype, epochs)
        ws.sgd = self._sgd_table(params, ws.grads)
        return ws

    def _sgd_table(self, params, grads):
        p = flat(params)
        ptrs, offsets = pointer_table(self._cp, p)
        gptrs, _ = pointer_table(self._cp, flat(grads))
        return ptrs, gptrs, offsets, sum(a.size for a in p)

    def _enqueue_step(self, ws, params, X, y, activation, grad_reduction, lr, output="sigmoid"):
        ws.acts[0] = X
        self._enqueue_forward(params, ws.acts, activation, output, fused=True)
        self._enqueue_backward(params, ws.acts, y, ws, activation, grad_reduction, True, output, fused=True)
        self._enqueue_sgd(ws.sgd, X.dtype, lr)

    def _params_finite(self, params, dtype) -> bool:
        cp = self._cp
        arrays = flat(params)
        ptrs, offsets = pointer_table(self._cp, arrays)
        flag = cp.ones(1, dtype=np.int32)
        total = sum(a.size for a in arrays)
        self._fn("all_finite_multi", dtype)((kc.grid_blocks(total),), (kc.THREADS,),
                                            (ptrs, offsets, np.int32(len(arrays)), flag))
        return bool(int(flag.item()))

    # ------------------------------------------------------------ the math, called directly (no graph)
    def _forward(self, params, X, activation, output="sigmoid"):
        with self._dev:
            acts = [X] + [self._cp.empty((X.shape[0], W.shape[1]), dtype=X.dtype) for W, _ in params]
            self._enqueue_forward(params, acts, activation, output)
        return acts[-1], acts

    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        with self._dev:
            ws = Workspace(self._cp, sizes_of(params, X), X.shape[0], X.dtype, with_acts=False)
            self._enqueue_backward(params, cache, y, ws, activation, grad_reduction, False, output)
        return ws.grads

    def _sgd_update(self, params, grads, lr) -> None:
        with self._dev:
            self._enqueue_sgd(self._sgd_table(params, grads), params[0][0].dtype, lr)

    def _loss(self, y, y_hat, output="sigmoid") -> float:
        with self._dev:
            return float(ref.loss(self._cp, y, y_hat, output))

    def _step(self, params, X, y, lr, activation, grad_reduction, output="sigmoid") -> float:
        """One epoch, launched kernel by kernel into a workspace cached per shape: nothing is allocated
        or copied from the host after the first call for a shape (and these params)."""
        with self._dev:
            ws = self._step_workspace(params, X)
            ws.counter.fill(0)  # the loss goes to history[0] again
            self._enqueue_step(ws, params, X, y, activation, grad_reduction, lr, output)
            return float(ws.history[0].item())

    def _step_workspace(self, params, X) -> Workspace:
        key = (X.shape[0], X.dtype.name, tuple((a.data.ptr, a.shape) for a in flat(params)))
        ws = self._step_workspaces.get(key)
        if ws is None:
            if len(self._step_workspaces) >= 8:
                self._step_workspaces.clear()
            ws = self._workspace(params, sizes_of(params, X), X.shape[0], X.dtype)
            self._step_workspaces[key] = ws
        return ws

    # ------------------------------------------------------------ training
    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output="sigmoid"):
        """Full-batch training; see the module docstring for the strategies. Returns the float64 loss history."""
        with self._dev:
            sizes = sizes_of(params, X)
            strategy, why = choose_strategy(X.shape[0], sizes, X.dtype, self.strategy, callback is not None, output)
            self.last_run = {"strategy": strategy, "why": why}
            if strategy == "persistent":
                return self._train_persistent(params, X, y, lr, epochs, activation, grad_reduction, sizes)
            return self._train_layers(params, X, y, lr, epochs, activation, grad_reduction, sizes, strategy, callback,
                                      output)

    def _train_batches(self, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders,
                       output="sigmoid"):
        """Mini-batch SGD, every batch of an epoch in one replayed CUDA graph (``cupy/minibatch.py``)."""
        with self._dev:
            return train_batches(self, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size,
                                 orders, output)

    def _train_layers(self, params, X, y, lr, epochs, activation, grad_reduction, sizes, strategy, callback,
                      output="sigmoid"):
        cp = self._cp
        dtype = X.dtype
        self._preload(dtype, activation)
        ws = self._workspace(params, sizes, X.shape[0], dtype, epochs)

        def run():
            self._enqueue_step(ws, params, X, y, activation, grad_reduction, lr, output)

        graph = None
        if strategy == "graph":
            try:
                graph = capture(cp, run)
            except Exception as exc:  # nothing ran: "auto" falls back to launching kernel by kernel
                if self.strategy != "auto":
                    raise
                self.last_run = {"strategy": "step", "why": f"the CUDA graph capture failed ({short_error(exc)})"}
        launch = run if graph is None else graph.launch  # a graph: on the current stream, after the buffers' init
        if callback is None:
            for _ in range(epochs):
                launch()
            history = cp.asnumpy(ws.history)
        else:  # the step strategy (choose_strategy): each epoch's loss on the host, through the contract's loop
            def epoch(done, out):
                launch()
                return read_loss(ws, done, out)

            history = self._epoch_loop(epochs, epoch, callback)
        return self.finish(history, params, lr, self._params_finite(params, dtype))

    def _train_persistent(self, params, X, y, lr, epochs, activation, grad_reduction, sizes):
        cp = self._cp
        dtype = X.dtype
        T = dtype.type
        n = X.shape[0]
        plan = kc.persistent_plan(n, sizes, dtype)
        eps = ref.bce_eps(dtype)
        packed = cp.concatenate([a.ravel() for a in flat(params)])
        sizes_d = cp.asarray(np.array(sizes, dtype=np.int32))
        history = cp.full(epochs, np.nan, dtype=np.float64)
        self._fn("train_persistent", dtype, activation)(
            (1,), (plan.threads,),
            (packed, X, y, sizes_d, np.int32(len(params)), np.int32(n), np.int32(epochs), T(lr),
             T(n) if grad_reduction == "mean" else T(1), T(ref.sigmoid_floor(dtype)), T(eps), T(1 - eps), history),
            shared_mem=plan.shared_bytes)
        o = 0
        for a in flat(params):
            a[...] = packed[o:o + a.size].reshape(a.shape)
            o += a.size
        return self.finish(cp.asnumpy(history), params, lr, bool(np.isfinite(cp.asnumpy(packed)).all()))
