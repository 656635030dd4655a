"""The benchmark suite: backend specs, the sweep's JSON/CSV/PNG output, --compare, and SIGINT (its cases and
what is timed: test_bench_cases.py)."""

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mlpbench.suite import cases
from mlpbench.suite import results as R
from mlpbench.backends import BackendSpec, parse_specs, ready, register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.suite.progress import Progress
from mlpbench.suite.sweep import run_sweep
from mlpbench.cli.app import main

from helpers import assert_verdicts_follow_from_samples, short_lab

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- backend specs (generic)
class Fake(NumpyBackend):
    """A NumPy clone with constructor options, like a backend with strategies."""

    name = "fake"
    strategies = ("loop", "step")

    def __init__(self, strategy="loop", threads=None):
        self.strategy, self.threads = strategy, threads


class Unavailable(NumpyBackend):
    name = "absent"

    @classmethod
    def availability(cls):
        return False, "needs hardware this machine lacks"


class Exploding(NumpyBackend):
    name = "exploding"

    def _forward(self, params, X, activation):  # the contract's hook: step and train go through it
        if X.shape[0] > 4:
            raise MemoryError("out of device memory")
        return super()._forward(params, X, activation)


@pytest.fixture
def fakes():
    for name, cls in (("fake", Fake), ("absent", Unavailable), ("exploding", Exploding)):
        register_backend(name, cls)
    yield
    for name in ("fake", "absent", "exploding"):
        unregister_backend(name)


def test_backend_specs_with_options_and_variants(fakes):
    specs = parse_specs("numpy, fake[step]")
    assert specs == [BackendSpec("numpy"), BackendSpec("fake", (("strategy", "step"),))]
    assert [s.label for s in specs] == ["numpy", "fake[step]"]
    assert [s.label for s in parse_specs("fake[*]")] == ["fake[loop]", "fake[step]"]
    assert dict(parse_specs("fake[threads=1,strategy=step]")[0].options) == {"threads": 1, "strategy": "step"}
    with pytest.raises(ValueError, match="not a strategy"):
        parse_specs("fake[warp]")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        parse_specs("numpy,nope")
    made, skipped = ready(parse_specs("fake[step],absent"))
    assert [(label, be.strategy) for label, be in made] == [("fake[step]", "step")]
    reasons = {s["backend"]: s["reason"] for s in skipped}
    assert reasons == {"absent": "needs hardware this machine lacks"}
    # an invalid option is the user's error (exit 2 on the CLI), not an unavailable backend
    with pytest.raises(ValueError, match=r"--backends fake\[bogus=1\]: invalid options: .*bogus"):
        ready(parse_specs("fake[step],absent,fake[bogus=1]"))
    with pytest.raises(ValueError, match=r"--backends absent\[bogus=1\]: invalid options: .*bogus"):
        ready(parse_specs("absent[bogus=1]"))  # unavailable here, and its options are wrong anyway


def test_progress_bar_is_silent_off_a_tty(capsys):
    p = Progress(3)  # stderr is captured: not a TTY
    p.advance("x")
    p.close()
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------- the sweep's output
def test_bench_writes_table_json_csv_and_plots(fakes, tmp_path, capsys, monkeypatch):
    short_lab(monkeypatch)
    out = tmp_path / "res"
    code = main(["bench", "--backends", "fake[step],absent,exploding", "--batch", "2,16", "--hidden", "3,8",
                 "--features", "4", "--dtype", "float32", "--repeat", "3", "--min-time", "0", "--max-time", "0.2",
                 "--passes", "1", "--quiet", "--out", str(out)])
    text = capsys.readouterr()
    assert code == 1  # the exploding backend's errors are reported in the exit code, not raised
    assert "verdict" in text.out and "lab-and f32" in text.out and "skipping absent" in text.err
    assert "\033[" not in text.out  # not a terminal: no colour
    assert "verdicts against numpy" in text.out and "A/A control" in text.out
    doc = json.loads((out / "results.json").read_text())
    assert R.validate(doc) == [] and doc["status"] == "complete" and doc["schema"] == "mlpbench.bench/3"
    assert {k for k in ("schema", "machine", "peak", "config", "points", "noise")} <= set(doc)
    linux = sys.platform.startswith("linux")  # mallopt (glibc) and the threads in /proc
    assert doc["config"]["heap"] == "keep" or not linux  # the default: freed memory kept (measure/heap.py)
    # a wait before every sample, the A/A copy's too: the subjects timed at the point and the copy, each round
    timed_at = {c: sum(p["case"] == c for p in doc["points"]) + 1 for c in {p["case"] for p in doc["points"]}}
    assert not linux or all(p["settled"]["waits"] == p["rounds"] * timed_at[p["case"]]
                            for p in doc["points"] if p["backend"] == "numpy")
    assert doc["machine"]["cpu"] and doc["machine"]["versions"]["numpy"] == np.__version__
    assert doc["machine"]["threads_available"] >= 1 and "blas" in doc["machine"]
    f32 = doc["peak"]["cpu"]["gflops"]["float32"]
    assert len(f32["samples"]) == 2 and f32["best"] == max(f32["samples"]) > 0  # at the start and at the end
    assert isinstance(f32["flagged"], bool) and doc["peak"]["cpu"]["memcpy_GBps"]["best"] > 0
    points = doc["points"]
    assert {p["backend"] for p in points} == {"numpy", "fake[step]", "exploding"}
    for p in points:
        assert 0 < p["min_s"] <= p["median_s"] and p["iqr_s"] >= 0 and isinstance(p["noisy"], bool)
        assert p["first_s"] > 0 and p["warmup_s"] >= 0 and p["rounds"] >= 3 and len(p["samples_s"]) == p["rounds"]
        assert min(p["samples_s"]) == p["min_s"] and p["number"] >= 1
        assert p["gflops"] > 0 and p["pct_peak"] > 0 and p["ratio"] > 0
        assert p["pct_peak"] == pytest.approx(100 * p["gflops"] / f32["best"])  # % of the best peak
        assert p["gflops"] == pytest.approx(p["flops"] / p["median_s"] / 1e9)
        lo, hi = p["ratio_ci"]  # null: too few rounds for an interval, and then no verdict
        assert (lo is None) == (hi is None) and (lo is not None or p["verdict"] in ("unresolved", "baseline"))
        assert lo is None or lo <= p["ratio"] <= hi
        assert p["verdict"] in (("baseline",) if p["backend"] == "numpy" else R.stats.VERDICTS)
    base = [p for p in points if p["backend"] == "numpy"]
    assert all(p["ratio"] == 1.0 and p["control"]["verdict"] in R.stats.VERDICTS for p in base)
    assert_verdicts_follow_from_samples(doc)  # and each is the one the recorded samples give
    assert doc["noise"]["points"] == len(base) == 5
    assert doc["noise"]["same"] == sum(p["control"]["verdict"] == "same" for p in base)
    assert doc["noise"]["noisy"] == any(p["noisy"] for p in base)
    step_cases = {p["case"] for p in points if p["op"] == "step"}
    assert len(step_cases) == 4
    # the exploding backend fails on N = 16 only: reported, while its other points are measured
    assert {(e["backend"], e["case"]) for e in doc["errors"]} == {("exploding", "step f32 N=16 4-3-1"),
                                                                  ("exploding", "step f32 N=16 4-8-1")}
    assert all("out of device memory" in e["error"] for e in doc["errors"])
    assert doc["skipped"] == [{"backend": "absent", "reason": "needs hardware this machine lacks"}]
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(points) and rows[0]["layer_sizes"] == "4-3-1"
    assert set(R.POINT_FIELDS) == set(rows[0]) and rows[0]["verdict"] == "baseline"
    lo = points[1]["ratio_ci"][0]  # null in JSON, nan in CSV: too few rounds for an interval (a loaded machine)
    assert rows[1]["ratio_lo"] == "nan" if lo is None else float(rows[1]["ratio_lo"]) == lo
    for name in ("time_vs_batch", "time_vs_hidden", "speedup_heatmap", "roofline"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_baseline_option_names_the_backend_every_ratio_is_against(fakes, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["bench", "--backends", "numpy,fake", "--baseline", "fake", "--batch", "2", "--hidden", "3",
                 "--no-lab", "--min-time", "0", "--max-time", "0.1", "--quiet", "--no-plots", "--out", str(out)]) == 0
    doc = R.load(out / "results.json")
    assert doc["config"]["baseline"] == "fake"
    assert {p["backend"]: p["verdict"] == "baseline" for p in doc["points"]} == {"fake": True, "numpy": False}
    assert "verdicts against fake" in capsys.readouterr().out
    assert main(["bench", "--backends", "numpy", "--baseline", "fake", "--out", str(out)]) == 2
    assert "--baseline" in capsys.readouterr().err


def _point(n, samples, schema):
    p = {"backend": "numpy", "op": "step", "dtype": "float64", "n_samples": n, "layer_sizes": [4, 8, 1],
         "case": f"step N={n}", "median_s": float(np.median(samples)) if samples else None, "iqr_s": 0.0,
         "noisy": False, "gflops": 1.0, "pct_peak": 1.0}
    if schema == R.SCHEMA_V1:
        return p | {"warmup_s": 0.1, "speedup_vs_numpy": 1.0, "repeats": len(samples), "times_s": samples}
    return p | {"min_s": min(samples), "ratio": 1.0, "ratio_ci": [1.0, 1.0], "verdict": "baseline",
                "samples_s": samples, "first_s": 0.1, "rounds": len(samples)}


def _doc(points, schema=R.SCHEMA):
    return {"schema": schema, "machine": {"cpu": "x"}, "peak": {}, "config": {},
            "points": [_point(n, s, schema) for n, s in points.items()]}


SAME = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0]


def _write(path, doc):
    path.write_text(json.dumps(doc))
    return str(path)


def test_compare_reads_v1_and_fails_only_on_a_significant_regression(tmp_path, capsys):
    old = _write(tmp_path / "old.json", _doc({1: SAME, 2: SAME, 3: SAME}, R.SCHEMA_V1))  # a /1 file: times_s
    slower = [1.5 * x for x in SAME]
    new = _write(tmp_path / "new.json", _doc({1: [1.01 * x for x in SAME], 2: slower, 3: [0.5 * x for x in SAME],
                                             4: SAME}))
    rows = R.compare(R.load(old), R.load(new))
    assert [r["flag"] for r in rows] == ["", "regression", "improvement"]
    assert rows[1]["ratio"] == pytest.approx(1.5) and rows[1]["p"] < 0.01
    assert rows[1]["ratio_ci"][0] <= 1.5 <= rows[1]["ratio_ci"][1]
    assert main(["bench", "--compare", old, new]) == 0
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["bench", "--compare", old, new, "--fail-on-regression"]) == 1
    assert main(["bench", "--compare", old, new, "--fail-on-regression", "--threshold", "0.6"]) == 0
    # 50% slower by the medians, but with samples that overlap this much the U test cannot call it
    spread = _write(tmp_path / "spread.json", _doc({1: SAME, 2: [0.5, 3.0, 1.5, 0.6, 2.9, 1.6, 0.7, 2.8], 3: SAME}))
    assert main(["bench", "--compare", old, spread, "--fail-on-regression"]) == 0
    # one median per side (no samples) can never be significant: reported; slower than the threshold, the gate
    # cannot pass it (issue 21: a single sample at 2.1x passed)
    lone_old = _write(tmp_path / "lone_old.json", _doc({2: [1.0]}, R.SCHEMA_V1))
    capsys.readouterr()
    assert main(["bench", "--compare", lone_old, _write(tmp_path / "same.json", _doc({2: [1.05]})),
                 "--fail-on-regression"]) == 0
    assert "too few samples" in capsys.readouterr().out
    lone_new = _write(tmp_path / "lone_new.json", _doc({2: [3.0]}))
    assert main(["bench", "--compare", lone_old, lone_new, "--fail-on-regression"]) == 1
    assert "gate fails: 1 points are slower by more than 10% with too few samples" in capsys.readouterr().out


def _nan_median(tmp_path):
    doc = _doc({2: SAME})
    doc["points"][0]["median_s"] = float("nan")
    return _write(tmp_path / "nan.json", doc)  # json writes NaN, json.load reads it back


def _null_median(tmp_path):
    doc = _doc({2: SAME})
    doc["points"][0]["median_s"] = None
    return _write(tmp_path / "null.json", doc)


def _missing_median(tmp_path):
    doc = _doc({2: SAME})
    del doc["points"][0]["median_s"]
    return _write(tmp_path / "missing.json", doc)


def _disjoint(tmp_path):
    return _write(tmp_path / "disjoint.json", _doc({99: SAME}))


def _bad_samples(tmp_path):
    doc = _doc({2: SAME})
    doc["points"][0]["samples_s"] = [1.0, -1.0, float("nan")]
    return _write(tmp_path / "bad_samples.json", doc)


@pytest.mark.parametrize("make_new, extra, culprit", [
    (_disjoint, [], "share no point"),
    (_nan_median, [], "median_s is NaN or missing"),
    (_null_median, [], "median_s is NaN or missing"),
    (_missing_median, [], "not an mlpbench results file"),
    (_bad_samples, [], "bad_samples.json: point 0: samples_s must be a non-empty list of positive finite"),
    (None, ["--threshold", "nan"], "--threshold"),
    (None, ["--threshold", "-0.1"], "--threshold"),
    (None, ["--threshold", "inf"], "--threshold"),
])
def test_compare_gate_exits_2_with_one_line_when_nothing_sound_can_be_compared(tmp_path, capsys, make_new, extra,
                                                                                culprit):
    old = _write(tmp_path / "old.json", _doc({2: SAME}))
    new = make_new(tmp_path) if make_new else _write(tmp_path / "new.json", _doc({2: SAME}))
    assert main(["bench", "--compare", old, new, "--fail-on-regression", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and culprit in err
    if make_new is not None:  # the same fault in OLD is refused too
        assert main(["bench", "--compare", new, old]) == 2
        assert capsys.readouterr().err.count("\n") == 1


def test_compare_threshold_outside_the_cli_is_checked_too():
    doc = _doc({2: SAME})
    for bad in (float("nan"), -1.0):
        with pytest.raises(R.stats.CompareError, match="threshold"):
            R.compare(doc, doc, bad)


def test_table_shows_the_interval_and_verdict_and_colours_only_on_a_terminal(monkeypatch):
    pts = [dict(_point(2, SAME, R.SCHEMA), backend="numpy"),
           dict(_point(2, [0.5 * x for x in SAME], R.SCHEMA), backend="fast", ratio=0.5, ratio_ci=[0.45, 0.55],
                verdict="faster"),
           dict(_point(2, [2 * x for x in SAME], R.SCHEMA), backend="slow", ratio=2.0, ratio_ci=[1.8, None],
                verdict="slower")]
    plain = R.points_table(pts)
    lines = plain.splitlines()
    assert lines[0].split()[-1] == "verdict" and "\033[" not in plain
    assert lines[2].endswith("baseline") and "1 (baseline)" in lines[2]
    assert "0.5x [0.45, 0.55]" in lines[3] and lines[3].endswith("faster")
    assert "2x [1.8, inf]" in lines[4] and lines[4].endswith("slower")
    coloured = R.points_table(pts, color=True).splitlines()
    assert coloured[3].startswith(R.BEST) and coloured[4].startswith(R.SLOWER) and "\033[" not in coloured[2]

    class Tty(io.StringIO):
        def isatty(self):
            return True

    monkeypatch.delenv("NO_COLOR", raising=False)
    assert R.use_color(Tty()) and not R.use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not R.use_color(Tty())


def test_sigint_midway_leaves_valid_results_with_the_finished_points(tmp_path):
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "mlpbench", "bench", "--backends", "numpy", "--batch", "1,2,4,8,16,32,64,128",
           "--hidden", "4,8,16,32,64", "--dtype", "float64", "--no-lab", "--no-plots", "--quiet",
           "--repeat", "5", "--min-time", "0.02", "--out", str(out)]
    # Ctrl-C as in a terminal: a job started in the background by a non-interactive shell inherits SIGINT
    # ignored, and Python then never raises KeyboardInterrupt; the child gets the default disposition back
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    path = out / "results.json"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if path.exists() and len(json.loads(path.read_text())["points"]) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no point was written within 60 s")
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)  # about 1 s here; a loaded CI machine's fsyncs are slow
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stderr
    doc = R.load(path)
    assert doc["status"] == "interrupted"
    assert 2 <= len(doc["points"]) < 40
    assert "interrupted" in stderr and "finished points kept" in stderr
    with open(out / "results.csv") as f:
        assert len(list(csv.DictReader(f))) == len(doc["points"])
    assert not [p for p in os.listdir(out) if p.endswith(".tmp")]


def test_the_lab_preset_times_the_lab_workload_over_the_shipped_backends():
    from mlpbench.cli.bench import default_specs

    assert [c.label for c in cases.sweep("lab")] == ["lab-and f64 2-4-1 x5000"]
    assert [s.label for s in default_specs(cases.get_preset("lab"))] == ["numpy", "numba[loop]", "jax", "torch"]
    assert [c.n_samples for c in cases.sweep("lab", batch=[8], hidden=[4], labs=())] == [8]  # a grid when asked


def test_a_point_where_the_baseline_fails_is_reported_for_every_backend(fakes, tmp_path, capsys):
    out = tmp_path / "res"
    assert main(["bench", "--backends", "exploding,numpy", "--baseline", "exploding", "--batch", "2,16",
                 "--hidden", "3", "--no-lab", "--min-time", "0", "--max-time", "0.1", "--quiet", "--no-plots",
                 "--out", str(out)]) == 1
    doc = R.load(out / "results.json")
    assert {(p["backend"], p["n_samples"]) for p in doc["points"]} == {("exploding", 2), ("numpy", 2)}
    errors = {(e["backend"], e["case"]): e["error"] for e in doc["errors"]}
    assert set(errors) == {("exploding", "step f64 N=16 32-3-1"), ("numpy", "step f64 N=16 32-3-1")}
    assert "out of device memory" in errors[("exploding", "step f64 N=16 32-3-1")]
    assert "baseline exploding failed" in errors[("numpy", "step f64 N=16 32-3-1")]


class Counting(NumpyBackend):
    """NumPy that counts the handles it prepares, per number of rows."""

    name = "counting"
    prepared = []

    def _prepare(self, params, X, y, lr, activation, grad_reduction):
        Counting.prepared.append(X.shape[0])
        return super()._prepare(params, X, y, lr, activation, grad_reduction)


@pytest.mark.parametrize("passes", [1, 3])
def test_passes_prepare_afresh_and_pool_each_point(tmp_path, passes):
    register_backend("counting", Counting)
    Counting.prepared = []
    try:
        grid = cases.sweep("quick", batch=[2, 8], hidden=[3], features=[4], dtypes=["float64"], ops=["step"],
                           labs=())
        backends, _ = ready(parse_specs("numpy,counting"))
        progress = []

        class Log:
            def update(self, label):
                progress.append(label)

            def advance(self, label=None):
                pass

            def close(self):
                pass

        doc = run_sweep(grid, backends, tmp_path, min_time=0.0, max_time=0.05, min_rounds=6, config={},
                        passes=passes, progress=Log())
    finally:
        unregister_backend("counting")
    assert doc["status"] == "complete" and doc["config"]["passes"] == passes
    points = doc["points"]
    assert sorted((p["case"], p["backend"]) for p in points) == sorted(
        (c.label, b) for c in grid for b in ("numpy", "counting"))  # one point each, however many passes
    assert sorted(Counting.prepared) == sorted([2, 8] * passes)  # a fresh handle in every pass
    assert len(progress) == passes * len(grid) and (passes == 1 or progress[-1].endswith(f"(pass {passes}/{passes})"))
    for p in points:  # each pass ran its share of the 6 rounds at least, all pooled in one point
        assert p["rounds"] == len(p["samples_s"]) >= passes * -(-6 // passes)
        if p["backend"] == "numpy":
            assert len(p["control"]["samples_s"]) == p["rounds"]
    with pytest.raises(ValueError, match="passes"):
        run_sweep(grid, backends, tmp_path / "x", min_time=0.0, max_time=0.05, config={}, passes=0)


@pytest.mark.parametrize("preset, argv, expected",
                         [("quick", [], 2), ("standard", [], 3), ("standard", ["--passes", "2"], 2)])
def test_the_passes_default_to_the_presets(monkeypatch, tmp_path, preset, argv, expected):
    """``standard`` sweeps its grid three times by default (its between-pass variance from 2 degrees of freedom,
    ``suite/cases.py``), the others twice; ``--passes`` overrides either."""
    import mlpbench.cli.bench as cli_bench

    seen = {}

    def fake_sweep(case_list, backends, out, **kw):
        seen.update(kw)
        raise SystemExit(0)

    monkeypatch.setattr(cli_bench, "run_sweep", fake_sweep)
    with pytest.raises(SystemExit):
        main(["bench", "--preset", preset, "--backends", "numpy", "--batch", "1", "--hidden", "4", "--no-lab",
              "--quiet", "--out", str(tmp_path / "r"), *argv])
    assert seen["passes"] == expected and cases.get_preset(preset).passes == (3 if preset == "standard" else 2)
