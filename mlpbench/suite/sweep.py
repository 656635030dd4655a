"""The sweep: at each case, every ready backend timed in one ``measure.measure`` call, into one results document.

Backends come in as ``(label, backend)`` pairs from ``backends.ready``; none
is special-cased except the baseline (the registry's ``REFERENCE`` unless
``baseline=`` names another), against which every ratio and verdict is
computed, with an A/A control: a second, independently prepared baseline.
A backend that raises is reported, never crashes the sweep. The machine's
peaks are sampled at the start, between dtypes and at the end (``measure/peaks.py``: ``Peaks``).
External reference rows (``suite/references.py``, e.g. scikit-learn's
``MLPClassifier``) come in as ``(label, Reference)`` pairs and are timed in the
same rounds at every case they apply to, judged against the baseline too.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..measure import engine as M
from ..measure import levels
from ..measure.heap import DEFAULT as HEAP_DEFAULT, MODES as HEAP_MODES, keep_freed
from ..measure import peaks as perf
from ..measure.stats import CONFIDENCE
from ..backends import REFERENCE
from .cases import PASSES, case_data
from .machine import machine_info
from ..core import interrupt
from ..core.memory import NotEnoughMemory, check_fits, fit_bytes
from .budget import BUDGET_SHARE, REGULAR_SHARE, Budget, follow_up
from .progress import Progress
from .references import Reference, reference_subject
from .results import ResultsWriter
from .subjects import op_subject

#: most rounds at one point (the adaptive stop and ``max_time`` usually end it sooner)
MAX_ROUNDS = 300
#: the smallest difference the sweep calls ``faster`` / ``slower`` (the A/A margin is used when larger),
#: wider than the engine's ``stats.MARGIN_FLOOR`` (2 %, which ``auto`` keeps): with the 2 % floor an
#: identical copy of NumPy was once called ``slower`` here (2 cores, load average above 20), and read 0.92x
#: [0.91, 0.94] at another point (kept ``unresolved`` by a 30 % A/A margin): copies differ by their arrays'
#: placement and by when the machine is busy. asv reports no change under 10 % by default
SWEEP_MARGIN_FLOOR = 0.05


def measure_peaks(backends, dtypes) -> perf.Peaks:
    """The run's ``perf.Peaks``, sampled once (the run samples them again between dtypes and at its end)."""
    peaks = perf.Peaks(backends, dtypes)
    peaks.sample()
    return peaks


def _point(label, backend, case, result, measurement, peaks):
    r = result.to_dict()
    del r["label"]
    work = perf.flops(case.op, case.n_samples, case.layer_sizes, case.epochs)
    moved = perf.bytes_moved(case.op, case.n_samples, case.layer_sizes, case.dtype, case.epochs, case.batch_size)
    gflops = work / r["median_s"] / 1e9 if r["median_s"] and r["median_s"] > 0 else None
    return {
        "backend": label, "op": case.op, "dtype": case.dtype, "n_samples": case.n_samples,
        "layer_sizes": list(case.layer_sizes), "activation": case.activation, "epochs": case.epochs,
        "batch_size": case.batch_size, "output": case.output, "case": case.label, "device": backend.device,
        **({"reference": True} if isinstance(backend, Reference) else {}), **r, "noisy": measurement.noisy,
        "margin": measurement.margin, "stop": measurement.stop, "elapsed_s": measurement.elapsed_s,
        **({"settled": dict(measurement.settled)} if measurement.settled else {}),
        **({"to_decide": _to_decide(result, measurement)} if result.verdict == "unresolved" else {}),
        "flops": work, "gflops": gflops,
        "pct_peak": _pct(gflops, peaks.best(backend.device, case.dtype)), "bytes": moved, "intensity": work / moved,
    }


def _to_decide(result, m):
    """An open verdict's forecast (``levels.more_passes``): the further passes, as many rounds each as its
    passes had on average, that would decide it at its components; None when more than ``levels``' limit (a
    ratio within noise of a band edge) or unknown."""
    extra = levels.more_passes(result, m.margin, m.margin_floor, m.confidence, m.between)
    return {"passes": int(extra) if math.isfinite(extra) else None}


def _pct(gflops, best):
    return 100 * gflops / best if gflops and best else None


def _subjects(case, backends, baseline, warm, writer, references=()):
    """Each backend's Subject (and the baseline's independent copy), then each reference that applies to the
    case; failures go to ``writer``; warm-up apart."""
    X, y = case_data(case)
    subjects, warmups = [], {}
    for label, be in backends:
        shape = (label, case.layer_sizes, case.n_samples, case.dtype, case.activation)
        try:
            s, warmups[label] = op_subject(label, be, case, X, y, backend_warmup=shape not in warm)
        except Exception as exc:  # report and go on
            writer.add_error(label, case.label, f"{type(exc).__name__}: {exc}")
            continue
        warm.add(shape)
        subjects.append(s)
    for label, ref in references:
        if ref.applies(case):  # not offered at this case (e.g. the lab): no row, no error
            continue
        try:
            s, warmups[label] = reference_subject(label, ref, case, X, y)
        except Exception as exc:
            writer.add_error(label, case.label, f"{type(exc).__name__}: {exc}")
            continue
        subjects.append(s)
    control = None
    if any(s.label == baseline for s in subjects):  # its own params and its own copy of the data
        try:
            control = op_subject(f"{baseline} copy", dict(backends)[baseline], case, X.copy(), y.copy(),
                                 backend_warmup=False)[0]
        except Exception as exc:
            writer.add_error(baseline, case.label, f"A/A copy: {type(exc).__name__}: {exc}")
    return subjects, control, warmups


def _noise(points, between=0.0, follow_ups=0) -> dict:
    """The run's A/A summary from its baseline points: how many came out ``same``; noisy when any did not."""
    aa = [p for p in points if p.get("verdict") == "baseline"]
    noisy = [p["case"] for p in aa if p.get("noisy")]
    return {"points": len(aa), "same": sum(1 for p in aa if p.get("control", {}).get("verdict") == "same"),
            "noisy": bool(noisy), "noisy_points": noisy, "between": between, "follow_ups": follow_ups,
            "per_point": [{"case": p["case"], "verdict": p.get("control", {}).get("verdict"),
                           "ratio": p.get("control", {}).get("ratio"), "ratio_ci": p.get("control", {}).get("ratio_ci"),
                           "margin": p.get("margin")} for p in aa]}


#: the sweep's pause before each sample, at most: until no other thread of the process runs (``measure/quiet.py``:
#: the previous subject's pool gone idle; OpenBLAS spins ~0.1 s after its call, GNU OpenMP ~10 ms, and on 2 cores
#: the next subject shares the cores with them: torch right after numpy was 17x slower), or where the threads
#: cannot be read, a pause as long as the previous sample (the engine's ``settle_scaled``). The cap is above
#: OpenBLAS's spin (2^28 cycles) at 2 GHz and up; a thread that never rests costs this much per sample
#: (``settled["capped"]`` in each point). ``mlpbench tune`` pays its own fixed ``TUNE_SETTLE_S``
SWEEP_SETTLE_S = 0.25


def run_sweep(case_list, backends, out_dir, *, min_time, max_time, config, baseline=REFERENCE, min_rounds=None,
              max_rounds=MAX_ROUNDS, margin_floor=SWEEP_MARGIN_FLOOR, progress=None, peaks=None, skipped=(),
              settle_s=SWEEP_SETTLE_S, passes=PASSES, references=(), budget=None, heap=HEAP_DEFAULT):
    """Time every case on every backend against ``baseline`` (a label among ``backends``); return the document.

    ``passes``: the grid is swept that many times, each pass with freshly
    prepared subjects, ``REGULAR_SHARE * max_time / passes`` per point and its
    share of the ``min_rounds`` (the 8 a 99 % interval needs by default); a
    point's samples are pooled over the passes (``measure``'s ``resume``), and
    its interval is widened by the run's between-pass variance
    (``measure/levels.py``). ``budget``: seconds of follow-up rounds for the
    whole sweep (default ``BUDGET_SHARE * max_time`` per point; 0:
    none), given to the points still unresolved after the passes
    (``suite/budget.py``), each point within ``max_time`` in all.
    ``references``: ``(label, references.Reference)`` pairs timed beside the
    backends where they apply. ``heap``: ``"keep"`` (this process keeps the
    memory it frees, ``measure/heap.py``; the outcome goes to
    ``config["heap"]``) or ``"system"``.

    The document is written after every point measured. On ``KeyboardInterrupt`` its
    status becomes ``"interrupted"`` and the exception propagates.
    """
    labels = [lb for lb, _ in backends]
    if baseline not in labels:
        raise ValueError(f"baseline must be one of the benchmarked backends {labels}; got {baseline!r}")
    clash = sorted(set(labels) & {lb for lb, _ in references})
    if clash:
        raise ValueError(f"reference rows must not share a label with a backend; both name {clash}")
    backends = sorted(backends, key=lambda lb: lb[0] != baseline)
    references = list(references)
    dtypes = sorted({c.dtype for c in case_list})
    # the file describes this run from its first moment (never an older run's points), and ends as
    # complete, interrupted (Ctrl-C, SIGTERM) or failed (an error outside a point)
    if not (isinstance(passes, int) and passes >= 1):
        raise ValueError(f"passes must be an int >= 1; got {passes!r}")
    # the rounds every point gets at least are shared out over the passes
    pass_rounds = -(-(M.rounds_needed(CONFIDENCE) if min_rounds is None else min_rounds) // passes)
    if budget is None:
        budget = BUDGET_SHARE * max_time * len(case_list)
    budget = Budget(budget, max_time) if case_list and budget > 0 else None
    writer = ResultsWriter(out_dir, machine_info(backends + references), {},
                           dict(config, heap=_heap(heap), baseline=baseline, margin_floor=margin_floor,
                                settle_s=settle_s, passes=passes,
                                budget_s=budget and budget.total_s), skipped)
    progress = progress or Progress(0, enabled=False)
    warm = set()
    try:
        if peaks is None:
            peaks = measure_peaks(backends, dtypes)
        writer.doc["peak"] = peaks.to_dict()
        writer.write()
        last_dtype = case_list[0].dtype if case_list else None
        earlier, by_case = {}, {c.label: c for c in case_list}  # case label -> the Measurement of the passes so far

        pass_cost = {}  # case label -> seconds of a pass outside its rounds (preparation, warm-up, calibration)

        def point(case, seconds, rounds=max_rounds):
            t0, before = time.perf_counter(), earlier.get(case.label)
            m = _next_pass(earlier, case, backends, baseline, warm, writer, peaks, references, min_time=min_time,
                           max_time=seconds, min_rounds=min(pass_rounds, rounds), max_rounds=rounds,
                           margin_floor=margin_floor, settle_s=settle_s)
            if m is not None:
                pass_cost[case.label] = time.perf_counter() - t0 - m.elapsed_s + (before.elapsed_s if before else 0)
            return m

        for pass_no in range(passes):
            for case in case_list:
                interrupt.check()
                if case.dtype != last_dtype:  # between dtypes: the peak of the dtype to come, again
                    peaks.sample([case.dtype])
                    last_dtype = case.dtype
                try:  # a point that cannot fit in memory is skipped with the reason, before allocating
                    check_fits(fit_bytes(case.n_samples, case.layer_sizes, case.dtype), "this point")
                except NotEnoughMemory as exc:
                    if pass_no == 0:
                        writer.add_skipped_case(case.label, str(exc))
                    progress.advance()
                    continue
                progress.update(case.label if passes == 1 else f"{case.label} (pass {pass_no + 1}/{passes})")
                point(case, REGULAR_SHARE * max_time / passes)
                progress.advance(case.label)

        def is_open(label):
            m = _rejudge(earlier, label)
            return any(r.verdict == "unresolved" for r in m.results.values())

        def again(label, seconds, last):
            progress.update(f"{label} (follow-up)")
            m = earlier[label]
            # Kalibera and Jones's rounds a pass, but the last follow-up spends its whole share: nothing after it could
            rounds = max_rounds if last else _rounds_per_pass(m, _between(earlier), pass_cost.get(label, 0.0),
                                                              max_rounds)
            return (point(by_case[label], seconds, rounds) or m).elapsed_s

        def need(label):
            pooled = _between(earlier)
            m = M.rejudge(earlier[label], pooled)
            return _need(m, pooled, _rounds_per_pass(m, pooled, pass_cost.get(label, 0.0), max_rounds))

        follow_ups = 0
        if budget is not None:
            for label, m in earlier.items():
                budget.record(label, m.elapsed_s)
            follow_ups = follow_up(budget, is_open, again, list(earlier), need=need)
        between = _between(earlier)
        for label, m in earlier.items():  # every point judged with the run's final between-pass variance
            _publish(writer, by_case[label], M.rejudge(m, between), dict(backends + references), peaks, baseline,
                     write=False)
        writer.write()
        peaks.sample()  # the end of the run: the spread tells whether the machine held still
        by_label = dict(backends + references)
        for p in writer.doc["points"]:  # % of peak on the best peak seen in the whole run
            p["pct_peak"] = _pct(p["gflops"], peaks.best(by_label[p["backend"]].device, p["dtype"]))
        writer.doc["peak"] = peaks.to_dict()
        writer.doc["noise"] = _noise(writer.doc["points"], between, follow_ups)
    except KeyboardInterrupt as exc:
        writer.finish("interrupted")
        exc.results_doc = writer.doc
        raise
    except BaseException as exc:
        writer.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        progress.close()
    writer.finish("complete")
    return writer.doc


def _heap(mode) -> str:
    """Apply the heap setting ``mode`` to this process (``measure/heap.py``); what holds now."""
    if mode not in HEAP_MODES:
        raise ValueError(f"heap must be one of {HEAP_MODES}; got {mode!r}")
    return keep_freed() if mode == "keep" else "system"


def _measure_case(case, backends, baseline, warm, writer, peaks, references=(), earlier=None, **kw):
    """Measure ``case`` (pooled with ``earlier``, its previous passes); its points replace theirs; the Measurement."""
    subjects, control, warmups = _subjects(case, backends, baseline, warm, writer, references)
    if control is None:  # no baseline (or no copy of it) at this point: nothing to compare against
        for s in subjects:
            writer.add_error(s.label, case.label, f"not measured: the baseline {baseline} failed at this point")
        return None
    try:
        m = M.measure(subjects, baseline=baseline, control=control, on_error="drop", settle_scaled=True,
                      settle_quiet=True, confidence=CONFIDENCE, resume=earlier, **kw)
    except Exception as exc:  # the baseline or its copy raised while timed
        for s in subjects:
            writer.add_error(s.label, case.label, f"{type(exc).__name__}: {exc}")
        return None
    for label, error in m.errors.items():
        if earlier is None or label not in earlier.errors:
            writer.add_error(label, case.label, error)
    _publish(writer, case, m, dict(list(backends) + list(references)), peaks, baseline, warmups)
    return m


def _next_pass(earlier, case, backends, baseline, warm, writer, peaks, references, **kw):
    """One more pass of ``case``, pooled with its earlier ones and judged with the between-pass variance of
    ``earlier`` (case label -> Measurement, updated here); the Measurement, or None."""
    m = _measure_case(case, backends, baseline, warm, writer, peaks, references, earlier.get(case.label),
                      between=_between(earlier), **kw)
    if m is not None:
        earlier[case.label] = m
    return m


def _between(measurements) -> dict:
    """The run's between-pass variance so far, per subject label, pooled over that subject's points (``levels``).

    Per label, not over the whole run: how much a pass shifts a ratio is the backend's own (a JIT's code
    placement, an allocator, a thread pool's state). Pooled over every subject, the shifts of the noisiest
    peers (a 12 % spread, idle AMD EPYC, standard preset) widened the intervals of an identical copy of numpy
    whose own passes never moved, and no point could come out ``same``."""
    pooled = {}
    for m in measurements.values():
        for r in [*m.results.values(), *([m.noise] if m.noise else [])]:
            if r.components:
                pooled.setdefault(r.label, []).append(r.components)
    return {label: levels.pooled_between(comps) for label, comps in pooled.items()}


def _rounds_per_pass(m, pooled, pass_cost, most):
    """A follow-up pass's rounds (``levels.rounds_per_pass``) from the components of ``m``'s open subjects."""
    open_ = [r for r in m.results.values() if r.verdict == "unresolved" and r.components]
    if not open_ or not m.rounds:
        return most
    within = float(np.median([r.components.within for r in open_]))
    between = float(np.median([levels.shrunk(r.components, levels.for_label(pooled, r.label)) for r in open_]))
    return levels.rounds_per_pass(within, between, pass_cost, m.elapsed_s / m.rounds, 2, most)


def _need(m, pooled, rounds):
    """``(passes, seconds)``: the fewest follow-up passes of ``rounds`` rounds, and their rounds time, that
    the forecast (``levels.more_passes``) says would decide one of ``m``'s open subjects; None when none
    would within ``levels``' limit (a ratio on a band edge)."""
    extra = min((levels.more_passes(r, m.margin, m.margin_floor, m.confidence, pooled, rounds)
                 for r in m.results.values() if r.verdict == "unresolved"), default=float("inf"))
    if not (math.isfinite(extra) and m.rounds):
        return None
    return int(extra), extra * rounds * m.elapsed_s / m.rounds


def _rejudge(measurements, label):
    return M.rejudge(measurements[label], _between(measurements))


def _publish(writer, case, m, by_label, peaks, baseline, warmups=None, write=True):
    """``m``'s points replace the case's earlier ones (their warm-up times kept: the first pass's); the file is
    rewritten unless ``write`` is false (the caller writes once for many cases)."""
    warmups = dict(warmups or {})
    old = [p for p in writer.doc["points"] if p["case"] == case.label]
    warmups.update({p["backend"]: p["warmup_s"] for p in old})
    writer.doc["points"] = [p for p in writer.doc["points"] if p["case"] != case.label]
    for label, result in m.results.items():
        point = _point(label, by_label[label], case, result, m, peaks)
        point["warmup_s"] = warmups.get(label, 0.0)  # backend.warmup (compilation): apart from first_s too
        if label == baseline and m.noise is not None:
            c = m.noise.to_dict()
            point["control"] = {k: c[k] for k in ("ratio", "ratio_ci", "verdict", "median_s", "samples_s", "passes")}
        writer.doc["points"].append(point)
    if write:
        writer.write()


def measure_point(case, backends, writer, peaks, warm, *, min_time, max_time, baseline=REFERENCE, min_rounds=None,
                  max_rounds=MAX_ROUNDS, margin_floor=SWEEP_MARGIN_FLOOR, settle_s=SWEEP_SETTLE_S, passes=PASSES,
                  references=(), heap=HEAP_DEFAULT):
    """One case alone, its ``passes`` back to back: a cluster's unit of work (``suite/cluster_worker.py``).

    ``backends`` baseline first; ``writer`` anything with ``doc["points"]``, ``add_error``,
    ``add_skipped_case`` and ``write``; ``peaks`` and ``warm`` (the shapes warmed up) are the caller's, kept
    between calls. The between-pass variance is this case's own (no run to pool over): its interval is
    widened by what its passes show. ``heap``: as ``run_sweep``'s (this worker process's setting).
    """
    _heap(heap)
    try:
        check_fits(fit_bytes(case.n_samples, case.layer_sizes, case.dtype), "this point")
    except NotEnoughMemory as exc:
        writer.add_skipped_case(case.label, str(exc))
        return
    pass_rounds = -(-(M.rounds_needed(CONFIDENCE) if min_rounds is None else min_rounds) // passes)
    earlier = {}
    for _ in range(passes):
        _next_pass(earlier, case, backends, baseline, warm, writer, peaks, references, min_time=min_time,
                   max_time=max_time / passes, min_rounds=pass_rounds, max_rounds=max_rounds,
                   margin_floor=margin_floor, settle_s=settle_s)
    if earlier:
        _publish(writer, case, M.rejudge(earlier[case.label], _between(earlier)),
                 dict(list(backends) + list(references)), peaks, baseline)
