"""Statistics behind every verdict mlpbench prints: ratio intervals, verdicts, Mann-Whitney U, the compare gate.

NumPy, and SciPy for the distributions (the binomial CDF ``scipy.special.bdtr``
for the sign test, ``scipy.stats.mannwhitneyu`` for U), imported on first use
so that importing this module, or the engine that a ``backend="auto"`` fit
imports, stays light; no timing. Public API:

* ``summary(samples) -> dict``: n, min, median, q25, q75, iqr;
* ``ratio_ci(subject, baseline, confidence=CONFIDENCE) -> RatioCI``: the ratio of
  paired round samples (subject / baseline) with its interval;
* ``bias_margin(control, baseline, floor=MARGIN_FLOOR) -> float``:
  the equivalence band that the A/A control's systematic difference sets;
* ``decided(ci, margin, floor)`` (may sampling stop?) and ``verdict(ci, margin, floor)``:
  ``faster`` / ``slower`` / ``same`` / ``unresolved``;
* ``control_verdict(control_ci, floor)``: the A/A control's own verdict (the run is noisy unless ``same``);
* ``mann_whitney_u(x, y) -> (U, p)``;
* ``compare(old, new, threshold=0.10) -> Comparison`` and ``gate(comparisons, fail_on_regression)``:
  the ``--compare OLD NEW`` statistics; bad input raises ``CompareError`` (a
  ``ValueError``; the CLI turns it into exit 2).

Why order statistics, not the bootstrap, for the paired ratio interval: a
point is measured in 8 to 50 rounds, and each round gives one ratio
``t_subject / t_baseline`` of samples taken milliseconds apart, so slow drift
cancels within the pair. The interval is the sign-test interval for the
MEDIAN of those ratios: the ``k``-th smallest and ``k``-th largest ratio, with
``k`` from the Binomial(n, 1/2) distribution. Its coverage is exact for any
n and any continuous noise distribution (only independent rounds are assumed),
whereas a bootstrap interval of a median is known to under-cover at such small
n; it needs no random numbers (deterministic without a seed); and a preempted
sample (one huge ratio) moves it by one order statistic at most. The price is
width: about 1.25 times a normal-theory interval on well-behaved noise.

For ``--compare`` the two runs are not paired (different processes, maybe
different days), so the test is Mann-Whitney U on the raw samples, as asv
does, and the ratio is the Hodges-Lehmann shift of the log-times with the
Moses interval (the order statistics of all pairwise log-ratios that the U
distribution selects): the interval excludes 1 when the U test rejects (exactly so for small samples without ties).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

VERDICTS = ("faster", "slower", "same", "unresolved")
#: the confidence of every interval the benchmark reports (the engine's default; 8 rounds at least). ``auto``
#: decides at its own, lower ``CHOICE_CONFIDENCE``
CONFIDENCE = 0.99
#: smallest equivalence margin (the engine's default): differences under 2 % are never called real. The
#: sweep calls nothing under its own, wider ``SWEEP_MARGIN_FLOOR``
MARGIN_FLOOR = 0.02
#: a bias band wider than this leaves ``same`` meaningless: such a point says ``unresolved`` (and is noisy)
MAX_MARGIN = 0.25
#: exact Mann-Whitney p-values when there are no ties and ``m * n`` is at most this
EXACT_MAX_MN = 400


class CompareError(ValueError):
    """``--compare`` cannot give an honest answer (nothing comparable, bad threshold, NaN or missing data)."""


def _clean(samples, name) -> np.ndarray:
    a = np.asarray(samples, dtype=float).ravel()
    if a.size == 0:
        raise ValueError(f"{name} must hold at least one sample; got none")
    if not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ValueError(f"{name} must be positive finite times; got {a[~(np.isfinite(a) & (a > 0))][:3].tolist()}")
    return a


def summary(samples) -> dict:
    """``{"n", "min", "median", "q25", "q75", "iqr"}`` of positive finite samples."""
    a = _clean(samples, "samples")
    q25, q50, q75 = np.percentile(a, [25, 50, 75])
    return {"n": int(a.size), "min": float(a.min()), "median": float(q50), "q25": float(q25), "q75": float(q75),
            "iqr": float(q75 - q25)}


# ---------------------------------------------------------------- paired ratio and its interval
@functools.lru_cache(maxsize=1024)
def sign_test_rank(n, confidence) -> tuple[int, float]:
    """``(k, achieved)``: the interval ``[x_(k), x_(n+1-k)]`` covers the median with ``achieved >= confidence``.

    ``k`` is 0 when ``n`` is too small for that confidence (no interval).
    """
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1); got {confidence}")
    if n < 1:
        return 0, float("nan")
    from scipy.special import bdtr  # the Binomial CDF; scipy.stats would cost an auto fit ~0.7 s more to import

    cdf = bdtr(np.arange(n // 2), n, 0.5)
    k = int(np.count_nonzero(2 * cdf <= 1 - confidence))  # x_(k+1) as a bound would leave 2 P(B <= k) outside
    return k, float(1 - 2 * cdf[k - 1]) if k else float("nan")


@dataclass(frozen=True)
class RatioCI:
    """Median of the paired ratios and its interval; ``lo``/``hi`` are NaN when there are too few rounds."""

    ratio: float
    lo: float
    hi: float
    n: int
    confidence: float  # the coverage the order statistics achieve (>= the requested one), NaN without interval

    @property
    def ci(self) -> tuple[float, float]:
        return (self.lo, self.hi)

    @property
    def defined(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)


def ratio_ci(subject, baseline, confidence=CONFIDENCE) -> RatioCI:
    """Ratio ``subject / baseline`` of samples paired by round, with the sign-test interval of its median."""
    s, b = _clean(subject, "subject"), _clean(baseline, "baseline")
    if s.size != b.size:
        raise ValueError(f"subject and baseline must be paired by round; got {s.size} and {b.size} samples")
    logs = np.sort(np.log(s) - np.log(b))
    n = logs.size
    k, achieved = sign_test_rank(n, confidence)
    lo, hi = (math.exp(logs[k - 1]), math.exp(logs[n - k])) if k else (float("nan"), float("nan"))
    return RatioCI(float(math.exp(np.median(logs))), lo, hi, n, achieved)


# ---------------------------------------------------------------- margin and verdicts
def _band(margin) -> tuple[float, float]:
    return 1 / (1 + margin), 1 + margin


def _z(confidence) -> float:
    """Two-sided standard normal quantile: ``P(|Z| <= z) = confidence``."""
    return NormalDist().inv_cdf((1 + confidence) / 2)


def bias_margin(control, baseline, floor=MARGIN_FLOOR) -> float:
    """The equivalence band's half-width (a fraction, 0.05 = 5 %): how far two copies of the baseline differ
    *systematically*, from the A/A control's samples paired by round with the baseline's; at least ``floor``.

    The estimate is the control's median ratio's distance from 1 (in logs),
    not its interval's far edge: the noise is already in every subject's own
    interval, and counting it a second time in the band let a noisy baseline
    veto effects of any size (a 12x speed-up once read ``unresolved``). NaN
    without samples.
    """
    if not (math.isfinite(floor) and floor >= 0):
        raise ValueError(f"floor must be a finite fraction >= 0; got {floor}")
    logs = np.log(_clean(control, "control")) - np.log(_clean(baseline, "baseline"))
    if logs.size < 1:
        return float("nan")
    return max(floor, math.expm1(abs(float(np.median(logs)))))


def decided(ci, margin, floor=MARGIN_FLOOR) -> bool:
    """Whether ``ci`` (a ``RatioCI``) already gives a firm verdict, so sampling may stop (see ``verdict``)."""
    return verdict(ci, margin, floor, final=False) is not None


def verdict(ci, margin, floor=MARGIN_FLOOR, final=True):
    """``faster`` / ``slower`` / ``same`` / ``unresolved`` for a subject's ratio interval (time ratio: < 1 is faster).

    The band is ``[1/(1+m), 1+m]`` with ``m = max(margin, floor)``: ``margin``
    the systematic A/A difference (``bias_margin``), ``floor`` the smallest
    difference that matters. The interval (with the between-pass variance in
    it: ``levels``) carries the noise; the band carries only the bias.

    * ``faster``: the interval lies wholly below the band; ``slower``: wholly above it;
    * ``same``: the interval lies wholly inside the band (when the band is
      wider than ``MAX_MARGIN``, 25 %, "same" would say little: then only
      inside the ``floor`` band; the point is noisy anyway);
    * ``unresolved``: the interval straddles an edge of the band, or there is
      no interval (too few rounds) or no margin.

    A noisy point (its A/A control not ``same``) is flagged by the engine; its
    clear verdicts stand.

    Why an identical copy is called ``faster`` or ``slower`` at most ``1 -
    confidence`` of the time: its true ratio is 1 (its systematic difference
    is what the band is for), and the band always contains 1 (``m >= 0``). To
    lie wholly outside the band, the interval must exclude 1, i.e. miss the
    true ratio, which the sign-test interval does with probability at most
    ``1 - confidence`` (exact, for any continuous noise, given independent
    rounds). Whatever the A/A control reads, it can only widen the band, so it
    can only make such an error rarer. Rounds are not independent when the
    whole pass shifts (memory placement, CPU state): that is why the interval
    carries the between-pass component (``levels.widen``) before it is judged.

    ``final=False`` (the adaptive loop asks) returns ``None`` instead of ``unresolved``.
    """
    if not ci.defined or not math.isfinite(margin):
        return "unresolved" if final else None
    m = max(margin, floor)
    lo_band, hi_band = _band(m)
    if ci.hi < lo_band:
        return "faster"
    if ci.lo > hi_band:
        return "slower"
    lo_same, hi_same = _band(_same_margin(m, floor))
    if lo_same <= ci.lo and ci.hi <= hi_same:
        return "same"
    return "unresolved" if final else None


def _same_margin(m, floor) -> float:
    """The band ``same`` asks an interval to lie in: ``m``'s, or the ``floor``'s when ``m`` exceeds
    ``MAX_MARGIN`` (a band that wide says little; ``floor <= m``)."""
    return m if m <= MAX_MARGIN else floor


def edge_distance(ratio, margin, floor=MARGIN_FLOOR) -> float:
    """How far (in logs) ``ratio`` lies from the band edge its interval must clear for a firm verdict
    (``verdict``): outside the band, from the band (``faster`` / ``slower``); inside, from the nearer edge
    (``same``: the band of ``floor`` when ``max(margin, floor)`` exceeds ``MAX_MARGIN``). 0 on an edge: no
    interval, however narrow, decides it. NaN without a ratio or a margin."""
    if not (ratio > 0 and math.isfinite(ratio) and math.isfinite(margin)):
        return float("nan")
    r, m = abs(math.log(ratio)), max(margin, floor)
    if r >= math.log1p(m):
        return r - math.log1p(m)
    return max(0.0, math.log1p(_same_margin(m, floor)) - r)


def control_verdict(control, floor=MARGIN_FLOOR) -> str:
    """The A/A control's verdict: ``same`` unless its interval excludes 1 beyond ``floor`` (then the run is noisy)."""
    if not control.defined:
        return "unresolved"
    lo_band, hi_band = _band(floor)
    if (lo_band <= control.lo and control.hi <= hi_band) or control.lo <= 1 <= control.hi:
        return "same"
    return "faster" if control.hi < 1 else "slower"


# ---------------------------------------------------------------- Mann-Whitney U
def _exact(a, b) -> bool:
    """Whether U's exact distribution applies: no ties and ``len(a) * len(b) <= EXACT_MAX_MN``."""
    return a.size * b.size <= EXACT_MAX_MN and np.unique(np.concatenate([a, b])).size == a.size + b.size


def mann_whitney_u(x, y) -> tuple[float, float]:
    """``(U, p)``: U counts pairs with ``x_i > y_j`` (ties count 1/2); ``p`` two-sided (``scipy.stats.mannwhitneyu``).

    Exact p-value when there are no ties and ``len(x) * len(y) <= EXACT_MAX_MN``;
    otherwise the normal approximation with tie-corrected variance and a
    continuity correction.
    """
    a, b = np.asarray(x, dtype=float).ravel(), np.asarray(y, dtype=float).ravel()
    if a.size == 0 or b.size == 0 or not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("mann_whitney_u needs two non-empty samples of finite numbers")
    from scipy.stats import mannwhitneyu

    r = mannwhitneyu(a, b, alternative="two-sided", method="exact" if _exact(a, b) else "asymptotic")
    return float(r.statistic), float(r.pvalue)


@functools.lru_cache(maxsize=64)
def _u_cdf(m, n) -> np.ndarray:
    """``P(U <= u)``, ``u = 0..m n``, under no difference and no ties (sizes ``m n <= EXACT_MAX_MN``).

    Read from scipy's exact test: for each ``u``, samples built to give ``U = u``
    (``x_i`` above ``c_i`` of the ``y``, ``sum c_i = u``, no ties) and the
    one-sided p-value. Each probability is a count of orderings over
    ``C(m + n, m)`` (at most 1.4e11 here): rounded to that count and divided
    again, it is exact.
    """
    i = np.arange(m)
    above = np.clip(np.arange(m * n + 1)[:, None] - n * i, 0, n)  # row u: how many y each x_i exceeds
    x = above - 1 + (i + 1) / (m + 1)  # within (above - 1, above): distinct, and never equal to a y
    from scipy.stats import mannwhitneyu

    p = mannwhitneyu(x, np.arange(n, dtype=float), alternative="less", method="exact", axis=1).pvalue
    total = math.comb(m + n, m)
    cdf = np.rint(p * total) / total
    cdf.flags.writeable = False  # cached
    return cdf


def _shift_rank(m, n, confidence, ties) -> int:
    """How many pairwise differences the Moses interval leaves out on each side (0: no interval)."""
    alpha = 1 - confidence
    if not ties and m * n <= EXACT_MAX_MN:
        return int(np.count_nonzero(_u_cdf(m, n)[: m * n // 2] <= alpha / 2))
    return max(0, int(math.floor(m * n / 2 - _z(confidence) * math.sqrt(m * n * (m + n + 1) / 12))))


# ---------------------------------------------------------------- --compare OLD NEW
@dataclass(frozen=True)
class Comparison:
    """One point of ``--compare``: ``ratio`` = new / old time (Hodges-Lehmann), its interval and the U test."""

    ratio: float
    lo: float
    hi: float
    p: float
    n_old: int
    n_new: int
    old_median: float
    new_median: float
    decidable: bool  # whether these sample counts can reach p < alpha at all
    flag: str  # "regression" | "improvement" | "" (no significant change beyond the threshold)

    @property
    def regression(self) -> bool:
        return self.flag == "regression"

    def to_dict(self) -> dict:
        return {"ratio": self.ratio, "ratio_ci": [self.lo, self.hi], "p": self.p, "n_old": self.n_old,
                "n_new": self.n_new, "old_median_s": self.old_median, "new_median_s": self.new_median,
                "decidable": self.decidable, "flag": self.flag}


def check_threshold(threshold) -> float:
    """``threshold`` as a float, or ``CompareError`` when it is NaN, infinite or negative."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise CompareError(f"threshold must be a number >= 0; got {threshold!r}") from None
    if not math.isfinite(t) or t < 0:
        raise CompareError(f"threshold must be a finite number >= 0; got {threshold!r}")
    return t


def _compare_samples(samples, name) -> np.ndarray:
    """``_clean``'s checks, as ``CompareError`` (the gate's exit 2)."""
    if samples is None or np.size(samples) == 0:
        raise CompareError(f"{name}: no samples (median missing)")
    try:
        return _clean(samples, name)
    except ValueError:
        raise CompareError(f"{name}: samples must be positive finite times (median is NaN or missing)") from None


def compare(old, new, threshold=0.10, *, alpha=0.01) -> Comparison:
    """OLD vs NEW raw samples of one point (seconds per call).

    ``flag`` is ``"regression"`` only for a significant slowdown beyond the
    threshold: Mann-Whitney ``p < alpha`` and ``ratio > 1 + threshold``
    (asv's rule); ``"improvement"`` mirrors it. A single number on either side
    is accepted (a median alone) but can never be significant (``decidable``
    is False). Raises ``CompareError`` for a bad threshold or NaN, missing or
    non-positive samples.
    """
    t = check_threshold(threshold)
    if not 0 < alpha < 1:
        raise CompareError(f"alpha must be in (0, 1); got {alpha!r}")
    a, b = _compare_samples(old, "old"), _compare_samples(new, "new")
    m, n = a.size, b.size
    la, lb = np.log(a), np.log(b)
    diffs = np.sort((lb[None, :] - la[:, None]).ravel())
    ties = np.unique(np.concatenate([la, lb])).size < m + n
    k = _shift_rank(m, n, 1 - alpha, ties)
    lo, hi = (math.exp(diffs[k - 1]), math.exp(diffs[m * n - k])) if k else (0.0, math.inf)
    _, p = mann_whitney_u(a, b)
    decidable = 2 / math.comb(m + n, m) < alpha
    ratio = math.exp(float(np.median(diffs)))
    flag = ""
    if p < alpha and ratio > 1 + t:
        flag = "regression"
    elif p < alpha and ratio < 1 / (1 + t):
        flag = "improvement"
    return Comparison(ratio, lo, hi, p, m, n, float(np.median(a)), float(np.median(b)), decidable, flag)


def gate(comparisons, fail_on_regression=True) -> int:
    """Exit status of ``--compare``: 1 when failing on a flagged regression, else 0.

    ``CompareError`` (the CLI's exit 2) when there is nothing to compare.
    """
    comparisons = list(comparisons)
    if not comparisons:
        raise CompareError("nothing comparable: the two results share no point")
    return 1 if fail_on_regression and any(c.regression for c in comparisons) else 0


__all__ = ["VERDICTS", "CONFIDENCE", "MARGIN_FLOOR", "MAX_MARGIN", "CompareError", "Comparison", "RatioCI",
           "check_threshold", "compare", "control_verdict", "decided", "edge_distance", "gate", "mann_whitney_u",
           "bias_margin", "ratio_ci", "sign_test_rank", "summary", "verdict"]
