"""The benchmark suite: cases, timing helpers, the sweep's JSON/CSV/PNG output, --compare, and SIGINT."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from mlpbench import cases, perf
from mlpbench import results as R
from mlpbench.backends import BackendSpec, parse_specs, ready, register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.progress import Progress
from mlpbench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ---------------------------------------------------------------- cases
def test_presets_feed_one_grid_with_the_lab_in_each():
    assert set(cases.PRESETS) >= {"quick", "standard", "full", "gpu"}
    std = cases.sweep("standard")
    grid = {(c.n_samples, c.hidden, c.features, c.dtype) for c in std if c.op == "step"}
    assert grid == {(n, h, 32, dt) for n in (1, 64, 1024, 16384) for h in (4, 64, 512, 2048)
                    for dt in ("float64", "float32")}
    for name in cases.PRESETS:
        labs = [c for c in cases.sweep(name) if c.dataset == "and"]
        assert labs and all(c.op == "train" and c.epochs == 5000 and c.layer_sizes == (2, 4, 1) for c in labs)
        assert cases.parity_cases(name)
    gpu = cases.sweep("gpu")
    assert any(c.n_samples == 65536 and c.layer_sizes == (1024, 4096, 1) and c.dtype == "float32" for c in gpu)


def test_sweep_overrides_and_rejects_bad_axes():
    got = cases.sweep("quick", batch=[8], hidden=[3, 5], features=[7], dtypes=["float32"], ops=["forward"])
    assert [(c.op, c.n_samples, c.layer_sizes, c.dtype) for c in got] == [
        ("forward", 8, (7, 3, 1), "float32"), ("forward", 8, (7, 5, 1), "float32")]
    assert [c.dataset for c in cases.sweep("quick", batch=[8], hidden=[3], ops=["train"])] == [None, "and"]
    with pytest.raises(ValueError, match="op"):
        cases.sweep("quick", ops=["fly"])
    with pytest.raises(ValueError, match="batch"):
        cases.sweep("quick", batch=[0])
    with pytest.raises(ValueError, match="preset"):
        cases.sweep("nope")
    X, y = cases.make_data(5, (3, 4, 2), "float32", seed=1)
    assert X.shape == (5, 3) and y.shape == (5, 2) and X.dtype == np.float32 and set(np.unique(y)) <= {0.0, 1.0}


# ---------------------------------------------------------------- timing
def test_timing_statistics_and_the_noisy_flag():
    t = perf.Timing.from_times([1.0, 1.0, 1.0, 1.0, 2.0])
    assert t.median == 1.0 and t.iqr == 0.0 and not t.noisy and t.repeats == 5
    t = perf.Timing.from_times([1.0, 1.2, 1.5, 1.8, 2.0])
    assert t.median == 1.5 and t.iqr == pytest.approx(0.6) and t.noisy
    with pytest.raises(ValueError):
        perf.Timing.from_times([])


def test_time_callable_excludes_warmup_batches_calls_and_synchronizes():
    calls, syncs = [], []
    t = perf.time_callable(lambda: calls.append(1), sync=lambda: syncs.append(1), warmup=2, repeat=4, min_time=1e-3)
    assert t.repeats == 4 and t.number >= 1
    # 2 warm-up calls + 1 calibration call + the timed ones (the calibration one counts when number == 1)
    timed = 4 * t.number - (1 if t.number == 1 else 0)
    assert len(calls) == 2 + 1 + timed
    assert len(syncs) == 2 + 1 + (3 if t.number == 1 else 4)
    assert t.median > 0 and t.warmup_s >= 0


@pytest.mark.parametrize("op", ["forward", "backward", "step", "train"])
def test_time_step_times_every_op(op):
    t = perf.time_step(NumpyBackend(), [8, 16, 1], 32, "float32", op=op, repeat=3, min_time=0.0, epochs=3)
    assert t.repeats == 3 and t.median > 0 and t.warmup_s > 0


def test_flop_and_byte_counts():
    assert perf.flops("forward", 10, [2, 4, 1]) == 2 * 10 * (8 + 4)
    assert perf.flops("train", 10, [2, 4, 1], epochs=3) == 3 * perf.flops_step(10, [2, 4, 1])
    assert perf.bytes_moved("forward", 10, [2, 4, 1], "float32") == 4 * (10 * 7 + 17)
    with pytest.raises(ValueError):
        perf.flops("fly", 1, [1, 1])


def test_peak_measurements_are_positive_and_cached():
    a = perf.measure_peak("float64")
    assert a > 0 and perf.measure_peak("float64") is a
    assert perf.measure_memcpy() > 0


class SimDevice(NumpyBackend):
    name = "sim"
    device = "sim:0"


def test_a_non_cpu_device_gets_its_own_matmul_peak_and_transfer_rates():
    be = SimDevice()
    assert perf.measure_device_peak(be, "float32", start=64, limit=128) > 0
    rates = perf.measure_transfer(be, nbytes=2**20)
    assert rates["h2d_GBps"] > 0 and rates["d2h_GBps"] > 0
    assert perf.measure_device_peak(NumpyBackend(), "float64") == perf.measure_peak("float64")


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
def test_bench_writes_table_json_csv_and_plots(fakes, tmp_path, capsys):
    out = tmp_path / "res"
    code = main(["bench", "--backends", "fake[step],absent,exploding", "--batch", "2,16", "--hidden", "3,8",
                 "--features", "4", "--dtype", "float32", "--repeat", "3", "--min-time", "0", "--quiet",
                 "--out", str(out)])
    text = capsys.readouterr()
    assert code == 1  # the exploding backend's errors are reported in the exit code, not raised
    assert "vs numpy" in text.out and "lab-and f32" in text.out and "skipping absent" in text.err
    doc = json.loads((out / "results.json").read_text())
    assert R.validate(doc) == [] and doc["status"] == "complete"
    assert {k for k in ("schema", "machine", "peak", "config", "points")} <= set(doc)
    assert doc["machine"]["cpu"] and doc["machine"]["versions"]["numpy"] == np.__version__
    assert doc["machine"]["threads_available"] >= 1 and "blas" in doc["machine"]
    assert doc["peak"]["cpu"]["gflops"]["float32"] > 0 and doc["peak"]["cpu"]["memcpy_GBps"] > 0
    points = doc["points"]
    assert {p["backend"] for p in points} == {"numpy", "fake[step]", "exploding"}
    for p in points:
        assert p["median_s"] > 0 and p["iqr_s"] >= 0 and isinstance(p["noisy"], bool) and p["warmup_s"] > 0
        assert p["gflops"] > 0 and p["pct_peak"] > 0 and p["speedup_vs_numpy"] > 0 and p["repeats"] >= 1
        assert p["gflops"] == pytest.approx(p["flops"] / p["median_s"] / 1e9)
    assert all(p["speedup_vs_numpy"] == 1.0 for p in points if p["backend"] == "numpy")
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
    for name in ("time_vs_batch", "time_vs_hidden", "speedup_heatmap", "roofline"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _doc(times, noisy=False):
    points = [{"backend": "numpy", "op": "step", "dtype": "float64", "n_samples": n, "layer_sizes": [4, 8, 1],
               "case": f"step N={n}", "median_s": t, "iqr_s": 0.0, "noisy": noisy, "warmup_s": 0.1, "gflops": 1.0,
               "pct_peak": 1.0, "speedup_vs_numpy": 1.0, "repeats": 5} for n, t in times.items()]
    return {"schema": R.SCHEMA, "machine": {"cpu": "x"}, "peak": {}, "config": {}, "points": points}


def test_compare_flags_regressions_beyond_the_threshold(tmp_path, capsys):
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_doc({1: 1.0, 2: 1.0, 3: 1.0})))
    new.write_text(json.dumps(_doc({1: 1.05, 2: 1.5, 3: 0.5, 4: 9.0})))
    rows = R.compare(R.load(old), R.load(new))
    assert [(r["ratio"], r["flag"]) for r in rows] == [(1.05, ""), (1.5, "regression"), (0.5, "faster")]
    assert main(["bench", "--compare", str(old), str(new)]) == 0
    assert "REGRESSION" in capsys.readouterr().out
    assert main(["bench", "--compare", str(old), str(new), "--fail-on-regression"]) == 1
    assert main(["bench", "--compare", str(old), str(new), "--fail-on-regression", "--threshold", "0.6"]) == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main(["bench", "--compare", str(old), str(bad)]) == 2
    assert "not an mlpbench results file" in capsys.readouterr().err


def test_sigint_midway_leaves_valid_results_with_the_finished_points(tmp_path):
    out = tmp_path / "res"
    cmd = [sys.executable, "-m", "mlpbench", "bench", "--backends", "numpy", "--batch", "1,2,4,8,16,32,64,128",
           "--hidden", "4,8,16,32,64", "--dtype", "float64", "--no-lab", "--no-plots", "--quiet",
           "--repeat", "5", "--min-time", "0.02", "--out", str(out)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
        stdout, stderr = proc.communicate(timeout=30)
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
