"""Kernel parameters measured on this machine by ``mlpbench tune``, kept beside the ``auto`` cache.

One JSON file, ``tuned.json`` in ``userdirs.cache_dir()``::

    {"schema": "mlpbench.tuned/1", "machines": {<machine key>: {<section>: <value>}}}

A section belongs to one backend (``numba.batch_threads``), which builds its
machine key (``machine_key``: the CPU model, the CPU count and the versions of
the packages the measurement depends on) and checks its value when it reads
it: a value from another CPU, core count or BLAS is never used, and what a
backend cannot use it ignores for its own rule. The file is written
atomically under a ``filelock`` lock; a reader parses it once per change of
the file (its ``st_mtime_ns``). A file that is not one of these (not JSON,
another schema) warns once and reads as empty: the backends then use their
rules, as on a machine never tuned.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import os
import warnings

from filelock import FileLock

from .cpu import cpu_model
from .fileio import atomic_write, read_json
from .userdirs import cache_dir

SCHEMA = "mlpbench.tuned/1"
#: the file's name in the cache folder
FILE = "tuned.json"
#: a tuned.json larger than this is not one (a section is a few KB)
MAX_FILE_BYTES = 1 << 22
#: seconds ``save`` waits for another process's lock
LOCK_TIMEOUT_S = 5.0

_READ = {}  # path -> (st_mtime_ns, machines) as last parsed
_WARNED = set()  # paths already warned about


def warn_once(seen, key, message, stacklevel=2) -> None:
    """``message`` as a ``RuntimeWarning`` the first time ``key`` is not in the set ``seen`` (which keeps it);
    ``stacklevel`` as the caller would pass it to ``warnings.warn``."""
    if key not in seen:
        seen.add(key)
        warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)


def path() -> str:
    return os.path.join(cache_dir(), FILE)


def versions(packages) -> str:
    """``"numba=0.68.1 numpy=2.4.6"``: the installed version of each package (those not installed left out)."""
    out = []
    for pkg in packages:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out.append(f"{pkg}={importlib.metadata.version(pkg)}")
    return " ".join(out)


def machine_key(*packages) -> str:
    """``"<CPU model>|<n> cpus|numba=0.68.1 ..."``: what a measurement on this machine holds for."""
    return f"{cpu_model()}|{os.cpu_count()} cpus|{versions(packages)}"


def _machines(where) -> dict:
    """The file's ``machines`` ({} when absent or unusable, warned once per file)."""
    try:
        mtime = os.stat(where).st_mtime_ns
    except OSError:
        return {}
    seen = _READ.get(where)
    if seen is not None and seen[0] == mtime:
        return seen[1]
    try:
        doc = read_json(where, MAX_FILE_BYTES, "tuned-parameters file")
        if not (isinstance(doc, dict) and doc.get("schema") == SCHEMA and isinstance(doc.get("machines"), dict)):
            raise ValueError(f"{where}: not a {SCHEMA} file")
        machines = {k: v for k, v in doc["machines"].items() if isinstance(v, dict)}
    except (OSError, ValueError) as exc:
        warn_once(_WARNED, where, f"mlpbench: ignoring the tuned kernel parameters ({exc}); the kernels use their "
                  "rules (mlpbench tune writes the file again)", stacklevel=4)
        machines = {}
    _READ[where] = (mtime, machines)
    return machines


def load(section, key):
    """This machine's value of ``section`` (``key``: ``machine_key``), or None when never tuned here."""
    return _machines(path()).get(key, {}).get(section)


def save(section, key, value) -> str:
    """Store ``value`` as ``section`` for machine ``key`` (other machines and sections kept); returns the path.
    ``OSError`` / ``filelock.Timeout`` when the folder cannot be written."""
    where = path()
    os.makedirs(os.path.dirname(os.path.abspath(where)), exist_ok=True)
    with FileLock(where + ".lock", timeout=LOCK_TIMEOUT_S):
        _READ.pop(where, None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # an unusable file is replaced
            machines = dict(_machines(where))
        machines[key] = {**machines.get(key, {}), section: value}
        atomic_write(where, json.dumps({"schema": SCHEMA, "machines": machines}, indent=1, sort_keys=True) + "\n")
        _READ.pop(where, None)
    return where


def clear() -> bool:
    """Delete the file; whether there was one."""
    where = path()
    _READ.pop(where, None)
    _WARNED.discard(where)
    try:
        os.remove(where)
    except FileNotFoundError:
        return False
    return True
