"""A run's summary in words: the lines ``mlpbench bench`` prints at its end, and ``mlpbench report`` publishes.

One place for them, so that the terminal and the generated results page
(``report.py``) say the same thing from the same ``results.json``: the
verdict counts against the baseline, the reference rows, each peer's
yardstick lines (``references.yardsticks``), the A/A control, a peak that
moved, and the peaks themselves.
"""

from __future__ import annotations

import statistics

from ..backends import REFERENCE
from ..measure import levels, stats
from . import references as refs


def judged(points) -> list[dict]:
    """The backend-points that carry a verdict against the baseline (not the baseline's own)."""
    return [p for p in points if p.get("verdict") not in (None, "baseline")]


def verdict_counts(points) -> dict:
    """``{verdict: count}`` over ``stats.VERDICTS``, in that order, of the judged points among ``points``."""
    points = judged(points)
    return {v: sum(1 for p in points if p["verdict"] == v) for v in stats.VERDICTS}


def counts_text(counts, zeros=True) -> str:
    """``faster 9, slower 0, same 0, unresolved 1 of 10`` (``zeros=False``: ``faster 9, unresolved 1 of 10``)."""
    shown = [f"{v} {n}" for v, n in counts.items() if n or zeros]
    return ", ".join(shown or ["none"]) + f" of {sum(counts.values())}"


def forecast_text(points) -> str | None:
    """What the open verdicts would take (each point's ``to_decide``, ``levels.passes_to_decide``): how many
    could be decided by a few more passes, and how many sit within noise of a band edge; None when none is
    open or the file has none (an older file)."""
    open_ = [p for p in judged(points) if p["verdict"] == "unresolved" and isinstance(p.get("to_decide"), dict)]
    if not open_:
        return None
    near = sorted(p["to_decide"]["passes"] for p in open_ if p["to_decide"].get("passes") is not None)
    parts = [f"{len(near)} would be decided by {near[0]} to {near[-1]} more passes (median "
             f"{statistics.median(near):g}) at their variance (--budget, --max-time)"] if near else []
    edge = len(open_) - len(near)
    if edge:
        parts.append(f"{edge} sit within noise of a band edge (more than {levels.FORECAST_PASSES} passes)")
    return f"unresolved {len(open_)}, the forecast: " + "; ".join(parts)


def baseline_of(doc) -> str:
    return doc.get("config", {}).get("baseline", REFERENCE)


def rate(p) -> str:
    """``best (spread s% over n)`` of a ``Peak.to_dict()``."""
    if not p.get("samples"):
        return "-"
    return f"{p['best']:.1f} (spread {100 * p['spread']:.0f}% over {len(p['samples'])})"


def peak_lines(peak) -> list[str]:
    """One line per device: its matmul peak per dtype and its copy rates, with their spread."""
    lines = []
    for dev, entry in peak.items():
        rates = ", ".join(f"{dt} {rate(p)} GFLOP/s" for dt, p in entry.get("gflops", {}).items())
        extra = "".join(f", {k} {rate(p)}" for k, p in entry.items() if k.endswith("GBps"))
        lines.append(f"peak {dev}: {rates}{extra}" + (f" ({entry['error']})" if "error" in entry else ""))
    return lines


def closing_notes(doc) -> list[str]:
    """The end of the output in words: the verdict counts, the A/A control's, and a peak that moved."""
    base = baseline_of(doc)
    lines = [f"\nverdicts against {base} (99% intervals): " + counts_text(verdict_counts(doc["points"]))
             + " backend-points"]
    forecast = forecast_text(doc["points"])
    lines += [forecast] if forecast else []
    lines += [f"reference row {name}: {what}" for name, what in doc["config"].get("references", {}).items()]
    lines += refs.yardsticks(doc["points"])
    noise = doc.get("noise") or {}
    if noise:
        lines.append(f"A/A control ({base} against an independently prepared copy): same at {noise['same']} of "
                     f"{noise['points']} points")
        if "between" in noise:  # mlpbench.bench/3: one number for the run, or one per backend
            between = noise["between"] if isinstance(noise["between"], dict) else {"every backend": noise["between"]}
            spread = ", ".join(f"{label} {100 * max(v, 0) ** 0.5:.1f}%" for label, v in between.items())
            lines.append(f"between-pass spread of a ratio (sd of the log ratio), in its intervals: {spread}; "
                         f"follow-up passes over the points still open: {noise['follow_ups']}")
        if noise["noisy"]:
            lines.append(f"NOISY: at {len(noise['noisy_points'])} point(s) the A/A control was not 'same' (or its "
                         f"bias exceeded {100 * stats.MAX_MARGIN:.0f}%): flagged; their clear verdicts stand: "
                         + "; ".join(noise["noisy_points"][:5]) + (" ..." if len(noise["noisy_points"]) > 5 else ""))
    for dev, entry in doc.get("peak", {}).items():
        moved = [(dt, p) for dt, p in entry.get("gflops", {}).items() if isinstance(p, dict) and p.get("flagged")]
        moved += [(k, p) for k, p in entry.items() if k.endswith("GBps") and isinstance(p, dict) and p.get("flagged")]
        for what, p in moved:
            lines.append(f"PEAK MOVED: the {dev} {what} peak spread {100 * p['spread']:.0f}% over the run "
                         f"(samples {', '.join(f'{x:.3g}' for x in p['samples'])}; over 10% is flagged): "
                         f"% of peak uses the best, {p['best']:.3g} {p['unit']}")
    return lines
