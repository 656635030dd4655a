"""Argument and array checks shared by every entry point.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError``
(right kind, wrong value) naming the argument, before any kernel runs.
Array checks return new arrays: nothing the user passed is modified.
"""

from __future__ import annotations

import collections.abc
import math
import numbers

import numpy as np

#: the hidden layers' activations (``kernels/reference.py`` implements each)
ACTIVATIONS = ("relu", "tanh", "sigmoid")
#: the float types every backend computes in, and the benchmark sweeps
DTYPES = ("float64", "float32")
#: how a batch's gradient is reduced over its samples
GRAD_REDUCTIONS = ("sum", "mean")
#: the output heads: one sigmoid per output with mean BCE (the lab's), or softmax with cross-entropy
OUTPUTS = ("sigmoid", "softmax")


def _is_int(v) -> bool:
    return isinstance(v, (numbers.Integral, np.integer)) and not isinstance(v, (bool, np.bool_))


def parse_list(text, cast=str) -> list:
    """``"1,64 1024"`` -> ``[cast("1"), cast("64"), cast("1024")]``: commas or spaces between items."""
    return [cast(t) for t in str(text).replace(",", " ").split()]


def check_choice(name, value, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a string, one of {list(choices)}; got {type(value).__name__}")
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}; got {value!r}")
    return value


def check_activation(activation):
    return check_choice("activation", activation, ACTIVATIONS)


def check_grad_reduction(grad_reduction):
    return check_choice("grad_reduction", grad_reduction, GRAD_REDUCTIONS)


def check_output(output):
    return check_choice("output", output, OUTPUTS)


def check_batch_size(batch_size):
    """``None`` (full batch) or an int >= 1."""
    return None if batch_size is None else check_positive_int("batch_size", batch_size)


def check_shuffle(shuffle) -> bool:
    if not isinstance(shuffle, (bool, np.bool_)):
        raise TypeError(f"shuffle must be True or False; got {type(shuffle).__name__} {shuffle!r}")
    return bool(shuffle)


def check_dtype(dtype) -> np.dtype:
    """Accept 'float64' / 'float32', ``np.float32``, ``np.dtype('float32')``; return the ``np.dtype``."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}") from None
    if dt.name not in DTYPES or dtype is None:
        raise ValueError(f"dtype must be one of {list(DTYPES)}; got {dtype!r}")
    if dt != np.dtype(dt.name):  # '>f8': a byte order the kernels do not compute in
        raise ValueError(f"dtype must be one of {list(DTYPES)} in native byte order; got {dtype!r}")
    return np.dtype(dt.name)


def check_layer_sizes(layer_sizes):
    """A sequence of at least two positive ints: ``[n_in, h1, ..., n_out]``."""
    if isinstance(layer_sizes, (str, bytes)) or not isinstance(layer_sizes, (collections.abc.Sequence, np.ndarray)):
        raise TypeError(f"layer_sizes must be a sequence of ints like [2, 4, 1]; got {layer_sizes!r}")
    sizes = list(layer_sizes)
    if len(sizes) < 2:
        raise ValueError(f"layer_sizes needs at least an input and an output size; got {sizes}")
    return [check_positive_int(f"layer_sizes[{i}]", s, f" in {sizes}") for i, s in enumerate(sizes)]


def check_lr(lr) -> float:
    if not isinstance(lr, (numbers.Real, np.floating, np.integer)) or isinstance(lr, (bool, np.bool_)):
        raise TypeError(f"lr must be a real number; got {type(lr).__name__}")
    lr = float(lr)
    if not math.isfinite(lr) or lr <= 0:
        raise ValueError(f"lr must be finite and > 0; got {lr}")
    return lr


def _is_real(v) -> bool:
    return isinstance(v, (numbers.Real, np.integer, np.floating)) and not isinstance(v, (bool, np.bool_))


def check_probability(name, value) -> float:
    """A real number (not a bool) in [0, 1]."""
    if not _is_real(value):
        raise TypeError(f"{name} must be a real number in [0, 1]; got {type(value).__name__} {value!r}")
    if not 0 <= value <= 1:  # NaN fails too
        raise ValueError(f"{name} must be a number in [0, 1]; got {value!r}")
    return float(value)


SEED_MAX = 2**32 - 1


def check_seed(seed, name="seed"):
    """``None`` or an int in [0, 2**32 - 1] (what ``np.random.RandomState`` takes)."""
    if seed is None:
        return None
    if not _is_int(seed):
        raise TypeError(f"{name} must be an int or None; got {type(seed).__name__} {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"{name} must be an int in [0, 2**32 - 1]; got {seed}")
    return int(seed)


def check_positive_int(name, value, where="") -> int:
    """An int >= 1 (not a bool); ``where`` ends the message (e.g. the list ``value`` came from)."""
    if not _is_int(value):
        raise TypeError(f"{name} must be an int; got {type(value).__name__} {value!r}{where}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1; got {value}{where}")
    return int(value)


def check_epochs(epochs) -> int:
    return check_positive_int("epochs", epochs)


def _numeric_array(name, a) -> np.ndarray:
    try:
        arr = np.asarray(a)
    except Exception as exc:  # ragged lists and the like
        raise ValueError(f"{name} could not be read as an array: {exc}") from None
    if arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float); got dtype {arr.dtype}"
            + (" (convert booleans with .astype(float))" if arr.dtype.kind == "b" else "")
        )
    return arr


def _check_finite(name, arr):
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise ValueError(f"{name} contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def check_X(X, n_features=None, dtype="float64", name="X") -> np.ndarray:
    """A finite, non-empty 2-D ``(N, n_features)`` array; returned as a new C-contiguous ``dtype`` array."""
    arr = _numeric_array(name, X)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features); got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must be non-empty; got shape {arr.shape}")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name} has {arr.shape[1]} features but the model expects {n_features} (layer_sizes[0])")
    _check_finite(name, arr)
    with np.errstate(over="ignore"):
        out = np.array(arr, dtype=dtype, order="C", copy=True)
    if not np.isfinite(out).all():
        raise ValueError(f"{name} overflows {np.dtype(dtype).name}")
    return out


def check_y(y, n_samples, n_outputs=1, dtype="float64", name="y") -> np.ndarray:
    """Targets in [0, 1] of shape ``(N, n_outputs)`` (or ``(N,)`` when ``n_outputs == 1``)."""
    arr = _numeric_array(name, y)
    if arr.ndim == 1 and n_outputs == 1:
        arr = arr.reshape(-1, 1)
    if arr.ndim != 2 or arr.shape[1] != n_outputs:
        expected = f"({n_samples}, {n_outputs})" + (f" or ({n_samples},)" if n_outputs == 1 else "")
        raise ValueError(f"{name} must have shape {expected}; got {np.shape(y)}")
    if arr.shape[0] != n_samples:
        raise ValueError(f"{name} has {arr.shape[0]} samples but X has {n_samples}")
    _check_finite(name, arr)
    if arr.size and (arr.min() < 0 or arr.max() > 1):
        raise ValueError(f"{name} must lie in [0, 1] (binary cross-entropy targets); got range [{arr.min()}, {arr.max()}]")
    return np.array(arr, dtype=dtype, order="C", copy=True)


def check_labels(y, n_samples, n_classes, dtype="float64", name="y") -> np.ndarray:
    """Class labels as one-hot ``(N, K)`` targets: ints ``(N,)`` in ``[0, K)``, or one-hot ``(N, K)``."""
    arr = _numeric_array(name, y)
    if arr.ndim == 0 or arr.shape[0] != n_samples:
        raise ValueError(f"{name} must have {n_samples} rows (one per sample in X); got shape {np.shape(y)}")
    if arr.ndim == 1:
        _check_finite(name, arr)
        if arr.size and not (np.all(arr == np.round(arr)) and arr.min() >= 0 and arr.max() < n_classes):
            raise ValueError(f"{name} must hold integer class labels in [0, {n_classes}); "
                             f"got values in [{arr.min()}, {arr.max()}]" + ("" if np.all(arr == np.round(arr))
                                                                          else " that are not all integers"))
        out = np.zeros((n_samples, n_classes), dtype=dtype)
        out[np.arange(n_samples), arr.astype(np.int64)] = 1
        return out
    if arr.ndim != 2 or arr.shape[1] != n_classes:
        raise ValueError(f"{name} must be integer labels of shape ({n_samples},) or one-hot of shape "
                         f"({n_samples}, {n_classes}); got shape {np.shape(y)}")
    _check_finite(name, arr)
    if arr.size and not (np.isin(arr, (0, 1)).all() and (arr.sum(axis=1) == 1).all()):
        raise ValueError(f"{name} of shape ({n_samples}, {n_classes}) must be one-hot: one 1 per row, zeros elsewhere")
    return np.array(arr, dtype=dtype, order="C", copy=True)


# ---------------------------------------------------------------- a NumPy-array backend's arrays: checked, never converted
_FLOATS = (np.dtype(np.float64), np.dtype(np.float32))


def require_array(name, a) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array; got {type(a).__name__}")
    if a.dtype not in _FLOATS:
        raise TypeError(f"{name} must be float64 or float32; got dtype {a.dtype}")
    return np.ascontiguousarray(a)


def require_params(params, name="params"):
    """``(layer_sizes, dtype)`` of ``[(W, b), ...]``; TypeError / ValueError on anything else."""
    if not isinstance(params, (list, tuple)) or not params:
        raise TypeError(f"{name} must be a non-empty list of (W, b) pairs")
    sizes, dtype = None, None
    for i, pair in enumerate(params):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"{name}[{i}] must be a (W, b) pair")
        W, b = (require_array(f"{name}[{i}][{j}]", a) for j, a in enumerate(pair))
        dtype = dtype or W.dtype
        if W.dtype != dtype or b.dtype != dtype:
            raise TypeError(f"{name}[{i}]: every array must be {dtype.name}; got {W.dtype} and {b.dtype}")
        if W.ndim != 2 or b.shape != (1, W.shape[1]) or (sizes and sizes[-1] != W.shape[0]):
            raise ValueError(f"{name}[{i}]: expected W (fan_in, fan_out) chaining from the previous layer "
                             f"and b (1, fan_out); got {W.shape} and {b.shape}")
        sizes = (sizes or [W.shape[0]]) + [W.shape[1]]
    return sizes, dtype


def require_X(X, sizes, dt):
    X = require_array("X", X)
    if X.dtype != dt:
        raise TypeError(f"X must have the params' dtype {dt.name}; got {X.dtype.name}")
    if X.ndim != 2 or X.shape[1] != sizes[0] or X.shape[0] == 0:
        raise ValueError(f"X must have shape (N >= 1, {sizes[0]}); got {X.shape}")
    return X


def require_y(y, N, sizes, dt):
    y = require_array("y", y)
    if y.dtype != dt:
        raise TypeError(f"y must have the params' dtype {dt.name}; got {y.dtype.name}")
    if y.shape != (N, sizes[-1]):
        raise ValueError(f"y must have shape {(N, sizes[-1])}; got {y.shape}")
    return y


def require_cache(cache, sizes, dt):
    if not isinstance(cache, (list, tuple)) or len(cache) != len(sizes):
        raise ValueError(f"cache must be the forward pass's list of {len(sizes)} activations [X, a1, ..., y_hat]")
    acts = [require_array(f"cache[{i}]", a) for i, a in enumerate(cache)]
    N = acts[0].shape[0] if acts[0].ndim == 2 else -1
    for i, (a, w) in enumerate(zip(acts, sizes)):
        if a.dtype != dt or a.shape != (N, w):
            raise ValueError(f"cache[{i}] must be a {dt.name} array of shape ({N}, {w}); got {a.dtype.name} {a.shape}")
    return acts


def npy_nbytes(shape, dtype) -> int:
    """The bytes of data a ``.npy`` header's ``shape`` and ``dtype`` declare, in Python ints (a crafted shape can
    neither overflow nor wrap); ``ValueError`` for a dimension or a size no array can have."""
    limit = np.iinfo(np.intp).max
    if not all(isinstance(d, int) and 0 <= d <= limit for d in shape):
        raise ValueError(f"shape {str(tuple(shape))[:80]} has a dimension outside [0, {limit}]")
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize
    if nbytes > limit:
        raise ValueError(f"shape {tuple(shape)} declares {nbytes} bytes, more than any array can hold")
    return nbytes
