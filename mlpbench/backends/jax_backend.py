"""JAX peer: the reference math with manual gradients (no ``jax.grad``), jitted.

Constructing ``JaxBackend`` turns on ``jax_enable_x64``: float64 needs it, and it
is a process-wide JAX setting (other JAX code in the process then sees 64-bit
defaults too). Matmuls ask for ``Precision.HIGHEST`` (no TF32/bf16 passes on GPU).

JAX arrays are immutable, so "in place" means the params list itself: its
``(W, b)`` entries are replaced (``params[i] = (W_new, b_new)``). ``train`` runs
the epochs inside compiled ``lax.fori_loop`` calls of ``CHUNK`` epochs each
(one call for up to ``CHUNK`` epochs): the compiled code does not depend on
``epochs``, so ``warmup`` compiles exactly what a timed ``train`` runs.
"""

from __future__ import annotations

import functools
import importlib.util

import numpy as np

from ..kernels.reference import bce_eps, sigmoid_floor
from .base import Backend, TrainingDiverged

#: epochs per compiled training call (the loss buffer's length)
CHUNK = 8192


@functools.lru_cache(maxsize=None)
def _jax():
    import jax

    return jax


def _math(jnp, activation, grad_reduction):
    """The reference's forward / loss / backward / step on ``jnp`` (traced, not yet jitted)."""
    from jax import lax

    def mm(a, b):
        return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)

    def sigmoid(z):
        return 1 / (1 + jnp.exp(-jnp.maximum(z, sigmoid_floor(z.dtype.name))))

    act = {"relu": lambda z: jnp.maximum(0, z), "tanh": jnp.tanh, "sigmoid": sigmoid}[activation]
    deriv = {
        "relu": lambda da, a: da * (a > 0),
        "tanh": lambda da, a: da * (1 - a * a),
        "sigmoid": lambda da, a: da * (a * (1 - a)),
    }[activation]

    def forward(params, X):
        acts, a, last = [], X, len(params) - 1
        for i, (W, b) in enumerate(params):
            a = (sigmoid if i == last else act)(mm(a, W) + b)
            acts.append(a)
        return acts  # [a1, ..., y_hat]; X is not repeated

    def loss(y, y_hat):
        eps = bce_eps(y_hat.dtype.name)
        p = jnp.clip(y_hat, eps, 1 - eps)
        return -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))

    def backward(params, acts, y):  # acts = [X, a1, ..., y_hat]
        dz = acts[-1] - y
        if grad_reduction == "mean":
            dz = dz / y.shape[0]
        grads = [None] * len(params)
        for i in range(len(params) - 1, -1, -1):
            grads[i] = (mm(acts[i].T, dz), jnp.sum(dz, axis=0, keepdims=True))
            if i > 0:
                dz = deriv(mm(dz, params[i][0].T), acts[i])
        return grads

    def update(params, grads, lr):
        lr_ = lr.astype(params[0][0].dtype)  # the reference's weak Python-float lr: rounded to the dtype
        return [(W - lr_ * dW, b - lr_ * db) for (W, b), (dW, db) in zip(params, grads)]

    def step(params, X, y, lr):
        acts = forward(params, X)
        grads = backward(params, [X] + acts, y)
        return update(params, grads, lr), loss(y, acts[-1])

    return forward, loss, backward, update, step


@functools.lru_cache(maxsize=None)
def _compiled(activation, grad_reduction):
    """Jitted functions for one (activation, grad_reduction); jax.jit caches per shapes and dtype."""
    jax = _jax()
    jnp, lax = jax.numpy, jax.lax
    forward, loss, backward, update, step = _math(jnp, activation, grad_reduction)

    def train_chunk(params, X, y, lr, n):
        hist = jnp.full(CHUNK, jnp.nan, dtype=X.dtype)

        def body(epoch, carry):
            params, hist = carry
            params, value = step(params, X, y, lr)
            return params, hist.at[epoch].set(value)

        return lax.fori_loop(0, n, body, (params, hist))

    return {
        "forward": jax.jit(forward),
        "loss": jax.jit(loss),
        "backward": jax.jit(backward),
        "update": jax.jit(update),
        "train_chunk": jax.jit(train_chunk),
    }


class JaxBackend(Backend):
    """JAX arrays on ``device`` ("cpu", "cuda"/"gpu", "cuda:N"; default: JAX's default device)."""

    name = "jax"
    device = "cpu"
    package = "jax"

    def __init__(self, device=None):
        jax = _jax()
        if device is not None and not isinstance(device, str):
            raise TypeError(f"device must be a string like 'cpu' or 'cuda'; got {type(device).__name__}")
        kind, _, index = (device or "").partition(":")
        if device is not None and (kind not in ("cpu", "cuda", "gpu") or (index and not index.isdigit())):
            raise ValueError(f"device must be 'cpu', 'cuda', 'gpu' or 'cuda:N'; got {device!r}")
        jax.config.update("jax_enable_x64", True)  # process-wide: float64 needs it
        try:
            devices = jax.devices("gpu" if kind in ("cuda", "gpu") else kind or None)
        except RuntimeError as exc:
            from . import BackendUnavailable

            raise BackendUnavailable(f"device={device!r}: {exc}") from None
        if int(index or 0) >= len(devices):
            raise ValueError(f"device {device!r}: only {len(devices)} {kind} device(s)")
        self._dev = devices[int(index or 0)]
        self.device = _device_name(self._dev)
        self.describe = self._describe  # the instance reports its own device
        self._last = None

    @classmethod
    def availability(cls):
        missing = [m for m in ("jax", "jaxlib") if importlib.util.find_spec(m) is None]
        if missing:
            return False, f"{' and '.join(missing)} not installed"
        return True, ""

    @classmethod
    def describe(cls) -> dict:
        return {"device": _device_name(_jax().devices()[0]), "threads": None}

    def _describe(self) -> dict:
        return {"device": self.device, "threads": None}

    def _done(self, result):
        self._last = result
        return result

    # ------------------------------------------------------------ plumbing
    def asarray(self, a):
        return self._done(_jax().device_put(np.array(a, copy=True, order="C"), self._dev))

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        """Block until the last result this backend produced is computed (JAX dispatch is async)."""
        if self._last is not None:
            _jax().block_until_ready(self._last)

    # ------------------------------------------------------------ the math
    def forward(self, params, X, *, activation="relu"):
        acts = self._done(_compiled(activation, "sum")["forward"](params, X))
        return acts[-1], [X] + list(acts)

    def backward(self, params, cache, X, y, *, activation="relu", grad_reduction="sum"):
        return self._done(_compiled(activation, grad_reduction)["backward"](params, list(cache), y))

    def sgd_update(self, params, grads, lr) -> None:
        new = _compiled("relu", "sum")["update"](params, grads, np.float64(lr))
        params[:] = self._done(new)

    def loss(self, y, y_hat) -> float:
        return float(_compiled("relu", "sum")["loss"](y, y_hat))

    def step(self, params, X, y, *, lr, activation="relu", grad_reduction="sum") -> float:
        # one epoch of the compiled training loop: one compilation serves step, warmup and train
        new, hist = _compiled(activation, grad_reduction)["train_chunk"](params, X, y, np.float64(lr), np.int32(1))
        params[:] = self._done(new)
        return float(np.asarray(hist)[0])

    def train(self, params, X, y, *, lr, epochs, activation="relu", grad_reduction="sum", callback=None):
        """All epochs in compiled ``fori_loop`` chunks; losses copied back once, divergence checked after."""
        if callback is not None:  # a per-epoch callback needs each loss on the host anyway
            return super().train(params, X, y, lr=lr, epochs=epochs, activation=activation,
                                 grad_reduction=grad_reduction, callback=callback)
        fn = _compiled(activation, grad_reduction)["train_chunk"]
        current, chunks, lr_ = list(params), [], np.float64(lr)
        for start in range(0, epochs, CHUNK):
            n = min(CHUNK, epochs - start)
            current, hist = fn(current, X, y, lr_, np.int32(n))
            chunks.append((hist, n))
        params[:] = self._done(current)
        history = np.concatenate([np.asarray(h)[:n] for h, n in chunks] + [np.empty(0)]).astype(np.float64)
        bad = np.flatnonzero(~np.isfinite(history))
        if bad.size:
            raise TrainingDiverged(int(bad[0]) + 1, history[: bad[0] + 1], lr)
        self.check_finite(params, history, lr)
        return history


def _device_name(dev) -> str:
    if dev.platform == "cpu":
        return "cpu"
    return f"cuda:{dev.id} ({dev.device_kind})"
