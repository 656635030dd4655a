"""The Backend contract: the plumbing every backend shares, and the default training loop.

A backend subclasses ``Backend``, declares its facts as class attributes
(``requires``, ``package``, ``gpu``, ``prior_rank``, ``install_hint``,
``strategies``) and writes the math as ``_forward`` / ``_backward`` /
``_sgd_update`` / ``_loss`` (optionally a fused ``_step`` / ``_train``). The
public methods validate their arguments once and then call those; a backend
adds its own array checks in ``check_inputs``.

Output heads: a backend lists the heads its math implements in ``outputs``
(default ``("sigmoid",)``); the public methods raise ``ValueError`` for any
other head before a kernel runs. The private methods get ``output=...`` as a
keyword only for a head other than ``"sigmoid"``, so a sigmoid-only backend's
signatures need not know about heads at all.

Mini-batches: ``train(..., batch_size=N_b)`` runs the generic loop
``_train_batches`` (one ``_step`` per batch of rows gathered by ``_gather``);
``batch_size=None`` is full batch and runs ``_train`` exactly as before. A
backend may override ``_train_batches`` with a fused version that matches it.

Every training path runs its epochs through ``_epoch_loop`` (``epochs.py``: the
divergence check and the callback) and returns through ``finish``.
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from ..core import validation as v
from ..core.params import init_params, map_params
from .epochs import epoch_loop, epoch_orders


class BackendUnavailable(ImportError, RuntimeError):
    """The backend exists but cannot run here (missing package, no GPU, ...)."""


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


def importable(module: str) -> bool:
    """Whether ``module`` can be found without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def check_callback(callback) -> None:
    """TypeError unless ``callback`` is callable or None."""
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")


def head(output) -> dict:
    """The keyword a backend's private math gets for ``output``: none for the default sigmoid head."""
    return {} if output == "sigmoid" else {"output": output}


def parse_device(device, kinds=("cpu", "cuda")) -> tuple[str, int | None]:
    """``(kind, index or None)`` of a device string ``"kind"`` or ``"kind:N"``; TypeError / ValueError otherwise."""
    if not isinstance(device, str):
        raise TypeError(f"device must be a string like 'cpu' or 'cuda'; got {type(device).__name__}")
    kind, colon, index = device.partition(":")
    if kind not in kinds or (colon and not index.isdigit()):
        raise ValueError(f"device must be {', '.join(map(repr, kinds))} or 'cuda:N'; got {device!r}")
    return kind, int(index) if colon else None


class Backend:
    """One way to run the MLP's math.

    Params are ``[(W, b), ...]`` of this backend's arrays; grads have the same
    structure. ``train`` updates params in place and returns the loss per
    epoch as a float64 NumPy array.
    """

    name = "base"
    device = "cpu"
    #: import names this backend needs; ``availability()`` checks them without importing them
    requires: tuple = ("numpy",)
    #: the distribution whose version ``available_backends()`` reports (default: ``requires[0]``)
    package = None
    #: said after the missing packages, e.g. why a second package is needed
    requires_note = ""
    #: runs on a GPU: ``auto`` tries it first on big fits; tests fail instead of skipping under MLPBENCH_REQUIRE_GPU=1
    gpu = False
    #: ``auto``'s calibration order (lower first): 0 fused kernels, 1 the reference, 2 library peers, 3 the rest
    prior_rank = 3
    install_hint = ""
    #: named variants (``name[strategy]``); ``auto`` times each one that ``strategy_applies``
    strategies: tuple = ()
    #: the output heads this backend's math implements (``core.validation.OUTPUTS`` names); others raise ValueError
    outputs: tuple = ("sigmoid",)

    def __init__(self, **options):
        if options:
            raise TypeError(f"backend {self.name!r} takes no options; got {sorted(options)}")

    def __repr__(self):
        return f"<{type(self).__name__} name={self.name!r} device={self.device!r}>"

    # ------------------------------------------------------------ facts
    @classmethod
    def distribution(cls) -> str:
        return cls.package or cls.requires[0]

    @classmethod
    def availability(cls) -> tuple[bool, str]:
        """``(True, "")`` or ``(False, reason)``; cheap and never raises (built on ``requires``)."""
        missing = [m for m in cls.requires if not importable(m)]
        if not missing:
            return True, ""
        verb = "is not installed" if len(missing) == 1 else "not installed"
        return False, f"{' and '.join(missing)} {verb}" + (f" {cls.requires_note}" if cls.requires_note else "")

    @classmethod
    def unavailable(cls, reason) -> BackendUnavailable:
        """The error for ``get_backend`` (or a constructor) when this backend cannot run here."""
        hint = f"; install with: {cls.install_hint}" if cls.install_hint else ""
        return BackendUnavailable(f"backend {cls.name!r} is unavailable: {reason}{hint}")

    @classmethod
    def strategy_applies(cls, strategy, n_samples, layer_sizes, dtype) -> bool:
        """For ``auto``: whether ``strategy`` is worth timing at this size (default: always)."""
        return True

    @classmethod
    def compile_seconds(cls) -> float:
        """Seconds this process spent compiling kernels that an on-disk cache spares a later process (default 0)."""
        return 0.0

    def describe(self) -> dict:
        """Row fields for ``available_backends()`` and results: at least ``device`` and ``threads``."""
        return {"device": self.device, "threads": getattr(self, "threads", None)}

    # ------------------------------------------------------------ plumbing
    def asarray(self, a):
        return np.ascontiguousarray(a)

    def to_numpy(self, a) -> np.ndarray:
        return np.asarray(a)

    def synchronize(self) -> None:
        """Wait for queued (or lazily evaluated) work; a no-op on the CPU. Every timing calls it."""

    def params_from_numpy(self, params):
        """Backend-owned copies of NumPy params (the user's arrays are never touched)."""
        return map_params(lambda a: self.asarray(np.array(a, copy=True, order="C")), params)

    def params_to_numpy(self, params):
        return map_params(lambda a: np.array(self.to_numpy(a), copy=True, order="C"), params)

    def check_inputs(self, params, X, y=None):
        """``(X, y)`` ready for the math; a backend raises TypeError / ValueError here on arrays it cannot use."""
        return X, y

    def check_output(self, output) -> str:
        """``output`` if it is a head this backend implements; ValueError naming the backend otherwise."""
        output = v.check_output(output)
        if output not in self.outputs:
            raise ValueError(f"backend {self.name!r} does not support output={output!r}; it supports "
                             f"{', '.join(map(repr, self.outputs))}")
        return output

    def _check_options(self, activation, grad_reduction, output=None) -> tuple:
        """``(activation, grad_reduction, output)`` checked in that order (``output`` None: not checked)."""
        return (v.check_activation(activation), v.check_grad_reduction(grad_reduction),
                None if output is None else self.check_output(output))

    def check_cache(self, params, cache):
        """The forward pass's activations ready for ``_backward``."""
        return cache

    def warmup(self, layer_sizes, n_samples=4, dtype="float64", activation="relu") -> float:
        """Compile / load kernels and create contexts for this shape; return the seconds it took.

        Runs ``train`` and ``step`` once; benchmarks call it before timing so
        that JIT compilation and GPU context creation are reported apart.
        """
        t0 = time.perf_counter()
        rng = np.random.RandomState(0)
        params = self.params_from_numpy(init_params(layer_sizes, 0, dtype))
        X = self.asarray(rng.rand(n_samples, layer_sizes[0]).astype(dtype))
        y = self.asarray((rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype))
        self.train(params, X, y, lr=1e-3, epochs=2, activation=activation)
        self.step(params, X, y, lr=1e-3, activation=activation)
        self.synchronize()
        return time.perf_counter() - t0

    # ------------------------------------------------------------ the public math: validate once, then run
    def forward(self, params, X, *, activation="relu", output="sigmoid"):
        """Return ``(y_hat, cache)``; the cache is whatever ``backward`` needs.

        ``y_hat`` is the sigmoid output, or log-probabilities for ``output="softmax"``.
        """
        activation, _, output = self._check_options(activation, "sum", output)
        X, _ = self.check_inputs(params, X)
        return self._forward(params, X, activation, **head(output))

    def backward(self, params, cache, X, y, *, activation="relu", grad_reduction="sum", output="sigmoid"):
        """Return grads ``[(dW, db), ...]`` for the forward pass that made ``cache``."""
        activation, grad_reduction, output = self._check_options(activation, grad_reduction, output)
        cache = self.check_cache(params, cache)
        X, y = self.check_inputs(params, X, y)
        return self._backward(params, cache, X, y, activation, grad_reduction, **head(output))

    def sgd_update(self, params, grads, lr) -> None:
        """``p -= lr * g`` in place for every parameter."""
        self._sgd_update(params, grads, v.check_lr(lr))

    def loss(self, y, y_hat, *, output="sigmoid") -> float:
        """Mean binary cross-entropy, or mean categorical cross-entropy for ``output="softmax"``."""
        return self._loss(y, y_hat, **head(self.check_output(output)))

    def step(self, params, X, y, *, lr, activation="relu", grad_reduction="sum", output="sigmoid") -> float:
        """One epoch of full-batch gradient descent; returns the loss before the update."""
        lr = v.check_lr(lr)
        activation, grad_reduction, output = self._check_options(activation, grad_reduction, output)
        X, y = self.check_inputs(params, X, y)
        return self._step(params, X, y, lr, activation, grad_reduction, **head(output))

    def train(self, params, X, y, *, lr, epochs, activation="relu", grad_reduction="sum", callback=None,
              output="sigmoid", batch_size=None, shuffle=True, shuffle_seed=None):
        """The lab's loop: forward, loss, backward, update, per epoch (full batch when ``batch_size`` is None).

        With an int ``batch_size``, one update per batch of rows, the last partial
        batch included; each epoch's row order comes from ``epoch_orders(N, shuffle,
        shuffle_seed)``. The history is one loss per epoch: the mean over that
        epoch's batches of each batch's loss before its update.
        ``callback(epoch, loss)`` is called after each epoch (1-based). Raises
        ``TrainingDiverged`` at the first non-finite loss, or when the final
        params are non-finite.
        """
        lr = v.check_lr(lr)
        epochs = v.check_epochs(epochs)
        activation, grad_reduction, output = self._check_options(activation, grad_reduction, output)
        batch_size = v.check_batch_size(batch_size)
        shuffle = v.check_shuffle(shuffle)
        shuffle_seed = v.check_seed(shuffle_seed, "shuffle_seed")
        check_callback(callback)
        X, y = self.check_inputs(params, X, y)
        if batch_size is None:
            return self._train(params, X, y, lr, epochs, activation, grad_reduction, callback, **head(output))
        orders = epoch_orders(X.shape[0], shuffle, shuffle_seed)
        return self._train_batches(params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size,
                                   orders, **head(output))

    def prepare(self, params, X, y, *, lr, activation="relu", grad_reduction="sum") -> "Prepared":
        """A fit's arguments checked once: the handle's ``.step()`` / ``.run(epochs)`` skip per-call checks.

        ``params``, ``X`` and ``y`` are this backend's arrays (``params_from_numpy``,
        ``asarray``); the handle updates ``params`` in place, as ``step`` and
        ``train`` do. ``fit``, the benchmarks and ``auto`` time this path. A
        backend specialises it in ``_prepare`` (buffers, packed kernel
        arguments, a compiled step) and returns a ``Prepared`` subclass.
        """
        lr = v.check_lr(lr)
        activation, grad_reduction, _ = self._check_options(activation, grad_reduction)
        X, y = self.check_inputs(params, X, y)
        return self._prepare(params, X, y, lr, activation, grad_reduction)

    # ------------------------------------------------------------ what a backend writes (arguments already checked)
    def _forward(self, params, X, activation):
        raise NotImplementedError

    def _backward(self, params, cache, X, y, activation, grad_reduction):
        raise NotImplementedError

    def _sgd_update(self, params, grads, lr) -> None:
        raise NotImplementedError

    def _loss(self, y, y_hat) -> float:
        raise NotImplementedError

    def _step(self, params, X, y, lr, activation, grad_reduction, **head) -> float:
        y_hat, cache = self._forward(params, X, activation, **head)
        loss = self._loss(y, y_hat, **head)
        grads = self._backward(params, cache, X, y, activation, grad_reduction, **head)
        self._sgd_update(params, grads, lr)
        return loss

    def _prepare(self, params, X, y, lr, activation, grad_reduction) -> "Prepared":
        return Prepared(self, params, X, y, lr, activation, grad_reduction)

    def _gather(self, a, order):
        """Rows ``order`` (a NumPy int array) of backend array ``a``, as a new contiguous array."""
        return a[self.asarray(order)]

    def _train_batches(self, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders,
                       **head):
        """Mini-batch SGD: per epoch, rows in ``next(orders)``, one ``_step`` per ``batch_size`` rows."""
        starts = range(0, X.shape[0], batch_size)

        def epoch(done, out):
            order = next(orders)
            Xe, ye = self._gather(X, order), self._gather(y, order)
            losses = [self._step(params, Xe[s:s + batch_size], ye[s:s + batch_size], lr, activation,
                                 grad_reduction, **head) for s in starts]
            out[0] = sum(losses) / len(losses)  # in batch order, as a fused loop adds them
            return 1

        return self.finish(self._epoch_loop(epochs, epoch, callback), params, lr)

    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, **head):
        def epoch(done, out):
            out[0] = self._step(params, X, y, lr, activation, grad_reduction, **head)
            return 1

        return self.finish(self._epoch_loop(epochs, epoch, callback), params, lr)

    #: the epoch loop of every training path (``epochs.epoch_loop``)
    _epoch_loop = staticmethod(epoch_loop)

    # ------------------------------------------------------------ after training
    def params_finite(self, params) -> bool:
        return all(bool(np.isfinite(self.to_numpy(a)).all()) for pair in params for a in pair)

    def finish(self, history, params, lr, params_finite=None):
        """The divergence check after training: ``history`` as float64, or ``TrainingDiverged``.

        Raises at the first non-finite loss, else when the params are not all
        finite (``params_finite`` when the backend already knows, else checked here).
        """
        history = np.asarray(history, dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(history))
        if bad.size:
            epoch = int(bad[0]) + 1
            raise TrainingDiverged(epoch, history[:epoch].copy(), lr)
        if not (self.params_finite(params) if params_finite is None else params_finite):
            raise TrainingDiverged(len(history), history, lr)
        return history


class Prepared:
    """One fit's checked arguments bound to a backend: ``step()`` returns the loss, ``run(epochs)`` the history.

    The default calls the backend's ``_step`` / ``_train`` directly (no
    validation per call); backends return subclasses that also keep buffers
    and packed kernel arguments.
    """

    def __init__(self, backend, params, X, y, lr, activation, grad_reduction):
        self.backend, self.params, self.X, self.y = backend, params, X, y
        self.lr, self.activation, self.grad_reduction = lr, activation, grad_reduction

    def __repr__(self):
        return f"<{type(self).__name__} of {self.backend!r}>"

    def step(self) -> float:
        """One full-batch update; the loss before it."""
        return self.backend._step(self.params, self.X, self.y, self.lr, self.activation, self.grad_reduction)

    def run(self, epochs, callback=None) -> np.ndarray:
        """``epochs`` updates; the loss per epoch (float64), ``TrainingDiverged`` as ``train`` raises it."""
        epochs = v.check_epochs(epochs)
        check_callback(callback)
        return self.backend._train(self.params, self.X, self.y, self.lr, epochs, self.activation,
                                   self.grad_reduction, callback)
