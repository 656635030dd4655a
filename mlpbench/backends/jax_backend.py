"""JAX peer: the reference math with manual gradients (no ``jax.grad``), jitted.

float64 needs ``jax_enable_x64``: every call into JAX here runs inside JAX's
thread-local ``jax.enable_x64`` context (``_x64_scope``), so neither the
caller's own JAX code nor its other threads see it changed (a JAX without that
context falls back to the process-wide setting, restored after each call). Matmuls ask for ``Precision.HIGHEST`` (no TF32/bf16 passes on GPU).

JAX arrays are immutable, so "in place" means the params list itself: its
``(W, b)`` entries are replaced (``params[i] = (W_new, b_new)``). ``train`` runs
the epochs as one jitted ``lax.scan`` of the step per ``CHUNK`` epochs (the
epoch count is static: one compilation per count, kept out of timings as every
first call is). ``prepare`` returns the idiomatic best: a jitted step and a
jitted scan whose params buffers are donated (reused in place, no copy).
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy as np

from ..core import interrupt
from ..core import validation as v
from ..kernels import reference as ref
from .base import Backend, BackendUnavailable, Prepared, head, parse_device

#: at most this many epochs per compiled training call (``train``; a prepared ``run`` is one call)
CHUNK = 8192


@functools.lru_cache(maxsize=None)
def _jax():
    import jax

    return jax


class _GlobalX64:
    """``jax_enable_x64`` set to ``value`` for the block by the process-wide ``config.update``, the caller's value
    back after: only for a JAX without the thread-local ``jax.enable_x64`` (other threads then see it)."""

    __slots__ = ("before", "value")

    def __init__(self, value=True):
        self.value = value

    def __enter__(self):
        config = _jax().config
        self.before = bool(config.jax_enable_x64)
        if self.before != self.value:
            config.update("jax_enable_x64", self.value)

    def __exit__(self, *exc):
        if self.before != self.value:
            _jax().config.update("jax_enable_x64", self.before)


@functools.lru_cache(maxsize=None)
def _x64_scope():
    """The factory of x64 contexts, ``factory(value)``: JAX's own ``jax.enable_x64`` where this JAX has it
    (thread-local: a fit never changes what the user's other threads see, and no global update), else
    ``_GlobalX64``."""
    jax = _jax()
    return jax.enable_x64 if hasattr(jax, "enable_x64") else _GlobalX64


@contextlib.contextmanager
def _x64(value=True):
    """``jax_enable_x64`` set to ``value`` for the block, in this thread (``_x64_scope``); yields the previous
    value."""
    before = bool(_jax().config.jax_enable_x64)
    with _x64_scope()(value):
        yield before


#: the callers' x64 values of the scoped calls in progress (innermost last)
_CALLER_X64 = [False]


def _scoped(method):
    """Run a backend method with x64 on (``_x64_scope``), the caller's value kept for the user's callbacks."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        before = bool(_jax().config.jax_enable_x64)
        _CALLER_X64.append(before if len(_CALLER_X64) == 1 else _CALLER_X64[-1])
        try:
            with _x64_scope()(True):
                return method(*args, **kwargs)
        finally:
            _CALLER_X64.pop()
    return wrapper


def _x64_on():
    """A factory of x64-on contexts for the prepared step."""
    return functools.partial(_x64_scope(), True)


def _float(loss) -> float:
    """A 0-d JAX array as a Python float (``.item()``: a few microseconds less than ``float()``)."""
    return loss.item()


@functools.lru_cache(maxsize=None)
def _compiled(activation, grad_reduction, output="sigmoid"):
    """``reference.py`` on ``jax.numpy``, jitted for one (activation, grad_reduction, output); jit caches per shape."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax

    def highest(fn):  # every matmul at full precision (no TF32 / bf16 passes on a GPU)
        def traced(*args):
            with jax.default_matmul_precision("highest"):
                return fn(*args)
        return traced

    def forward(params, X):
        return ref.forward(jnp, params, X, activation, output)[1][1:]  # [a1, ..., y_hat]; X is not repeated

    def backward(params, acts, y):  # acts = [X, a1, ..., y_hat]
        return ref.backward(jnp, params, acts, y, activation, grad_reduction, output)

    def update(params, grads, lr):
        lr_ = lr.astype(params[0][0].dtype)  # the reference's weak Python-float lr: rounded to the dtype
        return [(W - lr_ * dW, b - lr_ * db) for (W, b), (dW, db) in zip(params, grads)]

    def step(params, X, y, lr):
        acts = forward(params, X)
        return update(params, backward(params, [X] + acts, y), lr), ref.loss(jnp, y, acts[-1], output)

    def train_scan(params, X, y, lr, n):  # n static: one compilation per epoch count
        return lax.scan(lambda p, _: step(p, X, y, lr), params, None, length=n)

    fns = {"forward": forward, "loss": lambda y, y_hat: ref.loss(jnp, y, y_hat, output), "backward": backward,
           "update": update, "step": step}
    jitted = {key: jax.jit(highest(fn)) for key, fn in fns.items()}
    # the prepared handle's step: the old params' buffers are donated to the new ones (no copy per step)
    jitted["step_donated"] = jax.jit(highest(step), donate_argnums=(0,))
    jitted["train_scan"] = jax.jit(highest(train_scan), static_argnums=(4,))
    jitted["train_scan_donated"] = jax.jit(highest(train_scan), static_argnums=(4,), donate_argnums=(0,))
    return jitted


class JaxBackend(Backend):
    """JAX arrays on ``device`` ("cpu", "cuda"/"gpu", "cuda:N"; default: JAX's default device)."""

    name = "jax"
    requires = ("jax", "jaxlib")
    outputs = ("sigmoid", "softmax")
    install_hint = 'pip install "mlpbench[peers]"'

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """Installed, and where ``JAX_PLATFORMS`` names platforms, one of them here (JAX asserts at its first
        call otherwise); that check imports JAX, so only a user who set the variable pays for it."""
        ok, reason = super().availability()
        platforms = os.environ.get("JAX_PLATFORMS", "").strip()
        if not ok or not platforms:
            return ok, reason
        try:
            _jax().devices()
        except (RuntimeError, AssertionError) as exc:
            return False, (f"environment variable JAX_PLATFORMS={platforms!r}: JAX found no such platform here "
                           f"({type(exc).__name__}: {str(exc) or 'no backend initialized'})")
        return True, ""

    def __init__(self, device=None):
        jax = _jax()
        kind, index = parse_device(device, ("cpu", "cuda", "gpu")) if device is not None else ("", None)
        try:
            devices = jax.devices("gpu" if kind in ("cuda", "gpu") else kind or None)
        except (RuntimeError, AssertionError) as exc:  # jax asserts when JAX_PLATFORMS names no platform here
            env = os.environ.get("JAX_PLATFORMS")
            where = f"environment variable JAX_PLATFORMS={env!r}" if env else f"device={device!r}"
            raise BackendUnavailable(f"{where}: JAX found no such device here "
                                     f"({type(exc).__name__}: {str(exc) or 'no backend initialized'})") from None
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

    def synchronize(self) -> None:
        """Block until the last result this backend produced is computed (JAX dispatch is async)."""
        last, self._last = self._last, None
        if last is not None:
            _jax().block_until_ready(last)

    # ------------------------------------------------------------ the math
    @_scoped
    def _forward(self, params, X, activation, output="sigmoid"):
        acts = self._done(_compiled(activation, "sum", output)["forward"](params, X))
        return acts[-1], [X] + list(acts)

    @_scoped
    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        return self._done(_compiled(activation, grad_reduction, output)["backward"](params, list(cache), y))

    @_scoped
    def _sgd_update(self, params, grads, lr) -> None:
        new = _compiled("relu", "sum")["update"](params, grads, np.float64(lr))
        params[:] = self._done(new)

    @_scoped
    def _loss(self, y, y_hat, output="sigmoid") -> float:
        return _float(_compiled("relu", "sum", output)["loss"](y, y_hat))

    @_scoped
    def _step(self, params, X, y, lr, activation, grad_reduction, output="sigmoid") -> float:
        new, loss = _compiled(activation, grad_reduction, output)["step"](params, X, y, np.float64(lr))
        params[:] = self._done(new)
        return _float(loss)

    @_scoped
    def _train_batches(self, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders,
                       **head):
        """The generic mini-batch loop, its gathers and slices under x64 too; the callback under the user's x64."""
        if callback is not None:
            caller, user_callback = _CALLER_X64[-1], callback

            def callback(epoch, loss):
                with _x64(caller):
                    user_callback(epoch, loss)
        return super()._train_batches(params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size,
                                      orders, **head)

    def _prepare(self, params, X, y, lr, activation, grad_reduction):
        """The jitted step with donated params buffers, ``lr`` already on the device."""
        return _JaxPrepared(self, params, X, y, lr, activation, grad_reduction)

    @_scoped
    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output="sigmoid"):
        """All epochs in jitted ``lax.scan`` calls of up to ``CHUNK`` epochs; losses copied back once, divergence checked after."""
        if callback is not None:  # a per-epoch callback needs each loss on the host anyway
            caller = _CALLER_X64[-1]

            def user(epoch, loss):  # the user's code runs with the user's x64 setting
                with _x64(caller):
                    callback(epoch, loss)
            return super()._train(params, X, y, lr, epochs, activation, grad_reduction, user, **head(output))
        fn = _compiled(activation, grad_reduction, output)["train_scan"]
        current, chunks, lr_ = list(params), [], np.float64(lr)
        for start in range(0, epochs, CHUNK):
            interrupt.check()  # the compile's GC callbacks swallow a Ctrl-C: raised here
            current, hist = fn(current, X, y, lr_, min(CHUNK, epochs - start))
            chunks.append(hist)
        params[:] = self._done(current)
        return self.finish(np.concatenate([np.asarray(h) for h in chunks]), params, lr)


class _JaxPrepared(Prepared):
    """``step()`` is one call of the compiled step; the params list's arrays are replaced (old ones donated)."""

    @_scoped
    def __init__(self, backend, params, X, y, lr, activation, grad_reduction):
        super().__init__(backend, params, X, y, lr, activation, grad_reduction)
        self._fn = _compiled(activation, grad_reduction)["step_donated"]
        # float32 needs no x64 at all (every constant of the step is weakly typed): lr rounded to float32
        # here as the step would round it, and the step run in the caller's x64 mode, whatever it is
        f64 = X.dtype == np.float64
        self._lr = _jax().device_put(np.asarray(lr, dtype=np.float64 if f64 else X.dtype), backend._dev)
        self._x64 = _x64_on() if f64 else contextlib.nullcontext

    def step(self) -> float:
        with self._x64():  # no callback here: an x64 scope without ``_scoped``'s bookkeeping
            new, loss = self._fn(self.params, self.X, self.y, self._lr)
            self.params[:] = new
            value = _float(loss)
        # the loss has been read, so the call has finished: its outputs are ready together (one
        # execution, one completion event), and there is nothing left for ``synchronize`` to wait for
        self.backend._last = None
        return value

    @_scoped
    def run(self, epochs, callback=None) -> np.ndarray:
        if callback is not None:
            return super().run(epochs, callback)
        epochs = v.check_epochs(epochs)
        fn = _compiled(self.activation, self.grad_reduction)["train_scan_donated"]
        new, hist = fn(list(self.params), self.X, self.y, self._lr, epochs)
        self.params[:] = self.backend._done(new)
        return self.backend.finish(np.asarray(hist), self.params, self.lr)


def _device_name(dev) -> str:
    if dev.platform == "cpu":
        return "cpu"
    return f"cuda:{dev.id} ({dev.device_kind})"
