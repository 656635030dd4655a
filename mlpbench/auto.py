"""``backend="auto"``: the fastest backend that passes parity here, measured once and remembered.

A *candidate* is a ``BackendSpec`` (a backend name plus options), one per strategy the backend
offers (``numba[loop]`` and ``numba[step]`` are separate candidates). For a
fit of a given shape, dtype and activation:

1. candidates that are not available here are dropped (with their reason);
2. each remaining one must pass ``parity.probe`` on the fit's shape: a backend
   that fails parity is never chosen;
3. each survivor is timed per epoch over a few warmed-up epochs of ``train``
   (warm-up excluded), in a fixed order, until the time budget is spent;
4. the ranking is cached on disk under a key of machine fingerprint, package
   versions, dtype, activation and a power-of-two shape bucket.

``choose`` returns the whole ranking, so ``MLP.fit`` can fall back to the next
candidate when the first one fails at run time (out of memory, CUDA error).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
import sys
import json
import logging
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from . import parity
from .backends import BackendSpec, availability, backend_class, backend_names, packages
from .fileio import atomic_write
from .machine import cpu_model
from .params import init_params, macs

log = logging.getLogger("mlpbench.auto")

SCHEMA = "mlpbench.auto/1"
#: seconds the first uncached decision may spend (imports, JIT, probes and timing included)
DEFAULT_BUDGET_S = 0.5
#: seconds one timed sample lasts at least (tiny nets: many epochs per call)
MIN_TIMED_S = 0.02
#: calibration runs on at most this many rows: the per-epoch cost is linear in N beyond it, and the
#: first decision must stay within its budget even where one full epoch takes longer than that
CAL_MAX_ROWS = 2048
#: pause between the parity probes and the timing (see ``calibrate``)
PROBE_SETTLE_S = 0.1
#: share of the budget the parity probes may start in (the rest is for settling and timing)
PROBE_SHARE = 0.4


@dataclass
class Decision:
    ranking: list  # [BackendSpec], fastest first
    seconds_per_epoch: dict  # label -> s/epoch
    rejected: dict = field(default_factory=dict)  # label -> why it was not ranked
    shape: tuple = ()
    cached: bool = False
    cost_s: float = 0.0

    @property
    def reason(self) -> str:
        """E.g. ``numba[loop]: 212x faster than numpy, 7x faster than jax at N=4, [2, 4, 1]``."""
        if not self.ranking:
            return "no candidate passed parity and timing"
        best = self.ranking[0]
        t = self.seconds_per_epoch
        rivals = {}  # fastest candidate of every other backend
        for c in self.ranking[1:]:
            if c.name != best.name and c.name not in rivals:
                rivals[c.name] = c.label
        parts = [f"{t[lab] / t[best.label]:.3g}x faster than {lab}" for lab in rivals.values()]
        n, sizes = self.shape
        head = f"{best.label}: " + (", ".join(parts) if parts else "the only validated candidate")
        return f"{head} at N={n}, {list(sizes)}" + (" (cached)" if self.cached else "")

    def to_json(self):
        return {"ranking": [c.to_json() for c in self.ranking], "seconds_per_epoch": self.seconds_per_epoch,
                "rejected": self.rejected, "shape": [self.shape[0], list(self.shape[1])], "created": time.time()}

    @classmethod
    def from_json(cls, d):
        return cls([BackendSpec.from_json(c) for c in d["ranking"]], dict(d["seconds_per_epoch"]),
                   dict(d.get("rejected", {})), (d["shape"][0], tuple(d["shape"][1])), cached=True)


# ---------------------------------------------------------------- candidates
def candidates(names=None) -> tuple[list, dict]:
    """Available candidates (one ``BackendSpec`` per strategy) and ``{name: reason}`` for the unavailable."""
    found, rejected = [], {}
    for name in names or backend_names():
        ok, reason = availability(name)
        if not ok:
            rejected[name] = reason
            continue
        strategies = backend_class(name).strategies or (None,)
        found += [BackendSpec.of(name, strategy=s) if s else BackendSpec(name) for s in strategies]
    return found, rejected


def applies(cand: BackendSpec, n_samples, layer_sizes, dtype) -> bool:
    """The backend's own rule (``strategy_applies``) on whether a strategy suits this size at all.

    For example a one-block GPU kernel or a BLAS-free whole-loop kernel for
    small nets; a strategy that does not apply is not timed.
    """
    strategy = dict(cand.options).get("strategy")
    rule = backend_class(cand.name).strategy_applies
    return strategy is None or bool(rule(strategy, n_samples, list(layer_sizes), np.dtype(dtype).name))


# ---------------------------------------------------------------- cache
def cache_dir() -> str:
    root = os.path.expanduser(os.environ.get("MLPBENCH_CACHE_DIR", ""))  # '~/x' is the user's home, as in a shell
    if not root:
        base = os.path.expanduser(os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"))
        root = os.path.join(base, "mlpbench")
    return root


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
    versions = []
    for pkg in dict.fromkeys(("mlpbench", *packages(distributions=True), *packages())):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{pkg}={importlib.metadata.version(pkg)}")
    return f"{cpu}|{os.cpu_count()} cores|{','.join(gpus) or 'no gpu'}|{' '.join(versions)}"


def bucket(n: int) -> int:
    """The power of two at or above ``n``."""
    return 1 << max(0, int(n) - 1).bit_length()


def cache_key(n_samples, layer_sizes, dtype, activation) -> str:
    shape = "x".join(str(bucket(s)) for s in layer_sizes)
    return f"{fingerprint()}|{np.dtype(dtype).name}|{activation}|N{bucket(n_samples)}|{shape}"


class Cache:
    """The on-disk decisions: one JSON file, written atomically under a lock."""

    def __init__(self, path=None):
        self.path = path or cache_path()
        self._entries = None
        self._mtime = None

    def _read(self) -> dict:
        try:
            mtime = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return {}
        if self._entries is not None and mtime == self._mtime:
            return self._entries
        try:
            with open(self.path) as f:
                data = json.load(f)
            if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("entries"), dict):
                warnings.warn(f"ignoring mlpbench auto cache {self.path}: written by another version "
                              f"(schema {data.get('schema') if isinstance(data, dict) else None!r}); it will be rebuilt",
                              RuntimeWarning, stacklevel=3)
                entries = {}
            else:
                entries = data["entries"]
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            warnings.warn(f"ignoring corrupt mlpbench auto cache {self.path} ({exc}); it will be rebuilt",
                          RuntimeWarning, stacklevel=3)
            entries = {}
        self._entries, self._mtime = entries, mtime
        return entries

    def get(self, key):
        entry = self._read().get(key)
        if entry is None:
            return None
        try:
            return Decision.from_json(entry)
        except (KeyError, TypeError, ValueError, IndexError):
            return None

    def put(self, key, decision: Decision) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        with _locked(self.path + ".lock"):
            self._entries = None  # re-read under the lock: other processes may have written
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # already warned on the read path
                entries = dict(self._read())
            entries[key] = decision.to_json()
            _atomic_write_json(self.path, {"schema": SCHEMA, "entries": entries})
            self._entries = None

    def entries(self) -> dict:
        return dict(self._read())

    def clear(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        self._entries = None


@functools.lru_cache(maxsize=None)
def shared_cache(path) -> Cache:
    """One ``Cache`` per file for the process, so its in-memory copy serves repeated decisions."""
    return Cache(path)


@contextlib.contextmanager
def _locked(path):
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: atomic replace still keeps the file valid
        yield
        return
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _atomic_write_json(path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=1, sort_keys=True))


# ---------------------------------------------------------------- calibration
def _time_per_epoch(backend, layer_sizes, n_samples, dtype, activation, deadline, samples=3) -> float:
    """Seconds per epoch of ``backend.train`` on this shape, warm-up excluded.

    The minimum over ``samples`` timed calls: on a shared 2-core machine a
    sample can only be slowed down (another process, or a thread pool still
    spinning from the previous candidate), never sped up.
    """
    rng = np.random.RandomState(0)
    params0 = init_params(layer_sizes, 0, dtype)
    X = backend.asarray(rng.rand(n_samples, layer_sizes[0]).astype(dtype))
    y = backend.asarray((rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype))
    params = backend.params_from_numpy(params0)

    def run(epochs):
        t0 = time.perf_counter()
        backend.train(params, X, y, lr=1e-6, epochs=epochs, activation=activation)
        backend.synchronize()
        return time.perf_counter() - t0

    run(1)  # warm-up: JIT / context / caches
    epochs = 1
    one = run(1)
    if one < MIN_TIMED_S / 4:  # tiny per-epoch cost: time several epochs in one call
        epochs = int(min(10_000, max(2, MIN_TIMED_S / max(one, 1e-7))))
    best = one
    for _ in range(samples):
        best = min(best, run(epochs) / epochs)
        if time.perf_counter() > deadline:
            break
    return float(best)


def calibrate(n_samples, layer_sizes, dtype, activation="relu", budget_s=DEFAULT_BUDGET_S, names=None,
              settle_s=0.0) -> Decision:
    """Probe parity and time every available candidate for this fit; rank them fastest first.

    Timing runs on ``min(n_samples, CAL_MAX_ROWS)`` rows; ``settle_s`` pauses
    before each candidate so the previous one's thread pool goes idle.
    """
    t0 = time.perf_counter()
    n_cal = min(int(n_samples), CAL_MAX_ROWS)
    deadline = t0 + 0.85 * budget_s  # the last candidate started may run past it
    found, rejected = candidates(names)
    seconds = {}
    ordered = sorted(found, key=lambda c: _prior(c, n_samples, layer_sizes))
    # 1. parity probes (small N), in order, while PROBE_SHARE of the budget lasts: never time a wrong backend
    valid = []
    for cand in ordered:
        if valid and time.perf_counter() > t0 + PROBE_SHARE * budget_s:
            rejected[cand.label] = f"not measured: the {budget_s:g} s calibration budget was spent"
            continue
        if not applies(cand, n_samples, layer_sizes, dtype):
            rejected[cand.label] = "not suited to this size (the backend's strategy_applies rule)"
            continue
        try:
            backend = cand.make()
            ok, failure = parity.probe(backend, layer_sizes, n_samples, dtype, activation)
        except Exception as exc:
            rejected[cand.label] = f"raised {type(exc).__name__}: {exc}"
            continue
        if ok:
            valid.append((cand, backend))
        else:
            rejected[cand.label] = f"failed parity: {failure}"
    # 2. let the probes' thread pools go idle (a spinning BLAS pool starves the next backend's
    #    threads on 2 cores), then 3. time the survivors in order until the budget is spent
    time.sleep(max(settle_s, PROBE_SETTLE_S))
    cheapest = 0.0  # wall time of the cheapest candidate timed so far: a floor for the next one
    for i, (cand, backend) in enumerate(valid):
        if seconds and time.perf_counter() + cheapest > deadline:
            rejected[cand.label] = f"not measured: the {budget_s:g} s calibration budget was spent"
            continue
        if settle_s and i:
            time.sleep(settle_s)
        started = time.perf_counter()
        try:
            seconds[cand.label] = _time_per_epoch(backend, layer_sizes, n_cal, dtype, activation, deadline)
        except Exception as exc:
            rejected[cand.label] = f"raised {type(exc).__name__}: {exc}"
            continue
        cost = time.perf_counter() - started
        cheapest = cost if len(seconds) == 1 else min(cheapest, cost)
    ranking = sorted((c for c in ordered if c.label in seconds), key=lambda c: seconds[c.label])
    return Decision(ranking, seconds, rejected, (int(n_samples), tuple(layer_sizes)),
                    cost_s=time.perf_counter() - t0)


def _prior(cand, n_samples, layer_sizes):
    """Calibration order: what is already imported (cheap to try) and usually fast for this size first.

    Then the backend's ``prior_rank`` (fused kernels first, tracing JITs that compile per shape last);
    a GPU backend goes first on big fits.
    """
    cls = backend_class(cand.name)
    loaded = cls.requires[0] in sys.modules
    gpu_first = cls.gpu and macs(n_samples, layer_sizes) > 1e7
    return (not (loaded or gpu_first), cls.prior_rank, cand.label)


def choose(n_samples, layer_sizes, dtype, activation="relu", *, budget_s=DEFAULT_BUDGET_S, cache=None,
           refresh=False, names=None, settle_s=0.0) -> Decision:
    """The decision for this fit: from the cache (in memory while its file is unchanged), else calibrated and cached.

    ``names`` restricts the candidates to those backends (default: every registered one).
    """
    t0 = time.perf_counter()
    cache = cache or shared_cache(cache_path())
    key = cache_key(n_samples, layer_sizes, dtype, activation)
    if names is not None:
        key += "|only " + ",".join(sorted(names))
    decision = None if refresh else cache.get(key)
    if decision is None or not decision.ranking:
        decision = calibrate(n_samples, layer_sizes, dtype, activation, budget_s, names, settle_s)
        if decision.ranking:
            try:
                cache.put(key, decision)
            except OSError as exc:
                warnings.warn(f"could not write the mlpbench auto cache {cache.path}: {exc}", RuntimeWarning,
                              stacklevel=2)
    decision.cost_s = time.perf_counter() - t0
    log.info("auto backend: %s", decision.reason)
    return decision
