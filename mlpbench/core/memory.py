"""Memory estimates: the bytes a model, a fit or a benchmark point needs, checked before allocating.

The estimates count every array of the NumPy reference's training loop (params,
their backend copy and grads, the forward cache, the backward's temporaries and
the data in both the caller's and the fit's copies) with a margin; they are meant
to refuse what cannot fit, not to be exact. ``available_bytes`` is
``MemAvailable`` from ``/proc/meminfo`` (or the free physical pages), capped by
``RLIMIT_AS`` when one is set.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

#: estimates are multiplied by this before comparing (allocator overhead, BLAS buffers)
MARGIN = 1.25


class NotEnoughMemory(MemoryError):
    """A model, fit or benchmark point needs more memory than this machine has available."""


def available_bytes() -> int | None:
    """Bytes that can be allocated now without swapping, or ``None`` when unknown."""
    avail = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    if avail is None:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            avail = soft if avail is None else min(avail, soft)
    return avail


def _sizes(layer_sizes):
    return [int(s) for s in layer_sizes]


def params_bytes(layer_sizes, dtype) -> int:
    """Bytes of one set of params ``[(W, b), ...]``."""
    s = _sizes(layer_sizes)
    return sum(fi * fo + fo for fi, fo in zip(s[:-1], s[1:])) * np.dtype(dtype).itemsize


def model_bytes(layer_sizes, dtype) -> int:
    """Creating a model: the float64 init draws, then the params in ``dtype``."""
    return params_bytes(layer_sizes, "float64") + params_bytes(layer_sizes, dtype)


def fit_bytes(n_samples, layer_sizes, dtype, epochs=0) -> int:
    """A full-batch fit on ``n_samples`` rows: params x4 (model, backend copy, grads, update temporaries),
    the forward cache (pre- and post-activation per layer), the backward's dz / da per layer, the data, and the
    loss history of ``epochs`` epochs (float64, twice: the loop's and the caller's copy)."""
    s, item = _sizes(layer_sizes), np.dtype(dtype).itemsize
    n = int(n_samples)
    acts = n * sum(s[1:]) * item
    data = n * (s[0] + s[-1]) * (item + 8)  # the caller's float64 copy and the fit's copy, X and y
    return 4 * params_bytes(s, dtype) + 2 * acts + 2 * n * max(s) * item + data + 16 * int(epochs)


def check_fits(nbytes, what) -> None:
    """Raise ``NotEnoughMemory`` naming ``what``, the estimate and the memory available, when it cannot fit."""
    avail = available_bytes()
    need = int(nbytes * MARGIN)
    if avail is not None and need > avail:
        raise NotEnoughMemory(f"{what} needs about {fmt_bytes(need)} but {fmt_bytes(avail)} of memory is available")


def fmt_bytes(n) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n} B"  # pragma: no cover


__all__ = ["NotEnoughMemory", "available_bytes", "check_fits", "fit_bytes", "fmt_bytes", "model_bytes",
           "params_bytes"]
