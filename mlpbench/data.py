"""Datasets: the lab's ``and`` / ``or`` / ``xor``; seeded ``moons``, ``circles``, ``spirals``, ``blobs``; files.

Every loader returns ``(X, y)``: float64 ``X`` of shape ``(N, n_features)`` and
float64 ``y`` of shape ``(N, 1)`` holding 0 or 1.
"""

from __future__ import annotations

import io
import os

import numpy as np

from . import memory
from . import validation as v

_GRID = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
_TRUTH = {"and": [0, 0, 0, 1], "or": [0, 1, 1, 1], "xor": [0, 1, 1, 0]}


def _logic(name):
    return _GRID.copy(), np.array(_TRUTH[name], dtype=float).reshape(-1, 1)


def _split(n_samples):
    n0 = n_samples // 2
    return n0, n_samples - n0


def _labels(n0, n1):
    return np.concatenate([np.zeros(n0), np.ones(n1)]).reshape(-1, 1)


def moons(n_samples=200, noise=0.1, seed=0):
    """Two interleaving half circles."""
    rng = np.random.RandomState(seed)
    n0, n1 = _split(n_samples)
    t0, t1 = np.linspace(0, np.pi, n0), np.linspace(0, np.pi, n1)
    X = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], np.c_[1 - np.cos(t1), 0.5 - np.sin(t1)]])
    return X + rng.normal(scale=noise, size=X.shape) if noise else X, _labels(n0, n1)


def circles(n_samples=200, noise=0.05, seed=0, factor=0.5):
    """A small circle (label 1) inside a large one (label 0)."""
    rng = np.random.RandomState(seed)
    n0, n1 = _split(n_samples)
    t0 = np.linspace(0, 2 * np.pi, n0, endpoint=False)
    t1 = np.linspace(0, 2 * np.pi, n1, endpoint=False)
    X = np.concatenate([np.c_[np.cos(t0), np.sin(t0)], factor * np.c_[np.cos(t1), np.sin(t1)]])
    return X + rng.normal(scale=noise, size=X.shape) if noise else X, _labels(n0, n1)


def spirals(n_samples=200, noise=0.1, seed=0, turns=1.5):
    """Two interleaved Archimedean spirals."""
    rng = np.random.RandomState(seed)
    n0, n1 = _split(n_samples)
    arms = []
    for n, phase in ((n0, 0.0), (n1, np.pi)):
        r = np.linspace(0.1, 1.0, n)
        t = r * turns * 2 * np.pi + phase
        arms.append(np.c_[r * np.cos(t), r * np.sin(t)])
    X = np.concatenate(arms)
    return X + rng.normal(scale=noise * 0.1, size=X.shape) if noise else X, _labels(n0, n1)


def blobs(n_samples=200, n_features=2, noise=1.0, seed=0, separation=3.0):
    """Two Gaussian blobs (std ``noise``) whose centres lie ``separation`` apart."""
    if n_features < 1:
        raise ValueError(f"n_features must be >= 1; got {n_features}")
    rng = np.random.RandomState(seed)
    n0, n1 = _split(n_samples)
    direction = rng.normal(size=n_features)
    direction *= separation / 2 / np.linalg.norm(direction)
    X = np.concatenate([rng.normal(scale=noise, size=(n0, n_features)) - direction,
                        rng.normal(scale=noise, size=(n1, n_features)) + direction])
    return X, _labels(n0, n1)


GENERATED = {"moons": moons, "circles": circles, "spirals": spirals, "blobs": blobs}
NAMES = ("and", "or", "xor") + tuple(GENERATED)


def load(name, n_samples=200, noise=None, seed=0, n_features=2):
    """``(X, y)`` for a dataset name in ``NAMES``; size, noise and seed apply to the generated ones."""
    if not isinstance(name, str):
        raise TypeError(f"dataset name must be a string, one of {list(NAMES)}; got {type(name).__name__}")
    key = name.lower()
    if key in _TRUTH:
        return _logic(key)
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
    elif n_features != 2:
        raise ValueError(f"n_features applies to 'blobs' only; {key!r} is 2-D")
    width = kwargs.get("n_features", 2)
    memory.check_fits(4 * int(n_samples) * (width + 1) * 8, f"dataset {key!r} with {n_samples} samples")
    return GENERATED[key](**kwargs)


def _read(path):
    """A real-valued array from a ``.npy`` or ``.csv`` file; ``ValueError`` naming the file otherwise."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".npy", ".csv"):
        raise ValueError(f"unsupported file type {ext!r} for {path!r}; expected .npy or .csv")
    if os.path.isdir(path):
        raise ValueError(f"{path!r} is a folder; expected a {ext} file")
    arr = _read_npy(path) if ext == ".npy" else _read_csv(path)
    if arr.dtype.kind not in "iuf":
        raise ValueError(f"{path!r} holds {arr.dtype} values; expected real numbers (int or float)")
    return arr


def _read_npy(path):
    with open(path, "rb") as f:
        magic = f.read(6)
        if magic[:2] == b"PK":
            raise ValueError(f"{path!r} is an .npz archive, not a .npy array; save one array with np.save")
        if magic != b"\x93NUMPY":
            raise ValueError(f"{path!r} is not a .npy file (no NumPy header)")
        f.seek(0)
        try:
            version = np.lib.format.read_magic(f)
            shape, _, dtype = (np.lib.format.read_array_header_1_0(f) if version == (1, 0)
                               else np.lib.format.read_array_header_2_0(f))
        except ValueError as exc:
            raise ValueError(f"{path!r}: bad .npy header: {exc}") from None
        if dtype.hasobject:
            raise ValueError(f"{path!r} holds Python objects; expected real numbers")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        remaining = os.fstat(f.fileno()).st_size - f.tell()
        if nbytes > remaining:
            raise ValueError(f"{path!r} is truncated: its header declares {nbytes} bytes of data; it holds {remaining}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None


def _read_csv(path):
    try:
        with open(path, encoding="utf-8-sig") as f:  # a byte-order mark is not part of the first cell
            text = f.read()
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path!r} is not UTF-8 text: {exc}") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    cells = [c.strip() for c in (lines[0] if lines else "").split(",")]
    # a header names its columns: some cell is text. A data row's empty cell is a missing value, not a name.
    skip = int(any(c and not _is_number(c) for c in cells))
    if len(lines) <= skip:
        raise ValueError(f"{path!r} holds no data rows")
    try:
        arr = np.loadtxt(io.StringIO("\n".join(lines[skip:])), delimiter=",", ndmin=2)
    except ValueError as exc:
        raise ValueError(f"{path!r}: {exc}") from None
    return arr


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
