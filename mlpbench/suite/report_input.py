"""What ``mlpbench report`` reads of a results file, checked for its kind before any page is made.

``results.load`` checks that the keys are there; ``check(doc, path)`` checks
that every value the pages read is of the kind they format (a number, a
string, a list of numbers...), so that a file edited by hand or written by
something else is one ``ValueError`` naming the file, the point and the field
(exit 2 on the CLI), never a traceback from deep in a page. Fields a page
does not read are not looked at: a new schema field passes.
"""

from __future__ import annotations

import math

NUMBER = "a number"
TEXT = "a string"
SECONDS = "a non-empty list of positive finite seconds"  # what the compare gate needs of samples (``gate``)
#: point field -> the kind the pages read (None allowed for each, except where REQUIRED_KIND says)
POINT = {"backend": TEXT, "op": TEXT, "dtype": TEXT, "case": TEXT, "verdict": TEXT, "device": TEXT,
         "output": TEXT, "activation": TEXT,
         "n_samples": "an integer", "epochs": "an integer", "batch_size": "an integer", "rounds": "an integer",
         "layer_sizes": "a list of integers", "samples_s": "a list of numbers", "ratio_ci": "a list of 2 numbers",
         "median_s": NUMBER, "min_s": NUMBER, "iqr_s": NUMBER, "ratio": NUMBER, "gflops": NUMBER,
         "pct_peak": NUMBER, "intensity": NUMBER, "flops": NUMBER, "first_s": NUMBER,
         "noisy": "true or false", "reference": "true or false", "control": "an object"}
NOT_NONE = ("backend", "op", "dtype", "n_samples", "layer_sizes", "verdict")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _integer(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def is_kind(kind, x) -> bool:
    """Whether ``x`` is of ``kind`` (one of the kinds in ``POINT``, or ``SECONDS``)."""
    if kind == NUMBER:
        return _number(x)
    if kind == TEXT:
        return isinstance(x, str)
    if kind == "an integer":
        return _integer(x)
    if kind == "a list of integers":
        return isinstance(x, list) and all(_integer(v) and v > 0 for v in x) and len(x) >= 2
    if kind == SECONDS:
        return isinstance(x, list) and bool(x) and all(_number(v) and math.isfinite(v) and v > 0 for v in x)
    if kind == "a list of numbers":
        return isinstance(x, list) and all(_number(v) and math.isfinite(v) for v in x)
    if kind == "a list of 2 numbers":
        return isinstance(x, list) and len(x) == 2 and all(v is None or _number(v) for v in x)
    if kind == "true or false":
        return isinstance(x, bool)
    return isinstance(x, dict)


def check(doc, path) -> None:
    """``ValueError`` naming ``path`` and the first value of the wrong kind."""
    def bad(where, kind, value):
        raise ValueError(f"{path}: not a results file mlpbench report can read: {where} is {value!r:.40}, "
                         f"expected {kind}")
    for i, p in enumerate(doc.get("points") or []):
        for key, kind in POINT.items():
            value = p.get(key)
            if value is None and key not in NOT_NONE:
                continue
            if not is_kind(kind, value):
                bad(f"point {i}'s {key!r}", kind, value)
    for key, kind in (("skipped", "a list of objects"), ("errors", "a list of objects")):
        value = doc.get(key, [])
        if not (isinstance(value, list) and all(isinstance(v, dict) for v in value)):
            bad(repr(key), kind, value)
    for key, kind in (("noise", "an object"), ("config", "an object")):
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            bad(repr(key), kind, doc[key])
    config = doc.get("config") or {}
    for key in ("started", "command", "baseline", "error"):
        value = config.get(key) if key != "error" else doc.get(key)
        if value is not None and not isinstance(value, str):
            bad(repr(key), TEXT, value)
    if not (doc.get("wall_s") is None or _number(doc["wall_s"])):
        bad("'wall_s'", NUMBER, doc["wall_s"])
    if not isinstance(doc.get("status", ""), str):
        bad("'status'", TEXT, doc["status"])
    for dev, entry in (doc.get("peak") or {}).items():
        if not isinstance(entry, dict):
            bad(f"peak {dev!r}", "an object", entry)
        if not isinstance(entry.get("gflops") or {}, dict):
            bad(f"peak {dev!r} gflops", "an object", entry["gflops"])
        rates = [(f"peak {dev!r} {dt}", p) for dt, p in (entry.get("gflops") or {}).items()]
        rates += [(f"peak {dev!r} {k}", p) for k, p in entry.items() if k.endswith("GBps")]
        for where, p in rates:
            if not (_number(p) or isinstance(p, dict) and (p.get("best") is None or _number(p["best"]))
                    and (p.get("spread") is None or _number(p["spread"]))
                    and is_kind("a list of numbers", p.get("samples", []))):
                bad(where, "a number or a peak object (best, spread, samples)", p)
