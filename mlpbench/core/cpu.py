"""The CPU's data caches, as the OS reports them: what the CPU backends size their blocks and thread splits by.

``cache_sizes()`` reads, once per process, the caches of CPU 0 from Linux's sysfs
(``/sys/devices/system/cpu/cpu0/cache/index*/{level,type,size,shared_cpu_list}``),
else glibc's ``os.sysconf("SC_LEVEL1_DCACHE_SIZE" / "SC_LEVEL2_CACHE_SIZE" /
"SC_LEVEL3_CACHE_SIZE")`` (no sharing information there: the L3 counts as one
core's), else ``FALLBACK``. The last level is reported per core (its size over the
CPUs that share it), the share a core's blocks can count on when every core works.
``MLPBENCH_CACHES="l1,l2,l3"`` (bytes, per core) overrides all of it (a test,
or a machine whose OS reports nothing).
"""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass

SYSFS = "/sys/devices/system/cpu/cpu0/cache"


@dataclass(frozen=True)
class Caches:
    """Data-cache bytes of one core: L1d, L2, and its share of the L3 (0 where the CPU has none); ``source``
    says where they came from (``"sysfs"``, ``"sysconf"``, ``"env"``, ``"fallback"``)."""

    l1: int
    l2: int
    l3: int
    source: str


#: when the OS reports nothing: 32 KiB L1d, 1 MiB L2, 2 MiB of L3 per core, the low end of the x86
#: server and laptop cores of 2019-2025 (Skylake-SP through Zen 4 / Sapphire Rapids): blocks sized
#: for these fit the larger caches too, at a few per cent of speed at most (the blocks' rule, ``backends``)
FALLBACK = Caches(32 * 1024, 1024 * 1024, 2 * 1024 * 1024, "fallback")


def parse_size(text: str) -> int:
    """``"32K"`` / ``"1024K"`` / ``"32M"`` / ``"65536"`` (sysfs' ``size``) as bytes; ValueError otherwise."""
    clean = text.strip().upper().removesuffix("B")
    scale = {"K": 1024, "M": 1024**2, "G": 1024**3}.get(clean[-1:], 1)
    digits = clean[:-1] if scale > 1 else clean
    if not digits.isdigit() or int(digits) <= 0:
        raise ValueError(f"cache size must be a positive byte count such as 32K or 1M; got {text!r}")
    return int(digits) * scale


def count_cpus(cpu_list: str) -> int:
    """CPUs in a sysfs list such as ``"0-3,8-11"`` (at least 1)."""
    n = 0
    for part in cpu_list.strip().split(","):
        if part:
            lo, _, hi = part.partition("-")
            n += int(hi or lo) - int(lo) + 1
    return max(1, n)


def read_sysfs(root: str = SYSFS) -> Caches | None:
    """The data caches of one CPU from sysfs ``root``; None when it is missing or unreadable."""
    found = {}
    try:
        entries = sorted(e for e in os.listdir(root) if e.startswith("index"))
    except OSError:
        return None
    for entry in entries:
        path = os.path.join(root, entry)
        try:
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            with open(os.path.join(path, "level")) as f:
                level = int(f.read())
            with open(os.path.join(path, "size")) as f:
                size = parse_size(f.read())
            try:
                with open(os.path.join(path, "shared_cpu_list")) as f:
                    sharing = count_cpus(f.read())
            except OSError:
                sharing = 1
        except (OSError, ValueError):
            continue
        if kind in ("Data", "Unified") and level in (1, 2, 3):
            found[level] = size // (sharing if level == 3 else 1)
    if 1 not in found or 2 not in found:
        return None
    return Caches(found[1], found[2], found.get(3, 0), "sysfs")


def read_sysconf() -> Caches | None:
    """L1d / L2 / L3 from ``os.sysconf`` (glibc); None where it has no such names or reports 0."""
    sizes = []
    for name in ("SC_LEVEL1_DCACHE_SIZE", "SC_LEVEL2_CACHE_SIZE", "SC_LEVEL3_CACHE_SIZE"):
        try:
            sizes.append(max(0, int(os.sysconf(name))))
        except (ValueError, OSError, AttributeError):
            sizes.append(0)
    if sizes[0] <= 0 or sizes[1] <= 0:
        return None
    return Caches(sizes[0], sizes[1], sizes[2], "sysconf")


def from_env(value: str) -> Caches:
    """``MLPBENCH_CACHES``: three byte counts, ``"l1,l2,l3"`` (suffixes K / M allowed; l3 may be 0)."""
    parts = [p for p in value.split(",") if p.strip()]
    if len(parts) != 3:
        raise ValueError(f"MLPBENCH_CACHES must be 'l1,l2,l3' in bytes; got {value!r}")
    try:
        l1, l2 = parse_size(parts[0]), parse_size(parts[1])
        l3 = 0 if parts[2].strip() == "0" else parse_size(parts[2])
    except ValueError as e:
        raise ValueError(f"MLPBENCH_CACHES: {e}") from None
    return Caches(l1, l2, l3, "env")


@functools.lru_cache(maxsize=None)
def cache_sizes() -> Caches:
    """This machine's per-core data caches (module docstring), read once per process."""
    env = os.environ.get("MLPBENCH_CACHES")
    if env:
        return from_env(env)
    return read_sysfs() or read_sysconf() or FALLBACK


#: SIMD register bytes by the /proc/cpuinfo flag that first matches (x86 and Arm); 32 when none is found
VECTOR_FLAGS = (("avx512f", 64), ("avx2", 32), ("avx", 32), ("sse2", 16), ("asimd", 16), ("neon", 16))
FALLBACK_VECTOR_BYTES = 32


def read_vector_bytes(cpuinfo: str = "/proc/cpuinfo") -> int | None:
    """The widest SIMD register (bytes) the CPU's flags name; None when the file has no flags line."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip().lower() in ("flags", "features"):
                    flags = set(value.split())
                    return next((b for flag, b in VECTOR_FLAGS if flag in flags), None)
    except OSError:
        return None
    return None


@functools.lru_cache(maxsize=None)
def vector_bytes() -> int:
    """This CPU's SIMD width in bytes (``read_vector_bytes``), ``FALLBACK_VECTOR_BYTES`` where unknown;
    ``MLPBENCH_VECTOR_BYTES`` overrides it."""
    env = os.environ.get("MLPBENCH_VECTOR_BYTES")
    if env:
        if not env.isdigit() or int(env) <= 0:
            raise ValueError(f"MLPBENCH_VECTOR_BYTES must be a positive integer; got {env!r}")
        return int(env)
    return read_vector_bytes() or FALLBACK_VECTOR_BYTES


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (``model name``, or an Arm board's ``Hardware`` / ``cpu model``),
    else ``platform.processor()`` or the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
