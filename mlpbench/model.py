"""``MLP``: the user-facing model on top of params, the backends and ``auto``."""

from __future__ import annotations

import logging
import warnings

import numpy as np

from .core import validation as v
from .core import memory
from .backends import TrainingDiverged, backend_from_env, get_backend
from .kernels import reference as ref
from .core.params import copy_params, init_params, n_params

log = logging.getLogger("mlpbench.auto.choose")


class MLP:
    """A fully connected net: hidden ``activation`` layers and an output head, trained by (mini-batch) SGD.

    ``output="sigmoid"`` (the lab): one sigmoid per output unit, mean binary
    cross-entropy. ``output="softmax"``: ``layer_sizes[-1]`` classes, mean
    categorical cross-entropy; labels are ints ``(N,)`` or one-hot ``(N, K)``.

    >>> from mlpbench import MLP, datasets
    >>> X, y = datasets.load("and")
    >>> history = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=5000)
    """

    def __init__(self, layer_sizes=(2, 4, 1), activation="relu", dtype="float64", seed=42, output="sigmoid"):
        self.layer_sizes = v.check_layer_sizes(layer_sizes)
        self.activation = v.check_activation(activation)
        self.output = v.check_output(output)
        if self.output == "softmax" and self.layer_sizes[-1] < 2:
            raise ValueError(f"output='softmax' needs at least 2 output units (classes); "
                             f"layer_sizes ends in {self.layer_sizes[-1]}")
        self.dtype = v.check_dtype(dtype)
        self.seed = v.check_seed(seed)
        memory.check_fits(memory.model_bytes(self.layer_sizes, self.dtype),
                          f"a model with layer sizes {self.layer_sizes} ({self.dtype.name})")
        self._params = init_params(self.layer_sizes, seed, self.dtype)
        self.history_ = None
        self.backend_ = None
        self.backend_reason_ = None

    def __repr__(self):
        return (
            f"MLP({self.layer_sizes}, activation={self.activation!r}, dtype={self.dtype.name!r}, "
            f"seed={self.seed}, " + (f"output={self.output!r}, " if self.output != "sigmoid" else "")
            + f"params={n_params(self.layer_sizes)})"
        )

    @property
    def params(self):
        """``[(W, b), ...]`` as NumPy arrays (copies: editing them does not change the model)."""
        return copy_params(self._params)

    @params.setter
    def params(self, params):
        self._params = _checked_params(params, self.layer_sizes, self.dtype)

    # ------------------------------------------------------------ training
    def fit(self, X, y, lr=0.1, epochs=5000, backend=None, grad_reduction="sum", callback=None,
            batch_size=None, shuffle=True, shuffle_seed=None):
        """Train for ``epochs`` epochs (continuing from the current params).

        ``batch_size=None`` is full batch (the lab). An int is mini-batch SGD:
        one update per ``batch_size`` rows, the last partial batch included; with
        ``shuffle`` each epoch's row order is the next ``permutation(N)`` of
        ``np.random.default_rng(shuffle_seed)`` (the model's ``seed`` when None),
        the same on every backend. The history is one loss per epoch: the mean
        over the epoch's batches of each batch's loss before its update.
        ``grad_reduction="mean"`` is recommended for mini-batches.
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
        batch_size = v.check_batch_size(batch_size)
        shuffle = v.check_shuffle(shuffle)
        shuffle_seed = self.seed if shuffle_seed is None else v.check_seed(shuffle_seed, "shuffle_seed")
        X = v.check_X(X, self.layer_sizes[0], self.dtype)
        if self.output == "softmax":
            y = v.check_labels(y, X.shape[0], self.layer_sizes[-1], self.dtype)
        else:
            y = v.check_y(y, X.shape[0], self.layer_sizes[-1], self.dtype)
        memory.check_fits(memory.fit_bytes(X.shape[0], self.layer_sizes, self.dtype, epochs),
                          f"fitting {X.shape[0]} rows on layer sizes {self.layer_sizes} ({self.dtype.name}) for "
                          f"{epochs} epochs")
        kwargs = dict(lr=lr, epochs=epochs, activation=self.activation, grad_reduction=grad_reduction,
                      callback=callback, **self._head_kwargs(batch_size, shuffle, shuffle_seed))
        if backend is None:
            backend = backend_from_env()
        if backend != "auto":
            be = get_backend(backend)
            history = self._train_on(be, X, y, kwargs)
            self.backend_, self.backend_reason_ = be.name, "requested"
            return history
        return self._fit_auto(X, y, kwargs)

    def _head_kwargs(self, batch_size, shuffle, shuffle_seed) -> dict:
        """The head and batching keywords for ``Backend.train`` (none for the lab's full-batch sigmoid)."""
        kw = {} if self.output == "sigmoid" else {"output": self.output}
        if batch_size is not None:
            kw.update(batch_size=batch_size, shuffle=shuffle, shuffle_seed=shuffle_seed)
        return kw

    def _train_on(self, be, X, y, kwargs):
        """Train a backend-owned copy of the params; adopt it only when training succeeds."""
        bparams = be.params_from_numpy(self._params)
        bX, by = be.asarray(X), be.asarray(y)
        if set(kwargs) - {"lr", "epochs", "activation", "grad_reduction", "callback"}:
            # a softmax head or mini-batches: the contract's train (prepared handles are full-batch sigmoid)
            history = be.train(bparams, bX, by, **kwargs)
        else:
            kw = dict(kwargs)
            epochs, callback = kw.pop("epochs"), kw.pop("callback", None)
            history = be.prepare(bparams, bX, by, **kw).run(epochs, callback)
        self._params = be.params_to_numpy(bparams)
        self.history_ = history
        return history

    def _fit_auto(self, X, y, kwargs):
        """Train on the fastest validated candidate; fall back down the ranking if one fails at run time.

        Only the backend's own failures fall back (out of memory, a CUDA error, an exception from its code),
        each restart from the pre-fit params. An exception raised by the user's ``callback`` is the user's:
        it propagates unchanged (the same object) and the callback is not run again.
        """
        from .auto import choose as auto

        # candidates with this head, timed on this fit's epoch (mini-batches of its batch size, its head)
        decision = auto.choose(X.shape[0], self.layer_sizes, self.dtype, self.activation, epochs=kwargs["epochs"],
                          output=self.output, batch_size=kwargs.get("batch_size"))
        if not decision.ranking:
            raise RuntimeError(f"backend='auto' found no usable backend: {decision.rejected}")
        user = kwargs["callback"]
        raised = []  # the exception the user's callback raised, if any

        def callback(epoch, loss):
            try:
                user(epoch, loss)
            except BaseException as exc:
                raised.append(exc)
                raise

        kwargs = dict(kwargs, callback=None if user is None else callback)
        failures = []
        for cand in decision.ranking:
            try:
                history = self._train_on(cand.make(), X, y, kwargs)
            except (TrainingDiverged, ValueError, TypeError):
                raise  # the problem is the fit, not the backend
            except Exception as exc:  # out of memory, CUDA errors, ...
                if raised and exc is raised[-1]:
                    raise  # the user's own exception: never a backend failure
                failures.append(f"{cand.label} failed ({type(exc).__name__}: {exc})")
                warnings.warn(f"backend {cand.label} failed at run time ({type(exc).__name__}: {exc}); "
                              "falling back to the next candidate", RuntimeWarning, stacklevel=3)
                continue
            auto.ran(cand.label)  # loaded: its first call is paid for every later fit of this process
            reason = decision.reason if not failures else f"{cand.label}: fallback after " + "; ".join(failures)
            self.backend_, self.backend_reason_ = cand.label, reason
            log.info("fit on %s", reason)
            return history
        raise RuntimeError("backend='auto': every candidate failed: " + "; ".join(failures))

    # ------------------------------------------------------------ inference
    def predict_proba(self, X):
        """Sigmoid outputs, or class probabilities for softmax; shape ``(N, n_out)``, by the NumPy reference."""
        X = v.check_X(X, self.layer_sizes[0], self.dtype)
        memory.check_fits(2 * X.shape[0] * sum(self.layer_sizes[1:]) * self.dtype.itemsize,
                          f"predicting {X.shape[0]} rows on layer sizes {self.layer_sizes}")
        with np.errstate(under="ignore", over="ignore", invalid="ignore"):
            y_hat, acts = ref.forward(np, self._params, X, self.activation, self.output)
            for i, a in enumerate(acts[1:]):  # an overflowed layer makes every later number wrong: refused
                bad = ~np.isfinite(a).all(axis=1)
                if bad.any():
                    raise ValueError(f"X row {int(np.argmax(bad))} overflows {self.dtype.name} in layer {i} of the "
                                     f"network (a value beyond {np.finfo(self.dtype).max:.3g}); scale the inputs")
            return ref.probabilities(np, y_hat, self.output)

    def predict(self, X, threshold=0.5):
        """Labels ``(predict_proba(X) >= threshold)`` as ints, the lab's rule; for softmax, the class
        indices ``(N,)`` of the largest probability (``threshold`` is not used)."""
        v.check_probability("threshold", threshold)
        if self.output == "softmax":
            return np.argmax(self.predict_proba(X), axis=1)
        return (self.predict_proba(X) >= threshold).astype(int)

    # ------------------------------------------------------------ persistence
    def save(self, path):
        """Write the model to ``path`` (``.npz``) atomically: the old file or the new one, never half of one."""
        from .core import modelfile

        meta = {"layer_sizes": np.array(self.layer_sizes), "activation": np.array(self.activation),
                "dtype": np.array(self.dtype.name), "seed": np.array(-1 if self.seed is None else self.seed),
                "output": np.array(self.output)}
        modelfile.write(path, meta, self._params)

    @classmethod
    def load(cls, path):
        """Read a model written by ``save``. The file is checked (sizes, dtypes, shapes) before anything
        is allocated and only the model's members are read; ``ValueError`` naming the file when it is not one."""
        from .core import modelfile

        meta, params = modelfile.read(path)
        model = cls.__new__(cls)  # no init draws: the params come from the file
        model.layer_sizes, model.activation, model.dtype, model.seed, model.output = (
            meta["layer_sizes"], meta["activation"], meta["dtype"], meta["seed"], meta["output"])
        model.history_ = model.backend_ = model.backend_reason_ = None
        try:
            model._params = _checked_params(params, model.layer_sizes, model.dtype)
        except ValueError as exc:
            raise ValueError(f"{str(path)!r}: {exc}") from None
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
