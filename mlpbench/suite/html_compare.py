"""The HTML report's sections for several runs: runs of one machine compared, and machines side by side.

Runs of the same machine (``report.machine_slug``), in the order they started:
each consecutive pair sharing points is judged point by point exactly as
``mlpbench compare`` judges it (``results.compare``: Mann-Whitney U on the raw
samples, a regression is significant and beyond the threshold), regressions
first. Runs of different machines: each point measured on more than one
machine, its median per machine side by side, and per machine which backend
is fastest where.
"""

from __future__ import annotations

import itertools

from ..measure import stats
from . import report as P
from . import results as R
from .html_table import e, is_point, table

THRESHOLD = 0.10  # mlpbench compare's default (cli/compare.DEFAULT_THRESHOLD; the cli layer is above this one)
ORDER = {"regression": 0, "": 1, "improvement": 2}


def _started(run):
    return (run.started or "", run.path)


def pair_section(a, b) -> str:
    """Run ``b`` against the earlier run ``a``, as ``mlpbench compare a b`` judges it, regressions first."""
    head = f"<h3>{e(P.title(a))} → {e(P.title(b))}</h3>"
    try:
        rows = R.compare(a.doc, b.doc, THRESHOLD)
    except stats.CompareError as exc:
        return head + f"<p class='warn'>Not compared: {e(exc)}</p>"
    if not rows:
        return head + "<p class='muted'>No point in common: nothing compared.</p>"
    rows.sort(key=lambda r: (ORDER.get(r["flag"], 1), -r["ratio"]))
    bad = sum(1 for r in rows if r["regression"])
    better = sum(1 for r in rows if r["flag"] == "improvement")
    body = [[r["backend"], r["case"], R.fmt_time(r["old_s"]), R.fmt_time(r["new_s"]),
             (f"{r['ratio']:.3f} [{r['ratio_ci'][0]:.3g}, {r['ratio_ci'][1]:.3g}]", {"data-v": r["ratio"]}),
             f"{r['p']:.2g}", (r["flag"] or "no significant change")
             + ("" if r["decidable"] else " (too few samples to decide)") + (" (noisy)" if r["noisy"] else "")]
            for r in rows]
    attrs = [{"class": r["flag"], "data-flag": r["flag"] or "none"} for r in rows]
    return (head + f"<p data-compared='{len(rows)}' data-regressions='{bad}'>{len(rows)} points compared; "
            f"<b>{bad} regressions</b> (significantly slower, Mann-Whitney p &lt; 0.01, by more than "
            f"{100 * THRESHOLD:.0f}%), {better} improvements. The same judgement as <code>mlpbench compare "
            f"{e(a.path)} {e(b.path)}</code>.</p>"
            + table(["backend", "case", "old", "new", "new/old [99% CI]", "p (U test)", "flag"], body, "compare",
                    attrs))


def _latest(runs) -> dict:
    """``{point key: point}`` over ``runs`` (a later run's point replaces an earlier one's)."""
    out = {}
    for r in sorted(runs, key=_started):
        out.update({R.point_key(p): p for p in r.doc.get("points") or [] if is_point(p)})
    return out


def machines_section(by_machine) -> str:
    """Points measured on several machines side by side, and per machine the fastest backend per point."""
    names = list(by_machine)
    latest = {m: _latest(runs) for m, runs in by_machine.items()}
    keys = [k for k in dict.fromkeys(k for m in names for k in latest[m])
            if sum(k in latest[m] for m in names) > 1]
    out = [(f"<h2>Machines side by side</h2><p>{len(names)} machines: {e(', '.join(names))}. Each point measured "
           "on more than one of them, its median time per machine (the latest run's where a machine has several)."
           "</p>")]
    if not keys:
        return "".join(out + ["<p class='muted'>No point was measured on more than one machine.</p>"])
    rows = [[k[0], k[-1] or "-", *(R.fmt_time(latest[m][k].get("median_s")) if k in latest[m] else "-"
                                   for m in names)] for k in keys]
    out.append(table(["backend", "case", *names], rows, "machines"))
    # which backend wins where: per point without its backend, the fastest backend on each machine
    shapes = {}
    for m in names:
        for k, p in latest[m].items():
            if isinstance(p.get("median_s"), (int, float)):
                shapes.setdefault(k[1:], {}).setdefault(m, []).append(p)
    wins = {m: {} for m in names}
    rows = []
    for shape, per in shapes.items():
        if len(per) < 2 and len(names) > 1:
            continue
        row = [shape[-1] or "-"]
        for m in names:
            pts = per.get(m, [])
            if not pts:
                row.append("-")
                continue
            best = min(pts, key=lambda p: p["median_s"])
            wins[m][best["backend"]] = wins[m].get(best["backend"], 0) + 1
            how = f" ({best.get('verdict')} vs baseline)" if best.get("verdict") not in (None, "baseline") else ""
            row.append(f"{best['backend']} {R.fmt_time(best['median_s'])}{how}")
        rows.append(row)
    out.append("<h3>Which backend is fastest where</h3><p>Per point (the shape, all backends), the backend with "
               "the smallest median on each machine; its verdict against that run's baseline in brackets.</p>")
    out.append(table(["case", *names], rows, "wins"))
    out.append(table(["machine", "fastest at (points)"],
                     [[m, ", ".join(f"{b} {n}" for b, n in sorted(w.items(), key=lambda x: -x[1])) or "-"]
                      for m, w in wins.items()], "wincounts"))
    return "".join(out)


def sections(runs) -> str:
    by_machine = {}
    for r in runs:
        by_machine.setdefault(r.machine_slug, []).append(r)
    out = []
    for m, group in by_machine.items():
        group = sorted(group, key=_started)
        if len(group) > 1:
            out.append(f"<h2>Runs on {e(m)} compared</h2>")
            out += [pair_section(a, b) for a, b in itertools.pairwise(group)]
    if len(by_machine) > 1:
        out.append(machines_section(by_machine))
    return "".join(out)
