"""A results file always describes the run that wrote it; sizes that cannot fit are refused (or skipped) first."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.suite import sweep as benchmark
from mlpbench.core import memory
from mlpbench.suite import results as R
from mlpbench.cli.app import main
from mlpbench.core.memory import NotEnoughMemory

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["bench", "--backends", "numpy", "--batch", "1,2", "--hidden", "4", "--no-lab", "--quiet", "--no-plots",
         "--repeat", "3", "--min-time", "0"]


@pytest.fixture
def older_run(tmp_path):
    """An older, complete results.json with 3 points in the output folder."""
    out = tmp_path / "res"
    w = R.ResultsWriter(out, {"cpu": "old"}, {}, {"started": "long ago"})
    for n in range(3):
        w.add_point({k: 1 for k in R.REQUIRED_POINT_FIELDS} | {"backend": "numpy", "op": "step", "dtype": "float64",
                                                               "n_samples": n, "layer_sizes": [2, 4, 1]})
    w.finish("complete")
    return out


def test_ctrl_c_during_the_peak_measurement_never_reports_the_older_runs_points(older_run, monkeypatch, capsys):
    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(benchmark, "measure_peaks", interrupted)
    assert main([*SMALL, "--out", str(older_run)]) == 130
    err = capsys.readouterr().err
    assert "interrupted before the first point" in err and "kept" not in err
    doc = R.load(older_run / "results.json")
    assert doc["status"] == "interrupted" and doc["points"] == [] and doc["config"]["started"] != "long ago"
    assert (older_run / "results.csv").read_text().count("\n") == 1  # the header only


@pytest.mark.parametrize("exc, rc", [(OSError(28, "No space left on device", "/x"), 2), (MemoryError("big"), 2),
                                     (ValueError("bad"), 2)])
def test_an_error_outside_a_point_ends_as_failed(older_run, monkeypatch, capsys, exc, rc):
    def fail(case):
        raise exc

    monkeypatch.setattr(benchmark, "case_data", fail)
    assert main([*SMALL, "--out", str(older_run)]) == rc
    doc = R.load(older_run / "results.json")
    assert doc["status"] == "failed" and doc["error"].startswith(type(exc).__name__) and doc["points"] == []
    assert capsys.readouterr().err.count("\n") == 1


def test_a_bug_outside_a_point_ends_as_failed_and_keeps_its_traceback(older_run, monkeypatch):
    def bug(case):
        raise AttributeError("a bug")

    monkeypatch.setattr(benchmark, "case_data", bug)
    with pytest.raises(AttributeError):
        main([*SMALL, "--out", str(older_run)])
    doc = R.load(older_run / "results.json")
    assert doc["status"] == "failed" and "a bug" in doc["error"]


def test_sigterm_midway_ends_as_interrupted_with_this_runs_points(older_run):
    cmd = [sys.executable, "-m", "mlpbench", "bench", "--backends", "numpy", "--batch", "1,2,4,8,16,32,64,128",
           "--hidden", "4,8,16,32,64", "--dtype", "float64", "--no-lab", "--no-plots", "--quiet",
           "--repeat", "5", "--min-time", "0.02", "--out", str(older_run)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    path = older_run / "results.json"
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            doc = json.loads(path.read_text())
            if doc["config"].get("started") != "long ago" and len(doc["points"]) >= 2:
                break
            time.sleep(0.05)
        else:
            pytest.fail("no point was written within 60 s")
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, stderr
    doc = R.load(path)
    assert doc["status"] == "interrupted" and 2 <= len(doc["points"]) < 40
    assert all(p["n_samples"] in (1, 2, 4, 8, 16, 32, 64, 128) for p in doc["points"])
    assert "terminated" in stderr and "Traceback" not in stderr
    # the command started itself again with OpenBLAS's short spin (cli/app.respawn_with_short_spin), and the
    # run says so; a value set by whoever runs the tests stands
    assert doc["machine"]["env"]["OPENBLAS_THREAD_TIMEOUT"] == os.environ.get("OPENBLAS_THREAD_TIMEOUT", "23")


# ---------------------------------------------------------------- memory
def test_a_model_that_cannot_fit_is_refused_before_allocating():
    tracemalloc.start()
    try:
        for sizes in ([2, 10**9, 1], [10**6, 10**6, 1], [2, 4, 10**12]):
            with pytest.raises(NotEnoughMemory, match=r"needs about [\d.]+ [KMGTP]iB but [\d.]+ [KMGTP]?i?B"):
                MLP(sizes)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2**20
    assert issubclass(NotEnoughMemory, MemoryError)


@pytest.mark.parametrize("rows, sizes", [(2000, [2, 64, 1]), (50_000, [2, 8, 1]), (10, [2, 4000, 1])])
def test_a_fit_that_cannot_fit_is_refused_naming_the_estimate(monkeypatch, rows, sizes):
    model = MLP(sizes, seed=0)
    X = np.zeros((rows, 2))
    y = np.zeros((rows, 1))
    need = memory.fit_bytes(rows, sizes, "float64")
    monkeypatch.setattr(memory, "available_bytes", lambda: need // 2)
    before = model.params
    with pytest.raises(NotEnoughMemory, match=f"fitting {rows} rows on layer sizes"):
        model.fit(X, y, epochs=1)
    np.testing.assert_array_equal(model.params[0][0], before[0][0])
    monkeypatch.setattr(memory, "available_bytes", lambda: need * 2)
    model.fit(X, y, epochs=1)  # fits when the memory is there


def test_the_estimate_covers_what_a_fit_allocates():
    """The estimate is at least what tracemalloc sees NumPy allocate during a real fit."""
    for rows, sizes in ((3000, [8, 128, 1]), (200, [4, 256, 64, 1])):
        X, y = datasets.load("blobs", n_samples=rows, n_features=sizes[0])
        model = MLP(sizes, seed=0)
        tracemalloc.start()
        try:
            model.fit(X, y, epochs=2)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert memory.fit_bytes(rows, sizes, "float64") >= peak


def test_bench_skips_a_point_that_cannot_fit_and_carries_on(tmp_path, monkeypatch, capsys):
    big = memory.fit_bytes(100_000, [32, 512, 1], "float64")
    monkeypatch.setattr(memory, "available_bytes", lambda: big // 4)
    rc = main(["bench", "--backends", "numpy", "--batch", "1,100000", "--hidden", "512", "--no-lab", "--quiet",
               "--no-plots", "--repeat", "3", "--min-time", "0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 0
    doc = R.load(tmp_path / "results.json")
    assert doc["status"] == "complete" and [p["n_samples"] for p in doc["points"]] == [1]
    (skip,) = [s for s in doc["skipped"] if "case" in s]
    assert "N=100000" in skip["case"] and "needs about" in skip["reason"] and "available" in skip["reason"]
    assert "skipped step f64 N=100000" in err and "needs about" in err


def test_bench_where_no_point_fits_ends_complete_without_plot_noise(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(memory, "available_bytes", lambda: 1)
    rc = main(["bench", "--backends", "numpy", "--batch", "1,8", "--hidden", "4,8", "--no-lab", "--quiet",
               "--repeat", "3", "--min-time", "0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    doc = R.load(tmp_path / "results.json")
    assert rc == 0 and doc["status"] == "complete" and doc["points"] == []
    assert len([s for s in doc["skipped"] if "case" in s]) == 4
    assert err.count("skipped step") == 4 and "Warning" not in err
