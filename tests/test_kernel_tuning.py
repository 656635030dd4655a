"""The tuned kernel parameters: the threshold fit on synthetic measurements with known answers, the per-machine
file (``core/tuned.py``) and how the backend's rule defers to it; no kernel runs here
(``test_numba_batches_parallel.py`` runs the calibration and the kernels it chooses)."""

from __future__ import annotations

import json
import math
import warnings

import pytest

from mlpbench.backends.numba import machine_rules as rules
from mlpbench.core import tuned


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(rules, "_warned", set())
    monkeypatch.setattr(tuned, "_WARNED", set())
    return tmp_path / "cache" / "tuned.json"


def _grid(wins):
    """Points (rows per thread, MACs, ratio) over a grid; ``wins(rows, macs)`` says where threads gain 30%."""
    return [(r, m, 0.7 if wins(r, m) else 1.3) for r in (4, 8, 16, 32, 64) for m in (2**16, 2**18, 2**20, 2**22)]


@pytest.mark.parametrize("r0,m0", [(16, 2**18), (32, 2**20), (4, 2**16), (64, 2**22)])
def test_the_fit_recovers_the_thresholds_that_generated_the_measurements(r0, m0):
    rows, macs, lost = rules.fit_batch_thresholds(_grid(lambda r, m: r >= r0 and m >= m0))
    assert (rows, macs, lost) == (r0, m0, 0.0)


def test_the_fit_never_threads_where_threads_never_gain_and_ties_cost_nothing():
    rows, macs, lost = rules.fit_batch_thresholds(_grid(lambda r, m: False))
    assert rows == 128 and macs == 2**23 and lost == 0.0  # above every measured point: never
    ties = [(r, m, 1.0) for r, m, _ in _grid(lambda r, m: False)]
    assert rules.fit_batch_thresholds(ties)[:2] == (128, 2**23)  # no gain measured: no threads
    with pytest.raises(ValueError, match="points"):
        rules.fit_batch_thresholds([])


def test_the_fit_weighs_a_wrong_decision_by_the_time_it_loses():
    # one noisy point against the pattern: a 2% loss is cheaper to accept than a 30% gain given up
    pts = _grid(lambda r, m: r >= 16 and m >= 2**18) + [(16, 2**18, 1.02)]
    rows, macs, lost = rules.fit_batch_thresholds(pts)
    assert (rows, macs) == (16, 2**18) and lost == pytest.approx(math.log(1.02 / (1 - rules.THREAD_MIN_GAIN)))


def test_threads_must_gain_more_than_the_margin():
    gain = 1 - rules.THREAD_MIN_GAIN
    pts = _grid(lambda r, m: r >= 16 and m >= 2**18)
    small = [(r, m, q if r >= 32 else gain + 0.01) if q < 1 else (r, m, q) for r, m, q in pts]
    assert rules.fit_batch_thresholds(small)[:2] == (32, 2**18)  # 16 rows gain 4%: not enough
    enough = [(r, m, q if r >= 32 else gain - 0.01) if q < 1 else (r, m, q) for r, m, q in pts]
    assert rules.fit_batch_thresholds(enough)[:2] == (16, 2**18)


def test_tuned_thresholds_are_stored_per_machine_and_read_back(cache):
    key = rules.tuned_key()
    assert rules.batch_thresholds(8)[2] == "rule" and not cache.exists()
    value = {"float64": {"min_rows": 8, "min_macs": 1000}, "float32": {"min_rows": 16, "min_macs": 2000}}
    assert tuned.save(rules.TUNED_SECTION, key, value) == str(cache)
    tuned.save(rules.TUNED_SECTION, "another CPU|64 cpus|numba=0", {"float64": {"min_rows": 1, "min_macs": 0}})
    assert rules.batch_thresholds(8) == (8, 1000, "tuned") and rules.batch_thresholds(4) == (16, 2000, "tuned")
    assert rules.batch_thresholds(8, 64)[2] == "rule"  # an explicit vector width asks for the rule
    doc = json.loads(cache.read_text())
    assert doc["schema"] == tuned.SCHEMA and set(doc["machines"]) == {key, "another CPU|64 cpus|numba=0"}
    big = [64, 512, 10]
    assert rules.batch_threads(big, 16, 2, 8) == 2  # 8 rows per thread suffice here
    assert rules.batch_threads(big, 15, 2, 8) == 1
    with rules.forced_batch_thresholds(1, 0):
        assert rules.batch_thresholds(8) == (1, 0, "forced") and rules.batch_threads(big, 2, 2, 8) == 2
    assert rules.batch_thresholds(8)[2] == "tuned"
    assert tuned.clear() and not cache.exists() and rules.batch_thresholds(8)[2] == "rule"
    assert not tuned.clear()


@pytest.mark.parametrize("text", ["{not json", json.dumps({"schema": "other/1", "machines": {}}), "[]"])
def test_an_unusable_file_warns_once_and_the_rule_decides(cache, text):
    cache.parent.mkdir(parents=True)
    cache.write_text(text)
    with pytest.warns(RuntimeWarning, match="tuned kernel parameters"):
        assert rules.batch_thresholds(8)[2] == "rule"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert rules.batch_thresholds(8)[2] == "rule"  # once
    tuned.save(rules.TUNED_SECTION, rules.tuned_key(), {"float64": {"min_rows": 2, "min_macs": 3}})
    assert rules.batch_thresholds(8) == (2, 3, "tuned")  # tune writes a good file over it


@pytest.mark.parametrize("entry", [{"min_rows": 0, "min_macs": 5}, {"min_rows": 2.5, "min_macs": 5},
                                   {"min_rows": True, "min_macs": 5}, {"min_macs": 5}, "8"])
def test_a_malformed_value_warns_and_the_rule_decides(cache, entry):
    tuned.save(rules.TUNED_SECTION, rules.tuned_key(), {"float64": entry})
    with pytest.warns(RuntimeWarning, match="not usable"):
        assert rules.batch_thresholds(8) == (rules.batch_min_rows(), rules.batch_min_macs(8), "rule")
    assert rules.batch_thresholds(4)[2] == "rule"  # float32 never tuned: the rule, silently


def test_calibration_takes_each_points_best_pass_and_warns_when_the_passes_disagree(monkeypatch):
    """A neighbour that held the other core during one pass made every threaded point slower in it: the
    point's ratio is its lowest pass, and the calibration says the machine was busy."""
    from mlpbench.auto import kernel_tuning
    from mlpbench.backends import availability
    from mlpbench.backends.cpu_threads import blas_controller

    if not availability("numba")[0] or blas_controller() is None:
        pytest.skip("numba or threadpoolctl is not installed: nothing is calibrated here")
    calls = []

    def fake(sizes, nb, dtype, threads, rows, rounds):
        calls.append((dtype, sizes[1], nb))
        truth = 0.7 if nb // threads >= 32 else 1.2
        return truth * (2.0 if busy and len(calls) <= 4 else 1.0)  # the first pass's first points: busy

    monkeypatch.setattr(kernel_tuning, "measure_point", fake)
    for busy, extra in ((False, 0), (True, 0), (True, 1)):
        calls.clear()
        monkeypatch.setattr(kernel_tuning, "EXTRA_PASSES", extra)
        value, note = kernel_tuning.calibrate_batches(dtypes=("float64",), widths=(64, 512), batches=(32, 64, 128),
                                                      passes=2, threads=2)
        assert len(calls) == 12 + 4 * extra and value["passes"] == 2  # an extra pass: the 4 points in dispute
        pts = value["float64"]["points"]
        assert [p[2] for p in pts] == [1.2, 0.7, 0.7] * 2 and value["float64"]["min_rows"] == 32
        assert (note == "") == (not busy or extra > 0) and ("busy" in note) == (busy and not extra)
        assert not note or note.startswith("the passes disagreed by up to 2.00x at 4 of 6 points")
        first = {0: [[1.2, 1.2], [0.7, 0.7]], 1: [[2.4, 1.2], [1.4, 0.7]], 2: [[2.4, 1.2, 1.2], [1.4, 0.7, 0.7]]}
        assert [p[3] for p in pts][:2] == first[busy + extra]


def test_tune_show_says_an_unusable_tuned_file_in_one_line_and_shows_the_rule(cache, capsys):
    from mlpbench.backends import availability
    from mlpbench.cli import main

    if not availability("numba")[0]:
        pytest.skip("numba is not installed: tune --show has no kernel thresholds to show")
    cache.parent.mkdir(parents=True)
    cache.write_text("{not json")
    assert main(["tune", "--show"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and out.count("warning:") == 1 and "tuned kernel parameters" in out
    assert f"float64: {rules.batch_min_rows()} rows per thread" in out and "(rule)" in out
