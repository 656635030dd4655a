"""The benchmark suite's cases (presets, sweeps) and what it times: op subjects, FLOP and byte counts, peaks."""

import numpy as np
import pytest

from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.measure import engine as measure, peaks as perf
from mlpbench.suite import cases, subjects


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


# ---------------------------------------------------------------- what is timed
@pytest.mark.parametrize("op", ["forward", "backward", "step", "train"])
def test_op_subject_times_every_op_on_its_own_arrays(op):
    case = cases.Case(op, 32, (8, 16, 1), "float32", epochs=3)
    X, y = cases.case_data(case)
    X0 = X.copy()
    be = NumpyBackend()
    subject, warmup_s = subjects.op_subject("numpy", be, case, X, y)
    other, _ = subjects.op_subject("numpy copy", be, case, X, y, backend_warmup=False)
    assert subject.label == "numpy" and subject.sync == be.synchronize and warmup_s > 0
    out = subject.fn()
    if op == "train":
        assert out.shape == (3,) and np.all(np.isfinite(out))
    if op in ("step", "train"):
        assert not np.array_equal(subject.fn(), out)  # the prepared handle trains its params: new ones each call
        assert np.array_equal(other.fn(), out)  # the independent copy starts from the seeded params, untouched
    np.testing.assert_array_equal(X, X0)  # nothing the caller gave is modified
    with pytest.raises(ValueError, match="op must be one of"):
        subjects.op_subject("numpy", be, cases.Case("fly", 4, (2, 3, 1), "float64"))


def test_synced_calls_then_synchronizes():
    events = []
    s = measure.Subject("x", lambda: events.append("call") or 7, sync=lambda: events.append("sync"))
    assert subjects.synced(s)() == 7 and events == ["call", "sync"]


def test_flop_and_byte_counts():
    assert perf.flops("forward", 10, [2, 4, 1]) == 2 * 10 * (8 + 4)
    assert perf.flops("train", 10, [2, 4, 1], epochs=3) == 3 * perf.flops_step(10, [2, 4, 1])
    assert perf.bytes_moved("forward", 10, [2, 4, 1], "float32") == 4 * (10 * 7 + 17)
    with pytest.raises(ValueError):
        perf.flops("fly", 1, [1, 1])


def test_peaks_are_sampled_anew_each_time_never_cached():
    peaks = perf.Peaks([("numpy", NumpyBackend())], ["float64"], cpu_limit=256, memcpy_bytes=2 ** 20)
    peaks.sample()
    peaks.sample()
    f64 = peaks.gflops["cpu"]["float64"]
    assert len(f64.samples) == 2 and all(x > 0 for x in f64.samples)
    assert f64.samples[0] != f64.samples[1]  # two measurements, not one number returned twice
    assert peaks.best("cpu", "float64") == max(f64.samples) and len(peaks.rates["cpu"]["memcpy_GBps"].samples) == 2
    doc = peaks.to_dict()["cpu"]
    assert doc["gflops"]["float64"]["samples"] == f64.samples and doc["memcpy_GBps"]["best"] > 0
    assert isinstance(doc["gflops"]["float64"]["flagged"], bool) and doc["gflops"]["float64"]["spread"] >= 0
    peaks.sample(["float64"])  # between dtypes: the matmul peak only
    assert len(f64.samples) == 3 and len(peaks.rates["cpu"]["memcpy_GBps"].samples) == 2
    assert perf.peak_best({"best": 3.0}) == 3.0 and perf.peak_best(5.0) == 5.0  # /2 and /1 entries


class SimDevice(NumpyBackend):
    name = "sim"
    device = "sim:0"


def test_a_non_cpu_device_gets_its_own_matmul_peak_and_transfer_rates():
    peaks = perf.Peaks([("sim", SimDevice()), ("numpy", NumpyBackend())], ["float32"], cpu_limit=128,
                       device_limit=128, memcpy_bytes=2 ** 20)
    peaks.sample()
    doc = peaks.to_dict()
    assert set(doc) == {"cpu", "sim:0"} and doc["sim:0"]["via"] == "sim"
    assert doc["sim:0"]["gflops"]["float32"]["best"] > 0
    assert doc["sim:0"]["h2d_GBps"]["best"] > 0 and doc["sim:0"]["d2h_GBps"]["best"] > 0
    assert peaks.best("sim:0", "float32") == doc["sim:0"]["gflops"]["float32"]["best"]
    assert peaks.best("elsewhere", "float32") == peaks.best("cpu", "float32")  # an unmeasured device: the CPU's
