"""Datasets: the lab's ``and`` / ``or`` / ``xor``; seeded ``moons``, ``circles``, ``spirals``, ``blobs``;
scikit-learn's bundled ``digits``; files.

Every loader returns ``(X, y)``: float64 ``X`` of shape ``(N, n_features)`` and,
for the two-class sets, float64 ``y`` of shape ``(N, 1)`` holding 0 or 1. The
multi-class sets (``digits``, ``blobs`` with ``n_classes > 2``) give int class
labels ``y`` of shape ``(N,)`` (what ``MLP(..., output="softmax")`` takes).
"""

from __future__ import annotations

import io
import os
import re

import numpy as np

from . import memory
from . import validation as v
from .fileio import read_user_file

_GRID = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
_TRUTH = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}


def _logic(name):
    return _GRID.copy(), np.array(_TRUTH[name], dtype=float).reshape(-1, 1)


def _split(n_samples):
    n0 = n_samples // 2
    return n0, n_samples - n0


def _two_classes(X0, X1, noise, seed):
    """Class 0's rows, then class 1's, plus Gaussian noise of scale ``noise`` (``RandomState(seed)``); labels."""
    X = np.concatenate([X0, X1])
    if noise:
        X = X + np.random.RandomState(seed).normal(scale=noise, size=X.shape)
    return X, _labels(len(X0), len(X1))


def _labels(n0, n1):
    return np.concatenate([np.zeros(n0), np.ones(n1)]).reshape(-1, 1)


def moons(n_samples=200, noise=0.1, seed=0):
    """Two interleaving half circles."""
    n0, n1 = _split(n_samples)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    return _two_classes(np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)], noise, seed)


def circles(n_samples=200, noise=0.05, seed=0, factor=0.5):
    """A small circle (label 1) inside a large one (label 0)."""
    n0, n1 = _split(n_samples)
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    return _two_classes(np.c_[np.cos(t0), np.sin(t0)], factor * np.c_[np.cos(t1), np.sin(t1)], noise, seed)


def spirals(n_samples=200, noise=0.1, seed=0, turns=1.5):
    """Two interleaved Archimedean spirals."""
    arms = []
    for n, phase in zip(_split(n_samples), (0.0, np.pi)):
        r = np.linspace(0.1, 1.0, n)
        t = r * turns * 2 * np.pi + phase
        arms.append(np.c_[r * np.cos(t), r * np.sin(t)])
    return _two_classes(*arms, noise * 0.1, seed)


class DatasetUnavailable(ImportError):
    """A dataset needs a package that is not installed (the message names the extra to install)."""


def digits():
    """scikit-learn's bundled 8x8 handwritten digits: 1797 x 64 pixels scaled to [0, 1], labels 0-9 ``(N,)``.

    Read from the installed scikit-learn (no network): ``pip install "mlpbench[data]"``.
    """
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise DatasetUnavailable(f"dataset 'digits' needs scikit-learn ({exc}); install it with: "
                                 'pip install "mlpbench[data]"') from None
    X, y = load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64) / 16.0, np.asarray(y, dtype=np.int64)


def _class_sizes(n_samples, n_classes):
    return [n_samples // n_classes + (k < n_samples % n_classes) for k in range(n_classes)]


def blobs(n_samples=200, n_features=2, noise=1.0, seed=0, separation=3.0, n_classes=2):
    """Gaussian blobs (std ``noise``): two whose centres lie ``separation`` apart (labels ``(N, 1)``),
    or ``n_classes > 2`` around centres drawn with std ``separation`` (int labels ``(N,)``, classes in order)."""
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1; got {n_features}")
    if not v._is_int(n_classes) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2; got {n_classes!r}")
    if n_classes > n_samples:
        raise ValueError(f"n_classes ({n_classes}) must not exceed n_samples ({n_samples})")
    rng = np.random.RandomState(seed)
    if n_classes > 2:
        centres = rng.normal(scale=separation, size=(n_classes, n_features))
        sizes = _class_sizes(n_samples, n_classes)
        X = np.concatenate([c + rng.normal(scale=noise, size=(n, n_features)) for c, n in zip(centres, sizes)])
        return X, np.repeat(np.arange(n_classes, dtype=np.int64), sizes)
    n0, n1 = _split(n_samples)
    direction = rng.normal(size=n_features)
    direction *= separation / 2 / np.linalg.norm(direction)
    X = np.concatenate([rng.normal(scale=noise, size=(n0, n_features)) - direction,
                        rng.normal(scale=noise, size=(n1, n_features)) + direction])
    return X, _labels(n0, n1)


GENERATED = {"moons": moons, "circles": circles, "spirals": spirals, "blobs": blobs}
NAMES = ("and", "or", "xor") + tuple(GENERATED) + ("digits",)


def load(name, n_samples=200, noise=None, seed=0, n_features=2, n_classes=2):
    """``(X, y)`` for a dataset name in ``NAMES``; size, noise and seed apply to the generated ones,
    ``n_features`` and ``n_classes`` to ``blobs``."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, one of {list(NAMES)}; got {type(name).__name__}")
    key = name.lower()
    if key in _TRUTH:
        return _logic(key)
    if key == "digits":
        if noise is not None or n_features != 2 or n_classes != 2:
            raise ValueError("noise, n_features and n_classes do not apply to 'digits' (a fixed 1797 x 64 set)")
        return digits()
    if key not in GENERATED:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list(NAMES)} or give a .npy/.csv path")
    if not v._is_int(n_samples):
        raise TypeError(f"n_samples must be an int; got {type(n_samples).__name__} {n_samples!r}")
    if n_samples < 2:
        raise ValueError(f"n_samples must be >= 2; got {n_samples}")
    if not v._is_int(n_features):
        raise TypeError(f"n_features must be an int; got {type(n_features).__name__} {n_features!r}")
    kwargs = {"n_samples": int(n_samples), "seed": v.check_seed(seed)}
    if noise is not None:
        if not v._is_real(noise):
            raise TypeError(f"noise must be a real number; got {type(noise).__name__} {noise!r}")
        if not (np.isfinite(noise) and noise >= 0):
            raise ValueError(f"noise must be finite and >= 0 (a standard deviation); got {noise}")
        kwargs["noise"] = float(noise)
    if key == "blobs":
        kwargs["n_features"] = int(n_features)
        kwargs["n_classes"] = v.check_positive_int("n_classes", n_classes)
    elif n_features != 2:
        raise ValueError(f"n_features applies to 'blobs' only; {key!r} is 2-D")
    elif n_classes != 2:
        raise ValueError(f"n_classes applies to 'blobs' only; {key!r} has 2 classes")
    width = kwargs.get("n_features", 2)
    memory.check_fits(4 * int(n_samples) * (width + 1) * 8, f"dataset {key!r} with {n_samples} samples")
    return GENERATED[key](**kwargs)


def _read(path):
    """A real-valued array from a ``.npy`` or ``.csv`` file; ``ValueError`` naming the file otherwise.

    The file is read once, through ``fileio.read_user_file`` (a regular file only, its size checked against the
    memory available before a byte is read)."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".csv"):
        raise ValueError(f"unsupported file type {ext!r} for {path!r}; expected .npy or .csv")
    try:
        # the file, its parse (a .csv: ~8 bytes per 2 characters) and the float64 copy fit in memory
        data = read_user_file(path, lambda size: memory.check_fits(6 * size, f"reading {path!r}"), f"{ext} file")
    except IsADirectoryError:
        raise ValueError(f"{path!r} is a folder; expected a {ext} file") from None
    arr = _read_npy(path, data) if ext == ".npy" else _read_csv(path, data)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{path!r} holds {arr.dtype} values; expected real numbers (int or float)")
    return arr


def _read_npy(path, data):
    if data[:2] == b"PK":
        raise ValueError(f"{path!r} is an .npz archive, not a .npy array; save one array with np.save")
    if data[:6] != b"\x93NUMPY":
        raise ValueError(f"{path!r} is not a .npy file (no NumPy header)")
    f = io.BytesIO(data)
    try:
        version = np.lib.format.read_magic(f)
        shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                           else np.lib.format.read_array_header_2_0(f))
    except ValueError as exc:
        raise ValueError(f"{path!r}: bad .npy header: {exc}") from None
    if dtype.hasobject:
        raise ValueError(f"{path!r} holds Python objects; expected real numbers")
    try:
        nbytes = v.npy_nbytes(shape, dtype)
    except ValueError as exc:
        raise ValueError(f"{path!r}: bad .npy header: {exc}") from None
    remaining = len(data) - f.tell()
    if nbytes > remaining:
        raise ValueError(f"{path!r} is truncated: its header declares shape {tuple(shape)}, {nbytes} bytes of "
                         f"data; it holds {remaining}")
    f.seek(0)
    try:
        return np.load(f, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None


def _read_csv(path, data):
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark is not part of the first cell
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path!r} is not UTF-8 text: {exc}") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
    cells = [c.strip() for c in (lines[0][1] if lines else "").split(",")]
    skip = int(_is_header(cells))
    if len(lines) <= skip:
        raise ValueError(f"{path!r} holds no data rows")
    try:
        return np.loadtxt(io.StringIO("\n".join(ln for _, ln in lines[skip:])), delimiter=",", ndmin=2)
    except ValueError as exc:
        msg = str(exc).split("; use")[0]
        at = re.search(r" at row (\d+)(, column \d+)?\.?", msg)  # numpy counts the rows it was given, from 0
        if at is not None and int(at.group(1)) + skip < len(lines):
            msg = f"line {lines[int(at.group(1)) + skip][0]}{at.group(2) or ''}: {msg.replace(at.group(0), '')}"
        raise ValueError(f"{path!r} {msg}") from None


def _is_header(cells) -> bool:
    """A first row is a header when it names its columns: every non-empty cell is a name (starts with a letter,
    ``_`` or a quote, and is not a number such as ``nan``), and some cell is. Anything else (``0,0,O``,
    ``−1,0,0``, ``0x1,0,0``) is a data row, and a bad one is an error naming its line, never dropped."""
    names = [c for c in cells if c]
    return bool(names) and all((c[0].isalpha() or c[0] in "_\"'") and not _is_number(c) for c in names)


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_files(x_path, y_path=None):
    """Load ``X`` (and ``y``) from ``.npy`` or ``.csv``. With one file, its last column is ``y``."""
    X = np.asarray(_read(os.fspath(x_path)), dtype=float)
    if X.ndim != 2:
        raise ValueError(f"{os.fspath(x_path)!r}: expected a 2-D array (rows, columns); got shape {X.shape}")
    if y_path is None:
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(f"{x_path!r}: with no y file, expected at least 2 columns (features..., label)")
        return X[:, :-1].copy(), X[:, -1:].copy()
    y = np.asarray(_read(os.fspath(y_path)), dtype=float)
    return X, y.reshape(-1, 1) if y.ndim == 1 else y
