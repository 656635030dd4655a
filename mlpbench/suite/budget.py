"""The sweep's time budget: firm points stop early, and the time they save goes where the answer is still open.

A point's rounds take at most ``--max-time`` (its cap, all passes together;
a pass still runs its minimum rounds). The regular passes give each point
``REGULAR_SHARE`` of its cap, shared over the passes; a point whose verdicts
are firm stops sooner (the engine's adaptive stop). The sweep's follow-up
budget (``--budget``; by default ``BUDGET_SHARE * max_time`` per point) goes,
within what the caps leave, in up to ``FOLLOW_UPS``
follow-up passes, to the points still ``unresolved``, each in a pass of its
own with freshly prepared subjects, pooled with its earlier passes. A
follow-up pass is one more pass for the between-pass component
(``measure/levels.py``) too: Kalibera and Jones spend repetitions at the level
whose variance dominates, and choose their number from the components to
reach a target width. So each open point has a forecast
(``levels.passes_to_decide``: the passes its interval needs to clear the
nearest band edge), and the points the budget can decide are served first,
the cheapest first; the rest goes in equal shares to the others
(water-filling: a point never gets more than its cap has left; what it
cannot take goes to the others). A ratio within noise of a band edge would
take any budget and stay open: in equal shares, it held back the points one
or two passes from firm.

``Budget`` keeps the books; ``follow_up`` runs the passes through two
callables, so the reallocation is tested without timing anything.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

#: of a point's cap (``--max-time``), the share its regular passes may spend together; the rest is follow-up time
REGULAR_SHARE = 0.6
#: the default follow-up budget, per point of the sweep, as a share of its cap (a quarter of the points may
#: take all their cap's follow-up room, or more of them a part of it)
BUDGET_SHARE = 0.25
#: follow-up passes at most over the points still open
FOLLOW_UPS = 4
#: a share shorter than this is not worth preparing the subjects again: the point is left as it is
MIN_SHARE_S = 0.05


@dataclass
class Budget:
    """``total_s`` seconds of follow-up rounds for the sweep; any one point's rounds at most ``cap_s`` in all.

    ``spent``: each point's rounds time, all passes; ``used``: the follow-ups' share of it.
    """

    total_s: float
    cap_s: float
    spent: dict = field(default_factory=dict)
    used: dict = field(default_factory=dict)

    def __post_init__(self):
        for name in ("total_s", "cap_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a number of seconds > 0; got {v!r}")

    def record(self, point, seconds, follow_up=False) -> None:
        """``seconds``: the point's rounds time so far, all its passes together; the growth is charged to the
        follow-up budget when ``follow_up``."""
        seconds = float(seconds)
        if follow_up:
            self.used[point] = self.used.get(point, 0.0) + max(0.0, seconds - self.spent.get(point, 0.0))
        self.spent[point] = seconds

    @property
    def left(self) -> float:
        return max(0.0, self.total_s - sum(self.used.values()))

    def shares(self, open_points, passes_left=1, need=None) -> dict:
        """Seconds for each of ``open_points`` in the next follow-up, each within its cap; points whose share
        would be under ``MIN_SHARE_S`` are left out.

        ``need``: point -> ``(passes, seconds)``, the follow-up passes and rounds time its forecast says would
        decide it (``levels.passes_to_decide``), or None where there is none. The points that can be decided
        within the passes left, their cap and the budget left are served first, the cheapest first, each its
        per-pass part (``seconds / passes``), the budget for their later passes set aside; the rest of this
        pass's pool (what is left spread over the ``passes_left`` follow-ups still to come, but never under
        ``MIN_SHARE_S`` a point while what is left allows it) goes in equal shares to the other open points
        (water-filling: a point never gets more than its cap has left; what it cannot take goes to the
        others). A point whose ratio sits within noise of a band edge would swallow any budget and stay
        open; served first, the points about to be decided no longer wait for it."""
        room = {p: self.cap_s - self.spent.get(p, 0.0) for p in open_points}
        room = {p: r for p, r in room.items() if r >= MIN_SHARE_S}
        pool, got = min(self.left, max(self.left / max(1, passes_left), MIN_SHARE_S * len(room))), {}
        reserved = 0.0
        forecasts = {p: need(p) for p in room} if need else {}
        for p, (passes, seconds) in sorted(((p, f) for p, f in forecasts.items() if f), key=lambda pf: pf[1][1]):
            if passes <= passes_left and seconds <= room[p] and reserved + seconds <= self.left:
                reserved += seconds
                got[p] = min(room.pop(p), max(MIN_SHARE_S, seconds / max(1, passes)))
                pool -= got[p]
        while room and pool >= MIN_SHARE_S:
            each = pool / len(room)
            capped = {p: r for p, r in room.items() if r <= each}
            if not capped:  # every point takes an equal share
                got.update({p: each for p in room})
                break
            for p, r in capped.items():  # these cannot take a full share: they take what their cap has left
                got[p] = r
                pool -= r
                del room[p]
        return {p: s for p, s in got.items() if s >= MIN_SHARE_S}


def follow_up(budget, is_open, run, points, rounds=FOLLOW_UPS, need=None) -> int:
    """Follow-up passes: each gives the points of ``points`` for which ``is_open(point)`` holds a share
    (``Budget.shares``, with ``need``: the points its forecast says one more pass or a few would decide go
    first), ``run(point, seconds, last)`` measures one and returns its rounds time so far, all passes
    together (booked with ``record``); ``last`` is true in the final follow-up, where no later pass can use
    what a pass leaves of its share (the sweep then lets it run to its share). Stops when nothing is open or
    nothing is left; returns the passes run."""
    done = 0
    for k in range(rounds):
        shares = budget.shares([p for p in points if is_open(p)], rounds - k, need)
        if not shares:
            break
        for p, seconds in shares.items():
            budget.record(p, run(p, seconds, k == rounds - 1), follow_up=True)
        done += 1
    return done


__all__ = ["BUDGET_SHARE", "FOLLOW_UPS", "MIN_SHARE_S", "REGULAR_SHARE", "Budget", "follow_up"]
