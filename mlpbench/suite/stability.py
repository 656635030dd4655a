"""Two runs of the same command, point by point: do their verdicts agree, do their intervals hold each other?

``compare_runs(a, b)`` matches the points of two ``results.json`` documents
(``results.point_key``) and counts, over the backend-points judged in both
(the baseline's own rows apart):

* contradictory verdicts: ``faster`` in one run, ``slower`` in the other;
* verdicts that differ at all (``faster`` in one, ``unresolved`` in the other...);
* interval coverage, at the points with a 99 % interval in both runs: how
  often run A's interval holds run B's ratio, and B's holds A's ("one way":
  both directions counted, out of twice the points), and how many points hold
  it both ways; correct 99 % intervals hold it one way 93.1 % of the time, not
  99 %: the other ratio has its own error (``expected_one_way``);
* each run's ``unresolved`` count.

The A/A controls (the baseline against its independent copy, at every point)
get the same coverage count. An interval ``[lo, None]`` has no upper bound (a
non-finite bound is stored as ``null``); ``[None, None]`` is no interval (too
few rounds) and such a point is left out of the coverage, counted apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

from .results import point_key
from .summary import judged


@dataclass(frozen=True)
class Coverage:
    """Of ``points`` with an interval in both runs: A's interval holds B's ratio ``a_holds_b`` times, and so on."""

    points: int
    a_holds_b: int
    b_holds_a: int
    both_ways: int
    without_interval: int  # matched points where either run has no interval

    @property
    def one_way(self) -> int:
        return self.a_holds_b + self.b_holds_a


@dataclass(frozen=True)
class Stability:
    """Two runs' agreement (``compare_runs``)."""

    matched: int  # judged backend-points present in both runs
    only_one: int  # judged backend-points present in one run only
    contradictory: int
    differing: int
    unresolved_a: int
    unresolved_b: int
    intervals: Coverage  # the backend-points
    controls: Coverage  # the A/A controls


def holds(ci, ratio) -> bool | None:
    """Whether interval ``ci`` holds ``ratio``; ``None`` when there is no interval or no ratio."""
    if ratio is None or ratio != ratio or not isinstance(ci, (list, tuple)) or len(ci) != 2 or ci[0] is None:
        return None  # (x != x: NaN, which a hand-edited file may hold)
    if ci[0] != ci[0] or ci[1] != ci[1]:
        return None
    return ci[0] <= ratio <= (float("inf") if ci[1] is None else ci[1])


def coverage(pairs) -> Coverage:
    """``pairs``: ``((ratio_a, ci_a), (ratio_b, ci_b))`` per matched point."""
    counted = a_b = b_a = both = missing = 0
    for (ra, ca), (rb, cb) in pairs:
        x, y = holds(ca, rb), holds(cb, ra)
        if x is None or y is None:
            missing += 1
            continue
        counted += 1
        a_b += x
        b_a += y
        both += x and y
    return Coverage(counted, a_b, b_a, both, missing)


def _control(p):
    c = p.get("control") or {}
    return c.get("ratio"), c.get("ratio_ci")


def compare_runs(a, b) -> Stability:
    """The agreement of documents ``a`` and ``b`` (``results.load``), point by point."""
    pa = {point_key(p): p for p in judged(a["points"])}
    pb = {point_key(p): p for p in judged(b["points"])}
    both = [k for k in pa if k in pb]
    verdicts = [(pa[k]["verdict"], pb[k]["verdict"]) for k in both]
    ca = {point_key(p): p for p in a["points"] if p.get("verdict") == "baseline"}
    cb = {point_key(p): p for p in b["points"] if p.get("verdict") == "baseline"}
    return Stability(
        matched=len(both), only_one=len(pa) + len(pb) - 2 * len(both),
        contradictory=sum(1 for v in verdicts if set(v) == {"faster", "slower"}),
        differing=sum(1 for x, y in verdicts if x != y),
        unresolved_a=sum(1 for p in pa.values() if p["verdict"] == "unresolved"),
        unresolved_b=sum(1 for p in pb.values() if p["verdict"] == "unresolved"),
        intervals=coverage([((pa[k]["ratio"], pa[k]["ratio_ci"]), (pb[k]["ratio"], pb[k]["ratio_ci"])) for k in both]),
        controls=coverage([(_control(ca[k]), _control(cb[k])) for k in ca if k in cb]))


def _pct(n, of) -> str:
    return f" ({100 * n / of:.1f}%)" if of else ""


def expected_one_way(confidence=0.99) -> float:
    """How often a correct interval at ``confidence`` holds another run's ratio: the two estimates differ by
    ``sqrt(2)`` times one's own spread, so ``P(|Z| <= z / sqrt(2))`` (93.1 % at 99 %, for normal errors; 95 %
    needs ``z >= 1.96 sqrt(2)``, an interval at 99.44 %)."""
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    return 2 * NormalDist().cdf(z / math.sqrt(2)) - 1


def coverage_text(c: Coverage) -> str:
    """``184 of 204 (90.2%) one way (93.1% expected of correct intervals); 85 of 102 both ways``: the
    expectation (``expected_one_way``) of correct 99 % intervals from independent runs."""
    text = (f"{c.one_way} of {2 * c.points}{_pct(c.one_way, 2 * c.points)} one way "
            f"({100 * expected_one_way():.1f}% expected of correct intervals); "
            f"{c.both_ways} of {c.points}{_pct(c.both_ways, c.points)} both ways")
    return text + (f" ({c.without_interval} without an interval left out)" if c.without_interval else "")


def stability_lines(s: Stability, a="run 1", b="run 2") -> list[str]:
    """The comparison in words (the results page and the README's summary quote these lines)."""
    lines = [f"backend-points judged in both runs: {s.matched}" + (f" ({s.only_one} in one run only)"
                                                                  if s.only_one else ""),
             f"contradictory verdicts (faster in one run, slower in the other): {s.contradictory} of {s.matched}; "
             f"verdicts that differ at all: {s.differing} of {s.matched}",
             f"a run's 99% interval holds the other run's ratio: {coverage_text(s.intervals)}",
             f"unresolved: {s.unresolved_a} in {a}, {s.unresolved_b} in {b}"]
    if s.controls.points or s.controls.without_interval:
        lines.append(f"A/A controls, a run's interval holds the other run's ratio: {coverage_text(s.controls)}")
    return lines
