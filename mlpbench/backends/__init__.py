"""Backend registry, the one source of backend facts: name -> class, imported lazily.

``available_backends()`` never raises and never imports a missing optional
package; ``get_backend(name)`` returns a ready backend or raises
``BackendUnavailable`` with the install hint. Third-party backends register
with ``register_backend(name, cls_or_"module:Class")``, or through the
entry-point group ``mlpbench.backends`` (read on first use).
"""

from __future__ import annotations

import importlib
import inspect
import importlib.metadata
import os
import re
from dataclasses import dataclass, field

from .base import Backend, BackendUnavailable, Prepared, TrainingDiverged

ENTRY_POINT_GROUP = "mlpbench.backends"
#: the backend every other one is checked and timed against (``kernels/reference.py`` on NumPy)
REFERENCE = "numpy"

_REGISTRY: dict[str, str | type] = {
    "numpy": "mlpbench.backends.numpy_backend:NumpyBackend",
    "numba": "mlpbench.backends.numba.backend:NumbaBackend",
    "cupy": "mlpbench.backends.cupy.backend:CupyBackend",
    "torch": "mlpbench.backends.torch_backend:TorchBackend",
    "jax": "mlpbench.backends.jax_backend:JaxBackend",
}
_entry_points_read = False


def _read_entry_points() -> None:
    """Add the backends other distributions declare under ``mlpbench.backends`` (once; never overrides)."""
    global _entry_points_read
    if _entry_points_read:
        return
    _entry_points_read = True
    try:
        found = importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)
    except Exception:  # pragma: no cover - broken metadata must not break the registry
        return
    for ep in found:
        _REGISTRY.setdefault(ep.name, ep.value)


def backend_names() -> list[str]:
    _read_entry_points()
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
    if name not in backend_names():
        raise ValueError(f"unknown backend {name!r}; known backends: {', '.join(backend_names())}")
    target = _REGISTRY[name]
    if isinstance(target, str):
        module, _, cls = target.partition(":")
        target = getattr(importlib.import_module(module), cls)
    return target


def availability(name: str) -> tuple[bool, str]:
    """``backend_class(name).availability()``; a broken backend module is reported, never raised."""
    try:
        ok, reason = backend_class(name).availability()
        return bool(ok), reason
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"


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
        raise cls.unavailable(reason)
    return cls(**options)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def available_backends() -> list[dict]:
    """One row per registered backend: name, available, reason, version, device, threads. Never raises."""
    rows = []
    for name in backend_names():
        row = {"name": name, "available": False, "reason": "", "version": "", "device": "", "threads": None}
        try:
            cls = backend_class(name)
            row["version"] = _version(cls.distribution())
            ok, reason = cls.availability()
            row["available"], row["reason"] = bool(ok), reason
        except Exception as exc:  # a broken backend module must not break the listing
            row["reason"] = f"{type(exc).__name__}: {exc}"
        if row["available"]:
            try:  # the default instance describes itself
                row.update(cls().describe())
            except Exception as exc:
                row.update(device=cls.device, notes=f"describe() failed: {type(exc).__name__}: {exc}")
        rows.append(row)
    return rows


# ---------------------------------------------------------------- facts every tool reads from here
def _classes():
    for name in backend_names():
        try:
            yield name, backend_class(name)
        except Exception:  # a broken module has no facts to give
            continue


def gpu_backends() -> list[str]:
    """Names of the registered backends that run on a GPU."""
    return [name for name, cls in _classes() if cls.gpu]


def supporting(output) -> list[str]:
    """Names of the registered backends whose math implements the output head ``output`` (their ``outputs``)."""
    return [name for name, cls in _classes() if output in cls.outputs]


def packages(distributions=False) -> list[str]:
    """The import names the registered backends require (or the distributions whose versions they
    report), in registry order, without repeats."""
    out = []
    for _, cls in _classes():
        for pkg in (cls.distribution(),) if distributions else cls.requires:
            if pkg not in out:
                out.append(pkg)
    return out


# ---------------------------------------------------------------- a backend plus options
@dataclass(frozen=True)
class BackendSpec:
    """A registered backend's name plus constructor options (sorted ``(key, value)`` pairs).

    ``text`` is how the user wrote it (``numba[threads=1]``); ``label`` is that
    text, else ``name[strategy]`` or ``name``.
    """

    name: str
    options: tuple = ()
    text: str = field(default="", compare=False)

    @classmethod
    def of(cls, name, text="", **options) -> "BackendSpec":
        return cls(name, tuple(sorted(options.items())), text)

    @property
    def label(self) -> str:
        if self.text:
            return self.text
        opts = dict(self.options)
        return f"{self.name}[{opts['strategy']}]" if "strategy" in opts else self.name

    def make(self) -> Backend:
        return get_backend(self.name, **dict(self.options))

    def to_json(self) -> dict:
        return {"name": self.name, "options": dict(self.options)}

    @classmethod
    def from_json(cls, d) -> "BackendSpec":
        return cls(d["name"], tuple(sorted(d.get("options", {}).items())))


def ready(specs) -> tuple[list, list]:
    """``([(label, backend)], [{"backend": label, "reason": ...}])``: the specs that run here, and the rest.

    Invalid options are the user's error (``ValueError``), even for a backend
    that cannot run here; "unavailable" is a skip, never an error.
    """
    made, skipped = [], []
    for spec in specs:
        ok, reason = availability(spec.name)
        if not ok:
            _check_options(spec)
            skipped.append({"backend": spec.label, "reason": reason})
            continue
        try:
            made.append((spec.label, spec.make()))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"--backends {spec.label}: invalid options: {exc}") from None
        except Exception as exc:  # a broken backend module: report and go on
            skipped.append({"backend": spec.label, "reason": f"{type(exc).__name__}: {exc}"})
    return made, skipped


def _check_options(spec) -> None:
    """Bind ``spec``'s options to its class's constructor without building it (no optional import)."""
    try:
        cls = backend_class(spec.name)
        options = dict(spec.options)
        if cls.__init__ is Backend.__init__ and options:
            raise TypeError(f"backend {spec.name!r} takes no options; got {sorted(options)}")
        inspect.signature(cls).bind(**options)
    except TypeError as exc:
        raise ValueError(f"--backends {spec.label}: invalid options: {exc}") from None
    except Exception:  # a broken module: reported as unavailable by the caller
        pass


_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def _split_specs(text):
    """Split ``"numpy,numba[threads=1,strategy=loop]"`` at the commas outside brackets."""
    out, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            out.append(current)
            current = ""
        else:
            current += ch
    out.append(current)
    return [s.strip() for s in out if s.strip()]


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_specs(text, what="--backends") -> list[BackendSpec]:
    """``name`` or ``name[option=value,...]``, comma separated; ``name[strategy]``; ``name[*]`` is every strategy."""
    specs = []
    for item in _split_specs(text):
        m = _SPEC.match(item)
        if not m:
            raise ValueError(f"{what}: cannot read {item!r}; expected name or name[option=value,...]")
        name, inner = m.group(1), m.group(2)
        if name not in backend_names():
            raise ValueError(f"{what}: unknown backend {name!r}; known backends: {', '.join(backend_names())}")
        if inner is None:
            specs.append(BackendSpec(name, (), name))
            continue
        strategies = tuple(backend_class(name).strategies)
        if inner.strip() == "*":
            if not strategies:
                raise ValueError(f"{what}: {name!r} has no strategies to expand with [*]")
            specs += [BackendSpec.of(name, strategy=s) for s in strategies]
            continue
        options = {}
        for part in (p.strip() for p in inner.split(",") if p.strip()):
            key, eq, val = part.partition("=")
            if not eq:
                if part not in strategies:
                    raise ValueError(f"{what}: {name}[{part}]: {part!r} is not a strategy of {name!r} "
                                     f"({list(strategies)}); write option=value")
                key, val = "strategy", part
            options[key.strip()] = _value(val.strip())
        specs.append(BackendSpec.of(name, item.replace(" ", ""), **options))
    return specs


__all__ = [
    "Backend",
    "BackendSpec",
    "BackendUnavailable",
    "REFERENCE",
    "Prepared",
    "TrainingDiverged",
    "availability",
    "available_backends",
    "supporting",
    "backend_class",
    "backend_from_env",
    "backend_names",
    "get_backend",
    "gpu_backends",
    "packages",
    "parse_specs",
    "ready",
    "register_backend",
    "unregister_backend",
]
