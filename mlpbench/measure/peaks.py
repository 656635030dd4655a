"""FLOP counts and the machine's peaks, measured through the one timing engine (``measure/engine.py``).

* ``flops_forward / flops_backward / flops_step(n_samples, layer_sizes)`` and ``flops(op, ...)``;
* ``bytes_moved(op, n_samples, layer_sizes, dtype)``: the compulsory memory traffic (roofline x-axis);
* ``Peaks(backends, dtypes)``: the CPU's large-matmul GFLOP/s per dtype, its copy GB/s, and each
  other device's matmul and host<->device rates, each a ``Peak`` sampled whenever
  ``Peaks.sample()`` is called (a run samples at its start, between dtypes and at its end), so
  the spread of a machine's peak over a run is seen, never cached away.

This module holds no timing loop: every rate is ``Peak.sample`` of an ``engine.Subject`` (``rate``: best of calibrated samples).
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field

import numpy as np

from . import engine as M
from ..core.params import macs

#: a peak whose samples spread more than this fraction of the best is flagged
PEAK_SPREAD = 0.10


def rate(subject, work, *, rounds=5, min_time=0.05, clock=time.perf_counter) -> float:
    """Best ``work / seconds per call`` of ``subject`` over ``rounds`` calibrated samples (after a warm-up)."""
    m = M.measure([subject], control=False, min_time=min_time, min_rounds=rounds, max_rounds=rounds,
                  max_time=math.inf, clock=clock)
    return work / m[subject.label].min


@dataclass
class Peak:
    """A machine rate (GFLOP/s, GB/s) sampled at several moments of a run: trust ``best``, read ``spread``."""

    unit: str = "GFLOP/s"
    samples: list = field(default_factory=list)

    def sample(self, subject, work, **kw) -> float:
        """Measure ``rate(subject, work)`` now (``work`` in the unit's numerator) and keep it."""
        value = rate(subject, work, **kw)
        self.samples.append(value)
        return value

    @property
    def best(self) -> float:
        return max(self.samples) if self.samples else float("nan")

    @property
    def spread(self) -> float:
        """``(best - worst) / best``: 0 for one sample."""
        return (self.best - min(self.samples)) / self.best if self.samples else float("nan")

    @property
    def flagged(self) -> bool:
        """The samples spread by more than ``PEAK_SPREAD`` (10 %) of the best: the peak moved during the run."""
        return bool(self.samples) and self.spread > PEAK_SPREAD

    def to_dict(self) -> dict:
        return {"unit": self.unit, "best": self.best, "spread": self.spread, "flagged": self.flagged,
                "samples": list(self.samples)}


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
    """Analytic matmul FLOPs of ``op`` (``train`` is ``epochs`` steps; ``epoch`` one step's worth, however
    its N rows are split into mini-batches)."""
    if op in ("train", "epoch"):
        return (epochs if op == "train" else 1) * flops_step(n_samples, layer_sizes)
    if op not in _FLOPS:
        raise ValueError(f"op must be one of {[*_FLOPS, 'train', 'epoch']}; got {op!r}")
    return _FLOPS[op](n_samples, layer_sizes)


def bytes_moved(op, n_samples, layer_sizes, dtype="float64", epochs=1, batch_size=None) -> int:
    """Compulsory memory traffic of ``op`` in bytes (each array read or written once), an estimate.

    forward: read X and the params, write every activation; backward: read the
    activations and params, write the grads and one error array per layer;
    step: both plus the update (read params and grads, write params). With a
    ``batch_size`` (``train`` / ``epoch``) the params are read, and the grads
    and the update written, once per mini-batch.
    """
    item = np.dtype(dtype).itemsize
    n_par = sum(i * o + o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))
    acts = n_samples * sum(layer_sizes)
    fwd = acts + n_par
    bwd = acts + n_par + n_par + n_samples * sum(layer_sizes[1:])
    upd = 3 * n_par
    per_epoch = fwd + bwd + upd + (-(-n_samples // batch_size) - 1) * 6 * n_par if batch_size else fwd + bwd + upd
    count = {"forward": fwd, "backward": bwd, "step": fwd + bwd + upd, "train": epochs * per_epoch,
             "epoch": per_epoch}
    if op not in count:
        raise ValueError(f"op must be one of {list(count)}; got {op!r}")
    return item * count[op]


# ---------------------------------------------------------------- machine peaks
def matmul_size(make, matmul, sync=None, start=512, limit=8192, target_s=0.05, step=256) -> int:
    """The square matmul size to time: the first one whose call takes ``target_s`` (or ``limit``).

    From ``start``, each try that is too short is grown by the cube root of the time still missing
    (a matmul's time grows as ``n^3``; at least x1.25, at most x2), rounded up to a multiple of
    ``step``. Doubling instead overshot 8x: 2048 (0.17 s a call in float64 on the 2-core AMD EPYC)
    where 1024 took 0.021 s, and every sample of the peak then paid for it. A size search, not a
    measurement: the rate itself is sampled by ``Peaks``.
    """
    n = start
    while n < limit:
        a, b = make(n)
        t0 = time.perf_counter()
        matmul(a, b)
        if sync is not None:
            sync()
        t = time.perf_counter() - t0
        if t >= target_s:
            break
        grow = min(2.0, max(1.25, (target_s / t) ** (1 / 3))) if t > 0 else 2.0
        n = -(-int(n * grow) // step) * step
    return min(n, limit)


def _cpu_operands(n, dtype):
    rng = np.random.RandomState(0)
    return rng.rand(n, n).astype(dtype), rng.rand(n, n).astype(dtype)


class Peaks:
    """The run's machine rates, each a ``Peak``: ``sample()`` measures them all once more.

    ``cpu``: NumPy's BLAS matmul GFLOP/s per dtype (all its threads) and the
    host copy GB/s (bytes read plus written). Every other device among
    ``backends`` (``(label, backend)`` pairs): one ``[n, n]`` layer's forward
    pass on ``n`` rows (``2 n^3`` FLOPs) per dtype, and ``asarray`` /
    ``to_numpy`` GB/s of 64 MiB, reported apart from compute. Sizes are found
    once; the arrays are rebuilt for each sample, so nothing large is held
    between samples. A device whose measurement raises keeps the error.
    """

    def __init__(self, backends=(), dtypes=("float64",), *, cpu_limit=4096, device_limit=16384,
                 memcpy_bytes=64 * 2 ** 20):
        self.dtypes = [np.dtype(dt).name for dt in dtypes]
        self.cpu_limit, self.device_limit, self.memcpy_bytes = cpu_limit, device_limit, memcpy_bytes
        self.devices = {}
        for label, be in backends:
            if be.device != "cpu" and be.device not in self.devices:
                self.devices[be.device] = (label, be)
        self._sizes = {}
        self.gflops = {"cpu": {dt: Peak("GFLOP/s") for dt in self.dtypes}}
        self.gflops.update({dev: {dt: Peak("GFLOP/s") for dt in self.dtypes} for dev in self.devices})
        self.rates = {"cpu": {"memcpy_GBps": Peak("GB/s")}}
        self.rates.update({dev: {"h2d_GBps": Peak("GB/s"), "d2h_GBps": Peak("GB/s")} for dev in self.devices})
        self.errors = {}

    def sample(self, dtypes=None) -> None:
        """One more sample of every rate (of ``dtypes`` only, when given: between dtypes of a long run)."""
        for dt in self.dtypes if dtypes is None else [np.dtype(d).name for d in dtypes]:
            n = self._size(("cpu", dt), lambda: matmul_size(lambda k: _cpu_operands(k, dt), np.matmul,
                                                            limit=self.cpu_limit))
            a, b = _cpu_operands(n, dt)
            self.gflops["cpu"][dt].sample(M.Subject(f"matmul {dt}", functools.partial(np.matmul, a, b)), 2 * n ** 3 / 1e9,
                                          rounds=3, min_time=0)
            del a, b
        if dtypes is None:
            src = np.ones(self.memcpy_bytes // 8)
            dst = np.empty_like(src)
            self.rates["cpu"]["memcpy_GBps"].sample(M.Subject("memcpy", lambda: np.copyto(dst, src)),
                                                    2.0 * src.nbytes / 1e9, rounds=5, min_time=0)
            del src, dst
        for dev, (label, be) in self.devices.items():
            if dev in self.errors:
                continue
            try:
                self._sample_device(dev, be, self.dtypes if dtypes is None else dtypes, dtypes is None)
            except Exception as exc:  # a device that cannot be measured is reported, never ends the run
                self.errors[dev] = f"{type(exc).__name__}: {exc}"

    def _size(self, key, search) -> int:
        if key not in self._sizes:
            self._sizes[key] = search()
        return self._sizes[key]

    def _sample_device(self, dev, be, dtypes, transfers):
        for dt in [np.dtype(d).name for d in dtypes]:
            def make(n, dt=dt):  # constant values: a GEMM's speed does not depend on them, and filling is fast
                W = be.asarray(np.full((n, n), 1.0 / n, dtype=dt))
                return [(W, be.asarray(np.zeros((1, n), dt)))], be.asarray(np.full((n, n), 0.5, dtype=dt))

            n = self._size((dev, dt), lambda: matmul_size(make, lambda p, X: be.forward(p, X), be.synchronize,
                                                          start=1024, limit=self.device_limit))
            params, X = make(n)
            self.gflops[dev][dt].sample(M.Subject(f"{dev} matmul {dt}", lambda: be.forward(params, X),
                                                  sync=be.synchronize), 2 * n ** 3 / 1e9, rounds=3, min_time=0)
        if transfers:
            host = np.ones(self.memcpy_bytes // 8)
            on_dev = be.asarray(host)
            be.synchronize()
            self.rates[dev]["h2d_GBps"].sample(M.Subject("h2d", lambda: be.asarray(host), sync=be.synchronize),
                                               host.nbytes / 1e9, rounds=3, min_time=0)
            self.rates[dev]["d2h_GBps"].sample(M.Subject("d2h", lambda: be.to_numpy(on_dev)), host.nbytes / 1e9,
                                               rounds=3, min_time=0)

    def best(self, device, dtype):
        """The best matmul GFLOP/s seen so far on ``device`` (the CPU's for a device not measured), or None."""
        entry = self.gflops.get(device, self.gflops["cpu"]).get(np.dtype(dtype).name)
        return entry.best if entry is not None and entry.samples else None

    def flagged(self) -> list[str]:
        """``"<device> <what>"`` for every rate whose samples spread over ``PEAK_SPREAD``."""
        out = [f"{dev} matmul {dt}" for dev, per in self.gflops.items() for dt, p in per.items() if p.flagged]
        return out + [f"{dev} {k}" for dev, per in self.rates.items() for k, p in per.items() if p.flagged]

    def to_dict(self) -> dict:
        """``{device: {"gflops": {dtype: Peak.to_dict()}, "<rate>_GBps": Peak.to_dict(), ...}}``."""
        doc = {}
        for dev in self.gflops:
            entry = {"gflops": {dt: p.to_dict() for dt, p in self.gflops[dev].items()}}
            entry.update({k: p.to_dict() for k, p in self.rates[dev].items()})
            if dev in self.devices:
                entry["via"] = self.devices[dev][0]
            if dev in self.errors:
                entry["error"] = self.errors[dev]
            doc[dev] = entry
        return doc


def peak_best(entry):
    """A stored peak value: a ``/2`` ``Peak.to_dict()`` (its ``best``) or a ``/1`` plain number."""
    return entry.get("best") if isinstance(entry, dict) else entry
