"""The ``auto`` cache on disk: measurements (seconds per epoch, first-call seconds) per fit shape, never a pick.

One JSON file (``auto.json`` in ``cache_dir()``), written atomically under a
``filelock`` lock (``auto.json.lock`` beside it). A key names the machine, dtype, activation, the power-of-two buckets of
N and of every layer size, and the fit's head and mini-batch size: a
full-batch sigmoid fit (the lab's) has the key schema ``mlpbench.auto/2``
always had, and its entries keep serving; any other head or a ``batch_size``
appends ``|<output>|B<bucket of the batch size>`` (or ``|full``), so entries
written before batch sizes and heads were keyed (every one of them a
full-batch sigmoid measurement) are still read as such, and a mini-batch fit
never reuses a full-batch measurement. An entry may carry ``uses`` (how often and in how many processes the key
was fitted, and up-front first calls left unamortized: ``auto.amortize``), added up under the lock by ``put``;
entries written before it have none and are read as never fitted. Every entry is validated when it is read: one
that names an unknown backend or options its constructor does not take, lacks a field or has a wrong type is dropped with ONE warning naming the file and the entry, and the
decision is made again. A cache folder that is a file, cannot be read or
cannot be written makes ``Cache`` warn once and work in memory only.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import warnings

import numpy as np
from filelock import FileLock, Timeout

from ..backends import BackendSpec, backend_class, backend_names, packages
from ..core.fileio import NotRegularFile, atomic_write, read_json
from ..core.userdirs import cache_dir
from ..core.cpu import cpu_model
from ..core.tuned import versions
from .amortize import USES

SCHEMA = "mlpbench.auto/2"


def cache_path() -> str:
    return os.path.join(cache_dir(), "auto.json")


@functools.lru_cache(maxsize=None)
def fingerprint() -> str:
    """CPU model, cores, GPU names (read from /proc, no CUDA import) and the registered backends' package versions."""
    cpu = cpu_model()
    gpus = []
    root = "/proc/driver/nvidia/gpus"
    with contextlib.suppress(OSError):
        for d in sorted(os.listdir(root)):
            with open(os.path.join(root, d, "information")) as f:
                gpus += [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("Model")]
    installed = versions(dict.fromkeys(("mlpbench", *packages(distributions=True), *packages())))
    return f"{cpu}|{os.cpu_count()} cores|{','.join(gpus) or 'no gpu'}|{installed}"


def bucket(n: int) -> int:
    """The power of two at or above ``n``."""
    return 1 << max(0, int(n) - 1).bit_length()


def cache_key(n_samples, layer_sizes, dtype, activation, output="sigmoid", batch_size=None) -> str:
    """The entry's key (see the module docstring); a batch size of N or more is keyed as N's bucket."""
    shape = "x".join(str(bucket(s)) for s in layer_sizes)
    key = f"{fingerprint()}|{np.dtype(dtype).name}|{activation}|N{bucket(n_samples)}|{shape}"
    if output == "sigmoid" and batch_size is None:
        return key
    batches = "full" if batch_size is None else f"B{bucket(min(int(batch_size), int(n_samples)))}"
    return f"{key}|{output}|{batches}"


def key_fields(key) -> dict:
    """``dtype``, ``activation``, ``n`` (``N<bucket>``), ``shape``, ``output``, ``batch`` (``full`` or
    ``B<bucket>``) and ``only`` (a candidate restriction, or None) of a key; ``?`` for what it lacks."""
    parts = key.split("|")
    only = parts.pop()[len("only "):] if parts and parts[-1].startswith("only ") else None
    output, batch = "sigmoid", "full"
    if len(parts) >= 6 and parts[-2] in ("sigmoid", "softmax"):
        output, batch = parts[-2], parts[-1]
        parts = parts[:-2]
    dtype, activation, n, shape = (["?"] * 4 + parts)[-4:]
    return {"dtype": dtype, "activation": activation, "n": n, "shape": shape, "output": output, "batch": batch,
            "only": only}


# ---------------------------------------------------------------- entry validation
#: the largest int an entry holds (sizes, counts): exact in a float, far past any real fit
_MAX_INT = 2**53


def _number(x, what, lo=0.0):
    if (isinstance(x, bool) or not isinstance(x, (int, float)) or (isinstance(x, int) and abs(x) > _MAX_INT)
            or not math.isfinite(x) or x < lo):
        raise ValueError(f"{what} must be a finite number >= {lo:g}; got {str(x)[:40]}")
    return float(x)


def _int(x, what, lo=0):
    if isinstance(x, bool) or not isinstance(x, int) or not lo <= x <= _MAX_INT:
        raise ValueError(f"{what} must be an int in [{lo}, 2**53]; got {str(x)[:40]}")
    return x


def _strings(d, what) -> dict:
    if not isinstance(d, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in d.items()):
        raise ValueError(f"{what} must map labels to strings")
    return dict(d)


def _spec(label, b) -> BackendSpec:
    """The candidate ``measured[label]`` names: a registered backend, with no option but one of its strategies,
    whose label is ``label`` (what ``choose.candidates`` times)."""
    if not isinstance(b, dict) or not isinstance(b.get("name"), str) or not isinstance(b.get("options", {}), dict):
        raise ValueError(f"measured[{label!r}].backend must be {{'name': str, 'options': {{...}}}}")
    if b["name"] not in backend_names():
        raise ValueError(f"measured[{label!r}] names an unknown backend {b['name']!r}")
    options = b.get("options", {})
    strategies = backend_class(b["name"]).strategies
    if set(options) - {"strategy"} or ("strategy" in options and options["strategy"] not in strategies):
        raise ValueError(f"measured[{label!r}]: invalid options {str(options)[:80]} for backend {b['name']!r} "
                         f"(a candidate takes only a strategy of {list(strategies)})")
    spec = BackendSpec.from_json({"name": b["name"], "options": options})
    if spec.label != label:
        raise ValueError(f"measured[{label!r}] holds the measurement of {spec.label!r}")
    return spec


def check_entry(entry) -> dict:
    """The entry parsed into a fresh record of checked fields only (ints bounded, numbers finite, every candidate
    one ``choose`` could time, under its own label); ``ValueError`` naming the first problem."""
    if not isinstance(entry, dict):
        raise ValueError(f"an entry must be an object; got {type(entry).__name__}")
    for name in ("shape", "measured", "rejected", "untimed", "margin"):
        if name not in entry:
            raise ValueError(f"missing field {name!r}")
    shape = entry["shape"]
    if not (isinstance(shape, list) and len(shape) == 2 and isinstance(shape[1], list) and shape[1]):
        raise ValueError(f"shape must be [n_samples, [layer sizes]]; got {str(shape)[:80]}")
    out = {"shape": [_int(shape[0], "shape's n_samples", 1), [_int(s, "a layer size", 1) for s in shape[1]]],
           "measured": {}, "margin": _number(entry["margin"], "margin"),
           "rejected": _strings(entry["rejected"], "rejected"), "untimed": _strings(entry["untimed"], "untimed")}
    if not isinstance(entry["measured"], dict):
        raise ValueError("measured must map labels to measurements")
    for label, m in entry["measured"].items():
        if not isinstance(m, dict):
            raise ValueError(f"measured[{label!r}] must hold a 'backend' object")
        out["measured"][label] = {
            "backend": _spec(label, m.get("backend")).to_json(),
            "seconds_per_epoch": _number(m.get("seconds_per_epoch"), f"measured[{label!r}].seconds_per_epoch", 1e-15),
            "first_call_s": _number(m.get("first_call_s"), f"measured[{label!r}].first_call_s"),
            # optional: entries written before it are valid
            "compile_s": _number(m.get("compile_s", 0.0), f"measured[{label!r}].compile_s")}
    if "created" in entry:
        out["created"] = _number(entry["created"], "created")
    uses = entry.get("uses", {})  # optional (entries written before it are valid)
    if not (isinstance(uses, dict) and set(uses) <= set(USES)):
        raise ValueError(f"uses must map {sorted(USES)} to counts >= 0; got {str(uses)[:80]}")
    if uses:
        out["uses"] = {k: _int(v, f"uses[{k!r}]") for k, v in uses.items()}
    return out


# ---------------------------------------------------------------- the file
#: seconds ``put`` waits for another process's lock before working without the cache (a write takes ms)
LOCK_TIMEOUT_S = 5.0
#: an auto.json larger than this is not one (an entry is under 2 KB; 2000 entries are about 3 MB)
MAX_FILE_BYTES = 1 << 26


class Cache:
    """The on-disk measurements, parsed and checked once per read of the file; in memory only when the folder
    cannot be used."""

    def __init__(self, path=None):
        self.path = path or cache_path()
        self._entries = None  # {key: checked entry} of the file as last read or written
        self._problems = {}  # {key: why} for the file's entries that failed ``check_entry``
        self._mtime = None
        self._warned = set()  # entry keys already warned about (one warning per entry)
        self.unusable = None  # why the folder cannot be used (warned once), else None
        self._memory = {}  # entries kept in memory when the file cannot be written
        self.known = {}  # the fits decided in this process (``auto.choose``): no file read for them again

    def _disable(self, exc) -> None:
        if self.unusable is None:
            self.unusable = f"{type(exc).__name__}: {exc}"
            warnings.warn(f"mlpbench auto cache {self.path} cannot be used ({self.unusable}); "
                          "backend='auto' works without a cache", RuntimeWarning, stacklevel=4)

    def check_usable(self) -> None:
        """``ValueError`` naming the folder when the cache could not be written (``mlpbench tune`` checks this
        before timing anything)."""
        folder = os.path.dirname(os.path.abspath(self.path))
        where = "$MLPBENCH_CACHE_DIR" if os.environ.get("MLPBENCH_CACHE_DIR") else "the auto cache folder"
        if os.path.lexists(folder) and not os.path.isdir(folder):
            raise ValueError(f"{where} {folder!r} is not a folder")
        base = folder
        while not os.path.exists(base) and os.path.dirname(base) != base:
            base = os.path.dirname(base)
        if not os.access(base, os.W_OK | os.X_OK):
            raise ValueError(f"{where} {folder!r} cannot be written (no permission in {base!r})")
        for path in (self.path, self.path + ".lock"):
            if os.path.lexists(path) and not os.path.isfile(path):
                raise ValueError(f"the auto cache {path!r} is not a regular file")

    def _read(self) -> dict:
        """The file's checked entries ({} when absent); whole-file faults warned about here. Parsed and
        checked once per change of the file."""
        if self.unusable is not None:
            return {}
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return {}
        except OSError as exc:  # the folder is a file, or cannot be searched
            self._disable(exc)
            return {}
        if self._entries is not None and mtime == self._mtime:
            return self._entries
        try:
            # a huge int spoils one entry (``check_entry``), not the file
            data = read_json(self.path, MAX_FILE_BYTES, "auto cache", max_digits=4000)
        except (IsADirectoryError, PermissionError, NotRegularFile) as exc:
            self._disable(exc)
            return {}
        except (OSError, ValueError) as exc:
            warnings.warn(f"ignoring corrupt mlpbench auto cache {self.path} ({exc}); it will be rebuilt",
                          RuntimeWarning, stacklevel=4)
            data = {"schema": SCHEMA, "entries": {}}
        if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
            warnings.warn(f"ignoring mlpbench auto cache {self.path}: written by another version "
                          f"(schema {str(data.get('schema'))[:40] if isinstance(data, dict) else None!r}); "
                          "it will be rebuilt", RuntimeWarning, stacklevel=4)
            data = {"entries": {}}
        self._entries, self._problems, self._mtime = {}, {}, mtime
        for key, entry in data["entries"].items():
            try:
                self._entries[key] = check_entry(entry)
            except ValueError as exc:
                self._problems[key] = str(exc)
        return self._entries

    def problems(self) -> dict:
        """``{key: why}`` for every entry of the file that fails ``check_entry``."""
        self._read()
        return dict(self._problems) if self.unusable is None else {}

    def get(self, key):
        """The checked entry for ``key``, or None (absent, or invalid: dropped with one warning)."""
        if self.unusable:
            return self._memory.get(key)
        entry = self._read().get(key)
        if entry is None and key in self._problems and key not in self._warned:
            self._warned.add(key)
            warnings.warn(f"dropping entry {key!r} of the mlpbench auto cache {self.path}: {self._problems[key]}; "
                          "deciding again", RuntimeWarning, stacklevel=3)
        return entry

    def put(self, key, entry, uses=None):
        """Store ``entry`` (a dict, anything with ``to_json()``, or None: keep the stored one) under ``key``, with
        ``uses`` added to the key's counts (``fits``, ``processes``; ``unamortized``: ``"+1"``, ``"reset"`` or
        None) under the lock, so concurrent processes add up. Only the file's new or changed entries are
        parsed again. Returns the stored entry; warns once if the file cannot be written or its lock is held
        past ``LOCK_TIMEOUT_S`` (then kept in memory)."""
        entry = entry.to_json() if hasattr(entry, "to_json") else entry
        if self.unusable is None:
            try:
                os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
                lock = self.path + ".lock"
                if os.path.lexists(lock) and not os.path.isfile(lock):
                    raise OSError(errno.EINVAL, "the lock is not a regular file", lock)
                with FileLock(lock, timeout=LOCK_TIMEOUT_S):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)  # already warned on the read path
                        entries = dict(self._read())  # re-read under the lock only if another process wrote
                    stored = _merged(entries.get(key) or self._memory.get(key), entry, uses)
                    if stored is None:
                        return None
                    entries[key] = self._memory[key] = stored
                    atomic_write(self.path, _dumps(entries))
                    # what is on disk now (invalid entries were dropped from it)
                    self._entries, self._problems, self._mtime = entries, {}, os.stat(self.path).st_mtime_ns
                return stored
            except Timeout as exc:
                self._disable(OSError(errno.EAGAIN, f"its lock is held by another process for over "
                                                    f"{LOCK_TIMEOUT_S:g} s ({exc})"))
            except OSError as exc:
                self._disable(exc)
        stored = _merged(self._memory.get(key), entry, uses)
        if stored is not None:
            self._memory[key] = stored
        return stored

    def first_calls(self) -> dict:
        """``{backend name: the largest first call recorded for it}`` over every checked entry."""
        out = {}
        for entry in self.entries().values():
            for m in entry["measured"].values():
                name = m["backend"]["name"]
                out[name] = max(out.get(name, 0.0), m["first_call_s"])
        return out

    def entries(self) -> dict:
        """``{key: checked entry}`` (the invalid ones are in ``problems``)."""
        return dict(self._memory) if self.unusable else dict(self._read())

    def clear(self) -> None:
        """Delete the file (``OSError`` when the folder does not allow it)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._entries = None
        self._problems = {}
        self._memory.clear()


def _dumps(entries) -> str:
    """The file: one entry a line (readable, and written by json's C encoder: ``indent`` is pure Python, 20x
    slower on a large cache)."""
    lines = ",\n".join(f"  {json.dumps(k)}: {json.dumps(e, sort_keys=True)}" for k, e in sorted(entries.items()))
    return f'{{"schema": {json.dumps(SCHEMA)}, "entries": {{\n{lines}\n}}}}\n'


def _merged(old, entry, uses):
    """``entry`` (None: ``old``) with ``old``'s ``uses`` plus ``uses``."""
    entry = old if entry is None else dict(entry)
    if entry is None:
        return None
    counts = dict(USES, **((old or {}).get("uses") or {}), **({} if uses else (entry.get("uses") or {})))
    if uses:
        counts["fits"] += uses.get("fits", 0)
        counts["processes"] += uses.get("processes", 0)
        step = uses.get("unamortized")
        counts["unamortized"] = 0 if step == "reset" else counts["unamortized"] + (step == "+1")
    return dict(entry, uses=counts)


@functools.lru_cache(maxsize=None)
def shared_cache(path) -> Cache:
    """One ``Cache`` per file for the process, so its in-memory copy serves repeated decisions."""
    return Cache(path)

