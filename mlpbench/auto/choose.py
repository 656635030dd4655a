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
   (``probe.TrainRun``, scaled from the timed rows to N); deciding a fit spends
   about ``DECIDE_SHARE`` of its estimated time or ``DECIDE_MIN_S``, whichever
   is larger (first calls apart); ``budget_s`` (``mlpbench tune``) asks for
   more: seconds of rounds PER candidate; the statistic is each subject's
   median seconds per epoch;
4. **break-even over a loop of fits** (``amortize``): a candidate's unpaid
   first call is paid once the time this process has lost on the key without
   it reaches that cost (ski rental: never worse than 2x the best choice in
   hindsight); a key fitted in an earlier process pays up front. Until then
   the candidate is not loaded and, if never timed, the decision is
   **provisional** (it says so); it converges as the key keeps being fitted.
   The ranking: unpaid first call + ``epochs`` x seconds per epoch;
5. **ties**: candidates whose expected times differ by less than the
   engine's margin (its noise floor; verdict ``same``) are ordered by the
   backend's ``prior_rank``, then by label, so two processes agree;
6. the cache (``auto.cache``) stores the measurements and the key's ``uses``,
   never the pick; it is read once per key per process, and a fit decided in
   this process reads no file and takes no lock (``known.Known``).

``choose`` returns the whole ranking: ``MLP.fit`` falls back down it when a backend fails at run time.
"""

from __future__ import annotations

import logging
import math
import sys
import time

import numpy as np

from ..measure import engine as measure, stats
from ..suite import parity  # noqa: F401 (parity: auto.parity, as tests use it)
from .probe import ParityFailure as _ParityFailure, calibration_rows, epochs_per_call, load as _load  # noqa: F401
from .probe import handle as _handle, subject as _subject  # noqa: F401 (tune uses them)
from .cache import SCHEMA, Cache, bucket, cache_dir, cache_key, cache_path, fingerprint, shared_cache  # noqa: F401
from .decision import Decision, rank
from .amortize import Ledger, Option, uses_of
from .known import Known
from ..backends import REFERENCE, BackendSpec, availability, backend_class, backend_names
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
#: what the first call of a candidate whose package is not imported is taken to cost until measured (numba's warm
#: on-disk cache load; torch and jax cost more): below it a single short fit never imports a package
UNLOADED_PRIOR_S = 0.3
#: deciding a fit (parity probes and timing rounds, first calls apart) spends about this share of its estimated time
DECIDE_SHARE = 0.1
#: ... or this many seconds, whichever is larger (``budget_s`` asks for more: ``mlpbench tune``)
DECIDE_MIN_S = 0.02
#: a fit's candidates are timed in calls of epochs // 32 epochs, at least this many (and rounds, at least these)
FIT_MIN_EPOCHS_PER_CALL, FIT_MIN_ROUNDS = 16, 3

#: label -> seconds of its first call, for every candidate loaded in this process
_PAID: dict = {}
#: label -> what a later process pays for it: the first call less the JIT compiling that the on-disk cache
#: spares it (``Backend.compile_seconds``); what the cache records as ``first_call_s``
_LATER: dict = {}
#: labels a fit of this process ran (``MLP.fit``, any key): loaded, so paid
_RAN: set = set()
#: backend name -> the largest first call measured for it on this machine (any key: the cache, this process)
_SEEN: dict = {}


def paid() -> dict:
    """``{label: seconds}`` of the first calls this process has already paid."""
    return dict(_PAID)


def ran(label) -> None:
    """A fit of this process ran ``label`` (its first call is paid, whatever the key)."""
    _RAN.add(label)


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
    """The backend's own rule (``strategy_applies``) on whether a strategy suits this size at all (e.g. a
    one-block GPU kernel, or a BLAS-free whole-loop kernel for small nets); one that does not is not timed."""
    strategy = dict(cand.options).get("strategy")
    rule = backend_class(cand.name).strategy_applies
    return strategy is None or bool(rule(strategy, n_samples, list(layer_sizes), np.dtype(dtype).name))


# ---------------------------------------------------------------- first calls: paid, or worth paying
def _is_paid(label) -> bool:
    return label in _PAID or label in _RAN


def _imported(cand) -> bool:  # its package: imported in this process
    return backend_class(cand.name).requires[0] in sys.modules


def _load_estimate(cand, recorded) -> float:
    """First-call seconds this process still pays for ``cand``; ``recorded``: the cache's (None: never timed).

    Paid here: 0. Its package already imported (used directly, or by another key): 0 when timed, else its
    backend's largest first call here (at least ``LOAD_FLOOR_S``). Else the recorded cost (warm on-disk caches),
    or ``_prior_load`` when never measured.
    """
    if _is_paid(cand.label):
        return 0.0
    if _imported(cand):  # never timed: its kernels are what it still loads, as much as its backend's did here
        return 0.0 if recorded is not None else max(LOAD_FLOOR_S, _SEEN.get(cand.name, 0.0))
    return _prior_load(cand.name) if recorded is None else float(recorded)


def _prior_load(name) -> float:
    """A first call never measured for this key: the largest measured for its backend on this machine (any key),
    else the cheapest package load measured here (at least ``UNLOADED_PRIOR_S``): a peer's import costs as much."""
    loads = [s for n, s in _SEEN.items() if s >= UNLOADED_PRIOR_S and n != REFERENCE]  # numpy: no package load
    return max(_SEEN.get(name, 0.0), min(loads, default=0.0), UNLOADED_PRIOR_S, LOAD_FLOOR_S)


def _saw(name, seconds) -> None:
    _SEEN[name] = max(float(seconds), _SEEN.get(name, 0.0))


def _options(d, cands, epochs) -> list:
    """The rule's view (``amortize.Option``) of the applicable, not rejected candidates, in loading order."""
    out = []
    for cand in cands:
        lab = cand.label
        if lab in d.rejected:
            continue
        timed = lab in d.seconds_per_epoch
        fit = epochs * d.seconds_per_epoch[lab] if timed else None
        out.append(Option(lab, _load_estimate(cand, d.first_call_s.get(lab) if timed else None), fit))
    return out


# ---------------------------------------------------------------- timing
def calibrate(n_samples, layer_sizes, dtype, activation="relu", budget_s=None, names=None,
              settle_s=0.0, *, epochs=None, known=None, output="sigmoid", batch_size=None, ledger=None,
              force=frozenset(), upfront=False) -> Decision:
    """Probe, load and time the candidates for this fit (see the module docstring); ``known``: a cache entry.

    Candidates measured in ``known`` are not timed again. With ``epochs`` None
    every applicable candidate is timed (``mlpbench tune``); with ``epochs``,
    one not loaded yet is loaded when ``ledger`` (the key's ski rental) says
    its first call is worth paying, or when in ``force`` (``upfront``: paid
    up front). A mini-batch epoch's time is scaled from the timed rows to N.
    """
    t0, sizes, n_cal = time.perf_counter(), list(layer_sizes), calibration_rows(n_samples, batch_size)
    k = epochs_per_call(n_cal, sizes)
    if epochs is not None:  # short calls: deciding stays a small share of the fit (``DECIDE_SHARE``)
        k = min(k, max(FIT_MIN_EPOCHS_PER_CALL, epochs // 32))
    scale = 1.0 if batch_size is None else int(n_samples) / n_cal
    found, rejected = candidates(names, output)
    known = known or {"measured": {}, "rejected": {}, "untimed": {}, "margin": stats.MARGIN_FLOOR}
    d = Decision([], {}, dict(rejected), (int(n_samples), tuple(sizes)), epochs=epochs, margin=known["margin"],
                 paid=frozenset(_PAID) | _RAN, output=output, batch_size=batch_size)
    specs = {}
    for lab, x in known["measured"].items():
        if lab in {c.label for c in found}:
            specs[lab] = BackendSpec.from_json(x["backend"])
            d.seconds_per_epoch[lab], d.first_call_s[lab] = x["seconds_per_epoch"], x["first_call_s"]
            d.compile_s[lab] = x.get("compile_s", 0.0)
    stale = _stale(d, specs) | (set(force) & set(specs))
    for lab in stale:  # measured again: its first call is loaded (and recorded) as a later process pays it
        for known_values in (specs, d.seconds_per_epoch, d.first_call_s, d.compile_s):
            known_values.pop(lab, None)
    d.rejected.update({lab: why for lab, why in known["rejected"].items() if lab in {c.label for c in found}})
    loaded, order = [], sorted(found, key=lambda c: _prior(c, n_samples, sizes))
    for cand in order:
        lab = cand.label
        if lab in specs or lab in d.rejected:
            continue
        if not applies(cand, n_samples, sizes, dtype):
            d.rejected[lab] = "not suited to this size (the backend's strategy_applies rule)"
            continue
        why = None if epochs is None or lab in force or lab in stale else _not_worth_loading(cand, d, specs, ledger, order)
        if why:
            d.untimed[lab] = why
            continue
        was_imported = _imported(cand)
        try:
            backend, handle, first, compiled = _load(cand, sizes, n_samples, n_cal, dtype, activation, k, output, batch_size)
        except _ParityFailure as exc:
            d.rejected[lab] = f"failed parity: {exc}"
            continue
        except Exception as exc:
            d.rejected[lab] = f"raised {type(exc).__name__}: {exc}"
            continue
        if not was_imported and ledger is not None:  # a package loaded for this key (not numpy, always there)
            ledger.paid_for(lab, first, upfront=upfront and lab in force)
        _PAID.setdefault(lab, first)
        _LATER.setdefault(lab, first - compiled)
        _saw(cand.name, _LATER[lab])
        d.paid = d.paid | {lab}
        d.first_call_s[lab], d.compile_s[lab] = _LATER[lab], (compiled if _PAID[lab] == first else 0.0)
        specs[lab] = cand
        loaded.append(_subject(cand, backend, handle, k))
        if epochs is not None:  # a first estimate (one warm call), for the break-even test of the next candidate
            t1 = time.perf_counter()
            handle.run(k)
            backend.synchronize()
            d.seconds_per_epoch[lab] = (time.perf_counter() - t1) / k * scale
    if loaded:
        _time(d, loaded, specs, k, scale, budget_s, settle_s)
    d.ranking = rank(d, specs)
    d.cost_s = time.perf_counter() - t0
    return d


def _time(d, loaded, specs, k, scale, budget_s, settle_s) -> None:
    """Time the loaded candidates together; per candidate ``budget_s`` seconds of rounds, or (None) the fit's
    share: ``DECIDE_SHARE`` of its estimated time or ``DECIDE_MIN_S``, whichever is larger."""
    if budget_s is None and d.epochs is None:
        budget_s = DEFAULT_BUDGET_S
    if budget_s is None:
        est = min(d.epochs * d.seconds_per_epoch[s.label] for s in loaded)
        total = max(DECIDE_SHARE * est, DECIDE_MIN_S)
        m = measure.measure(loaded, control=False, min_time=min(MIN_TIMED_S, total / (6 * len(loaded))),
                            min_rounds=FIT_MIN_ROUNDS, confidence=CHOICE_CONFIDENCE, max_time=total, settle_s=settle_s,
                            on_error="drop")
    else:
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


def _stale(d, specs) -> set:
    """The pick, if its recorded first call is only a lower bound (it compiled: recorded less the compiling, so
    the on-disk cache load was never measured) and it has rivals: loaded again, as a later process pays it."""
    if d.epochs is None or len(specs) < 2:
        return set()
    lead = rank(d, specs)[0].label
    return {lead} if d.compile_s.get(lead, 0.0) > 0 and lead not in d.paid else set()


def _not_worth_loading(cand, d, specs, ledger, order):
    """Why ``cand`` is not loaded for this fit, or None: the first candidate always is; another once the time
    lost without it (this fit's included) reaches its first call (``amortize``)."""
    if _is_paid(cand.label) or not specs:
        return None
    opts = _options(d, [c for c in order if c.label in specs or c.label == cand.label], d.epochs)
    ledger = ledger or Ledger()
    if ledger.worth(cand.label, opts, d.margin):
        return None
    load = next(o.load_s for o in opts if o.label == cand.label)
    return (f"its first call (~{load:.2g} s) is not amortized yet: {ledger.lost.get(cand.label, 0.0):.2g} s lost "
            f"without it before this fit")


def _prior(cand, n_samples, layer_sizes):
    """Loading order: what is already imported (cheap to try), a GPU backend on big fits, then ``prior_rank``
    (fused kernels first, tracing JITs that compile per shape last)."""
    cls = backend_class(cand.name)
    return (not (cls.requires[0] in sys.modules or (cls.gpu and macs(n_samples, layer_sizes) > 1e7)),
            cls.prior_rank, cand.label)


# ---------------------------------------------------------------- the decision for a fit
def _stamp() -> tuple:
    """Changes when this process pays a first call or imports a module (or the floor changes): known decisions are
    then ranked again."""
    return (id(_PAID), len(_PAID), len(_RAN), len(sys.modules), LOAD_FLOOR_S)


def choose(n_samples, layer_sizes, dtype, activation="relu", *, epochs=None, budget_s=None, cache=None,
           refresh=False, names=None, settle_s=0.0, output="sigmoid", batch_size=None) -> Decision:
    """The ranking for a fit of ``epochs`` epochs (None: by seconds per epoch), from what is known when it suffices.

    The key's entry is read once per process (``known.Known``); a fit pays the first call of a candidate the
    ski rental finds due (``amortize``) and times it, refining the entry. With ``epochs`` None every applicable
    candidate is timed once (``mlpbench tune``). ``names``: only those backends; ``output`` and ``batch_size``
    are the fit's (part of the key). ``budget_s``: seconds of timing per candidate (default: the fit's share,
    ``DECIDE_SHARE`` / ``DECIDE_MIN_S``; without ``epochs``, ``DEFAULT_BUDGET_S``).
    """
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)) or epochs < 1):
        raise ValueError(f"epochs must be a positive int or None; got {epochs!r}")
    if budget_s is not None and not (isinstance(budget_s, (int, float)) and math.isfinite(budget_s) and budget_s > 0):
        raise ValueError(f"budget_s must be a number of seconds > 0; got {budget_s!r}")
    output, batch_size = check_output(output), check_batch_size(batch_size)
    cache = cache or shared_cache(cache_path())
    fit_key = (int(n_samples), tuple(layer_sizes), dtype.name if isinstance(dtype, np.dtype) else np.dtype(dtype).name,
               activation, output, batch_size,
               None if names is None else tuple(sorted(names)))
    known = None if refresh else cache.known.get(fit_key)
    if known is not None and epochs is not None:
        got = known.fit(int(epochs), _stamp())
        if got is not None:
            return got[0] if not got[1] else known.amortized(cache, int(epochs), _stamp())
    t0 = time.perf_counter()
    if known is None:
        key = cache_key(n_samples, layer_sizes, dtype, activation, output, batch_size)
        if names is not None:
            key += "|only " + ",".join(sorted(names))
        entry = None if refresh else cache.get(key)
        for name, seconds in cache.first_calls().items():  # what loading each backend has cost here, any key
            _saw(name, seconds)
        found, _ = candidates(names, output)
        cands = [c for c in found if applies(c, n_samples, layer_sizes, dtype)]
        known = cache.known[fit_key] = Known(key, cands, Ledger(uses_of(entry)), entry)
    fit = dict(names=names, settle_s=settle_s, output=output, batch_size=batch_size, budget_s=budget_s)
    if epochs is None:
        decision = _time_all(known, cache, n_samples, layer_sizes, dtype, activation, refresh, fit)
    else:
        decision = _decide(known, cache, n_samples, list(layer_sizes), dtype, activation, int(epochs), fit)
    decision.shape, decision.output, decision.batch_size = (int(n_samples), tuple(layer_sizes)), output, batch_size
    decision.cost_s = time.perf_counter() - t0
    log.info("auto backend: %s", decision.reason)
    return decision


def _time_all(known, cache, n_samples, layer_sizes, dtype, activation, refresh, fit) -> Decision:
    """No fit in view: every applicable candidate timed once; from the entry when it has them all."""
    entry = None if refresh else known.entry
    if entry is not None and entry["measured"] and not entry["untimed"]:
        return Decision.from_json(entry, None, frozenset(_PAID) | _RAN)
    d = calibrate(n_samples, layer_sizes, dtype, activation, fit["budget_s"], fit["names"], fit["settle_s"],
                  known=entry, output=fit["output"], batch_size=fit["batch_size"])
    if d.ranking:
        known.entry = cache.put(known.key, d)
        known.stamp = None  # ranked again on the next fit
    return d


def _decide(known, cache, n_samples, sizes, dtype, activation, epochs, fit) -> Decision:
    """A fit of ``epochs`` epochs: the first calls the ledger finds due are paid and timed, the entry refined."""
    ledger, entry = known.ledger, known.entry
    order = sorted(known.cands, key=lambda c: _prior(c, n_samples, sizes))
    force, upfront = set(), False
    if entry is not None and entry["measured"]:
        d = Decision.from_json(entry, epochs, frozenset(_PAID))  # _stale: measured first calls only
        due, upfront = ledger.due(_options(d, order, epochs), d.margin)
        # the most due one; the rest are weighed again once it is timed (it may make them pointless)
        force = set(due[:1]) | _stale(d, {c.label: c for c in d.ranking})
    learned = entry is None or not entry["measured"] or bool(force)
    if learned:
        d = calibrate(n_samples, sizes, dtype, activation, fit["budget_s"], fit["names"], fit["settle_s"],
                      epochs=epochs, known=entry, output=fit["output"], batch_size=fit["batch_size"], ledger=ledger,
                      force=frozenset(force), upfront=upfront)
    options = _options(d, order, epochs)
    d.paid = frozenset(_PAID) | _RAN | {o.label for o in options if o.load_s == 0}
    d.ranking = rank(d, {c.label: c for c in d.ranking})
    ledger.record(options, d.margin)
    if (learned and d.ranking) or ledger.first_write:
        known.write(cache, d if learned and d.ranking else None, upfront=upfront and ledger.pending_up_front())
    d.amortization = ledger.says()
    known.remember(epochs, options, d, _stamp())
    return d


__all__ = ["Cache", "Decision", "SCHEMA", "_handle", "bucket", "cache_dir", "cache_key", "cache_path", "calibrate",
           "calibration_rows", "candidates", "choose", "epochs_per_call", "fingerprint", "paid", "parity", "rank", "ran"]
