"""Ski rental over a loop of fits: when a candidate's unpaid first call is worth paying (``Ledger``).

A candidate's first call (import, JIT compile or on-disk cache load) is paid
once per process; every fit on it afterwards saves the difference to the best
candidate already at hand. The deterministic ski-rental rule decides when to
pay: a fit pays a candidate's first call once the time this process has lost
on the key by not having it, this fit's loss included, reaches that cost. A
candidate not timed yet could be arbitrarily fast, so a fit is taken to lose
all of its time without it (the adversary's case); once paid, it is timed and
the fits go to whichever is faster. Whatever the sequence of fits, that costs
at most twice the best choice in hindsight (``tests/test_auto_amortize.py``
plays adversarial sequences on a simulated clock).

Across processes, the cache records per key how often and in how many
processes it was fitted (``uses``: ``fits``, ``processes``, and
``unamortized``: up-front payments whose process ended before the fits saved
what they cost). A key fitted in an earlier process recurs: its first fit in a
new process pays the most promising candidate's first call up front, unless
the last such payment was never amortized; a payment that is amortized later
(up front or by the rule) re-enables it. So a loop of fits in a script run
again pays at once, and a script that fits its key once per run stops paying
after one wasted first call.

Pure bookkeeping: the caller (``auto.choose``) supplies the numbers
(``Option``: the first call still to pay, this fit's seconds) and pays.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: a key's cross-process record, as stored in its cache entry (``uses``); an entry written before it has none
USES = {"fits": 0, "processes": 0, "unamortized": 0}


def uses_of(entry) -> dict:
    """The ``uses`` of a cache entry (zeros when it has none)."""
    return dict(USES, **((entry or {}).get("uses") or {}))


@dataclass(frozen=True)
class Option:
    """A candidate as the rule sees it for one fit."""

    label: str
    load_s: float  # first-call seconds still to pay in this process (0: paid, or nothing to load)
    fit_s: float | None  # this fit's seconds on it; None: not timed yet (it could be as fast as anything)


def losses(options, margin=0.0) -> dict:
    """``{label: seconds}`` this fit loses without each candidate with a first call to pay or not timed yet
    (positive only).

    The loss is what the best of the OTHER candidates would cost this fit
    (first call included) less this one's fit (all of it when not timed); a
    timed candidate within ``margin`` (the noise floor) of that saves nothing.
    """
    costs = {o.label: o.load_s + o.fit_s for o in options if o.fit_s is not None}
    out = {}
    for o in options:
        if o.load_s <= 0 and o.fit_s is not None:
            continue  # paid and timed: nothing left to decide
        base = min((c for lab, c in costs.items() if lab != o.label), default=math.inf)
        lose = base - (0.0 if o.fit_s is None else o.fit_s * (1 + margin))
        if lose > 0:
            out[o.label] = lose
    return out


class Ledger:
    """One key's fits in this process: time lost per unpaid candidate, first calls paid and amortized."""

    def __init__(self, uses=None):
        self.uses = dict(USES, **(uses or {}))  # the cross-process record when this process first met the key
        self.fits = 0  # fits of the key in this process
        self.unwritten = 0  # of them, not yet counted in the cache's ``uses``
        self.lost = {}  # label -> seconds lost so far by not having it
        self.paid = {}  # label -> [first-call seconds, how, seconds saved so far, fits to amortize or None]
        self.version = 0  # bumped when what ``says`` tells changes
        self.first_write = True  # the process's first write for the key counts the process

    @property
    def recurs(self) -> bool:
        """Fitted in an earlier process, and no up-front payment is left unamortized."""
        return self.uses["processes"] >= 1 and self.uses["unamortized"] == 0

    def worth(self, label, options, margin=0.0) -> bool:
        """Whether this fit should pay ``label``'s first call: the time lost without it (this fit's included)
        reaches that cost."""
        lose = losses(options, margin).get(label)
        load = next(o.load_s for o in options if o.label == label)
        return lose is not None and self.lost.get(label, 0.0) + lose >= load

    def due(self, options, margin=0.0, lose=None) -> tuple[list, bool]:
        """``(labels, up_front)``: the first calls this fit pays (most loss first); ``up_front`` when the key
        recurs and nothing else is due (its first fit in this process pays the most promising one)."""
        lose = losses(options, margin) if lose is None else lose
        load = {o.label: o.load_s for o in options}
        due = sorted((lab for lab, x in lose.items() if self.lost.get(lab, 0.0) + x >= load[lab]),
                     key=lambda lab: -lose[lab])
        if due or self.fits or not self.recurs or not lose:
            return due, False
        return [max((o.label for o in options if o.label in lose), key=lose.get)], True

    def paid_for(self, label, seconds, how=None, upfront=False) -> None:
        """``label``'s first call was paid here: ``upfront``, or (``how`` None) once the loss made it due."""
        if how is None:
            lost = self.lost.get(label, 0.0)
            how = (f"up front (the key was fitted in {self.uses['processes']} earlier process(es))" if upfront
                   else f"after {lost:.2g} s lost without it" if lost else "for this fit alone")
        self.paid[label] = [float(seconds), how, 0.0, None]
        self.lost.pop(label, None)
        self.version += 1

    def record(self, options, margin=0.0, lose=None) -> list:
        """A fit ran with ``options`` at hand: accrue the losses (``lose``: ``losses(options, margin)`` if already
        known), credit the savings; returns the labels amortized by this fit (paid here, their savings now cover
        their first call)."""
        self.fits += 1
        self.unwritten += 1
        for lab, x in (losses(options, margin) if lose is None else lose).items():
            self.lost[lab] = self.lost.get(lab, 0.0) + x
        done = []
        pending = [lab for lab, p in self.paid.items() if p[3] is None]
        if pending:
            costs = {o.label: o.load_s + o.fit_s for o in options if o.fit_s is not None}
            best = min(costs.values(), default=math.inf)
            for lab in pending:
                p = self.paid[lab]
                if costs.get(lab) == best:  # it runs this fit: saves what the best of the others costs more,
                    rival = min((c for other, c in costs.items() if other != lab), default=best)
                    p[2] += max(0.0, rival - best * (1 + margin))  # beyond the noise floor

                if p[2] >= p[0]:
                    p[3] = self.fits
                    done.append(lab)
        if done:
            self.version += 1
        return done

    def pending_up_front(self) -> bool:
        """An up-front payment of this process not amortized yet."""
        return any(p[1].startswith("up front") and p[3] is None for p in self.paid.values())

    def says(self) -> str:
        """What this process paid for the key and how far it is amortized, in a few words ("" when nothing)."""
        parts = []
        for lab, (cost, how, saved, at) in self.paid.items():
            state = f"amortized after {at} fits" if at else "not amortized yet"
            parts.append(f"paid {lab} {cost:.2g} s {how}, {state}")
        return "; ".join(parts)
