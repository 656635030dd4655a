"""``mlpbench report``: the results page and the README's summary, generated from results.json files and never typed.

The drift test at the end re-renders every committed ``docs/results/**/results.json``
and compares with the committed ``docs/results/README.md`` and the README's
marked block: a published number that is not its file's fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil

import pytest

from mlpbench.cli.app import build_parser, main
from mlpbench.cli.report import render
from mlpbench.suite import report as P
from mlpbench.suite import results as R
from mlpbench.suite.stability import compare_runs, stability_lines

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(ROOT, "tests", "data", "results_peers_small.json")
MACHINE = {"cpu": "AMD EPYC 7B13 64-Core Processor", "arch": "x86_64", "cores_logical": 2, "cores_physical": 2,
           "threads_available": 2, "gpus": [], "versions": {"python": "3.11.7", "numpy": "2.4.6"}}


def _point(backend, n, ratio, ci, verdict, control=None):
    p = {"backend": backend, "op": "step", "dtype": "float64", "n_samples": n, "layer_sizes": [4, 8, 1],
         "case": f"step f64 N={n} 4-8-1", "min_s": 1e-3 * ratio, "median_s": 1e-3 * ratio, "iqr_s": 0.0,
         "ratio": ratio, "ratio_ci": ci, "verdict": verdict, "samples_s": [1e-3 * ratio] * 8, "noisy": False,
         "first_s": 0.1, "rounds": 8, "gflops": 1.0, "pct_peak": 250.0 if backend == "fast" else 0.5}
    if control is not None:
        p["control"] = {"ratio": control[0], "ratio_ci": control[1], "verdict": "same"}
    return p


def _doc(points, command="mlpbench bench --preset quick --backends numpy,fast,slow", started="2026-12-01T10:00:00"):
    return {"schema": R.SCHEMA, "status": "complete", "machine": MACHINE, "peak": {}, "points": points,
            "config": {"command": command, "baseline": "numpy", "backends": ["numpy", "fast", "slow"],
                       "started": started}, "skipped": [], "errors": [], "wall_s": 12.345}


#: two runs with a known answer. fast at N=1: A's interval holds B's ratio, B's does not hold A's; N=2: faster in
#: A, slower in B (a contradiction; neither holds); N=3: unresolved in both, each holds the other (B's interval
#: has no upper bound); N=4: A has no interval (left out), verdicts differ; N=5: in A only
RUN_A = [_point("numpy", n, 1.0, [1.0, 1.0], "baseline", control=c)
         for n, c in ((1, (1.0, [0.9, 1.1])), (2, (1.0, [0.95, 1.05])))] + [
    _point("fast", 1, 0.5, [0.4, 0.6], "faster"), _point("fast", 2, 0.9, [0.85, 0.95], "faster"),
    _point("fast", 3, 1.0, [0.7, 1.4], "unresolved"), _point("fast", 4, 0.8, [None, None], "unresolved"),
    _point("fast", 5, 1.0, [0.99, 1.01], "same"), _point("slow", 1, 2.0, [1.8, 2.2], "slower")]
RUN_B = [_point("numpy", n, 1.0, [1.0, 1.0], "baseline", control=c)
         for n, c in ((1, (1.2, [1.15, 1.25])), (2, (1.02, [0.98, 1.06])))] + [
    _point("fast", 1, 0.55, [0.52, 0.7], "faster"), _point("fast", 2, 1.2, [1.1, 1.3], "slower"),
    _point("fast", 3, 1.3, [1.0, None], "unresolved"), _point("fast", 4, 0.8, [0.7, 0.9], "faster"),
    _point("slow", 1, 2.1, [1.9, 2.3], "slower")]


def _write(folder, doc):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "results.json")
    with open(path, "w") as f:
        json.dump(doc, f)
    return path


def test_two_runs_agree_as_counted_by_hand():
    s = compare_runs(_doc(RUN_A), _doc(RUN_B))
    assert (s.matched, s.only_one, s.contradictory, s.differing, s.unresolved_a, s.unresolved_b) == (5, 1, 1, 2, 2, 1)
    c = s.intervals
    assert (c.points, c.a_holds_b, c.b_holds_a, c.one_way, c.both_ways, c.without_interval) == (4, 3, 2, 5, 2, 1)
    assert (s.controls.points, s.controls.a_holds_b, s.controls.b_holds_a, s.controls.both_ways) == (2, 1, 1, 1)
    assert stability_lines(s) == [
        "backend-points judged in both runs: 5 (1 in one run only)",
        "contradictory verdicts (faster in one run, slower in the other): 1 of 5; verdicts that differ at all: 2 of 5",
        "a run's 99% interval holds the other run's ratio: 5 of 8 (62.5%) one way (93.1% expected of correct "
        "intervals); 2 of 4 (50.0%) both ways "
        "(1 without an interval left out)",
        "unresolved: 2 in run 1, 1 in run 2",
        "A/A controls, a run's interval holds the other run's ratio: 2 of 4 (50.0%) one way (93.1% expected of "
        "correct intervals); 1 of 2 (50.0%) both ways"]


def test_correct_intervals_hold_another_runs_ratio_one_way_93_percent_of_the_time():
    """Two independent runs, each estimate normal around the truth with its own correct 99 % interval: one's
    interval holds the other's estimate 93 % of the time, which ``expected_one_way`` says (95 % would take
    intervals at 99.44 %)."""
    import numpy as np
    from statistics import NormalDist

    from mlpbench.suite.stability import expected_one_way

    rng = np.random.RandomState(5)
    sd = rng.uniform(0.01, 0.2, 200_000)  # each point's own spread, the same in both runs
    a, b = rng.normal(0, sd), rng.normal(0, sd)
    z = NormalDist().inv_cdf(0.995)
    held = np.mean(np.abs(a - b) <= z * sd)
    assert expected_one_way(0.99) == pytest.approx(held, abs=0.003) and 0.928 < held < 0.934
    assert expected_one_way(0.9944) == pytest.approx(0.95, abs=0.001)


def test_the_page_counts_verdicts_per_backend_and_compares_runs_of_the_same_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    a, b = _write("res/m/run1", _doc(RUN_A)), _write("res/m/run2", _doc(RUN_B, started="2026-12-01T11:00:00"))
    other = _write("res/m/other", _doc(RUN_B, command="mlpbench bench --preset quick --baseline fast"))
    page = P.markdown(P.collect([other, b, a], out="res/README.md", command="mlpbench report res"))
    assert [r.name for r in P.collect([other, b, a]).runs] == ["other", "run1", "run2"]  # sorted, not as given
    assert "| `fast` | 2 | 0 | 1 | 2 | 5 |" in page and "| `slow` | 0 | 1 | 0 | 0 | 1 |" in page
    assert "against numpy: fast faster 2, slower 0, same 1, unresolved 2 of 5; slow faster 0, slower 1, same 0, " \
           "unresolved 0 of 1" in page
    assert page.count("## Two runs of the same command") == 1  # run1 and run2; not `other`, another command
    assert page.count("[run1](#amd-epyc-2c--run1) and [run2](#amd-epyc-2c--run2) on amd-epyc-2c:") == 1
    assert "- unresolved: 2 in run1, 1 in run2" in page
    assert "- contradictory verdicts (faster in one run, slower in the other): 1 of 5;" in page
    assert "- a run's 99% interval holds the other run's ratio: 5 of 8 (62.5%) one way (93.1% expected" in page
    assert "[m/run1/results.json](m/run1/results.json)" in page  # links relative to the page
    assert "0.5x [0.4, 0.6] · faster · 250% of peak" in page and "0.8x [too few rounds] · unresolved" in page
    assert "1.3x [1, inf] · unresolved" in page and "wall time 12.3 s" in page
    assert "| float64 | step | 5 | 4-8-1 | full |" in page and "| - |" in page  # slow is not measured at N=5
    assert "`mlpbench bench --preset quick --backends numpy,fast,slow`" in page
    assert "mlpbench bench --preset PRESET --no-plots --out res/MACHINE/RUN" not in page  # no folder was given


def test_a_real_run_renders_its_numbers_and_the_bench_summary_lines(tmp_path):
    doc = R.load(FIXTURE)
    page = P.markdown(P.collect([FIXTURE], out=str(tmp_path / "page.md")))
    for line in P.summary.closing_notes(doc) + P.summary.peak_lines(doc["peak"]):
        assert line.strip() in page  # the yardstick lines, the A/A control, the peaks: as the terminal has them
    assert any(" / idiomatic-" in line for line in P.summary.closing_notes(doc))
    for p in doc["points"]:
        assert R.fmt_time(p["median_s"]) in page and (p["verdict"] == "baseline" or R.fmt_ratio(p) in page)
    assert f"`{doc['config']['command']}`" in page and "`idiomatic-jax` (reference)" in page
    assert P.machine_slug(doc["machine"]) == "amd-epyc-2c"


def test_machine_slugs():
    assert P.machine_slug(MACHINE) == "amd-epyc-2c"
    assert P.machine_slug({"cpu": "Intel(R) Xeon(R) Platinum 8480+", "cores_logical": 16,
                           "gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}) == "intel-xeon-16c-nvidia-h100"
    assert P.machine_slug({}) == "unknown"


def test_rendering_twice_gives_the_same_bytes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(FIXTURE, _write("runs/m/a", _doc(RUN_A)))  # a real run ...
    _write("runs/m/b", _doc(RUN_B))
    _write("runs/m/c", _doc(RUN_A, started="2026-12-02T10:00:00"))
    (tmp_path / "README.md").write_text(f"intro\n{P.BEGIN}\nTHE OLD BLOCK\n{P.END}\nrest\n")
    assert main(["report", "runs", "-o", "runs/README.md", "--readme", "README.md"]) == 0
    first = (tmp_path / "runs" / "README.md").read_bytes(), (tmp_path / "README.md").read_bytes()
    assert main(["report", "runs", "-o", "runs/README.md", "--readme", "README.md"]) == 0
    assert ((tmp_path / "runs" / "README.md").read_bytes(), (tmp_path / "README.md").read_bytes()) == first
    readme = first[1].decode()
    assert readme.startswith("intro\n" + P.BEGIN) and readme.endswith(P.END + "\nrest\n")
    assert "THE OLD BLOCK" not in readme
    assert "[runs/README.md](runs/README.md)" in readme and "mlpbench report runs -o runs/README.md" in readme
    assert "- [b](runs/README.md#amd-epyc-2c--b) and [c](runs/README.md#amd-epyc-2c--c) (the same command): " \
           "contradictory verdicts 1 of 5" in readme  # b and c: one command (a, the real run, is another)
    assert "`mlpbench bench --preset quick --backends numpy,fast,slow`: against numpy: fast faster 2, same 1, " \
           "unresolved 2 of 5; slow slower 1 of 1" in readme
    assert "--out runs/MACHINE/RUN" in first[0].decode()


def test_bench_records_its_command_and_wall_time_and_the_report_shows_them(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["bench", "--backends", "numpy", "--batch", "2", "--hidden", "4", "--no-lab", "--quiet", "--no-plots",
            "--repeat", "3", "--min-time", "0", "--max-time", "0.2", "--out", "r"]
    assert main(argv) == 0
    doc = R.load("r/results.json")
    command = doc["config"]["command"]
    assert command == "mlpbench bench --preset quick --backends numpy --no-lab --batch 2 --hidden 4 --repeat 3 " \
                      "--min-time 0.0 --max-time 0.2"
    again, given = build_parser().parse_args(shlex.split(command)[1:]), build_parser().parse_args(argv)
    keep = {k: v for k, v in vars(given).items() if k not in ("out", "quiet", "no_plots", "func")}
    assert {k: v for k, v in vars(again).items() if k in keep} == keep  # it measures the same run again
    assert doc["wall_s"] > 0
    capsys.readouterr()
    assert main(["report", "r/results.json"]) == 0
    out = capsys.readouterr().out
    assert f"`{command}`" in out and re.search(r"wall time [0-9.]+ s", out)


def _fails(capsys, argv, *names):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mlpbench report: error:"), err
    for name in names:
        assert name in err, err
    return err


def test_user_faults_are_exit_2_with_one_line_naming_the_path_before_anything_is_written(tmp_path, capsys,
                                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    good = _write("ok", _doc(RUN_A))
    (tmp_path / "not.json").write_text('{"hello": 1}')
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "README.md").write_text("no markers here\n")
    _fails(capsys, ["report", "missing.json", "-o", "p.md"], "missing.json")
    _fails(capsys, ["report", "missing-folder/", "-o", "p.md"], "missing-folder")
    _fails(capsys, ["report", good, "not.json", "-o", "p.md"], "not.json", "not an mlpbench results file")
    _fails(capsys, ["report", "text.json", "-o", "p.md"], "text.json")
    v1 = [p | {"warmup_s": 0.1, "speedup_vs_numpy": 1.0, "repeats": 8} for p in RUN_A]  # valid for --compare
    _write("v1", _doc(v1) | {"schema": R.SCHEMA_V1})
    _fails(capsys, ["report", "v1/results.json", "-o", "p.md"], "v1/results.json", R.SCHEMA)
    _write("nameless", _doc([{k: v for k, v in RUN_A[0].items() if k != "case"}]))
    _fails(capsys, ["report", "nameless", "-o", "p.md"], "nameless/results.json", "'case'")
    assert "HTML (.html) or Markdown (.md)" in _fails(capsys, ["report", good, "-o", "p.pdf"], "p.pdf")
    _fails(capsys, ["report", good, "-o", "p"], "-o p")
    _fails(capsys, ["report", good, "-o", "no/such/folder/p.md"], "no/such/folder/p.md")
    os.mkdir(tmp_path / "dir.md")
    _fails(capsys, ["report", good, "-o", "dir.md"], "dir.md", "folder")
    _fails(capsys, ["report", good, "--readme", "nope.md"], "nope.md")
    _fails(capsys, ["report", good, "-o", "p.md", "--readme", "README.md"], "README.md", P.BEGIN)
    assert not (tmp_path / "p.md").exists() and (tmp_path / "README.md").read_text() == "no markers here\n"
    os.chmod(tmp_path / "README.md", 0o444)
    if not os.access(tmp_path / "README.md", os.W_OK):  # (root may write anyway)
        _fails(capsys, ["report", good, "--readme", "README.md"], "README.md")
    assert main(["report", "--help"]) == 0


# ---------------------------------------------------------------- what is committed
def test_the_committed_pages_are_generated_from_the_committed_runs(monkeypatch):
    """Every published number comes from a committed results.json: re-render and compare, byte for byte."""
    monkeypatch.chdir(ROOT)
    files, _ = P.find_results(["docs/results"])
    page, readme = render(["docs/results"], "docs/results/README.md", "README.md")
    with open("docs/results/README.md", encoding="utf-8") as f:
        assert f.read() == page, "docs/results/README.md drifted: mlpbench report docs/results -o " \
                                 "docs/results/README.md --readme README.md"
    with open("README.md", encoding="utf-8") as f:
        assert f.read() == readme, "README.md's results block drifted (same command)"
    block = readme.split(P.BEGIN)[1].split(P.END)[0]
    if not files:  # none yet: the pages must say so, not pass by saying nothing
        assert "No benchmark run is committed yet" in page and "No benchmark run is committed yet" in block
    for f in files:  # docs/results/<machine>/<run>/results.json, <machine> the record's slug
        parts = f.split("/")
        slug = P.machine_slug(R.load(f)["machine"])
        assert len(parts) == 5 and parts[2] == slug, f"{f}: expected docs/results/{slug}/RUN/results.json"
        assert f"`{P.run_command(R.load(f))}`" in block
    assert not [n for _, _, names in os.walk("docs/results") for n in names if n.endswith(".png")]


DOCS = ["README.md", "docs/cli.md", "docs/measuring.md", "docs/gpu.md"]


def _shown_commands(doc) -> list[str]:
    """The ``mlpbench ...`` command lines of a page's ``bash`` blocks (comments and ``pip install ... &&`` cut)."""
    with open(os.path.join(ROOT, doc), encoding="utf-8") as f:
        blocks = re.findall(r"```bash\n(.*?)```", f.read(), re.S)
    lines = [line.split("#")[0].split("&&")[-1].strip() for b in blocks for line in b.replace("\\\n", " ").splitlines()]
    return [line[line.index("mlpbench "):] for line in lines if "mlpbench " in line]


def test_every_command_the_docs_show_is_one_the_cli_accepts(tmp_path, monkeypatch):
    shown = {doc: _shown_commands(doc) for doc in DOCS}
    assert len(shown["README.md"]) >= 20 and shown["docs/gpu.md"]
    assert "mlpbench bench --preset quick" in shown["README.md"]  # the quick start, unchanged
    monkeypatch.chdir(tmp_path)
    for doc, commands in shown.items():
        for command in commands:
            try:
                build_parser().parse_args(shlex.split(command)[1:])
            except SystemExit as exc:
                pytest.fail(f"{doc}: {command!r} does not parse (exit {exc.code})")


def test_the_cli_page_lists_every_option_of_every_command_and_no_other():
    with open(os.path.join(ROOT, "docs", "cli.md"), encoding="utf-8") as f:
        sections = re.split(r"^## `mlpbench (\w+)`$", f.read(), flags=re.M)
    listed = {cmd: set(re.findall(r"^\| `(-[-\w]+)`(?:, `(--[-\w]+)`)?", body, re.M)) for cmd, body in
              zip(sections[1::2], sections[2::2])}
    listed = {cmd: {o for pair in rows for o in pair if o} for cmd, rows in listed.items()}
    sub = next(a for a in build_parser()._actions if a.choices and "bench" in a.choices).choices
    parser = {cmd: {o for a in p._actions for o in a.option_strings if o not in ("-h", "--help")}
              for cmd, p in sub.items()}
    assert listed == parser
