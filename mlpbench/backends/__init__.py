"""Backend registry: name -> "module:Class", imported lazily.

``available_backends()`` never raises and never imports a missing optional
package; ``get_backend(name)`` returns a ready backend or raises
``BackendUnavailable`` with the install hint.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os

from .base import Backend, TrainingDiverged

_REGISTRY: dict[str, str | type] = {
    "numpy": "mlpbench.backends.numpy_backend:NumpyBackend",
    "numba": "mlpbench.backends.numba_backend:NumbaBackend",
    "cupy": "mlpbench.backends.cupy_backend:CupyBackend",
    "torch": "mlpbench.backends.torch_backend:TorchBackend",
    "jax": "mlpbench.backends.jax_backend:JaxBackend",
}

INSTALL_HINTS = {
    "numba": 'pip install "mlpbench[numba]"',
    "cupy": 'pip install "mlpbench[gpu]"  (cupy-cuda13x; needs an NVIDIA GPU and driver)',
    "torch": 'pip install "mlpbench[peers]"',
    "jax": 'pip install "mlpbench[peers]"',
}


class BackendUnavailable(ImportError, RuntimeError):
    """The backend exists but cannot run here (missing package, no GPU, ...)."""


def backend_names() -> list[str]:
    return list(_REGISTRY)


def register_backend(name: str, target) -> None:
    """Add (or replace) a backend: ``target`` is a ``Backend`` subclass or ``"module:Class"``."""
    if not isinstance(name, str) or not name:
        raise TypeError("name must be a non-empty string")
    _REGISTRY[name] = target


def unregister_backend(name: str) -> None:
    _REGISTRY.pop(name, None)


def backend_class(name: str) -> type:
    """The class behind ``name`` (imports its module, not its optional package)."""
    if not isinstance(name, str):
        raise TypeError(f"backend must be a string, one of {backend_names()}; got {type(name).__name__}")
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
    return target


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return ""


def backend_from_env() -> str:
    """``$MLPBENCH_BACKEND`` (unset or empty: ``"numpy"``); ``ValueError`` naming the variable when unknown."""
    name = os.environ.get("MLPBENCH_BACKEND", "").strip() or "numpy"
    if name != "auto" and name not in _REGISTRY:
        raise ValueError(f"environment variable MLPBENCH_BACKEND={name!r}: unknown backend {name!r}; "
                         f"use one of {', '.join(backend_names())}, auto, or unset it")
    return name


def get_backend(name: str | None = None, **options) -> Backend:
    """Return a ready backend; ``None`` means ``$MLPBENCH_BACKEND`` or ``"numpy"``."""
    if name is None:
        name = backend_from_env()
    cls = backend_class(name)
    ok, reason = cls.availability()
    if not ok:
        hint = INSTALL_HINTS.get(name, "")
        raise BackendUnavailable(f"backend {name!r} is unavailable: {reason}" + (f"; install with: {hint}" if hint else ""))
    return cls(**options)


def available_backends() -> list[dict]:
    """One row per registered backend: name, available, reason, version, device, threads. Never raises."""
    rows = []
    for name in backend_names():
        row = {"name": name, "available": False, "reason": "", "version": "", "device": "", "threads": None}
        try:
            cls = backend_class(name)
            row["version"] = _version(cls.package)
            ok, reason = cls.availability()
            row["available"], row["reason"] = bool(ok), reason
            if ok:
                info = getattr(cls, "describe", None)
                row.update(info() if info else {"device": cls.device})
        except Exception as exc:  # a broken backend module must not break the listing
            row["reason"] = f"{type(exc).__name__}: {exc}"
        rows.append(row)
    return rows


__all__ = [
    "Backend",
    "BackendUnavailable",
    "TrainingDiverged",
    "available_backends",
    "backend_class",
    "backend_from_env",
    "backend_names",
    "get_backend",
    "register_backend",
    "unregister_backend",
]
