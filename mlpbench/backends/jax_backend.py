"""JAX peer: the reference math with manual gradients (no ``jax.grad``), jitted.

float64 needs ``jax_enable_x64``, a process-wide JAX setting: every call into
JAX here runs inside ``_x64()``, which turns it on for that call and restores
the caller's value after, so the user's own JAX code never sees it changed. Matmuls ask for ``Precision.HIGHEST`` (no TF32/bf16 passes on GPU).

JAX arrays are immutable, so "in place" means the params list itself: its
``(W, b)`` entries are replaced (``params[i] = (W_new, b_new)``). ``train`` runs
the epochs inside compiled ``lax.fori_loop`` calls of ``CHUNK`` epochs each
(one call for up to ``CHUNK`` epochs): the compiled code does not depend on
``epochs``, so ``warmup`` compiles exactly what a timed ``train`` runs.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ..kernels import reference as ref
from .base import Backend, BackendUnavailable, parse_device

#: epochs per compiled training call (the loss buffer's length)
CHUNK = 8192


@functools.lru_cache(maxsize=None)
def _jax():
    import jax

    return jax


@contextlib.contextmanager
def _x64(value=True):
    """``jax_enable_x64`` set to ``value`` for the block, the previous value restored after (not process-wide);
    yields the previous value."""
    config = _jax().config
    before = bool(config.jax_enable_x64)
    if before != value:
        config.update("jax_enable_x64", value)
    try:
        yield before
    finally:
        if before != value:
            config.update("jax_enable_x64", before)


#: the callers' x64 values of the scoped calls in progress (innermost last)
_CALLER_X64 = [False]


def _scoped(method):
    """Run a backend method with x64 on (see ``_x64``)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _x64() as before:
            _CALLER_X64.append(before if len(_CALLER_X64) == 1 else _CALLER_X64[-1])
            try:
                return method(*args, **kwargs)
            finally:
                _CALLER_X64.pop()
    return wrapper


@functools.lru_cache(maxsize=None)
def _compiled(activation, grad_reduction):
    """``reference.py`` on ``jax.numpy``, jitted for one (activation, grad_reduction); jit caches per shape."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax

    def highest(fn):  # every matmul at full precision (no TF32 / bf16 passes on a GPU)
        def traced(*args):
            with jax.default_matmul_precision("highest"):
                return fn(*args)
        return traced

    def forward(params, X):
        return ref.forward(jnp, params, X, activation)[1][1:]  # [a1, ..., y_hat]; X is not repeated

    def backward(params, acts, y):  # acts = [X, a1, ..., y_hat]
        return ref.backward(jnp, params, acts, y, activation, grad_reduction)

    def update(params, grads, lr):
        lr_ = lr.astype(params[0][0].dtype)  # the reference's weak Python-float lr: rounded to the dtype
        return [(W - lr_ * dW, b - lr_ * db) for (W, b), (dW, db) in zip(params, grads)]

    def step(params, X, y, lr):
        acts = forward(params, X)
        return update(params, backward(params, [X] + acts, y), lr), ref.bce(jnp, y, acts[-1])

    def train_chunk(params, X, y, lr, n):
        hist = jnp.full(CHUNK, jnp.nan, dtype=X.dtype)

        def body(epoch, carry):
            params, hist = carry
            params, value = step(params, X, y, lr)
            return params, hist.at[epoch].set(value)

        return lax.fori_loop(0, n, body, (params, hist))

    fns = {"forward": forward, "loss": lambda y, y_hat: ref.bce(jnp, y, y_hat), "backward": backward,
           "update": update, "train_chunk": train_chunk}
    return {key: jax.jit(highest(fn)) for key, fn in fns.items()}


class JaxBackend(Backend):
    """JAX arrays on ``device`` ("cpu", "cuda"/"gpu", "cuda:N"; default: JAX's default device)."""

    name = "jax"
    requires = ("jax", "jaxlib")
    install_hint = 'pip install "mlpbench[peers]"'

    def __init__(self, device=None):
        jax = _jax()
        kind, index = parse_device(device, ("cpu", "cuda", "gpu")) if device is not None else ("", None)
        try:
            devices = jax.devices("gpu" if kind in ("cuda", "gpu") else kind or None)
        except RuntimeError as exc:
            raise BackendUnavailable(f"device={device!r}: {exc}") from None
        if int(index or 0) >= len(devices):
            raise ValueError(f"device {device!r}: only {len(devices)} {kind} device(s)")
        self._dev = devices[int(index or 0)]
        self.device = _device_name(self._dev)
        self._last = None

    def _done(self, result):
        self._last = result
        return result

    # ------------------------------------------------------------ plumbing
    @_scoped
    def asarray(self, a):
        return self._done(_jax().device_put(np.array(a, copy=True, order="C"), self._dev))

    @_scoped
    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    @_scoped
    def synchronize(self) -> None:
        """Block until the last result this backend produced is computed (JAX dispatch is async)."""
        if self._last is not None:
            _jax().block_until_ready(self._last)

    # ------------------------------------------------------------ the math
    @_scoped
    def _forward(self, params, X, activation):
        acts = self._done(_compiled(activation, "sum")["forward"](params, X))
        return acts[-1], [X] + list(acts)

    @_scoped
    def _backward(self, params, cache, X, y, activation, grad_reduction):
        return self._done(_compiled(activation, grad_reduction)["backward"](params, list(cache), y))

    @_scoped
    def _sgd_update(self, params, grads, lr) -> None:
        new = _compiled("relu", "sum")["update"](params, grads, np.float64(lr))
        params[:] = self._done(new)

    @_scoped
    def _loss(self, y, y_hat) -> float:
        return float(_compiled("relu", "sum")["loss"](y, y_hat))

    @_scoped
    def _step(self, params, X, y, lr, activation, grad_reduction) -> float:
        # one epoch of the compiled training loop: one compilation serves step, warmup and train
        new, hist = _compiled(activation, grad_reduction)["train_chunk"](params, X, y, np.float64(lr), np.int32(1))
        params[:] = self._done(new)
        return float(np.asarray(hist)[0])

    @_scoped
    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback):
        """All epochs in compiled ``fori_loop`` chunks; losses copied back once, divergence checked after."""
        if callback is not None:  # a per-epoch callback needs each loss on the host anyway
            caller = _CALLER_X64[-1]

            def user(epoch, loss):  # the user's code runs with the user's x64 setting
                with _x64(caller):
                    callback(epoch, loss)
            return super()._train(params, X, y, lr, epochs, activation, grad_reduction, user)
        fn = _compiled(activation, grad_reduction)["train_chunk"]
        current, chunks, lr_ = list(params), [], np.float64(lr)
        for start in range(0, epochs, CHUNK):
            n = min(CHUNK, epochs - start)
            current, hist = fn(current, X, y, lr_, np.int32(n))
            chunks.append((hist, n))
        params[:] = self._done(current)
        return self.finish(np.concatenate([np.asarray(h)[:n] for h, n in chunks] + [np.empty(0)]), params, lr)


def _device_name(dev) -> str:
    if dev.platform == "cpu":
        return "cpu"
    return f"cuda:{dev.id} ({dev.device_kind})"
