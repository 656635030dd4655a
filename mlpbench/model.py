"""``MLP``: the user-facing model on top of params, the backends and ``auto``."""

from __future__ import annotations

import logging
import os
import tempfile
import warnings

import numpy as np

from . import validation as v
from .backends import TrainingDiverged, get_backend
from .kernels import reference as ref
from .params import copy_params, init_params, n_params

log = logging.getLogger("mlpbench.auto")


class MLP:
    """A fully connected net: hidden ``activation`` layers, a sigmoid output, BCE loss, full-batch SGD.

    >>> from mlpbench import MLP, datasets
    >>> X, y = datasets.load("and")
    >>> history = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=5000)
    """

    def __init__(self, layer_sizes=(2, 4, 1), activation="relu", dtype="float64", seed=42):
        self.layer_sizes = v.check_layer_sizes(layer_sizes)
        self.activation = v.check_activation(activation)
        self.dtype = v.check_dtype(dtype)
        if seed is not None and not v._is_int(seed):
            raise TypeError(f"seed must be an int or None; got {type(seed).__name__}")
        self.seed = seed
        self._params = init_params(self.layer_sizes, seed, self.dtype)
        self.history_ = None
        self.backend_ = None
        self.backend_reason_ = None

    def __repr__(self):
        return (
            f"MLP({self.layer_sizes}, activation={self.activation!r}, dtype={self.dtype.name!r}, "
            f"seed={self.seed}, params={n_params(self.layer_sizes)})"
        )

    @property
    def params(self):
        """``[(W, b), ...]`` as NumPy arrays (copies: editing them does not change the model)."""
        return copy_params(self._params)

    @params.setter
    def params(self, params):
        self._params = _checked_params(params, self.layer_sizes, self.dtype)

    # ------------------------------------------------------------ training
    def fit(self, X, y, lr=0.1, epochs=5000, backend=None, grad_reduction="sum", callback=None):
        """Train in full batch for ``epochs`` epochs (continuing from the current params).

        ``backend``: a name from ``available_backends()``, ``"auto"``, or ``None``
        for ``$MLPBENCH_BACKEND`` (default ``"numpy"``). ``callback(epoch, loss)``
        runs after every epoch. Returns the loss per epoch (float64). Raises
        ``TrainingDiverged`` on a non-finite loss; the params are then left as
        they were before the call.
        """
        lr = v.check_lr(lr)
        epochs = v.check_epochs(epochs)
        grad_reduction = v.check_grad_reduction(grad_reduction)
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None; got {type(callback).__name__}")
        X = v.check_X(X, self.layer_sizes[0], self.dtype)
        y = v.check_y(y, X.shape[0], self.layer_sizes[-1], self.dtype)
        kwargs = dict(lr=lr, epochs=epochs, activation=self.activation, grad_reduction=grad_reduction,
                      callback=callback)
        if backend is None:
            backend = os.environ.get("MLPBENCH_BACKEND", "numpy")
        if backend != "auto":
            be = get_backend(backend)
            history = self._train_on(be, X, y, kwargs)
            self.backend_, self.backend_reason_ = be.name, "requested"
            return history
        return self._fit_auto(X, y, kwargs)

    def _train_on(self, be, X, y, kwargs):
        """Train a backend-owned copy of the params; adopt it only when training succeeds."""
        bparams = be.params_from_numpy(self._params)
        history = be.train(bparams, be.asarray(X), be.asarray(y), **kwargs)
        self._params = be.params_to_numpy(bparams)
        self.history_ = history
        return history

    def _fit_auto(self, X, y, kwargs):
        """Train on the fastest validated candidate; fall back down the ranking if one fails at run time."""
        from .auto import choose

        decision = choose(X.shape[0], self.layer_sizes, self.dtype, self.activation)
        if not decision.ranking:
            raise RuntimeError(f"backend='auto' found no usable backend: {decision.rejected}")
        failures = []
        for cand in decision.ranking:
            try:
                history = self._train_on(cand.make(), X, y, kwargs)
            except (TrainingDiverged, ValueError, TypeError, KeyboardInterrupt):
                raise  # the problem is the fit, not the backend
            except Exception as exc:  # out of memory, CUDA errors, ...
                failures.append(f"{cand.label} failed ({type(exc).__name__}: {exc})")
                warnings.warn(f"backend {cand.label} failed at run time ({type(exc).__name__}: {exc}); "
                              "falling back to the next candidate", RuntimeWarning, stacklevel=3)
                continue
            reason = decision.reason if not failures else f"{cand.label}: fallback after " + "; ".join(failures)
            self.backend_, self.backend_reason_ = cand.label, reason
            log.info("fit on %s", reason)
            return history
        raise RuntimeError("backend='auto': every candidate failed: " + "; ".join(failures))

    # ------------------------------------------------------------ inference
    def predict_proba(self, X):
        """Sigmoid outputs, shape ``(N, n_out)``, computed by the NumPy reference."""
        X = v.check_X(X, self.layer_sizes[0], self.dtype)
        y_hat, _ = ref.forward(np, self._params, X, self.activation)
        return y_hat

    def predict(self, X, threshold=0.5):
        """Labels ``(predict_proba(X) >= threshold)`` as ints, the lab's rule."""
        if not isinstance(threshold, (int, float, np.floating)) or not 0 <= threshold <= 1:
            raise ValueError(f"threshold must be a number in [0, 1]; got {threshold!r}")
        return (self.predict_proba(X) >= threshold).astype(int)

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Write the model to ``path`` (``.npz``) atomically."""
        path = os.fspath(path)
        arrays = {"layer_sizes": np.array(self.layer_sizes), "activation": np.array(self.activation),
                  "dtype": np.array(self.dtype.name), "seed": np.array(-1 if self.seed is None else self.seed)}
        for i, (W, b) in enumerate(self._params):
            arrays[f"W{i}"], arrays[f"b{i}"] = W, b
        directory = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".mlpbench-", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``; shapes and dtypes are checked."""
        try:
            with np.load(os.fspath(path), allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
        except (OSError, ValueError) as exc:
            raise ValueError(f"could not read model file {path!r}: {exc}") from None
        for key in ("layer_sizes", "activation", "dtype", "seed"):
            if key not in data:
                raise ValueError(f"{path!r} is not an mlpbench model file (no {key!r})")
        seed = int(data["seed"])
        model = cls(data["layer_sizes"].tolist(), str(data["activation"]), str(data["dtype"]), None if seed < 0 else seed)
        n = len(model.layer_sizes) - 1
        try:
            params = [(data[f"W{i}"], data[f"b{i}"]) for i in range(n)]
        except KeyError as exc:
            raise ValueError(f"{path!r} is missing parameter {exc}") from None
        model._params = _checked_params(params, model.layer_sizes, model.dtype)
        return model


def _checked_params(params, layer_sizes, dtype):
    params = list(params)
    if len(params) != len(layer_sizes) - 1:
        raise ValueError(f"params must have {len(layer_sizes) - 1} layers; got {len(params)}")
    out = []
    for i, ((W, b), fan_in, fan_out) in enumerate(zip(params, layer_sizes[:-1], layer_sizes[1:])):
        W, b = np.asarray(W), np.asarray(b)
        if W.shape != (fan_in, fan_out) or b.shape != (1, fan_out):
            raise ValueError(f"layer {i}: expected W {(fan_in, fan_out)} and b {(1, fan_out)}; got {W.shape} and {b.shape}")
        if W.dtype != dtype or b.dtype != dtype:
            raise ValueError(f"layer {i}: expected dtype {dtype.name}; got {W.dtype} and {b.dtype}")
        if not (np.isfinite(W).all() and np.isfinite(b).all()):
            raise ValueError(f"layer {i}: params contain NaN or inf")
        out.append((W.copy(order="C"), b.copy(order="C")))
    return out
