"""``backend="auto"``: the backend that finishes THIS fit first, among those that pass parity here.

A *candidate* is a ``BackendSpec`` (a backend name plus options), one per
strategy the backend offers (``numba[loop]`` and ``numba[step]`` are separate
candidates). For a fit of a given shape, dtype, activation, head (``output``),
mini-batch size (``batch_size``, None: full batch) and ``epochs``:

1. candidates not available here, whose math lacks the head (``outputs``), or
   whose ``strategy_applies`` rule says no, are dropped (with their reason);
2. its **first call** (construction and one prepared ``run``, what a fit pays:
   imports, JIT compilation, on-disk cache loads, GPU context) is timed APART
   from the timing budget, remembered per process (``paid``) and recorded less
   the JIT compiling an on-disk cache spares a later process; then it must pass
   parity on the path it runs (``parity.probe_run`` for a strategy candidate,
   so ``numba[loop]`` compiles only its loop kernel; ``parity.probe`` else);
3. the survivors are timed together by the measurement engine
   (``measure.measure``, interleaved rounds, ``control=False``) through the
   contract's prepared path (``prepare(...).run(k)``), or for a mini-batch fit
   or a softmax head through ``train`` with that head and batch size
   (``probe.TrainRun``, scaled from the timed rows to N); the budget
   (``budget_s``, default ``DEFAULT_BUDGET_S``) is seconds of rounds PER
   candidate; the statistic is each subject's median seconds per epoch;
4. **break-even**: the expected time of the fit asked for is the first-call
   cost (when this process has not paid it yet) + ``epochs`` x seconds per
   epoch; the ranking sorts by it. A candidate that still has to load is not
   loaded when even its cheapest first call (the cached one, else
   ``LOAD_FLOOR_S``) costs more than the best candidate's whole fit: it cannot
   win this fit. Such a decision is **provisional** (it says so): used, never
   final, refined by a later fit that it could win, or by ``mlpbench tune``;
5. **ties**: candidates whose expected times differ by less than the
   engine's margin (its noise floor; verdict ``same``) are ordered by the
   backend's ``prior_rank``, then by label, so two processes agree;
6. the cache (``auto/cache.py``) stores the measurements (seconds per epoch,
   first-call seconds, rejections), never the pick, so a fit with other
   ``epochs`` decides again from the same numbers.

``choose`` returns the whole ranking: ``MLP.fit`` falls back down it when a backend fails at run time.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..measure import engine as measure, stats
from ..suite import parity  # noqa: F401 (parity: auto.parity, as tests use it)
from .probe import ParityFailure as _ParityFailure, load as _load  # noqa: F401
from .probe import handle as _handle, subject as _subject  # noqa: F401 (tune uses them)
from .probe import calibration_rows, epochs_per_call
from .cache import SCHEMA, Cache, bucket, cache_dir, cache_key, cache_path, fingerprint, shared_cache  # noqa: F401
from ..backends import BackendSpec, availability, backend_class, backend_names
from ..core.params import macs
from ..core.validation import check_batch_size, check_output

log = logging.getLogger("mlpbench.auto.choose")

#: seconds of timing rounds per candidate (first calls are not counted)
DEFAULT_BUDGET_S = 0.1
#: seconds one timed sample lasts at least (calls are batched by the engine)
MIN_TIMED_S = 0.002
#: confidence of the intervals ``auto`` decides by (6 rounds at least), lower than the benchmark's
#: ``stats.CONFIDENCE`` (0.99, 8 rounds): the decision is paid for inside a user's fit, and a wrong pick
#: between close candidates costs a little speed, never a wrong result (each one passed parity)
CHOICE_CONFIDENCE = 0.95
#: the least a first call that has not been measured yet is assumed to cost (import + probe + compile or
#: cache load): measured here from 0.3 s (numba, warm on-disk cache) to 14 s (numba cold), jax 1.6 s, torch 1.9 s
LOAD_FLOOR_S = 0.05

#: label -> seconds of its first call, for every candidate loaded in this process
_PAID: dict = {}
#: label -> what a later process pays for it: the first call less the JIT compiling that the on-disk cache
#: spares it (``Backend.compile_seconds``); what the cache records as ``first_call_s``
_LATER: dict = {}


def paid() -> dict:
    """``{label: seconds}`` of the first calls this process has already paid."""
    return dict(_PAID)


@dataclass
class Decision:
    ranking: list  # [BackendSpec], the fit's expected time, fastest first
    seconds_per_epoch: dict  # label -> s/epoch
    rejected: dict = field(default_factory=dict)  # label -> why it cannot be used
    shape: tuple = ()
    cached: bool = False
    cost_s: float = 0.0  # seconds this decision took (first calls included)
    first_call_s: dict = field(default_factory=dict)  # label -> first-call seconds a later process pays (no compile)
    epochs: int | None = None
    untimed: dict = field(default_factory=dict)  # label -> why it was not timed (it could not win this fit)
    margin: float = stats.MARGIN_FLOOR
    verdicts: dict = field(default_factory=dict)  # label -> the engine's verdict against the first candidate timed
    paid: frozenset = frozenset()  # labels whose first call was already paid when the decision was made
    compile_s: dict = field(default_factory=dict)  # label -> seconds of JIT compiling in its recorded first call
    output: str = "sigmoid"  # the fit's head
    batch_size: int | None = None  # the fit's mini-batch size (None: full batch)

    @property
    def provisional(self) -> bool:
        """Some applicable candidate was not timed: the decision is used, but refined later."""
        return bool(self.untimed)

    def total_s(self, label) -> float:
        """Expected seconds of the fit on ``label``: unpaid first call + epochs x seconds per epoch.

        With ``epochs`` None (no fit in view: ``mlpbench tune``), the seconds per epoch alone.
        """
        if self.epochs is None:
            return self.seconds_per_epoch[label]
        load = 0.0 if label in self.paid else self.first_call_s.get(label, 0.0)
        return load + (self.epochs or 0) * self.seconds_per_epoch[label]

    def _says(self, label) -> str:
        us = _us(self.seconds_per_epoch[label])
        if self.epochs is None:
            return f"{label} {us}/epoch"
        load = "" if label in self.paid else f" + {self.first_call_s.get(label, 0.0):.2g} s load"
        return f"{label} {us}/epoch x {self.epochs}{load}"

    @property
    def reason(self) -> str:
        """E.g. ``numba[loop]: 0.2 us/epoch x 5000 + 0.8 s load vs numpy 40 us/epoch x 5000 at N=4, [2, 4, 1]``."""
        if not self.ranking:
            return "no candidate passed parity and timing"
        best = self.ranking[0]
        rivals = {}  # the first candidate of every other backend
        for c in self.ranking[1:]:
            if c.name != best.name and c.name not in rivals:
                rivals[c.name] = c.label
        head = self._says(best.label)
        head = best.label + ": " + head.split(" ", 1)[1]
        if rivals:
            lead = self.total_s(best.label)
            head += " vs " + ", ".join(self._says(lab) + (" (same, within the noise floor)" if
                                                          self.total_s(lab) <= lead * (1 + self.margin) else "")
                                       for lab in rivals.values())
        else:
            head += ", the only validated candidate"
        n, sizes = self.shape
        text = f"{head} at N={n}, {list(sizes)}" + ("" if self.batch_size is None else f", batch {self.batch_size}") \
            + ("" if self.output == "sigmoid" else f", {self.output}")
        if self.provisional:
            text += "; provisional: not timed " + ", ".join(sorted(self.untimed))
        return text + (" (cached)" if self.cached else "")

    def to_json(self) -> dict:
        """The cache entry: measurements only, never the pick."""
        specs = {c.label: c for c in self.ranking}
        measured = {lab: {"backend": specs[lab].to_json(), "seconds_per_epoch": s,
                          "first_call_s": self.first_call_s.get(lab, 0.0), "compile_s": self.compile_s.get(lab, 0.0)}
                    for lab, s in self.seconds_per_epoch.items() if lab in specs}
        return {"shape": [int(self.shape[0]), [int(s) for s in self.shape[1]]], "measured": measured,
                "rejected": dict(self.rejected), "untimed": dict(self.untimed), "margin": float(self.margin),
                "created": time.time()}

    @classmethod
    def from_json(cls, entry, epochs=None, paid_now=frozenset()) -> "Decision":
        """A decision from a checked cache entry, ranked for ``epochs`` (None: by seconds per epoch)."""
        m = entry["measured"]
        specs = [BackendSpec.from_json(x["backend"]) for x in m.values()]
        d = cls([], {lab: float(x["seconds_per_epoch"]) for lab, x in m.items()}, dict(entry["rejected"]),
                (entry["shape"][0], tuple(entry["shape"][1])), cached=True,
                first_call_s={lab: float(x["first_call_s"]) for lab, x in m.items()}, epochs=epochs,
                untimed=dict(entry["untimed"]), margin=float(entry["margin"]), paid=frozenset(paid_now),
                compile_s={lab: float(x.get("compile_s", 0.0)) for lab, x in m.items()})
        d.ranking = rank(d, dict(zip(m, specs)))
        return d


def _us(seconds) -> str:
    return f"{seconds * 1e6:.3g} us" if seconds < 1e-3 else f"{seconds * 1e3:.3g} ms"


def rank(decision, specs) -> list:
    """``specs`` (label -> BackendSpec, the timed ones) ordered by the fit's expected time; ties made stable.

    Starting from the fastest, every candidate within ``decision.margin`` of
    it (the engine's noise floor: it would call them ``same``) forms a group
    ordered by ``prior_rank``, then label; then the next group.
    """
    labels = sorted(specs, key=decision.total_s)
    out = []
    while labels:
        lead = decision.total_s(labels[0])
        group = [lab for lab in labels if decision.total_s(lab) <= lead * (1 + decision.margin)]
        group.sort(key=lambda lab: (_prior_rank(specs[lab]), lab))
        out += [specs[lab] for lab in group]
        labels = [lab for lab in labels if lab not in group]
    return out


def _prior_rank(spec) -> int:
    return backend_class(spec.name).prior_rank if spec.name in backend_names() else 99


# ---------------------------------------------------------------- candidates
def candidates(names=None, output="sigmoid") -> tuple[list, dict]:
    """Available candidates (one ``BackendSpec`` per strategy) with the head ``output``; ``{name: why not}`` else."""
    found, rejected = [], {}
    for name in names or backend_names():
        ok, reason = availability(name)
        if ok and output not in backend_class(name).outputs:
            ok, reason = False, f"does not support output={output!r}"
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


# ---------------------------------------------------------------- timing
def calibrate(n_samples, layer_sizes, dtype, activation="relu", budget_s=DEFAULT_BUDGET_S, names=None,
              settle_s=0.0, *, epochs=None, known=None, output="sigmoid", batch_size=None) -> Decision:
    """Probe, load and time the candidates for this fit (see the module docstring); ``known``: a cache entry.

    Candidates measured in ``known`` are not timed again. With ``epochs`` None
    every applicable candidate is timed (``mlpbench tune``). A mini-batch
    epoch's time is scaled from the timed rows to N (its batches are alike).
    """
    t0, sizes, n_cal = time.perf_counter(), list(layer_sizes), calibration_rows(n_samples, batch_size)
    k = epochs_per_call(n_cal, sizes)
    scale = 1.0 if batch_size is None else int(n_samples) / n_cal
    found, rejected = candidates(names, output)
    known = known or {"measured": {}, "rejected": {}, "untimed": {}, "margin": stats.MARGIN_FLOOR}
    d = Decision([], {}, dict(rejected), (int(n_samples), tuple(sizes)), epochs=epochs, margin=known["margin"],
                 paid=frozenset(_PAID), output=output, batch_size=batch_size)
    specs = {}
    for lab, x in known["measured"].items():
        if lab in {c.label for c in found}:
            specs[lab] = BackendSpec.from_json(x["backend"])
            d.seconds_per_epoch[lab], d.first_call_s[lab] = x["seconds_per_epoch"], x["first_call_s"]
            d.compile_s[lab] = x.get("compile_s", 0.0)
    stale = _stale(d, specs)
    for lab in stale:  # measured again: its first call is loaded (and recorded) as a later process pays it
        for known_values in (specs, d.seconds_per_epoch, d.first_call_s, d.compile_s):
            known_values.pop(lab, None)
    d.rejected.update({lab: why for lab, why in known["rejected"].items() if lab in {c.label for c in found}})
    loaded = []
    for cand in sorted(found, key=lambda c: _prior(c, n_samples, sizes)):
        lab = cand.label
        if lab in specs or lab in d.rejected:
            continue
        if not applies(cand, n_samples, sizes, dtype):
            d.rejected[lab] = "not suited to this size (the backend's strategy_applies rule)"
            continue
        refining = bool(known["measured"]) and lab not in stale
        why = _not_worth_loading(cand, d, specs, refining) if epochs is not None else None
        if why:
            d.untimed[lab] = why
            continue
        try:
            backend, handle, first, compiled = _load(cand, sizes, n_samples, n_cal, dtype, activation, k, output, batch_size)
        except _ParityFailure as exc:
            d.rejected[lab] = f"failed parity: {exc}"
            continue
        except Exception as exc:
            d.rejected[lab] = f"raised {type(exc).__name__}: {exc}"
            continue
        _PAID.setdefault(lab, first)
        _LATER.setdefault(lab, first - compiled)
        d.paid = d.paid | {lab}
        d.first_call_s[lab], d.compile_s[lab] = _LATER[lab], (compiled if _PAID[lab] == first else 0.0)
        specs[lab] = cand
        loaded.append(_subject(cand, backend, handle, k))
        if epochs is not None:  # a first estimate, for the break-even test of the next candidate
            m = measure.measure([loaded[-1]], control=False, min_time=MIN_TIMED_S, min_rounds=2, max_rounds=2)
            d.seconds_per_epoch[lab] = m[lab].median / k * scale
    if loaded:
        m = measure.measure(loaded, control=False, min_time=MIN_TIMED_S, confidence=CHOICE_CONFIDENCE,
                            max_time=budget_s * len(loaded), settle_s=settle_s, on_error="drop")
        for lab, err in m.errors.items():
            d.rejected[lab] = f"raised {err}"
            specs.pop(lab, None)
            d.seconds_per_epoch.pop(lab, None)
        for lab, r in m.results.items():
            d.seconds_per_epoch[lab] = r.median / k * scale
            d.verdicts[lab] = r.verdict
        d.margin = m.margin
    d.ranking = rank(d, specs)
    d.cost_s = time.perf_counter() - t0
    return d


def _stale(d, specs) -> set:
    """The pick, if its recorded first call is only a lower bound (and it has rivals): measured again.

    A first call that compiled (``compile_s`` > 0) is recorded less the
    compiling, so what a later process pays to load the on-disk cache was never
    measured. When that lower bound would make it the pick, it is loaded again
    (this process pays what any later one does) and the entry refreshed.
    """
    if d.epochs is None or len(specs) < 2:
        return set()
    lead = rank(d, specs)[0].label
    return {lead} if d.compile_s.get(lead, 0.0) > 0 and lead not in d.paid else set()


def _imported(cand) -> bool:
    return backend_class(cand.name).requires[0] in sys.modules  # its package: imported in this process


def _not_worth_loading(cand, d, specs, refining):
    """Why ``cand`` (not loaded yet) cannot pay off for this fit: even ``LOAD_FLOOR_S`` exceeds the whole fit on
    the best so far; or None. Refining a cached decision never imports a package (``mlpbench tune`` does)."""
    if cand.label in _PAID or not specs:
        return None
    if refining and not _imported(cand):
        return f"not loaded: {backend_class(cand.name).requires[0]} is not imported (time it with mlpbench tune)"
    best = min(specs, key=d.total_s)
    if LOAD_FLOOR_S >= d.total_s(best):
        return (f"its first call (>= {LOAD_FLOOR_S:.2g} s) costs more than the whole fit on {best} "
                f"({d.total_s(best):.2g} s)")
    return None


def _prior(cand, n_samples, layer_sizes):
    """Loading order: what is already imported (cheap to try), a GPU backend on big fits, then ``prior_rank``
    (fused kernels first, tracing JITs that compile per shape last)."""
    cls = backend_class(cand.name)
    loaded = cls.requires[0] in sys.modules
    gpu_first = cls.gpu and macs(n_samples, layer_sizes) > 1e7
    return (not (loaded or gpu_first), cls.prior_rank, cand.label)


def _could_win(entry, n_samples, layer_sizes, dtype, epochs, names, output="sigmoid") -> bool:
    """Whether a candidate not measured in ``entry`` might finish this fit first (so it must be timed now)."""
    if epochs is None:
        return bool(entry["untimed"])
    d = Decision.from_json(entry, epochs, frozenset(_PAID))
    if _stale(d, {c.label: c for c in d.ranking}):
        return True
    if not entry["untimed"]:
        return False
    if not d.ranking:
        return True
    best = d.total_s(d.ranking[0].label)
    found, _ = candidates(names, output)
    for cand in found:
        lab = cand.label
        if lab in entry["measured"] or lab in entry["rejected"] or not applies(cand, n_samples, layer_sizes, dtype):
            continue
        if lab in _PAID or (_imported(cand) and LOAD_FLOOR_S < best):
            return True
    return False


def choose(n_samples, layer_sizes, dtype, activation="relu", *, epochs=None, budget_s=DEFAULT_BUDGET_S, cache=None,
           refresh=False, names=None, settle_s=0.0, output="sigmoid", batch_size=None) -> Decision:
    """The ranking for a fit of ``epochs`` epochs (None: by seconds per epoch), from the cache when it suffices.

    A cached entry is used when every applicable candidate was measured, or
    when none of the unmeasured ones could win this fit; otherwise the
    missing ones are timed and the entry refined. ``names`` restricts the
    candidates to those backends (default: every registered one); ``output``
    (the head) and ``batch_size`` (None: full batch) are the fit's, and part
    of the cache key: only candidates with the head are timed, on that fit's epoch.
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1):
        raise ValueError(f"epochs must be a positive int or None; got {epochs!r}")
    if not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ValueError(f"budget_s must be a number of seconds > 0; got {budget_s!r}")
    output, batch_size = check_output(output), check_batch_size(batch_size)
    t0, cache = time.perf_counter(), cache or shared_cache(cache_path())
    key = cache_key(n_samples, layer_sizes, dtype, activation, output, batch_size)
    if names is not None:
        key += "|only " + ",".join(sorted(names))
    entry = None if refresh else cache.get(key)
    if entry is not None and entry["measured"] and not _could_win(entry, n_samples, list(layer_sizes), dtype,
                                                                   epochs, names, output):
        decision = Decision.from_json(entry, epochs, frozenset(_PAID))
        decision.shape = (int(n_samples), tuple(layer_sizes))
        decision.output, decision.batch_size = output, batch_size
    else:
        decision = calibrate(n_samples, layer_sizes, dtype, activation, budget_s, names, settle_s, epochs=epochs,
                             known=entry, output=output, batch_size=batch_size)
        if decision.ranking:
            cache.put(key, decision)
    decision.cost_s = time.perf_counter() - t0
    log.info("auto backend: %s", decision.reason)
    return decision


__all__ = ["Cache", "Decision", "SCHEMA", "_handle", "bucket", "cache_dir", "cache_key", "cache_path", "calibrate",
           "calibration_rows", "candidates", "choose", "epochs_per_call", "fingerprint", "paid", "parity", "rank"]
