"""Datasets: the lab's ``and`` / ``or`` / ``xor``; seeded ``moons``, ``circles``, ``spirals``, ``blobs``; files.

Every loader returns ``(X, y)``: float64 ``X`` of shape ``(N, n_features)`` and
float64 ``y`` of shape ``(N, 1)`` holding 0 or 1.
"""

from __future__ import annotations

import os

import numpy as np

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
    if int(n_samples) < 2:
        raise ValueError(f"n_samples must be >= 2; got {n_samples}")
    kwargs = {"n_samples": int(n_samples), "seed": seed}
    if noise is not None:
        kwargs["noise"] = float(noise)
    if key == "blobs":
        kwargs["n_features"] = int(n_features)
    elif n_features != 2:
        raise ValueError(f"n_features applies to 'blobs' only; {key!r} is 2-D")
    return GENERATED[key](**kwargs)


def _read(path):
    ext = os.path.splitext(path)[1].lower()
    if ext == ".npy":
        return np.load(path, allow_pickle=False)
    if ext == ".csv":
        with open(path) as f:
            first = f.readline()
        skip = 0 if all(_is_number(c) for c in first.strip().split(",")) else 1
        return np.loadtxt(path, delimiter=",", skiprows=skip, ndmin=2)
    raise ValueError(f"unsupported file type {ext!r} for {path!r}; expected .npy or .csv")


def _is_number(s):
    try:
        float(s)
        return True
    except ValueError:
        return False


def load_files(x_path, y_path=None):
    """Load ``X`` (and ``y``) from ``.npy`` or ``.csv``. With one file, its last column is ``y``."""
    X = np.asarray(_read(os.fspath(x_path)), dtype=float)
    if y_path is None:
        if X.ndim != 2 or X.shape[1] < 2:
            raise ValueError(f"{x_path!r}: with no y file, expected at least 2 columns (features..., label)")
        return X[:, :-1].copy(), X[:, -1:].copy()
    y = np.asarray(_read(os.fspath(y_path)), dtype=float)
    return X, y.reshape(-1, 1) if y.ndim == 1 else y
