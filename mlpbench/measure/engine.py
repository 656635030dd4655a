"""The one timing engine: interleaved rounds, calibrated samples, an A/A control and an adaptive stop.

Design
------
* **Subjects.** Whatever is timed is a ``Subject``: a label, a callable, its
  own ``sync`` (e.g. a backend's ``synchronize``) and an optional ``block``
  hook that waits for the last result of a batch (lazily evaluated arrays).
  The engine never names a backend.
* **Warm-up apart.** Each subject's first call is timed on its own and
  reported as ``first_s`` (JIT compilation, cache loads, device context); it
  never enters a sample.
* **Calibrated samples** (pyperf's loops, asv's ``number``): a sample is one
  synchronized batch of ``number`` calls, ``number`` grown once per subject
  until a batch lasts ``min_time``; the sample is the batch time / ``number``.
* **Interleaved rounds** (asv's rounds): a round times every subject once, in
  orders that rotate (A B C, B C A, C A B, then C B A, A C B, B A C:
  ``orders.round_orders``), so slow drift on a shared machine and the cost of
  following another subject hit all of them alike. The A/A copy is a subject
  of that design like any other, with the same pause before it: run back to
  back with the baseline and no pause between them, as it was, the one of
  the two timed second found the code and the pool hot, so the baseline was
  favoured over every other subject (an identical copy of NumPy timed as a
  backend, ``bench/with_twin.py``, standard preset, one run each: geometric
  mean 1.021 over 34 points, 0.933 to 1.075; apart, 1.003, 0.969 to 1.038).
* **Paired ratios with intervals.** Each round pairs a subject's sample with
  the baseline's; the ratio is the median of those per-round ratios, its
  interval the sign-test (order statistics) interval of that median, exact at
  any number of rounds (``stats.ratio_ci`` says why not the bootstrap).
* **A/A control.** The baseline is timed a second time as an independent
  subject in the same rounds (its own warm-up and calibration; better still,
  an independently prepared copy). Its systematic difference from the
  baseline bounds the equivalence band (``stats.bias_margin``): a subject is
  ``faster`` / ``slower`` when its interval lies wholly outside the band,
  ``same`` wholly inside, ``unresolved`` across an edge (``stats.verdict``).
  When the control itself comes out different from 1, or its band exceeds
  25 % (``stats.MAX_MARGIN``), the measurement is flagged ``noisy``.
* **Adaptive stop** (torch's ``adaptive_autorange``): after ``min_rounds``,
  sampling stops as soon as every subject's verdict is firm
  (``stats.decided``: ``faster``, ``slower`` or ``same``: the interval
  wholly outside or inside the band), or when ``max_time`` seconds of rounds
  or ``max_rounds`` are spent; then what still straddles an edge of the band
  is ``unresolved``. Warm-up and
  calibration do not count against the budget.
* **Passes.** ``resume=`` pools a second pass over a point, with freshly
  prepared subjects, later in the run (asv's processes run their rounds the
  same way); each subject keeps its rounds per pass, and the interval is
  widened by the between-pass variance (``levels``: Kalibera and Jones's two levels).
* **Peaks** (``peaks.Peak``) are rates measured through this engine.

asv contributes the rounds and Mann-Whitney for ``--compare`` (``stats``),
pyperf the calibration of loops to a minimum duration, torch.utils.benchmark
the adaptive stop and the warm-up kept apart; the A/A control is the
experimentalist's way to measure the floor the verdicts stand on.

Usage::

    m = measure([Subject("numpy", step_a, sync=a.synchronize), Subject("numba", step_b, sync=b.synchronize)],
                control=Subject("numpy copy", step_a2, sync=a2.synchronize), min_time=0.005, max_time=1.0)
    m["numba"].ratio, m["numba"].ratio_ci, m["numba"].verdict   # e.g. 0.61, (0.57, 0.66), "faster"
    m.noise, m.margin, m.noisy, m.to_dict()
    m2 = measure([...the same labels, prepared afresh...], control=..., resume=m)   # a later pass, pooled
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..core import interrupt
from . import levels, quiet, stats
from .orders import round_orders

#: calibration never batches more calls than this into one sample
MAX_NUMBER = 10 ** 7


@dataclass(frozen=True)
class Subject:
    """One thing to time: ``fn()`` called in batches, then ``block(last result)`` and ``sync()``."""

    label: str
    fn: Callable[[], Any]
    sync: Optional[Callable[[], None]] = None
    block: Optional[Callable[[Any], None]] = None


def block_ready(result) -> None:
    """A ``block`` hook for lazily evaluated outputs: waits on anything with ``block_until_ready``, nested too."""
    stack = [result]
    while stack:
        obj = stack.pop()
        if isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif hasattr(obj, "block_until_ready"):
            obj.block_until_ready()


def settle(subject, out) -> None:
    """Wait until ``subject``'s work is done: its ``block`` on the last result, then its ``sync``."""
    if subject.block is not None:
        subject.block(out)
    if subject.sync is not None:
        subject.sync()


def _batch(subject, number, clock) -> float:
    """Seconds of one synchronized batch of ``number`` calls."""
    t0 = clock()
    out = None
    for _ in range(number):
        out = subject.fn()
    settle(subject, out)
    return clock() - t0


def calibrate(subject, min_time, clock=time.perf_counter) -> int:
    """Calls per sample: grown (x2 to x10 per try) until a batch lasts ``min_time`` seconds.

    Each try times two batches and trusts the faster, so one stalled batch (the
    machine busy elsewhere) cannot leave a subject with too few calls per sample. ``min_time`` 0: one
    call, with nothing timed.
    """
    number = 1
    if min_time <= 0:  # any batch lasts that long: nothing to time
        return number
    while number < MAX_NUMBER:
        t = min(_batch(subject, number, clock), _batch(subject, number, clock))
        if t >= min_time:
            break
        grow = min(10.0, max(2.0, 1.2 * min_time / t)) if t > 0 else 10.0
        number = min(MAX_NUMBER, int(math.ceil(number * grow)))
    return number


# ---------------------------------------------------------------- results
@dataclass
class SubjectResult:
    """A subject's samples (seconds per call, one per round) and its standing against the baseline."""

    label: str
    samples: list
    number: int
    first_s: float
    ratio: float = 1.0
    ratio_ci: tuple = (1.0, 1.0)
    verdict: str = "baseline"
    passes: list = field(default_factory=list)  # rounds per pass (``resume``), adding up to len(samples)
    variance: dict | None = None  # the log ratio's components (``levels.Components.to_dict``)
    components: Any = None  # the ``levels.Components`` behind ``variance``

    @property
    def min(self) -> float:
        return min(self.samples)

    @property
    def median(self) -> float:
        return stats.summary(self.samples)["median"]

    @property
    def iqr(self) -> float:
        return stats.summary(self.samples)["iqr"]

    def to_dict(self) -> dict:
        s = stats.summary(self.samples)
        return {"label": self.label, "min_s": s["min"], "median_s": s["median"], "iqr_s": s["iqr"],
                "ratio": self.ratio, "ratio_ci": list(self.ratio_ci), "verdict": self.verdict,
                "first_s": self.first_s, "number": self.number, "rounds": len(self.samples),
                "passes": list(self.passes), **({"variance": self.variance} if self.variance else {}),
                "samples_s": list(self.samples)}


@dataclass
class Measurement:
    """One point: every subject's result (baseline first), the A/A control (``noise``) and how sampling ended."""

    baseline: str
    results: dict
    noise: Optional[SubjectResult]
    margin: float
    confidence: float
    rounds: int
    elapsed_s: float
    stop: str  # "decided" | "max_time" | "max_rounds"
    errors: dict = field(default_factory=dict)  # label -> "Type: message" (on_error="drop")
    margin_floor: float = stats.MARGIN_FLOOR
    between: Any = 0.0  # the between-pass variance the intervals were widened by: a number or per label (``levels``)
    settled: dict = field(default_factory=dict)  # settle_quiet: {"waits", "waited_s", "capped"} over every pass

    @property
    def noisy(self) -> bool:
        """The A/A control did not come out ``same``, or its bias band exceeds ``stats.MAX_MARGIN``: a flag on
        this point (its clear verdicts stand: ``stats.verdict``)."""
        return self.noise is not None and (self.noise.verdict != "same" or not self.margin <= stats.MAX_MARGIN)

    def __getitem__(self, label) -> SubjectResult:
        return self.results[label]

    def to_dict(self) -> dict:
        return {"baseline": self.baseline, "rounds": self.rounds, "elapsed_s": self.elapsed_s, "stop": self.stop,
                "confidence": self.confidence, "margin": self.margin, "noisy": self.noisy, "between": self.between,
                "noise": None if self.noise is None else self.noise.to_dict(),
                "subjects": [r.to_dict() for r in self.results.values()], "errors": dict(self.errors),
                **({"settled": dict(self.settled)} if self.settled else {})}


# ---------------------------------------------------------------- the engine
def _check(subjects, baseline, control, min_time, min_rounds, max_rounds, max_time, confidence, on_error):
    if not subjects:
        raise ValueError("subjects must hold at least one Subject; got none")
    for s in subjects:
        if not isinstance(s, Subject) or not callable(s.fn):
            raise TypeError(f"subjects must be Subject(label, fn, ...) with a callable fn; got {s!r}")
    labels = [s.label for s in subjects]
    if len(set(labels)) != len(labels):
        raise ValueError(f"subject labels must be unique; got {labels}")
    if baseline is not None and baseline not in labels:
        raise ValueError(f"baseline must be one of the subject labels {labels}; got {baseline!r}")
    if not isinstance(control, (bool, Subject)):
        raise TypeError(f"control must be True, False or a Subject (a copy of the baseline); got {control!r}")
    if control and _control_label(labels[0] if baseline is None else baseline) in labels:
        raise ValueError(f"subject labels must not end in ' (A/A)', the control's label; got {labels}")
    if not (isinstance(min_rounds, int) and min_rounds >= 1):
        raise ValueError(f"min_rounds must be an int >= 1; got {min_rounds!r}")
    if not (isinstance(max_rounds, int) and max_rounds >= min_rounds):
        raise ValueError(f"max_rounds must be an int >= min_rounds ({min_rounds}); got {max_rounds!r}")
    if not (math.isfinite(min_time) and min_time >= 0):
        raise ValueError(f"min_time must be a finite number of seconds >= 0; got {min_time!r}")
    if not max_time > 0:
        raise ValueError(f"max_time must be a number of seconds > 0; got {max_time!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence!r}")
    if on_error not in ("raise", "drop"):
        raise ValueError(f"on_error must be 'raise' or 'drop'; got {on_error!r}")


def _control_label(base) -> str:
    return f"{base} (A/A)"


def rounds_needed(confidence) -> int:
    """The fewest rounds whose order statistics give an interval at ``confidence`` (8 at 0.99, 6 at 0.95)."""
    n = 1
    while stats.sign_test_rank(n, confidence)[0] == 0:
        n += 1
    return n


def rejudge(m, between) -> Measurement:
    """``m`` judged again with the between-pass variance ``between`` (``levels``): ratios, intervals, verdicts."""
    m.margin, _ = levels.judge(m.results, m.noise, m.baseline, m.confidence, m.margin_floor, between)
    m.between = between
    return m


def measure(subjects, *, baseline=None, control=True, min_time=0.01, min_rounds=None, max_rounds=50,
            max_time=2.0, confidence=stats.CONFIDENCE, margin_floor=stats.MARGIN_FLOOR, warmup=1, settle_s=0.0,
            settle_scaled=False, settle_quiet=False, on_error="raise", resume=None, between=0.0,
            clock=time.perf_counter) -> Measurement:
    """Time ``subjects`` (a list of ``Subject``) in interleaved rounds against ``baseline`` (a label; default the first).

    ``control``: ``True`` times the baseline's callable again as the A/A
    control; a ``Subject`` is an independently prepared copy of the baseline
    (its own arrays) to use instead (better: it also shows what memory
    placement does); ``False``: no control, the margin is ``margin_floor``.
    The control is warmed up and calibrated on its own. ``min_time``: seconds
    per sample at least (calls are batched). ``min_rounds`` (default
    ``rounds_needed(confidence)``) rounds always run; then sampling stops when
    every verdict is firm, after ``max_rounds``, or once ``max_time`` seconds of
    rounds are spent. ``warmup``: untimed calls before calibration (the first
    is timed as ``first_s``). ``settle_s``: a pause before each sample (lets
    another subject's thread pool go idle); with ``settle_scaled`` the pause is
    at most as long as the previous sample (the cost of settling stays within
    2x at short samples, where a parallel kernel rarely runs); with
    ``settle_quiet`` it lasts until no other thread of the process runs
    (``quiet.wait``: the previous subject's pool gone idle), at most
    ``settle_s``, where the OS shows the threads (else the fixed or scaled
    pause); the waits are counted in ``Measurement.settled``. ``on_error="drop"`` leaves out a
    subject that raises (recorded in ``errors``) instead of raising; a failing
    baseline or control always raises. ``resume``: the ``Measurement`` of an
    earlier pass over the same point (same labels, freshly prepared subjects):
    its samples are pooled with this pass's (the judgement and the adaptive
    stop see them all), its calls per sample are kept (no calibration; the
    warm-up calls still run), its failed subjects stay out (a subject it holds
    that this pass does not time is left out), and ``min_rounds``
    / ``max_time`` count this pass only; each subject keeps its rounds per pass
    (``passes``). ``between``: the run's between-pass variance of a log ratio
    (``levels.pooled_between``), added to every interval. ``clock``: seconds, for tests.
    """
    subjects = list(subjects)
    min_rounds = rounds_needed(confidence) if min_rounds is None else min_rounds
    _check(subjects, baseline, control, min_time, min_rounds, max_rounds, max_time, confidence, on_error)
    base = subjects[0].label if baseline is None else baseline
    subjects.sort(key=lambda s: s.label != base)
    aa_label = _control_label(base)
    if isinstance(control, Subject):
        subjects.insert(1, Subject(aa_label, control.fn, control.sync, control.block))
    elif control:
        subjects.insert(1, Subject(aa_label, subjects[0].fn, subjects[0].sync, subjects[0].block))
    numbers, firsts, errors, pooled, sizes = {}, {}, {}, {}, {}
    if resume is not None:
        _check_resume(resume, base)
        errors.update(resume.errors)
        for r in list(resume.results.values()) + ([resume.noise] if resume.noise is not None else []):
            numbers[r.label], firsts[r.label], pooled[r.label] = r.number, r.first_s, list(r.samples)
            sizes[r.label] = list(r.passes) or [len(r.samples)]
        subjects = [s for s in subjects if s.label not in errors]

    def guarded(s, action):
        try:
            return action()
        except Exception as exc:
            if on_error == "raise" or s.label in (base, aa_label):
                raise
            errors[s.label] = f"{type(exc).__name__}: {exc}"
            return None

    for s in subjects:  # warm-up and calibration, one subject at a time, outside the budget
        def prepare(s=s):
            first = _batch(s, 1, clock)
            for _ in range(max(0, warmup - 1)):
                _batch(s, 1, clock)
            return first, numbers[s.label] if s.label in pooled else calibrate(s, min_time, clock)

        got = guarded(s, prepare)
        if got is not None:
            firsts.setdefault(s.label, got[0])
            numbers[s.label] = got[1]
    if control is True and resume is None:
        firsts[aa_label] = float("nan")  # the baseline's own callable, already warm: no first call of its own
    timed = [s for s in subjects if s.label not in errors]
    samples = {s.label: pooled.get(s.label, []) for s in timed}
    rounds_needed(confidence)  # a process's first call imports the statistics' SciPy: now, not in the budget
    start, rounds, stop = clock(), 0, "max_rounds"
    pause = quiet.Settle(settle_s, settle_scaled, settle_quiet, resume.settled if resume is not None else None)
    cycle = []
    while rounds < max_rounds:
        interrupt.check()
        if not cycle or len(cycle[0]) != len(timed):  # the orders again only when a subject dropped out
            cycle = round_orders(len(timed))
        for i in cycle[rounds % len(cycle)]:
            s = timed[i]
            pause()
            t = guarded(s, lambda s=s: _batch(s, numbers[s.label], clock))
            if t is not None:
                pause.last = t
                samples[s.label].append(t / numbers[s.label])
        rounds += 1
        timed = [s for s in timed if s.label not in errors]
        if rounds < min_rounds:
            continue
        if levels.judge(*_results(timed, samples, numbers, firsts, sizes, aa_label), base, confidence, margin_floor,
                        between)[1]:
            stop = "decided"
            break
        if clock() - start >= max_time:
            stop = "max_time"
            break
    elapsed = clock() - start + (resume.elapsed_s if resume is not None else 0.0)
    results, noise = _results(timed, samples, numbers, firsts, sizes, aa_label)
    rounds += resume.rounds if resume is not None else 0
    m = Measurement(base, results, noise, margin_floor, confidence, rounds, elapsed, stop, errors, margin_floor,
                    settled=pause.record)
    return rejudge(m, between)


def _check_resume(resume, base):
    if not isinstance(resume, Measurement):
        raise TypeError(f"resume must be the Measurement of an earlier pass or None; got {type(resume).__name__}")
    if resume.baseline != base:
        raise ValueError(f"resume must come from a pass with the same baseline {base!r}; got {resume.baseline!r}")


def _results(timed, samples, numbers, firsts, sizes, aa_label):
    """Each timed subject's result, its rounds per pass counted (earlier passes' ``sizes``, then this one's)."""
    results = {}
    for s in timed:
        done = sizes.get(s.label, [])
        passes = done + [len(samples[s.label]) - sum(done)]
        results[s.label] = SubjectResult(s.label, samples[s.label], numbers[s.label], firsts[s.label],
                                         passes=[n for n in passes if n])
    return results, results.pop(aa_label, None)


__all__ = ["MAX_NUMBER", "Measurement", "Subject", "SubjectResult", "block_ready", "calibrate", "measure",
           "rejudge", "rounds_needed"]
