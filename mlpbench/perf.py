"""FLOP counts, machine peak measurement and timing helpers.

Public API (``auto.py`` and the benchmark suite build on it):

* ``flops_forward / flops_backward / flops_step(n_samples, layer_sizes)`` and ``flops(op, ...)``;
* ``bytes_moved(op, n_samples, layer_sizes, dtype)``: the compulsory memory traffic (roofline x-axis);
* ``time_callable(fn, *, sync=None, warmup=1, repeat=7, min_time=0.01, max_time=None) -> Timing``;
* ``time_step(backend, layer_sizes, n_samples, dtype, activation="relu", op="step", ...) -> Timing``;
* ``measure_peak(dtype) -> GFLOP/s`` (the CPU's large-matmul rate, cached per process),
  ``measure_memcpy() -> GB/s``, and ``measure_device_peak(backend, dtype)`` for a non-CPU device.

Timings never include the first call: ``warmup_s`` (JIT compilation, GPU
context creation, the first call of the op) is reported apart from the
steady-state ``median`` and ``iqr``. Every timed region ends with ``sync()``.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from .cases import make_data
from .params import init_params, macs

#: a point whose IQR exceeds this fraction of its median is flagged noisy
NOISY_IQR = 0.10


def flops_forward(n_samples, layer_sizes) -> int:
    """Matmul FLOPs of one forward pass: ``2 N sum(fan_in * fan_out)``."""
    return 2 * macs(n_samples, layer_sizes)


def flops_backward(n_samples, layer_sizes) -> int:
    """Backward matmul FLOPs: weight gradients of every layer, input gradients of all but the first."""
    return 2 * (macs(n_samples, layer_sizes) + macs(n_samples, layer_sizes[1:]))


def flops_step(n_samples, layer_sizes) -> int:
    """One training step: forward plus backward."""
    return flops_forward(n_samples, layer_sizes) + flops_backward(n_samples, layer_sizes)


_FLOPS = {"forward": flops_forward, "backward": flops_backward, "step": flops_step}


def flops(op, n_samples, layer_sizes, epochs=1) -> int:
    """Analytic matmul FLOPs of ``op`` (``train`` is ``epochs`` steps)."""
    if op == "train":
        return epochs * flops_step(n_samples, layer_sizes)
    if op not in _FLOPS:
        raise ValueError(f"op must be one of {[*_FLOPS, 'train']}; got {op!r}")
    return _FLOPS[op](n_samples, layer_sizes)


def bytes_moved(op, n_samples, layer_sizes, dtype="float64", epochs=1) -> int:
    """Compulsory memory traffic of ``op`` in bytes (each array read or written once), an estimate.

    forward: read X and the params, write every activation; backward: read the
    activations and params, write the grads and one error array per layer;
    step: both plus the update (read params and grads, write params).
    """
    item = np.dtype(dtype).itemsize
    n_par = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    acts = n_samples * sum(layer_sizes)
    fwd = acts + n_par
    bwd = acts + n_par + n_par + n_samples * sum(layer_sizes[1:])
    upd = 3 * n_par
    count = {"forward": fwd, "backward": bwd, "step": fwd + bwd + upd, "train": epochs * (fwd + bwd + upd)}
    if op not in count:
        raise ValueError(f"op must be one of {list(count)}; got {op!r}")
    return item * count[op]


# ---------------------------------------------------------------- timing
@dataclass
class Timing:
    """Seconds per call: ``median`` and ``iqr`` over ``repeats`` repeats of ``number`` calls each."""

    median: float
    iqr: float
    times: list = field(default_factory=list)
    number: int = 1
    warmup_s: float = 0.0

    @property
    def repeats(self) -> int:
        return len(self.times)

    @property
    def noisy(self) -> bool:
        """IQR above ``NOISY_IQR`` (10 %) of the median."""
        return self.median > 0 and self.iqr / self.median > NOISY_IQR

    @classmethod
    def from_times(cls, times, number=1, warmup_s=0.0) -> "Timing":
        t = np.asarray(times, dtype=float)
        if t.size == 0:
            raise ValueError("times must not be empty")
        q25, q50, q75 = np.percentile(t, [25, 50, 75])
        return cls(float(q50), float(q75 - q25), [float(x) for x in t], int(number), float(warmup_s))

    def to_dict(self) -> dict:
        return {"median_s": self.median, "iqr_s": self.iqr, "noisy": self.noisy, "warmup_s": self.warmup_s,
                "repeats": self.repeats, "number": self.number, "times_s": self.times}


def time_callable(fn, *, sync=None, warmup=1, repeat=7, min_time=0.01, max_time=None) -> Timing:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` repeats of ``number`` calls each.

    ``number`` is chosen so that one repeat lasts at least ``min_time`` seconds.
    ``sync()`` (e.g. ``backend.synchronize``, which also waits for lazily
    evaluated results) ends every timed region, and the warm-up. Once three repeats are done, stops early when ``max_time``
    seconds have been spent. ``warmup_s`` is the time of the warm-up calls.
    """
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1; got {repeat}")
    sync = sync or (lambda: None)
    clock = time.perf_counter

    def run(number):
        t0 = clock()
        for _ in range(number):
            fn()
        sync()
        return clock() - t0

    t0 = clock()
    for _ in range(warmup):
        run(1)
    warmup_s = clock() - t0
    one = run(1)  # calibration call, also a repeat when it already lasts min_time
    number = 1 if one >= min_time else max(1, math.ceil(min_time / max(one, 1e-9)))
    times = [one] if number == 1 else []
    start = clock()
    while len(times) < repeat:
        times.append(run(number) / number)
        if max_time is not None and len(times) >= 3 and clock() - start > max_time:
            break
    return Timing.from_times(times, number, warmup_s)


def time_step(backend, layer_sizes, n_samples, dtype, activation="relu", op="step", *, repeat=7, min_time=0.01,
              max_time=None, epochs=1, lr=0.01, grad_reduction="mean", X=None, y=None, params=None,
              seed=0, backend_warmup=True) -> Timing:
    """Time one ``op`` (forward | backward | step | train) of ``backend`` in steady state.

    Inputs are built once (seeded random data, or ``X`` / ``y`` / ``params`` as
    NumPy arrays) and converted to the backend once. ``backend.warmup`` (unless
    ``backend_warmup=False``, for a shape already warm) and the first call of
    the op are timed into ``warmup_s``; then ``repeat``
    synchronized repeats. ``step`` and ``train`` update the params in place
    (the cost does not depend on their values).
    """
    if X is None or y is None:
        X, y = make_data(n_samples, layer_sizes, dtype, seed)
    if params is None:
        params = init_params(layer_sizes, seed, dtype)
    bp = backend.params_from_numpy(params)
    bX, by = backend.asarray(np.ascontiguousarray(X, dtype=dtype)), backend.asarray(np.ascontiguousarray(y, dtype=dtype))
    backend.synchronize()

    t0 = time.perf_counter()
    warm = getattr(backend, "warmup", None)
    if backend_warmup and warm is not None:
        warm(list(layer_sizes), n_samples=int(X.shape[0]), dtype=np.dtype(dtype).name, activation=activation)
    pre_s = time.perf_counter() - t0

    if op == "forward":
        def fn():
            return backend.forward(bp, bX, activation=activation)[0]
    elif op == "backward":
        _, cache = backend.forward(bp, bX, activation=activation)

        def fn():
            return backend.backward(bp, cache, bX, by, activation=activation, grad_reduction=grad_reduction)
    elif op == "step":
        def fn():
            return backend.step(bp, bX, by, lr=lr, activation=activation, grad_reduction=grad_reduction)
    elif op == "train":
        def fn():
            return backend.train(bp, bX, by, lr=lr, epochs=epochs, activation=activation,
                                 grad_reduction=grad_reduction)
    else:
        raise ValueError(f"op must be one of ['forward', 'backward', 'step', 'train']; got {op!r}")
    timing = time_callable(fn, sync=backend.synchronize, warmup=1, repeat=repeat, min_time=min_time,
                           max_time=max_time)
    timing.warmup_s += pre_s
    return timing


# ---------------------------------------------------------------- machine peak
def _best_rate(fn, work, min_time=0.05, tries=5):
    """Best ``work / seconds`` over ``tries`` synchronized calls (after one warm-up)."""
    t = time_callable(fn, warmup=1, repeat=tries, min_time=min_time)
    return work / min(t.times)


def _matmul_peak(make, matmul, sync, start=512, limit=8192, target_s=0.05):
    """Double a square matmul's size until one call takes ``target_s``; return the best GFLOP/s."""
    n = start
    while True:
        a, b = make(n)
        t0 = time.perf_counter()
        matmul(a, b)
        sync()
        elapsed = time.perf_counter() - t0
        if elapsed >= target_s or n >= limit:
            break
        n *= 2
    work = 2.0 * n ** 3

    def fn():
        matmul(a, b)
        sync()

    return _best_rate(fn, work, min_time=0.0, tries=3) / 1e9


@functools.lru_cache(maxsize=None)
def measure_peak(dtype="float64") -> float:
    """The CPU's large square matmul rate in GFLOP/s (NumPy's BLAS, all its threads); cached per process."""
    dt = np.dtype(dtype)
    rng = np.random.RandomState(0)

    def make(n):
        return rng.rand(n, n).astype(dt), rng.rand(n, n).astype(dt)

    return _matmul_peak(make, np.matmul, lambda: None, limit=4096)


@functools.lru_cache(maxsize=None)
def measure_memcpy(nbytes=64 * 2 ** 20) -> float:
    """Host memory bandwidth in GB/s: a large array copy (bytes read plus bytes written); cached."""
    src = np.ones(nbytes // 8)
    dst = np.empty_like(src)
    return _best_rate(lambda: np.copyto(dst, src), 2.0 * src.nbytes, min_time=0.0, tries=5) / 1e9


_DEVICE_PEAKS: dict = {}


def measure_device_peak(backend, dtype="float32", start=1024, limit=16384) -> float:
    """Matmul GFLOP/s of ``backend``'s device through its own forward pass of one wide layer.

    For a ``"cpu"`` device this is ``measure_peak(dtype)``. Otherwise one
    ``[n, n]`` layer on ``n`` rows (``2 n^3`` FLOPs, the sigmoid is negligible)
    is doubled in size from ``start`` until a call takes 50 ms or ``n`` reaches
    ``limit``. Cached per (device, dtype).
    """
    dt = np.dtype(dtype).name
    if backend.device == "cpu":
        return measure_peak(dt)
    key = (backend.device, dt)
    if key not in _DEVICE_PEAKS:
        def make(n):  # constant values: a GEMM's speed does not depend on them, and filling is fast
            W = backend.asarray(np.full((n, n), 1.0 / n, dtype=dt))
            return [(W, backend.asarray(np.zeros((1, n), dt)))], backend.asarray(np.full((n, n), 0.5, dtype=dt))

        def matmul(params, X):
            backend.forward(params, X)

        _DEVICE_PEAKS[key] = _matmul_peak(make, matmul, backend.synchronize, start=start, limit=limit)
    return _DEVICE_PEAKS[key]


def measure_transfer(backend, nbytes=64 * 2 ** 20) -> dict:
    """Host-to-device and device-to-host GB/s of ``backend.asarray`` / ``to_numpy`` (reported apart from compute)."""
    host = np.ones(nbytes // 8)
    dev = backend.asarray(host)
    backend.synchronize()

    def h2d():
        backend.asarray(host)
        backend.synchronize()

    h2d_rate = _best_rate(h2d, host.nbytes, min_time=0.0, tries=3) / 1e9
    d2h_rate = _best_rate(lambda: backend.to_numpy(dev), host.nbytes, min_time=0.0, tries=3) / 1e9
    return {"h2d_GBps": h2d_rate, "d2h_GBps": d2h_rate}
