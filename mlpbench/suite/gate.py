"""The regression gate's checks of two results files, beyond the per-point statistics of ``results.compare``.

``check_points`` refuses a file the gate cannot read honestly (``stats.CompareError``, naming the file and the
point): a point field that cannot identify a point (``layer_sizes: null``, a list as dtype), samples that are
not a non-empty list of positive finite numbers (``true``, nested lists, a dict, ``null``, ``[]``), the same point
twice. ``failures`` lists what makes ``--fail-on-regression`` fail besides a significant regression: a run that
did not complete, OLD's points missing from NEW, and a point slower than the threshold whose samples are too
few to decide.
"""

from __future__ import annotations

from ..measure import stats
from . import results
from .report_input import POINT, SECONDS, is_kind

#: a point's identifying fields, of the kinds the report reads them as (``report_input.POINT``); absent optional
#: ones take their defaults, and only ``batch_size`` may be null (full batch)
_KEY_FIELDS = ("backend", "op", "dtype", "n_samples", "layer_sizes", "activation", "epochs", "batch_size", "output",
               "case")


def check_points(doc, path) -> None:
    """``stats.CompareError`` naming ``path`` and the point when the gate cannot use ``doc``'s points."""
    seen = {}
    for i, p in enumerate(doc["points"]):
        where = f"{path}: point {i}"
        for name in _KEY_FIELDS:
            if name in p and not (is_kind(POINT[name], p[name]) or name == "batch_size" and p[name] is None):
                raise stats.CompareError(f"{where}: {name} must be {POINT[name]}; got {str(p[name])[:60]!r}")
        for name in ("samples_s", "times_s"):
            if name in p and not is_kind(SECONDS, p[name]):
                raise stats.CompareError(f"{where}: {name} must be {SECONDS}; got {str(p[name])[:60]!r}")
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
