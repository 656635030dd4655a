"""``auto``'s decision: the measurements of one fit's candidates, ranked by the fit's expected time.

``Decision`` holds what was measured (seconds per epoch, first-call seconds,
rejections, the candidates not timed yet) and ranks the timed ones for a fit
of ``epochs`` epochs: unpaid first call + ``epochs`` x seconds per epoch
(``rank``); ``to_json`` / ``from_json`` are the cache entry (measurements only,
never the pick). Its ``reason`` says, in one line, why the first candidate
leads, what this process paid and amortized (``amortization``), and what is
still provisional.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ..measure import stats
from ..backends import BackendSpec, backend_class, backend_names


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
    amortization: str = ""  # what this process paid for the fit's key and how far it is amortized (``Ledger.says``)

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
        """E.g. ``numba[loop]: 0.2 us/epoch x 5000 + 0.8 s load vs numpy 40 us/epoch x 5000 at N=4, [2, 4, 1]``,
        then what was paid and amortized, and what is provisional (one line)."""
        frozen = self.__dict__.get("_reason")
        if frozen is not None:
            return frozen
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
        if self.amortization:
            text += "; " + self.amortization
        if self.provisional:
            text += "; provisional: not timed " + ", ".join(sorted(self.untimed))
        return text + (" (cached)" if self.cached else "")

    def freeze_reason(self) -> "Decision":
        """Compute ``reason`` once (a decision handed to many fits); returns self."""
        self.__dict__["_reason"] = None
        self.__dict__["_reason"] = self.reason
        return self

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
