"""The HTML report: one self-contained page of one or several runs, every number read from their ``results.json``.

``html(runs)`` takes ``report.read_run`` records (so the checks of the files are
the Markdown page's) and returns the whole page as text: CSS and a small
vanilla script inline, charts as inline SVG (``html_charts.py``), nothing
fetched, so that it opens from ``file://`` on a node without internet. Per
run: machine and software, status, date and commit; the peaks with their
spread and flags; verdict counts per backend; per backend and dtype the N x H
grid coloured by ratio, each cell's verdict in words and its interval, rounds
and medians on hover; time against N and H with interval bars; the roofline;
a sortable, filterable table of every point. Several runs add
``html_compare.py``'s sections. A run that did not complete says so, and
what is missing, at its top.

Hooks for checks (``tests/test_html_report.py``, the browser test): each point's
table row carries ``data-point`` (``backend | case``), each verdict count
``data-backend``/``data-verdict``/``data-count``.
"""

from __future__ import annotations

import math

from ..measure import stats
from . import html_charts as C
from . import html_compare, summary
from . import report as P
from . import results as R
from .html_table import e, is_point, table

SYMBOL = {"faster": "▼ faster", "slower": "▲ slower", "same": "= same", "unresolved": "? unresolved",
          "baseline": "baseline"}

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1360px;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-top:2px solid #ccc;padding-top:10px}h3{font-size:15px}
table{border-collapse:collapse;margin:6px 0 12px}td,th{border:1px solid #ddd;padding:2px 6px;text-align:left}
th{background:#f3f3f3}code{background:#f6f6f6;padding:0 3px}.warn{background:#fff3cd;padding:6px 10px;
border-left:4px solid #e0a800}.bad{background:#f8d7da;border-left-color:#c00}.grid td{text-align:center;
min-width:70px;font-size:12px}.grid td.unresolved,.grid td.noisy{outline:2px dashed #888;outline-offset:-3px}
.grids{display:flex;flex-wrap:wrap;gap:18px}.charts{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}.chart svg{max-width:100%;height:auto}
table.points th{cursor:pointer;user-select:none}table.points td{font-size:12px}.muted{color:#777}
.regression{background:#f8d7da}.improvement{background:#d4edda}
"""

SCRIPT = """
document.querySelectorAll("table.points").forEach(function (t) {
  var body = t.tBodies[0], box = document.getElementById(t.dataset.filter),
      shown = document.getElementById(t.dataset.count);
  function key(r, i) { var c = r.cells[i]; return c.dataset.v !== undefined ? c.dataset.v : c.textContent; }
  Array.prototype.forEach.call(t.tHead.rows[0].cells, function (th, i) {
    th.title = "sort";
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? -1 : 1, rows = Array.prototype.slice.call(body.rows);
      th.dataset.dir = dir === 1 ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = key(a, i), y = key(b, i), nx = parseFloat(x), ny = parseFloat(y);
        return dir * (!isNaN(nx) && !isNaN(ny) ? nx - ny : x.localeCompare(y));
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
  box.addEventListener("input", function () {
    var words = box.value.toLowerCase().split(/\\s+/).filter(Boolean), n = 0;
    Array.prototype.forEach.call(body.rows, function (r) {
      var text = r.textContent.toLowerCase();
      r.hidden = !words.every(function (w) { return text.indexOf(w) >= 0; });
      n += r.hidden ? 0 : 1;
    });
    shown.textContent = n;
  });
});
"""


def ratio_colour(ratio, lim=100.0) -> str:
    """Blue for faster (ratio < 1), red for slower, white at 1; saturated at ``lim``x either way (log scale)."""
    if not isinstance(ratio, (int, float)) or not ratio > 0 or not math.isfinite(ratio):
        return "#eee"
    t = max(-1.0, min(1.0, math.log10(ratio) / math.log10(lim))) * 0.85
    rgb = (33, 102, 172) if t < 0 else (178, 24, 43)
    return "#" + "".join(f"{round(255 + abs(t) * (c - 255)):02x}" for c in rgb)


def ci_text(p) -> str:
    ci = p.get("ratio_ci") if isinstance(p.get("ratio_ci"), (list, tuple)) and len(p["ratio_ci"]) == 2 else [None] * 2
    return R.fmt_ratio({"ratio": p.get("ratio"), "ratio_ci": list(ci), "verdict": p.get("verdict")})


# ---------------------------------------------------------------- one run's parts
def status_block(run) -> str:
    """A run that did not complete: what it is, and what is missing."""
    doc = run.doc
    points = doc.get("points") or []
    cases, backends = doc.get("config", {}).get("cases"), doc.get("config", {}).get("backends") or []
    measured = len({p.get("case") for p in points if isinstance(p, dict)})
    planned = f" of {cases} planned" if isinstance(cases, int) else ""
    if run.status == "complete":
        return ""
    if run.status == "failed":
        what = f"This run failed: {e(run.error or 'no reason recorded')}."
    elif run.status == "interrupted":
        what = "This run was interrupted (Ctrl-C or SIGTERM)."
    elif run.status == "running":
        what = "This run has not ended: it is still running, or was killed before it could record its end."
    else:
        what = f"This run's status is {e(run.status)}."
    missing = [] if run.doc.get("noise") else ["the A/A control's summary"]
    missing += [] if run.wall_s is not None else ["the wall time"]
    return (f'<p class="warn bad" data-status="{e(run.status)}">{what} It holds {len(points)} points over '
            f"{measured} cases{planned} ({len(backends)} backends planned); what is missing is not shown"
            + (f", nor {', '.join(missing)}" if missing else "") + ".</p>")


def about(run) -> str:
    m = run.doc.get("machine") or {}
    rows = [("command", f"<code>{e(run.command)}</code>"), ("file", e(run.path)),
            ("started", e(run.started or "not recorded")), ("status", e(P.status_text(run))),
            ("wall time", e(P.seconds(run.wall_s))), ("commit", e(m.get("commit") or "not recorded"))]
    rows += [(what, e(text)) for what, text in run.machine]
    return "<table>" + "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def peaks(run) -> str:
    rows = []
    for dev, entry in (run.doc.get("peak") or {}).items():
        if not isinstance(entry, dict):
            continue
        rates = [(f"matmul {dt}", p) for dt, p in (entry.get("gflops") or {}).items()]
        rates += [(k, p) for k, p in entry.items() if k.endswith("GBps")]
        for what, p in rates:
            p = p if isinstance(p, dict) else {"best": p}
            samples = p.get("samples") or []
            spread = p.get("spread")
            rows.append([dev, what, R.fmt_num(p.get("best")) + " " + str(p.get("unit") or ""),
                         "-" if spread is None else f"{100 * spread:.0f}%", len(samples),
                         "PEAK MOVED (spread over 10%)" if p.get("flagged") else ""])
        if entry.get("error"):
            rows.append([dev, "error", entry["error"], "", "", ""])
    if not rows:
        return '<p class="muted">No peak was measured in this run.</p>'
    return table(["device", "peak", "best", "spread", "samples", "flag"], rows)


def counts(run) -> str:
    rows, attrs = [], []
    points = [p for p in run.doc.get("points") or [] if is_point(p)]
    for b, c in run.counts.items():
        cells = [(str(n), {"data-backend": b, "data-verdict": v, "data-count": n}) for v, n in c.items()]
        noisy = sum(1 for p in summary.judged(points) if p["backend"] == b and p.get("noisy"))
        rows.append([P.name(run, b).replace("`", ""), *cells, sum(c.values()), noisy])
        attrs.append({"data-counts": b})
    if not rows:
        return f'<p class="muted">No backend besides the baseline {e(run.baseline)} was measured.</p>'
    return (f"<p>Against <b>{e(run.baseline)}</b> (99% intervals; noisy: the A/A control was not 'same'):</p>"
            + table(["backend", *stats.VERDICTS, "points", "noisy"], rows, "counts", attrs))


def cell_title(p, base) -> str:
    """A grid cell's hover text: the ratio and its interval, the verdict, rounds and both medians."""
    bits = [f"{p['backend']} vs {run_base_name(base)}: {ci_text(p)} (99% interval)", f"verdict {p.get('verdict')}",
            f"rounds {p.get('rounds', '?')}", f"median {R.fmt_time(p.get('median_s'))}"]
    if base is not None:
        bits.append(f"{base.get('backend')} median {R.fmt_time(base.get('median_s'))}")
    if p.get("noisy"):
        bits.append("noisy: the A/A control was not 'same' here")
    return "; ".join(bits)


def run_base_name(base) -> str:
    return "the baseline" if base is None else str(base.get("backend"))


def grids(run) -> str:
    """Per backend and dtype (and op, features, mini-batch), the N x H grid of ratios against the baseline."""
    points = [p for p in run.doc.get("points") or [] if is_point(p) and len(p["layer_sizes"]) == 3]
    by_key = {R.point_key(p)[1:]: p for p in points if p["backend"] == run.baseline}
    groups = {}
    for p in points:
        if p["backend"] != run.baseline:
            g = (p["backend"], p["dtype"], p["op"], p["layer_sizes"][0], p.get("batch_size"), p.get("epochs", 1))
            groups.setdefault(g, []).append(p)
    out = []
    for (b, dt, op, d, bs, epochs), sub in groups.items():
        ns = sorted({p["n_samples"] for p in sub})
        hs = sorted({p["layer_sizes"][1] for p in sub})
        cells = {(p["n_samples"], p["layer_sizes"][1]): p for p in sub}
        rows = []
        for h in hs:
            row = [(f"<b>H={h}</b>", {})]
            for n in ns:
                p = cells.get((n, h))
                if p is None:
                    row.append(("-", {"title": "not measured"}))
                    continue
                verdict = p.get("verdict") or "unresolved"
                text = f"{R.fmt_num(p.get('ratio'))}x<br>{e(SYMBOL.get(verdict, verdict))}"
                text += "<br>~ noisy" if p.get("noisy") else ""
                row.append((text, {"class": verdict + (" noisy" if p.get("noisy") else ""),
                                   "style": f"background:{ratio_colour(p.get('ratio'))}",
                                   "title": cell_title(p, by_key.get(R.point_key(p)[1:])),
                                   "data-cell": f"{b} | {p.get('case', '')}"}))
            rows.append(row)
        what = f"{op}" + (f" x{epochs}" if epochs and epochs > 1 else "") + f", D={d}"
        what += f", mini-batch {bs}" if bs else ""
        out.append(f"<div><h3>{e(b)} vs {e(run.baseline)}, {e(dt)} ({e(what)})</h3>"
                   + table(["H \\ N", *ns], rows, "grid") + "</div>")
    if not out:
        return ""
    return ("<h3>Time ratio against the baseline on the N x H grid</h3><p class='muted'>time / the baseline's "
            "(below 1: faster; blue faster, red slower); the verdict is written in each cell; hover a cell for "
            "its interval, rounds and medians. A dashed frame: unresolved or noisy.</p>"
            f'<div class="grids">{"".join(out)}</div>')


def charts(run, salt) -> str:
    try:
        parts = [("Time against rows per update N", C.time_vs(run.doc, "n_samples", f"{salt}n")),
                 ("Time against hidden width H", C.time_vs(run.doc, "hidden", f"{salt}h")),
                 ("Roofline under this run's measured peaks", C.roofline(run.doc, f"{salt}r"))]
    except ImportError as exc:
        return f'<p class="warn">No charts: {e(exc)}</p>'
    out = ['<div class="charts">'] + [f'<div class="chart"><h3>{e(t)}</h3>{svg}</div>' for t, svg in parts if svg]
    out.append("</div>")
    if any(svg for _, svg in parts[2:]):
        cache = [n for r in C.roofs(run.doc) for n, _ in r["caches"]]
        out.append("<p class='muted'>Bars: the 99% interval of each median (sign test over its rounds). Roofs: "
                   "the matmul peak and the memory copy rate measured in this run"
                   + (f"; cache roofs from the measured {', '.join(sorted(set(cache)))} rates." if cache else
                      "; no cache rate was measured, so no cache roof is drawn: points above the memory roof at "
                      "low intensity run from cache.") + "</p>")
    return "".join(out)


def points_table(run, salt) -> str:
    header = ["backend", "case", "dtype", "op", "N", "sizes", "batch", "median", "min", "ratio [99% CI]",
              "verdict", "rounds", "GFLOP/s", "% peak", "noisy"]
    rows, attrs = [], []
    for p in run.doc.get("points") or []:
        if not is_point(p):
            continue
        def num(x, text):
            return (e(text), {"data-v": x if isinstance(x, (int, float)) else ""})
        rows.append([p["backend"] + (" (reference)" if p.get("reference") else ""), p.get("case", ""),
                     p.get("dtype", ""), p.get("op", ""), num(p.get("n_samples"), p.get("n_samples")),
                     "-".join(map(str, p["layer_sizes"])), p.get("batch_size") or "full",
                     num(p.get("median_s"), R.fmt_time(p.get("median_s"))),
                     num(p.get("min_s"), R.fmt_time(p.get("min_s"))), num(p.get("ratio"), ci_text(p)),
                     p.get("verdict", ""), num(p.get("rounds"), p.get("rounds", "-")),
                     num(p.get("gflops"), R.fmt_num(p.get("gflops"))),
                     num(p.get("pct_peak"), R.fmt_pct(p.get("pct_peak"))), "noisy" if p.get("noisy") else ""])
        attrs.append({"data-point": f"{p['backend']} | {p.get('case', '')}", "data-verdict": p.get("verdict", "")})
    n = len(rows)
    return (f"<h3>Every point</h3><p>Filter: <input id='{salt}f' type='search' placeholder='e.g. numba float32 "
            f"slower'> <span id='{salt}c'>{n}</span> of {n} shown; click a heading to sort.</p>"
            + table(header, rows, "points", attrs).replace('class="points"', f'class="points" data-filter="{salt}f" '
                                                              f'data-count="{salt}c"', 1))


def run_section(run, i) -> str:
    salt = f"r{i}"
    out = [f'<section id="{salt}" data-run="{e(run.path)}"><h2>{e(P.title(run))}</h2>', status_block(run),
           about(run), "<h3>Peaks</h3>", peaks(run), "<h3>Verdicts per backend</h3>", counts(run), grids(run),
           charts(run, salt), points_table(run, salt)]
    out += [f"<p class='warn'>skipped {e(s.get('case', s.get('backend')))}: {e(s.get('reason'))}</p>"
            for s in run.skipped if isinstance(s, dict)]
    out += [f"<p class='warn bad'>error: {e(x.get('backend'))} / {e(x.get('case'))}: {e(x.get('error'))}</p>"
            for x in run.errors if isinstance(x, dict)]
    return "".join(out) + "</section>"


def html(runs, command="mlpbench report") -> str:
    """The whole page for ``runs`` (``report.read_run`` records, in the order to show them)."""
    body = [(f"<h1>mlpbench report</h1><p class='muted'>Generated by <code>{e(command)}</code> from "
            f"{len(runs)} results file(s); every number is read from them. Self-contained: it fetches nothing.</p>")]
    if not runs:
        body.append("<p class='warn'>No results file was given: nothing to show.</p>")
    if len(runs) > 1:
        body.append(html_compare.sections(runs))
    toc = "".join(f'<li><a href="#r{i}">{e(P.title(r))}</a>: {e(P.status_text(r))}, '
                  f"{len([p for p in r.doc.get('points') or [] if is_point(p)])} points</li>" for i, r in enumerate(runs))
    body.insert(1, f"<ul>{toc}</ul>" if runs else "")
    body += [run_section(r, i) for i, r in enumerate(runs)]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" "
            "content=\"width=device-width\"><title>mlpbench report</title>"
            f"<style>{CSS}</style></head><body>{''.join(body)}<script>{SCRIPT}</script></body></html>\n")
