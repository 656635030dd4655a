"""What this process knows of one fit's cache key (``Known``): the decision for a fit in microseconds.

``auto.choose`` reads a key's cache entry once per process and keeps it here,
with the key's ski-rental ``Ledger`` and, per ``epochs``, the candidates as the
rule sees them and the ranked decision (its reason computed once). A later fit
of the key (``fit``) reads no file, takes no lock and validates nothing: it
checks that nothing was paid or imported since (``stamp``), asks the ledger
whether a first call is due, records the fit and hands back the same decision.
"""

from __future__ import annotations

import dataclasses

from .amortize import losses


class Known:
    """One key in this process: ``entry`` (the cache's, as last read or written), the applicable candidates,
    the ``ledger`` and the decisions per ``epochs``."""

    __slots__ = ("key", "cands", "ledger", "entry", "stamp", "by_epochs")

    def __init__(self, key, cands, ledger, entry):
        self.key, self.cands, self.ledger, self.entry = key, cands, ledger, entry
        self.stamp = None
        self.by_epochs = {}  # epochs -> (options, decision, ledger version, any first call open)

    def remember(self, epochs, options, decision, stamp) -> None:
        """Keep ``decision`` (a cached copy, reason frozen) for later fits of ``epochs`` epochs."""
        if stamp != self.stamp:
            self.by_epochs.clear()
            self.stamp = stamp
        kept = dataclasses.replace(decision, cached=True, cost_s=0.0).freeze_reason()
        self.by_epochs[epochs] = (options, kept, self.ledger.version, any(o.load_s > 0 or o.fit_s is None for o in options))

    def fit(self, epochs, stamp):
        """``(decision, amortized labels)`` for one more fit, or None when it needs deciding (something was
        paid or imported since, a first call is due, or these epochs are new)."""
        if stamp != self.stamp:
            return None
        memo = self.by_epochs.get(epochs)
        if memo is None or memo[2] != self.ledger.version:
            return None
        options, decision, _, open_ = memo
        lose = losses(options, decision.margin) if open_ else {}
        if lose and self.ledger.due(options, decision.margin, lose)[0]:
            return None
        return decision, self.ledger.record(options, decision.margin, lose)

    def write(self, cache, decision, upfront=False, amortized=False) -> None:
        """Store what was learned (``decision``'s measurements, if any) and the key's ``uses`` since the last write:
        the fits, the process (on its first write), an up-front payment (``upfront``) or its amortization."""
        ledger = self.ledger
        uses = {"fits": ledger.unwritten, "processes": int(ledger.first_write),
                "unamortized": "reset" if amortized else ("+1" if upfront else None)}
        self.entry = cache.put(self.key, decision, uses=uses)
        ledger.first_write, ledger.unwritten = False, 0

    def amortized(self, cache, epochs, stamp):
        """A first call paid here for the key is now amortized: recorded (up-front payments re-enabled); the
        decision for ``epochs`` with its reason updated."""
        self.write(cache, None, amortized=True)
        options, decision, _, _ = self.by_epochs[epochs]
        self.remember(epochs, options, dataclasses.replace(decision, amortization=self.ledger.says()), stamp)
        return self.by_epochs[epochs][1]
