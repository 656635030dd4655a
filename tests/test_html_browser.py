"""The HTML report in a real browser: Debian's headless ``chromium`` opens it from ``file://`` with the network off.

Checked against the results files, not against snapshots of HTML: no console
error and no uncaught exception; no request but the page's own file; every
point of every run in the table the reader sees; the verdict counts shown
equal to those counted here from ``results.json``; the table's filter and sort
work. Pages: a run ``mlpbench bench`` wrote (its ``report.html``), a committed
quick run, two runs of one machine, an interrupted run, and two machines, the
second being a COPY of the committed file whose ``machine`` field this test
changes (there is one machine here). Where ``chromium`` is not installed the
test skips and says so; ``.ci/run`` installs it. Slow (a browser start and
the charts: ~10 s on 2 busy cores): ``pytest -m slow``.
"""

from __future__ import annotations

import json
import os

import pytest
from browser import Browser, find_chromium

from mlpbench.cli.app import main
from mlpbench.measure import stats

pytestmark = [pytest.mark.slow, pytest.mark.bench_report,
              pytest.mark.skipif(find_chromium() is None,
                                 reason="chromium is not installed (apt-get install chromium; .ci/run does)")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "docs", "results", "amd-epyc-2c", "quick", "results.json")

SEEN = """(() => ({
  points: Array.from(document.querySelectorAll("tr[data-point]")).filter(r => r.offsetParent !== null)
          .map(r => r.dataset.point),
  counts: Array.from(document.querySelectorAll("td[data-count]"))
          .map(td => [td.dataset.backend, td.dataset.verdict, Number(td.textContent)]),
}))()"""


def _load(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _expected(docs):
    points, counts = [], {}
    for doc in docs:
        base = doc["config"]["baseline"]
        points += [f"{p['backend']} | {p['case']}" for p in doc["points"]]
        for p in doc["points"]:
            if p["backend"] != base:
                counts.setdefault(p["backend"], dict.fromkeys(stats.VERDICTS, 0))[p["verdict"]] += 1
    return sorted(points), counts


def _copy(tmp_path, name, change):
    doc = _load(QUICK)
    change(doc)
    os.makedirs(tmp_path / name)
    path = tmp_path / name / "results.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_reports_open_offline_with_no_error_no_request_every_point_and_the_counts(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["bench", "--backends", "numpy,numba", "--batch", "2", "--hidden", "4", "--no-lab", "--quiet",
                 "--no-plots", "--repeat", "3", "--min-time", "0", "--max-time", "0.2", "--out", run]) == 0
    later = _copy(tmp_path, "later", lambda d: d["config"].update(started="2099-01-01T00:00:00"))
    other = _copy(tmp_path, "other", lambda d: d["machine"].update(cpu="Intel Xeon Gold 6230 (a changed copy)"))
    cut = _copy(tmp_path, "cut", lambda d: d.update(status="interrupted", points=d["points"][:7]))
    pages = {"bench": [os.path.join(run, "results.json")], "quick": [QUICK], "two runs": [QUICK, later],
             "interrupted": [cut], "two machines": [QUICK, other]}
    with Browser() as b:
        for name, inputs in pages.items():
            out = os.path.join(run, "report.html") if name == "bench" else str(tmp_path / f"{name}.html")
            if name != "bench":
                assert main(["report", *inputs, "-o", out]) == 0, capsys.readouterr().err
            url = b.open(out)
            assert b.errors() == [], name
            assert b.requests() == [url], name  # the page itself, nothing else
            seen = b.evaluate(SEEN)
            points, counts = _expected([_load(p) for p in inputs])
            assert sorted(seen["points"]) == points, name
            shown = {}
            for backend, verdict, n in seen["counts"]:
                shown.setdefault(backend, {}).setdefault(verdict, 0)
                shown[backend][verdict] += n
            assert shown == counts, name
        # the quick page's table: filter, then sort by median
        b.open(str(tmp_path / "quick.html"))
        kept = b.evaluate("""(() => { const box = document.querySelector("input[type=search]");
            box.value = "numba 1024"; box.dispatchEvent(new Event("input"));
            return Array.from(document.querySelectorAll("tr[data-point]")).filter(r => !r.hidden)
                   .map(r => r.dataset.point); })()""")
        doc = _load(QUICK)
        assert sorted(kept) == sorted(f"numba | {p['case']}" for p in doc["points"]
                                      if p["backend"] == "numba" and "N=1024" in p["case"])
        medians = b.evaluate("""(() => { const th = Array.from(document.querySelectorAll("table.points th"))
            .find(h => h.textContent === "median"); th.click();
            const i = th.cellIndex;
            return Array.from(document.querySelectorAll("table.points tbody tr"))
                   .map(r => Number(r.cells[i].dataset.v)); })()""")
        assert medians == sorted(p["median_s"] for p in doc["points"])
        assert b.errors() == []
