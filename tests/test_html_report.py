"""``mlpbench report -o report.html``: the self-contained HTML page, checked against its results files.

The page is parsed (``html.parser``) and what it shows is compared with what
the ``results.json`` holds, counted here from the points themselves: every
point, the verdict counts per backend, the grid's cells, the comparison of
two runs as ``results.compare`` judges it. The two-machine page is made from
a COPY of a committed results file whose ``machine`` field is changed (there
is one machine here). The real browser's check is ``test_html_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from html.parser import HTMLParser

import pytest

from mlpbench.cli import bench as B
from mlpbench.cli.app import main
from mlpbench.measure import stats
from mlpbench.suite import html_compare
from mlpbench.suite import results as R
from mlpbench.suite.report import read_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "docs", "results", "amd-epyc-2c", "quick", "results.json")


class Page(HTMLParser):
    """What a reader sees that the checks need: the data-* hooks, the scripts' sources, the text."""

    def __init__(self, text):
        super().__init__()
        self.rows, self.cells, self.counts, self.flags, self.status = [], [], {}, [], []
        self.fetching, self.text, self.side_by_side, self.wins = [], [], 0, {}
        self._table, self._row = None, None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "data-point" in a:
            self.rows.append(a["data-point"])
        if "data-cell" in a:
            self.cells.append((a["data-cell"], a.get("title", "")))
        if "data-count" in a and "data-backend" in a:
            self.counts.setdefault(a["data-backend"], {})[a["data-verdict"]] = int(a["data-count"])
        if "data-flag" in a:
            self.flags.append(a["data-flag"])
        if "data-status" in a:
            self.status.append(a["data-status"])
        for key in ("src", "href", "xlink:href", "data"):  # anything a browser would fetch
            if key in a and not a[key].startswith("#"):
                self.fetching.append((tag, a[key]))
        if tag == "table":
            self._table = a.get("class")
        if tag == "tr" and self._table in ("machines", "wins"):
            self._row = []
        if tag == "link":
            self.fetching.append((tag, a.get("href")))

    def handle_endtag(self, tag):
        if tag == "tr" and self._row:
            if self._table == "machines" and self._row[0] != "backend":
                self.side_by_side += 1 if all(c != "-" for c in self._row[2:]) else 0
            if self._table == "wins" and self._row[0] != "case":
                self.wins[self._row[0]] = [c.split()[0] for c in self._row[1:]]
        if tag == "tr":
            self._row = None

    def handle_data(self, data):
        self.text.append(data)
        if self._row is not None:
            self._row.append(data)


def _render(tmp_path, capsys, *inputs) -> Page:
    out = tmp_path / "report.html"
    assert main(["report", *map(str, inputs), "-o", str(out)]) == 0, capsys.readouterr().err
    text = out.read_text(encoding="utf-8")
    assert not re.search(r"https?://", re.sub(r'xmlns(:\w+)?="[^"]*"', "", text)), "a URL the page could fetch"
    assert not re.search(r"@import|url\((?!#)", text), "a stylesheet fetch"
    return Page(text)


def _load() -> dict:
    with open(QUICK, encoding="utf-8") as f:
        return json.load(f)


def _sections(*paths) -> Page:
    """The several-runs sections alone (the whole page, charts included, is the browser test's)."""
    return Page(html_compare.sections([read_run(str(p)) for p in paths]))


def _copy(tmp_path, name, change):
    doc = _load()
    change(doc)
    (tmp_path / name).mkdir()
    path = tmp_path / name / "results.json"
    path.write_text(json.dumps(doc))
    return path, doc


def test_one_run_every_point_the_counts_and_the_grid_as_in_its_file(tmp_path, capsys):
    doc = _load()
    page = _render(tmp_path, capsys, QUICK)
    assert sorted(page.rows) == sorted(f"{p['backend']} | {p['case']}" for p in doc["points"])
    base = doc["config"]["baseline"]
    expected = {}
    for p in doc["points"]:
        if p["backend"] != base:
            expected.setdefault(p["backend"], dict.fromkeys(stats.VERDICTS, 0))[p["verdict"]] += 1
    assert page.counts == expected
    judged = [p for p in doc["points"] if p["backend"] != base]
    assert sorted(c for c, _ in page.cells) == sorted(f"{p['backend']} | {p['case']}" for p in judged)
    for cell, title in page.cells:  # the hover text: interval, verdict, rounds, both medians
        p = next(q for q in judged if f"{q['backend']} | {q['case']}" == cell)
        assert f"verdict {p['verdict']}" in title and f"rounds {p['rounds']}" in title
        assert R.fmt_ratio(p) in title and title.count("median") == 2
    text = " ".join(page.text)
    assert doc["machine"]["cpu"] in text and doc["config"]["started"] in text and "commit" in text
    assert page.fetching == [] and page.status == []


def test_two_runs_of_one_machine_compared_as_mlpbench_compare_does_regressions_first(tmp_path, capsys):
    def slow_one(doc):  # a copy in which one numba point took 3x as long: a regression
        doc["config"]["started"] = "2099-01-01T00:00:00"
        p = doc["points"][1]
        p["samples_s"] = [3 * s for s in p["samples_s"]]
        p["median_s"] *= 3
    slower, doc = _copy(tmp_path, "later", slow_one)
    page = _sections(QUICK, slower)
    rows = R.compare(_load(), doc)
    flags = sorted((r["flag"] or "none" for r in rows), key=["regression", "none", "improvement"].index)
    assert page.flags == flags and flags[0] == "regression"
    assert sum(1 for r in rows if r["regression"]) >= 1


def test_two_machines_side_by_side(tmp_path, capsys):
    other, _ = _copy(tmp_path, "other", lambda d: d["machine"].update(cpu="Intel Xeon Gold 6230 (a changed copy)"))
    page = _sections(QUICK, other)
    text = " ".join(page.text)
    assert "Machines side by side" in text and "intel-xeon-2c" in text and "amd-epyc-2c" in text
    assert "Which backend is fastest where" in text and "compared" not in text.split("Machines side by side")[0]
    doc = _load()
    assert page.side_by_side == len(doc["points"])  # every point, on both machines
    shapes = {p["case"] for p in doc["points"]}
    fastest = {c: min((p for p in doc["points"] if p["case"] == c), key=lambda p: p["median_s"])["backend"]
               for c in shapes}
    assert page.wins == {c: [b, b] for c, b in fastest.items()}  # the same file: the same winner on both


def _no_charts(monkeypatch):
    """The charts left out where a test is about something else (the one-run test and the browser's draw them)."""
    for name in ("time_vs", "roofline"):
        monkeypatch.setattr(f"mlpbench.suite.html_charts.{name}", lambda *a, **k: None)


def test_a_failed_or_interrupted_run_says_what_is_missing(tmp_path, capsys, monkeypatch):
    _no_charts(monkeypatch)
    def interrupted(doc):
        doc.update(status="interrupted", points=doc["points"][:5])
        doc.pop("noise")
        doc.pop("wall_s")
    path, _ = _copy(tmp_path, "cut", interrupted)
    page = _render(tmp_path, capsys, path)
    text = " ".join(page.text)
    assert page.status == ["interrupted"] and "It holds 5 points over 3 cases of 10 planned" in text
    assert "the A/A control's summary" in text and len(page.rows) == 5
    path, _ = _copy(tmp_path, "failed", lambda d: d.update(status="failed", error="out of memory", points=[]))
    page = _render(tmp_path, capsys, path)
    assert page.status == ["failed"] and "This run failed: out of memory" in " ".join(page.text)


@pytest.mark.parametrize("what", ["wrong schema", "truncated", "older schema", "not an object", "wrong kind"])
def test_bad_input_is_one_line_exit_2_and_the_old_report_stays_whole(tmp_path, capsys, what):
    with open(QUICK, encoding="utf-8") as f:
        text = f.read()
    bad = {"wrong schema": json.dumps(_load() | {"schema": "someone.else/7"}), "truncated": text[: len(text) // 2],
           "older schema": json.dumps(_load() | {"schema": R.SCHEMA_V1, "points": []}),
           "not an object": "[1, 2]", "wrong kind": text.replace('"verdict": "faster"', '"verdict": 7', 1)}[what]
    (tmp_path / "bad.json").write_text(bad)
    out = tmp_path / "report.html"
    out.write_text("the previous report")
    assert main(["report", str(tmp_path / "bad.json"), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlpbench report: error:") and "bad.json" in err, err
    if what == "wrong kind":
        assert "point 1's 'verdict' is 7, expected a string" in err
    assert out.read_text() == "the previous report" and sorted(os.listdir(tmp_path)) == ["bad.json", "report.html"]


@pytest.mark.bench_report
def test_bench_writes_report_html_beside_results_unless_told_not_and_a_failed_report_keeps_the_run(
        tmp_path, capsys, monkeypatch):
    doc = _load()
    _no_charts(monkeypatch)

    def fake_sweep(cases, backends, out, **kw):  # the run's files as the sweep leaves them, without measuring
        os.makedirs(out, exist_ok=True)
        shutil.copy(QUICK, os.path.join(out, "results.json"))
        return doc
    monkeypatch.setattr(B, "run_sweep", fake_sweep)
    argv = ["bench", "--backends", "numpy", "--no-lab", "--quiet", "--no-plots", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    page = Page((tmp_path / "a" / "report.html").read_text(encoding="utf-8"))
    assert sorted(page.rows) == sorted(f"{p['backend']} | {p['case']}" for p in doc["points"])
    assert main([*argv, str(tmp_path / "b"), "--no-report"]) == 0
    assert sorted(os.listdir(tmp_path / "b")) == ["results.json"]
    assert "--no-report" not in B.command_line(_bench_args(["--no-report"]))  # not part of what is measured

    def broken(*a, **k):
        raise RuntimeError("a bug in the report")
    monkeypatch.setattr("mlpbench.suite.html_report.html", broken)
    capsys.readouterr()
    assert main([*argv, str(tmp_path / "c")]) == 0
    err = capsys.readouterr().err
    assert "no report: RuntimeError: a bug in the report" in err
    assert sorted(os.listdir(tmp_path / "c")) == ["results.json"]  # the run kept, no half-written report


def _bench_args(extra):
    from mlpbench.cli.app import build_parser

    return build_parser().parse_args(["bench", *extra])


def test_markdown_beside_or_instead_of_html(tmp_path, capsys):
    from mlpbench.cli.report import render

    md = tmp_path / "page.md"
    assert main(["report", QUICK, "--markdown", str(md)]) == 0
    assert md.read_text(encoding="utf-8") == render([QUICK], str(md))[0]
    assert main(["report", QUICK, "--markdown", str(tmp_path / "page.txt")]) == 2
    assert "--markdown" in capsys.readouterr().err and not (tmp_path / "page.txt").exists()


def test_the_roofline_draws_a_cache_roof_only_where_a_cache_rate_was_measured():
    from mlpbench.suite.html_charts import roofs

    peak = {"cpu": {"gflops": {"float64": {"best": 100.0}}, "memcpy_GBps": {"best": 25.0}}}
    assert roofs({"peak": peak}) == [{"device": "cpu", "dtype": "float64", "gflops": 100.0, "dram": 25.0,
                                      "caches": []}]
    peak["cpu"]["l2_GBps"] = {"best": 180.0, "unit": "GB/s"}  # a rate a later schema may measure
    assert roofs({"peak": peak})[0]["caches"] == [("l2", 180.0)]
