"""Two levels of variance in a ratio (Kalibera & Jones): rounds within a pass, and passes within a run.

A point is measured in passes (``engine.measure``'s ``resume``), each with
freshly prepared subjects (new arrays, new handles) at another moment of the
run. Rounds within a pass share one memory placement and one machine state;
a pass as a whole can sit a few percent off another (the README's 5-10 %
between processes). An interval from the pooled rounds alone treats them as
independent and under-covers whenever passes differ: two runs' intervals
then miss each other's ratios more often than their confidence says.

So each point's log ratios (subject / baseline, paired by round) are split by
pass, and two variance components are estimated, Kalibera and Jones's
two-level design ("Rigorous Benchmarking in Reasonable Time", ISMM 2013):

* ``within``: of one round's log ratio around its pass's centre;
* ``between``: of a pass's centre around the point's true ratio, beyond
  what ``within`` alone would move it.

Both robustly (timing noise has a long upper tail: one preempted sample must
not swamp them): the within scale from the median of the differences of
successive rounds within a pass, ``|x_(i+1) - x_i|`` (over ``sqrt(2) *
0.6745`` it estimates a normal sigma: no bias from a fitted centre at few
rounds per pass, slow drift within a pass left out, and linear in the rounds,
which the adaptive loop asks for after every round); the between component is the variance of the pass medians minus what the within noise
alone gives them (``f(n) * within / n`` for a median of ``n``: ``f`` is 1 for one or two rounds, where the
median is a mean, and grows towards ``pi/2``; ``median_variance``), at least 0.

One point's two or three passes are too few to estimate ``between`` alone
(1 or 2 degrees of freedom), so a run pools it over each backend's points
(``suite/sweep._between``: per label, as a pass moves each backend by its own amount)
(``pooled_between``: the median of each point's spread of its pass medians
over the median of a chi-square with that spread's degrees of freedom,
divided by them, less the median within noise, so
that one point whose passes differ wildly on a loaded machine does not widen
every interval of the run),
and each point's own estimate is shrunk towards it (``shrunk``: the posterior
mean of a variance with the pooled value as a prior worth ``PRIOR_DF``
degrees of freedom), so a point whose passes disagree far beyond the run's
typical spread is widened more. Every interval is widened by it (``widen``):
the half-widths ``d`` of the sign-test interval on each side become
``sqrt(d^2 + z^2 between / k)`` over ``k`` passes, the variance of a mean of
``k`` pass effects added to the rounds' own. Kalibera and Jones then
choose the repetitions at each level from the components and the costs
(``rounds_per_pass``); the sweep's follow-up passes (``suite/budget.py``) add
passes where the answer is still open, each of that many rounds.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from . import stats

#: the median of ``|x_i - x_j|`` of two normal values is this times sigma (``sqrt(2) * 0.6745``)
PAIR_SIGMA = math.sqrt(2) * 0.6744897501960817
#: a median of ``n`` normal values has variance ``f(n) sigma^2 / n``: ``f`` for n = 1..30 (the median of two
#: is their mean; odd n lose more than even; 4e5 draws each, tests/test_levels checks them), then ``pi/2``
#: (3 % high at 40)
MEDIAN_VARIANCE = (1.0, 1.0, 1.346, 1.192, 1.44, 1.287, 1.477, 1.345, 1.493, 1.379, 1.505, 1.411, 1.523, 1.431,
                   1.523, 1.437, 1.536, 1.462, 1.537, 1.47, 1.535, 1.48, 1.544, 1.49, 1.543, 1.491, 1.542, 1.495,
                   1.55, 1.491)
MEDIAN_EFFICIENCY = math.pi / 2
#: the degrees of freedom the run's pooled between-pass variance counts for against a point's own estimate
PRIOR_DF = 4
#: the most further passes a forecast looks ahead (``passes_to_decide``); beyond, a ratio sits on a band edge
FORECAST_PASSES = 64


@dataclass(frozen=True)
class Components:
    """A point's variance components of the log ratio: ``within`` (rounds), ``between`` (passes), over ``passes``."""

    within: float
    between: float  # the moment estimate, unclipped: negative when the passes agree better than the rounds predict
    passes: int
    rounds: int
    spread: float = float("nan")  # the variance of the pass medians (``passes - 1`` degrees of freedom)
    noise: float = float("nan")  # what the within noise alone gives it: ``between = spread - noise``

    def to_dict(self) -> dict:
        return {"within": self.within, "between": max(0.0, self.between), "passes": self.passes,
                "rounds": self.rounds}


def median_variance(n) -> float:
    """The variance of the median of ``n`` values with unit variance, normal: ``f(n) / n`` (``MEDIAN_VARIANCE``)."""
    return (MEDIAN_VARIANCE[n - 1] if n <= len(MEDIAN_VARIANCE) else MEDIAN_EFFICIENCY) / n


@functools.lru_cache(maxsize=64)
def chi2_median_per_df(df) -> float:
    """The median of a chi-square variable with ``df`` degrees of freedom, divided by ``df`` (0.455 at 1, 0.693
    at 2, 0.891 at 6, towards 1): a sample variance with ``df`` degrees of freedom over the true variance, at
    its median (``scipy.special.chdtri``, the inverse of the chi-square survival function)."""
    from scipy.special import chdtri

    return float(chdtri(df, 0.5)) / df


def split(values, sizes) -> list:
    """``values`` cut into consecutive groups of ``sizes`` (a pass each); ``ValueError`` when they do not add up."""
    values = np.asarray(values, dtype=float)
    sizes = [int(n) for n in sizes]
    if sum(sizes) != values.size or any(n < 0 for n in sizes):
        raise ValueError(f"pass sizes {sizes} must add up to the {values.size} samples")
    return [g for g in np.split(values, np.cumsum(sizes)[:-1]) if g.size]


def components(groups) -> Components:
    """Within- and between-group variance components of ``groups`` (arrays of log ratios, one per pass)."""
    groups = [np.asarray(g, dtype=float) for g in groups if len(g)]
    if not groups:
        raise ValueError("components needs at least one non-empty group")
    centres = np.array([np.median(g) for g in groups])
    pairs = np.concatenate([np.abs(np.diff(g)) for g in groups])
    within = float((np.median(pairs) / PAIR_SIGMA) ** 2) if pairs.size else float("nan")
    spread = noise = float("nan")
    if len(groups) >= 2 and math.isfinite(within):
        noise = within * float(np.mean([median_variance(g.size) for g in groups]))
        spread = float(np.var(centres, ddof=1))
    return Components(within, spread - noise, len(groups), int(sum(g.size for g in groups)), spread, noise)


def pooled_between(all_components) -> float:
    """One run's between-pass variance, from its points with 2 passes or more: the median of their spreads of
    the pass medians, each over ``chi2_median_per_df(passes - 1)`` (the spread of ``k`` passes is ``(between +
    noise)`` times a chi-square with ``k - 1`` degrees of freedom over ``k - 1``), less their median noise;
    >= 0; 0 when no point has two passes yet.

    (The median of the differences ``spread - noise`` would not do: it sits below 0 whenever the noise is as
    large as the between component, and would call a real one absent. Dividing every spread by the median at
    one degree of freedom, as this did when points had two passes, counted the between component of a point
    with seven passes twice over.)"""
    comps = [c for c in all_components if c.passes >= 2 and math.isfinite(c.spread) and math.isfinite(c.noise)]
    if not comps:
        return 0.0
    return max(0.0, float(np.median([c.spread / chi2_median_per_df(c.passes - 1) for c in comps]))
               - float(np.median([c.noise for c in comps])))


def shrunk(comp, pooled) -> float:
    """A point's between-pass variance: its own estimate (``passes - 1`` degrees of freedom) and the run's
    ``pooled`` one (``PRIOR_DF``), weighted by their degrees of freedom."""
    if comp.passes < 2 or not math.isfinite(comp.between):
        return pooled
    df = comp.passes - 1
    return (df * max(0.0, comp.between) + PRIOR_DF * pooled) / (df + PRIOR_DF)


def widen(ci, between, passes, confidence=None) -> stats.RatioCI:
    """``ci`` (a ``stats.RatioCI``) with ``between / passes`` added to its variance on each side (log scale)."""
    if not ci.defined or not between > 0 or passes < 1:
        return ci
    extra = _z2(ci.confidence if confidence is None else confidence) * between / passes
    r = math.log(ci.ratio)
    d_lo, d_hi = r - math.log(ci.lo), math.log(ci.hi) - r
    return stats.RatioCI(ci.ratio, math.exp(r - math.sqrt(d_lo ** 2 + extra)),
                         math.exp(r + math.sqrt(d_hi ** 2 + extra)), ci.n, ci.confidence)


def _z2(confidence) -> float:
    c = min(max(confidence, 0.5), 1 - 1e-12) if math.isfinite(confidence) else stats.CONFIDENCE
    return stats._z(c) ** 2


def rounds_per_pass(within, between, pass_cost_s, round_cost_s, lo=2, hi=None) -> int | None:
    """Kalibera and Jones's repetitions at the lower level: with ``k`` passes of ``n`` rounds the ratio's variance
    is ``between / k + within / (k n)`` at a cost of ``k (pass_cost + n round_cost)``; for a given cost it is least
    at ``n* = sqrt(pass_cost within / (round_cost between))`` rounds a pass. ``n*`` rounded up, within
    ``[lo, hi]``; ``hi`` (``None``: no limit) when there is no between-pass variance to spread over passes."""
    if not (between > 0 and round_cost_s > 0) or not (math.isfinite(within) and pass_cost_s >= 0):
        return hi
    n = max(lo, math.ceil(math.sqrt(pass_cost_s * within / (round_cost_s * between))))
    return n if hi is None else min(hi, n)


def passes_to_decide(comp, between, distance, confidence, rounds, most=FORECAST_PASSES) -> float:
    """Kalibera and Jones's forecast: how many more passes of ``rounds`` rounds each would let a ratio's
    interval clear a band edge ``distance`` away (``stats.edge_distance``), at these components (``comp``'s
    within and its passes and rounds so far; ``between`` its between-pass variance): over ``k`` passes and
    ``N`` rounds in all the log ratio's variance is ``between / k + (pi/2) within / N`` (a median of many
    rounds), and ``z`` times its root must fall under the distance. The fewest up to ``most``; ``inf`` beyond,
    on an edge (``distance`` 0) or without the components."""
    if not (distance > 0 and rounds >= 1 and math.isfinite(comp.within) and comp.rounds >= 1):
        return float("inf")
    z2, between = _z2(confidence), max(0.0, between)
    for extra in range(1, most + 1):
        k, n = comp.passes + extra, comp.rounds + extra * rounds
        if z2 * (between / k + MEDIAN_EFFICIENCY * comp.within / n) <= distance ** 2:
            return float(extra)
    return float("inf")


def more_passes(result, margin, floor, confidence, between, rounds=None) -> float:
    """``passes_to_decide`` for a subject's ``result`` (``engine.SubjectResult``, judged: its ratio and
    components) against the band ``margin`` / ``floor``, with ``between`` the run's between-pass variance (a
    number or per label: ``for_label``; shrunk towards by the point's own) and ``rounds`` rounds a pass (by
    default as many as its passes had on average); ``inf`` without components."""
    comp = result.components
    if comp is None or comp.passes < 1:
        return float("inf")
    rounds = -(-comp.rounds // comp.passes) if rounds is None else rounds
    return passes_to_decide(comp, shrunk(comp, for_label(between, result.label)),
                            stats.edge_distance(result.ratio, margin, floor), confidence, rounds)


def point_ci(subject, baseline, sizes, confidence, between) -> tuple:
    """``(RatioCI, Components)`` of a subject against the baseline (samples paired by round, cut by ``sizes``)."""
    ci = stats.ratio_ci(subject, baseline, confidence)
    logs = np.log(np.asarray(subject, dtype=float)) - np.log(np.asarray(baseline, dtype=float))
    comp = components(split(logs, sizes))
    return widen(ci, shrunk(comp, between), comp.passes), comp


def for_label(between, label) -> float:
    """The between-pass variance of subject ``label``: ``between`` itself when a number, else its entry in a
    label -> variance mapping (the run's pool per backend; 0 where the label has none yet)."""
    if isinstance(between, dict):
        return float(between.get(label, 0.0))
    return between


def judge(results, control, base, confidence, floor, between=0.0):
    """Set every subject's ratio, interval, verdict and components (and the control's) from its samples.

    ``results``: label -> an object with ``samples``, ``passes`` (rounds per
    pass) and the attributes set here (``engine.SubjectResult``); ``control``
    the A/A one or ``None``; ``between`` the run's between-pass variance, one number or per label (``for_label``).
    Returns ``(margin, all firm)``.
    """
    base_r = results[base]
    margin = floor
    if control is not None:
        cci, comp = point_ci(control.samples, base_r.samples, base_r.passes, confidence,
                             for_label(between, control.label))
        margin = stats.bias_margin(control.samples, base_r.samples, floor)
        control.ratio, control.ratio_ci, control.verdict = cci.ratio, cci.ci, stats.control_verdict(cci, floor)
        control.variance, control.components = comp.to_dict(), comp
    settled = True
    for label, r in results.items():
        if label == base:
            continue
        ci, comp = point_ci(r.samples, base_r.samples, base_r.passes, confidence, for_label(between, label))
        r.ratio, r.ratio_ci, r.verdict = ci.ratio, ci.ci, stats.verdict(ci, margin, floor)
        r.variance = comp.to_dict()
        r.components = comp
        settled = settled and stats.decided(ci, margin, floor)
    return margin, settled


__all__ = ["FORECAST_PASSES", "Components", "chi2_median_per_df", "components", "for_label", "judge", "median_variance",
           "more_passes", "passes_to_decide", "point_ci",
           "pooled_between", "rounds_per_pass", "shrunk", "split", "widen"]
