"""Mini-batch SGD on several threads (``kernels/numba/batches_parallel.py``) and when the backend uses it.

The threaded kernel is held to the single-thread kernel (``batches.train_epochs``)
for 1, 2 and 3 threads (a thread count the machine need not have: ``prange``
runs the parts on the threads it has), gathered and in-order batches, partial
batches, both heads and dtypes, at ``helpers.TOL``; through the backend it is
held to the NumPy reference. Skipped as a whole where numba is missing.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from mlpbench.backends import TrainingDiverged, get_backend
from mlpbench.kernels.reference import ACT_CODES, bce_eps, sigmoid_floor
from mlpbench.core.params import flat_copy, flat_layout, init_params

from helpers import assert_close, flat, labelled


@pytest.fixture(scope="module", autouse=True)
def _numba_available():
    require_backend("numba")


def kernels():
    from mlpbench.kernels.numba import batches as numba_batches, batches_parallel as numba_batches_parallel

    return numba_batches, numba_batches_parallel


def run_kernel(threads, sizes, dtype, output, nb, gather, activation="tanh", lr=0.2, epochs=3, n=45, X=None):
    """``threads`` 0: the single-thread kernel. Returns (theta, history, epochs recorded, X, y)."""
    serial, parallel = kernels()
    from mlpbench.backends.numba.jit import _touch_blas

    dt = np.dtype(dtype)
    params = init_params(sizes, 1, dtype)
    X0, y = labelled(n, sizes, dtype, output, seed=2)
    X = X0 if X is None else X
    woff, boff, n_params = flat_layout(sizes)
    theta, _ = flat_copy(params, dt)
    orders = np.array([np.random.default_rng(e).permutation(n) for e in range(epochs)], dtype=np.int64)
    history = np.full(epochs, -1.0)
    head = (theta, np.array(sizes, dtype=np.int64), woff, boff, X, y, orders, gather, np.int64(nb))
    tail = (dt.type(lr), ACT_CODES[activation], True, dt.type(sigmoid_floor(dt)), dt.type(bce_eps(dt)),
            output == "softmax", history)
    if threads == 0:
        got = serial.train_epochs(*head, np.empty(serial.workspace_size(sizes, nb), dt), np.empty(n_params, dt),
                                  *tail)
    else:
        _touch_blas(dt)
        got = parallel.train_epochs_parallel(*head, np.empty(parallel.workspace_size(sizes, nb), dt),
                                             np.empty(n_params, dt), np.full((threads, n_params), np.nan, dt),
                                             *tail)
    return theta, history, got, X, y


CASES = [  # sizes, output, rows per batch (45 rows: 8 and 10 leave partial batches of 5)
    ([6, 9, 4], "softmax", 8),
    ([6, 12, 7, 4], "softmax", 10),
    ([6, 9, 1], "sigmoid", 8),
    ([6, 5, 8, 3], "sigmoid", 45),  # one batch of every row
    ([6, 4], "softmax", 8),  # one layer
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes,output,nb", CASES)
@pytest.mark.parametrize("gather", [True, False])
def test_the_threaded_kernel_is_the_single_thread_kernel(dtype, sizes, output, nb, gather):
    want, h_want, got_want, X, y = run_kernel(0, sizes, dtype, output, nb, gather)
    x_copy, y_copy = X.copy(), y.copy()
    assert got_want == 3 and np.isfinite(h_want).all()
    for threads in (1, 2, 3):
        theta, h, got, X2, y2 = run_kernel(threads, sizes, dtype, output, nb, gather)
        assert got == 3
        assert_close(h, h_want, dtype, f"history, {threads} threads")
        assert_close(theta, want, dtype, f"params, {threads} threads")
        np.testing.assert_array_equal(X2, x_copy)
        np.testing.assert_array_equal(y2, y_copy)
        if threads == 2:  # the same thread count gives the same numbers, whatever the scheduling
            again, h_again, _, _, _ = run_kernel(2, sizes, dtype, output, nb, gather)
            np.testing.assert_array_equal(again, theta)
            np.testing.assert_array_equal(h_again, h)


def test_more_threads_than_rows_or_weight_rows_leave_the_extra_threads_idle():
    """5 threads on batches of 3 rows (the last of 1) and a first layer of 2 inputs: some parts are empty."""
    want, h_want, _, _, _ = run_kernel(0, [2, 3, 3], "float64", "softmax", 3, True, n=10)
    theta, h, got, _, _ = run_kernel(5, [2, 3, 3], "float64", "softmax", 3, True, n=10)
    assert got == 3
    assert_close(h, h_want, "float64", "history")
    assert_close(theta, want, "float64", "params")


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_a_non_finite_loss_stops_before_its_update(output):
    sizes = [6, 9, 4] if output == "softmax" else [6, 9, 1]
    X, _ = labelled(45, sizes, "float64", output, seed=2)
    X = X.copy()
    order = np.random.default_rng(0).permutation(45)  # epoch 0's order: its second batch holds an inf
    X[order[8 + 3]] = np.inf
    before, _ = flat_copy(init_params(sizes, 1, "float64"), np.dtype("float64"))
    for threads in (0, 2):
        theta, h, got, _, _ = run_kernel(threads, sizes, "float64", output, 8, True, X=X)
        assert got == 1 and not np.isfinite(h[0]) and (h[1:] == -1.0).all()
        assert np.isfinite(theta).all() and not np.array_equal(theta, before)  # the first batch's update only
        if threads == 0:
            serial_theta = theta
    assert_close(theta, serial_theta, "float64", "params at the stop")


def test_when_the_backend_splits_a_batch_over_threads():
    """``machine_rules.batch_threads`` on an AVX-512 core (64-byte vectors) and on an AVX2 one (32 bytes)."""
    from mlpbench.backends.numba.machine_rules import batch_min_macs, batch_min_rows, batch_threads

    big = [64, 512, 10]  # 37,888 multiply-adds per row
    assert batch_min_rows(64) == 32 and batch_min_rows(32) == 16  # float64 vectors' worth, any dtype
    assert batch_min_macs(8, 64) == 2**18 and batch_min_macs(4, 64) == 2**19 and batch_min_macs(8, 32) == 2**17
    for itemsize in (8, 4):
        assert batch_threads(big, 64, 2, itemsize, 64) == 2 and batch_threads(big, 1024, 2, itemsize, 64) == 2
        assert batch_threads(big, 64, 1, itemsize, 64) == 1  # one thread: the single-thread kernel
        assert batch_threads(big, 63, 2, itemsize, 64) == 1  # too few rows per thread
        assert batch_threads(big, 32, 2, itemsize, 32) == 2  # AVX2: 16 rows per thread suffice
        assert batch_threads(big, 100, 8, itemsize, 64) == 100 // 32  # threads capped by rows
    small = [64, 16, 10]  # 1,184 per row
    for itemsize, vbytes in ((8, 64), (4, 64), (8, 32)):
        rows = batch_min_macs(itemsize, vbytes) // 1184
        assert batch_threads(small, rows, 2, itemsize, vbytes) == 1
        assert batch_threads(small, rows + 1, 2, itemsize, vbytes) == 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_backend_runs_big_batches_on_threads_at_the_references_numbers(dtype):
    import numba

    threads = min(2, numba.config.NUMBA_NUM_THREADS)
    be, ref = type(get_backend("numba"))(threads=threads), get_backend("numpy")
    sizes = [64, 512, 10]
    params, X, y = init_params(sizes, 1, dtype), *labelled(200, sizes, dtype, "softmax", seed=3)
    kw = dict(lr=0.05, epochs=2, activation="relu", grad_reduction="mean", output="softmax", batch_size=64,
              shuffle_seed=7)
    p, q = be.params_from_numpy(params), ref.params_from_numpy(params)
    seen = []
    assert_close(be.train(p, X, y, callback=lambda e, loss: seen.append(e), **kw), ref.train(q, X, y, **kw),
                 dtype, "history")
    assert_close(flat(p), flat(q), dtype, "params")
    assert seen == [1, 2]
    from mlpbench.backends.cpu_threads import blas_controller

    pinned = blas_controller() is not None  # threadpoolctl and SciPy (numba's extra) pin BLAS to 1 thread
    threaded = threads > 1 and pinned  # no Numba threads where BLAS cannot be pinned (no oversubscription)
    assert be.last_run["kernel"] == ("train_epochs_parallel" if threaded else "train_epochs")
    assert be.last_run["numba_threads"] == (threads if threaded else 1)
    assert be.last_run["blas_threads"] == (1 if pinned else None)
    one = type(be)(threads=1)
    one.train(one.params_from_numpy(params), X, y, **kw)
    assert one.last_run["kernel"] == "train_epochs" and one.last_run["numba_threads"] == 1
    before = numba.get_num_threads()  # a user's numba.set_num_threads(1) keeps the default backend on one core
    numba.set_num_threads(1)
    try:
        default = get_backend("numba")
        default.train(default.params_from_numpy(params), X, y, **kw)
    finally:
        numba.set_num_threads(before)
    assert default.last_run["kernel"] == "train_epochs"


def test_divergence_on_threads_raises_with_the_history_up_to_it():
    import numba

    be = type(get_backend("numba"))(threads=min(2, numba.config.NUMBA_NUM_THREADS))
    sizes = [64, 512, 10]
    params, X, y = init_params(sizes, 1), *labelled(128, sizes, "float64", "softmax", seed=3)
    with pytest.raises(TrainingDiverged) as info:
        be.train(be.params_from_numpy(params), X * 1e3, y, lr=1e300, epochs=4, output="softmax", batch_size=64,
                 grad_reduction="sum")
    err = info.value
    assert 1 <= err.epoch <= 4 and len(err.history) == err.epoch and not np.isfinite(err.history[-1])


# ---------------------------------------------------------------- checks run by test_numba_environments.py
def threaded_kernel_is_the_single_thread_kernel():
    """As plain Python (``NUMBA_DISABLE_JIT``), and with ``np.dot`` on a copy of the strided columns
    instead of ``numba_xxgemm`` (``MLPBENCH_NUMBA_PUBLIC``): the single-thread kernel's numbers."""
    for output, sizes in (("softmax", [6, 9, 4]), ("sigmoid", [6, 5, 1])):
        for gather in (True, False):
            want, h_want, _, _, _ = run_kernel(0, sizes, "float64", output, 8, gather)
            theta, h, got, _, _ = run_kernel(2, sizes, "float64", output, 8, gather)
            assert got == 3
            assert_close(h, h_want, "float64", "history")
            assert_close(theta, want, "float64", "params")


def test_tune_measures_the_kernels_and_the_backend_follows_what_it_stored(tmp_path, monkeypatch, capsys):
    """``mlpbench tune``'s calibration on a small grid, for real: it stores per-dtype thresholds that
    ``tune --show`` reports and the backend's choice of kernel follows; ``tune --clear`` brings the rule back."""
    import numba

    from mlpbench.auto import kernel_tuning
    from mlpbench.backends.cpu_threads import blas_controller
    from mlpbench.backends.numba import machine_rules as rules
    from mlpbench.cli import main

    if blas_controller() is None or numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("the threaded kernel never runs here (BLAS cannot be pinned, or Numba has one thread)")
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path))
    value, why = kernel_tuning.calibrate_batches(dtypes=("float64",), widths=(16,), batches=(8, 64), rows=256,
                                                rounds=2, threads=2)
    assert value["threads"] == 2 and value["passes"] == kernel_tuning.PASSES  # why: "" or the busy note (tiny samples)
    points = value["float64"]["points"]
    assert [p[:2] for p in points] == [[4, 8 * 1184], [32, 64 * 1184]]
    assert all(p[2] == min(p[3]) > 0 and kernel_tuning.PASSES <= len(p[3]) <= kernel_tuning.PASSES + kernel_tuning.EXTRA_PASSES
               for p in points) and "float32" not in value
    kernel_tuning.store(value)
    assert rules.batch_thresholds(8)[:2] == (value["float64"]["min_rows"], value["float64"]["min_macs"])
    assert rules.batch_thresholds(4)[2] == "rule"  # float32 not measured

    sizes, kw = [64, 512, 10], dict(lr=0.05, epochs=1, activation="relu", grad_reduction="mean",
                                    output="softmax", batch_size=64, shuffle_seed=7)
    params, X, y = init_params(sizes, 1, "float64"), *labelled(200, sizes, "float64", "softmax", seed=3)

    def kernel(min_rows, min_macs):
        kernel_tuning.store({"float64": {"min_rows": min_rows, "min_macs": min_macs}})
        be = type(get_backend("numba"))(threads=2)
        be.train(be.params_from_numpy(params), X, y, **kw)
        return be.last_run["kernel"]

    assert kernel(10**6, 10**12) == "train_epochs"  # measured: threads never gain here
    assert kernel(1, 0) == "train_epochs_parallel"
    assert main(["tune", "--show"]) == 0
    out = capsys.readouterr().out
    assert "float64: 1 rows per thread and 0 multiply-adds per batch (tuned;" in out
    assert f"float32: {rules.batch_min_rows()} rows per thread and {rules.batch_min_macs(4):.3g} multiply-adds per " \
        "batch (rule)" in out
    assert main(["tune", "--clear"]) == 0 and f"cleared {tmp_path / 'tuned.json'}" in capsys.readouterr().out
    assert rules.batch_thresholds(8)[2] == "rule"


def test_tune_measures_the_kernels_before_the_shapes_and_keeps_a_dtype_it_did_not_measure(tmp_path, monkeypatch,
                                                                                           capsys):
    from mlpbench.auto import choose as auto, kernel_tuning
    from mlpbench.backends.numba import machine_rules as rules
    from mlpbench.cli import main

    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path))
    order = []

    def fake_calibration(dtypes):
        order.append("kernels")
        return {"threads": 2, **{dt: {"min_rows": 3, "min_macs": 4, "points": []} for dt in dtypes}}, ""

    monkeypatch.setattr(kernel_tuning, "calibrate_batches", fake_calibration)
    monkeypatch.setattr(auto, "choose", lambda *a, **k: order.append("shapes") or pytest.fail("stop here"))
    kernel_tuning.store({"float32": {"min_rows": 5, "min_macs": 6}})
    with pytest.raises(pytest.fail.Exception):
        main(["tune", "--preset", "lab", "--dtype", "float64"])
    assert order == ["kernels", "shapes"]
    assert "float64: 3 rows per thread and 4 multiply-adds per batch (tuned;" in capsys.readouterr().out
    assert rules.batch_thresholds(8)[:2] == (3, 4) and rules.batch_thresholds(4)[:2] == (5, 6)
