"""What a benchmark ran on: CPU, cores and threads, BLAS, GPU and driver, software versions.

``machine_info(backends)`` never raises and never imports an optional package
(versions come from the installed distributions' metadata). ``machine_name()`` names the machine in a
cluster run's files (``OUT/<name>/results.json``): ``MLPBENCH_MACHINE_NAME`` where set (tests give two
local workers two names; the record then carries it as ``"name"``), else the host name.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shutil
import subprocess
import sys

from ..core.cpu import cpu_model

#: packages whose versions are always recorded, besides those the registered backends require
#: (import name -> distribution, found by metadata)
PACKAGES = ("numpy", "scipy", "threadpoolctl", "mlpbench")
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_THREAD_TIMEOUT", "MKL_NUM_THREADS",
              "NUMBA_NUM_THREADS", "MLPBENCH_BACKEND", "CUDA_VISIBLE_DEVICES", "XLA_FLAGS")
#: the variable that overrides the machine's name (``machine_name``)
MACHINE_NAME_ENV = "MLPBENCH_MACHINE_NAME"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def machine_name() -> str:
    """``$MLPBENCH_MACHINE_NAME`` (a folder name: letters, digits, ``._-``; else ``ValueError`` naming it),
    else the host name with any other character made ``-``."""
    given = os.environ.get(MACHINE_NAME_ENV, "").strip()
    if given:
        if not _NAME.fullmatch(given):
            raise ValueError(f"{MACHINE_NAME_ENV}={given!r}: a machine name is 1 to 64 letters, digits, '.', '_' "
                             "or '-', starting with a letter or digit")
        return given
    return re.sub(r"[^A-Za-z0-9._-]", "-", platform.node()).strip("-.") or "unknown"


def physical_cores() -> int | None:
    """Distinct (physical id, core id) pairs in /proc/cpuinfo, or ``None`` where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            text = f.read()
    except OSError:
        return None
    cores, phys = set(), "0"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "physical id":
            phys = value.strip()
        elif key == "core id":
            cores.add((phys, value.strip()))
    return len(cores) or None


def threads_available() -> int:
    """CPUs this process may run on (its affinity), else ``os.cpu_count()``."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def blas_info() -> list[dict]:
    """NumPy's BLAS / OpenMP pools (threadpoolctl): library, version, threads, architecture."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return [{"note": "install threadpoolctl to record the BLAS"}]
    keep = ("user_api", "internal_api", "version", "num_threads", "architecture", "threading_layer")
    return [{k: p.get(k) for k in keep} | {"library": os.path.basename(p.get("filepath", ""))}
            for p in threadpool_info()]


def gpu_info() -> list[dict]:
    """GPUs and driver from ``nvidia-smi`` when it is installed; ``[]`` otherwise."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    fields = "name,driver_version,memory.total,compute_cap"
    try:
        out = subprocess.run([exe, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError) as exc:
        return [{"error": f"{type(exc).__name__}: {exc}"}]
    rows = []
    for line in out.stdout.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        rows.append(dict(zip(fields.split(","), parts)))
    return rows


def versions() -> dict:
    """Python and the installed versions of ``PACKAGES``, of every registered backend's ``requires``
    and of every external reference's (``None`` when absent); no optional package is imported."""
    from ..backends import packages
    from .references import packages as reference_packages

    try:
        dists = importlib.metadata.packages_distributions()
    except Exception:  # pragma: no cover - broken metadata
        dists = {}
    out = {"python": platform.python_version()}
    for name in dict.fromkeys(PACKAGES + tuple(packages()) + tuple(reference_packages())):
        version = None
        for dist in dists.get(name, [name]):
            try:
                version = importlib.metadata.version(dist)
                if dist != name:
                    version = f"{version} ({dist})"
                break
            except importlib.metadata.PackageNotFoundError:
                continue
        out[name] = version
    return out


def source_commit() -> str | None:
    """The git commit of mlpbench's own source (``git describe --always --dirty``), or ``None`` when the package
    is not in a git checkout (an installed wheel) or git is missing."""
    exe = shutil.which("git")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-C", os.path.dirname(os.path.abspath(__file__)), "describe", "--always",
                              "--dirty", "--abbrev=12"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def cache_info() -> dict:
    """The per-core data caches and SIMD width the CPU kernels size their blocks by (``core/cpu``)."""
    from ..core import cpu

    try:
        c = cpu.cache_sizes()
        return {"l1d": c.l1, "l2": c.l2, "l3_per_core": c.l3, "source": c.source, "vector_bytes": cpu.vector_bytes()}
    except ValueError as exc:  # a malformed MLPBENCH_CACHES / MLPBENCH_VECTOR_BYTES: recorded, not raised
        return {"error": str(exc)}


def machine_info(backends=()) -> dict:
    """Everything above, plus ``describe()`` of each ``(label, backend)`` in ``backends``."""
    described = {}
    for label, backend in backends:
        try:
            described[label] = {"device": backend.device, **backend.describe()}
        except Exception as exc:  # a backend's self-description must not break a run
            described[label] = {"error": f"{type(exc).__name__}: {exc}"}
    return {
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "os": platform.platform(),
        "cores_logical": os.cpu_count(),
        "cores_physical": physical_cores(),
        "threads_available": threads_available(),
        "cpu_caches": cache_info(),
        "blas": blas_info(),
        "gpus": gpu_info(),
        "versions": versions(),
        "commit": source_commit(),
        "env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
        "backends": described,
        "argv": list(sys.argv),
        **({"name": os.environ[MACHINE_NAME_ENV].strip()} if os.environ.get(MACHINE_NAME_ENV, "").strip() else {}),
    }
