"""The regression gate's checks of two results files, beyond the per-point statistics of ``results.compare``.

``check_points`` refuses a file the gate cannot read honestly (``stats.CompareError``, naming the file and the
point): a point field that cannot identify a point (``layer_sizes: null``, a list as dtype), samples that are
not a non-empty list of positive finite numbers (``true``, nested lists, a dict, ``null``, ``[]``), the same point
twice. ``failures`` lists what makes ``--fail-on-regression`` fail besides a significant regression: a run that
did not complete, OLD's points missing from NEW, and a point slower than the threshold whose samples are too
few to decide.
"""

from __future__ import annotations

import math

from ..measure import stats
from . import results

#: a point's identifying fields: (name, test, what it must be); absent optional ones take their defaults
_KEY_FIELDS = (
    ("backend", lambda v: isinstance(v, str), "a string"),
    ("op", lambda v: isinstance(v, str), "a string"),
    ("dtype", lambda v: isinstance(v, str), "a string"),
    ("n_samples", lambda v: _is_int(v), "an int"),
    ("layer_sizes", lambda v: isinstance(v, list) and all(_is_int(s) for s in v), "a list of ints"),
    ("activation", lambda v: isinstance(v, str), "a string"),
    ("epochs", lambda v: _is_int(v), "an int"),
    ("batch_size", lambda v: v is None or _is_int(v), "an int or null"),
    ("output", lambda v: isinstance(v, str), "a string"),
    ("case", lambda v: isinstance(v, str), "a string"),
)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_time(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def check_points(doc, path) -> None:
    """``stats.CompareError`` naming ``path`` and the point when the gate cannot use ``doc``'s points."""
    seen = {}
    for i, p in enumerate(doc["points"]):
        where = f"{path}: point {i}"
        for name, ok, what in _KEY_FIELDS:
            if name in p and not ok(p[name]):
                raise stats.CompareError(f"{where}: {name} must be {what}; got {str(p[name])[:60]!r}")
        for name in ("samples_s", "times_s"):
            if name in p and not (isinstance(p[name], list) and p[name] and all(_is_time(x) for x in p[name])):
                raise stats.CompareError(f"{where}: {name} must be a non-empty list of positive finite seconds; "
                                         f"got {str(p[name])[:60]!r}")
        key = results.point_key(p)
        if key in seen:
            raise stats.CompareError(f"{where} repeats point {seen[key]} ({p['backend']} / {p.get('case', '')})")
        seen[key] = i


def failures(old, new, old_path, new_path, rows, threshold) -> list[str]:
    """Why the gate fails besides a significant regression (one line each; ``[]`` when nothing else is wrong)."""
    out = []
    for path, doc in ((old_path, old), (new_path, new)):
        status = doc.get("status", "complete")  # files written before the status field were complete runs
        if status != "complete":
            error = f" ({doc['error']})" if isinstance(doc.get("error"), str) else ""
            out.append(f"{path}: the run's status is {status!r}{error}, not 'complete'")
    have = {results.point_key(p) for p in new["points"]}
    missing = [p for p in old["points"] if results.point_key(p) not in have]
    if missing:
        out.append(f"{len(missing)} of {len(old['points'])} points of {old_path} are missing from {new_path}: "
                   + _names(missing))
    blind = [r for r in rows if not r["decidable"] and r["ratio"] > 1 + threshold]
    if blind:
        out.append(f"{len(blind)} points are slower by more than {100 * threshold:.0f}% with too few samples to "
                   f"decide: {_names(blind)}")
    return out


def _names(points) -> str:
    """``backend / case`` of the first three points (points or compared rows), ``...`` for the rest."""
    names = ", ".join(f"{p['backend']} / {p.get('case', '')}" for p in points[:3])
    return names + (", ..." if len(points) > 3 else "")


__all__ = ["check_points", "failures"]
