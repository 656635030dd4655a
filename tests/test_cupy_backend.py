"""The CuPy backend.

Three layers of checks:

* without a GPU (always): availability says why not and never raises, the
  registry and ``get_backend`` report it with the install hint, options are
  validated before CuPy is touched, the strategy rule, the cuBLAS argument
  mapping (against a column-major GEMM written out in NumPy);
* the whole backend on the CPU (always, needs g++): CuPy replaced by
  ``FakeCupy`` (``fake_cupy.py``) — host arrays, the real CUDA sources run by the emulator of
  ``cuda_emulator.py``, column-major GEMM for cuBLAS, stream capture that
  records launches and forbids allocations and host synchronisation — against
  the NumPy backend, for every strategy;
* on a GPU (``gpu`` marker, the ``gpu`` fixture): parity, the labs, divergence,
  graph replay against the step path, no TF32 by default; the softmax head and
  mini-batches (their CPU runs are in ``test_cupy_minibatch.py``).
"""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.backends import BackendUnavailable, TrainingDiverged, available_backends, get_backend
from mlpbench.backends.cupy.backend import CupyBackend, choose_strategy
from mlpbench.kernels.cuda.cublas import gemm_args
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.kernels.cuda import sources as kc
from mlpbench.core.params import init_params
import fake_cupy
from fake_cupy import FakeStream, colmajor_gemm

TOL = {"float64": 1e-11, "float32": 1e-5}


def err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(n, sizes, dtype, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, sizes[0]).astype(dtype)
    y = (rng.rand(n, sizes[-1]) > 0.5).astype(dtype)
    return X, y


# ================================================================ no GPU needed
def test_availability_never_raises_and_gives_a_reason():
    ok, reason = CupyBackend.availability()
    assert isinstance(ok, bool) and isinstance(reason, str)
    assert ok or reason  # unavailable always says why
    if not ok:
        assert reason.startswith(("cupy is not installed", "cupy failed to import", "no usable CUDA GPU",
                                  "cuBLAS is unusable", "cuBLAS returned"))


def test_unavailable_backend_is_listed_and_refused_with_the_install_hint():
    ok, reason = CupyBackend.availability()
    if ok:
        pytest.skip("a usable GPU is present: the refusal path cannot be exercised here")
    row = next(r for r in available_backends() if r["name"] == "cupy")
    assert row["available"] is False and row["reason"] == reason
    with pytest.raises(BackendUnavailable, match=r'pip install "mlpbench\[gpu\]"'):
        get_backend("cupy")
    with pytest.raises(BackendUnavailable, match="cupy-cuda13x"):
        CupyBackend()


@pytest.mark.parametrize("kwargs,exc", [
    ({"strategy": "fast"}, ValueError),
    ({"strategy": 3}, TypeError),
    ({"device": -1}, ValueError),
    ({"device": "cuda:0"}, TypeError),
    ({"device": True}, TypeError),
    ({"allow_tf32": "yes"}, TypeError),
    ({"threads": 4}, TypeError),
])
def test_options_are_validated_before_cupy_is_touched(kwargs, exc):
    with pytest.raises(exc):
        CupyBackend(**kwargs)


def test_strategy_rule():
    assert choose_strategy(4, [2, 4, 1], "float64")[0] == "persistent"  # the lab: one launch
    assert choose_strategy(65536, [1024, 4096, 1], "float32")[0] == "graph"
    assert choose_strategy(4, [2, 4, 1], "float64", "graph")[0] == "graph"
    assert choose_strategy(4, [2, 4, 1], "float64", "auto", callback=True)[0] == "step"
    assert choose_strategy(4, [2, 4, 1], "float64", "persistent", callback=True)[0] == "step"
    with pytest.raises(ValueError, match="one thread block"):
        choose_strategy(65536, [1024, 4096, 1], "float32", "persistent")
    with pytest.raises(ValueError):
        choose_strategy(4, [2, 4, 1], "float64", "fastest")
    assert CupyBackend.strategy_applies("persistent", 4, [2, 4, 1], "float64")
    assert not CupyBackend.strategy_applies("persistent", 65536, [1024, 4096, 1], "float32")
    assert CupyBackend.strategy_applies("graph", 65536, [1024, 4096, 1], "float32")
    # float64 needs twice the shared memory: a net can fit in float32 only
    n, sizes = 800, [2, 4, 1]
    assert kc.persistent_plan(n, sizes, "float32").fits and not kc.persistent_plan(n, sizes, "float64").fits
    assert choose_strategy(n, sizes, "float32")[0] == "persistent"
    assert choose_strategy(n, sizes, "float64")[0] == "graph"


# ---------------------------------------------------------------- cuBLAS, column-major
@pytest.mark.parametrize("trans_a,trans_b", list(itertools.product([False, True], repeat=2)))
def test_gemm_args_drive_a_column_major_gemm_to_the_row_major_product(trans_a, trans_b, rng):
    m, k, n = 5, 3, 4
    A = np.ascontiguousarray(rng.randn(*((k, m) if trans_a else (m, k))))
    B = np.ascontiguousarray(rng.randn(*((n, k) if trans_b else (k, n))))
    C = np.full((m, n), np.nan)
    transa, transb, mm, nn, kk, lda, ldb, ldc = gemm_args(A.shape, B.shape, C.shape, trans_a, trans_b)
    colmajor_gemm(transa, transb, mm, nn, kk, 1.0, B.ctypes.data, lda, A.ctypes.data, ldb, 0.0, C.ctypes.data, ldc,
                  np.float64)
    want = (A.T if trans_a else A) @ (B.T if trans_b else B)
    np.testing.assert_allclose(C, want, rtol=1e-14)


def test_gemm_args_refuse_mismatched_shapes():
    with pytest.raises(ValueError):
        gemm_args((4, 3), (2, 5), (4, 5))
    with pytest.raises(ValueError):
        gemm_args((4, 3), (3, 5), (5, 4))


# ================================================================ the whole backend on the CPU (tests/fake_cupy.py)
@pytest.fixture
def emulated(monkeypatch):
    """CupyBackend running on FakeCupy: returns the fake GPU (its log of launches, captures, replays)."""
    return fake_cupy.install(monkeypatch)


CASES = [  # activation, grad_reduction, layer sizes, samples
    ("relu", "sum", [2, 4, 1], 4),
    ("tanh", "mean", [3, 6, 5, 2], 37),
    ("sigmoid", "sum", [4, 3, 1], 150),  # 3 row chunks in the column sums
    ("relu", "mean", [5, 2], 20),  # one layer: logistic regression
]


def _train_both(strategy, dtype, case, epochs=6, lr=0.1):
    act, red, sizes, n = case
    X, y = data(n, sizes, dtype)
    params = init_params(sizes, 1, dtype)
    ref_p = [(W.copy(), b.copy()) for W, b in params]
    want = NumpyBackend().train(ref_p, X, y, lr=lr, epochs=epochs, activation=act, grad_reduction=red)
    be = CupyBackend(strategy=strategy)
    bp = be.params_from_numpy(params)
    got = be.train(bp, be.asarray(X), be.asarray(y), lr=lr, epochs=epochs, activation=act, grad_reduction=red)
    return be, got, want, be.params_to_numpy(bp), ref_p


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{len(c[2]) - 1}layers-N{c[3]}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_emulated_train_matches_the_numpy_backend(emulated, strategy, dtype, case):
    be, got, want, params, ref_params = _train_both(strategy, dtype, case)
    assert be.last_run["strategy"] == strategy
    assert got.dtype == np.float64 and got.shape == want.shape
    assert err(got, want) <= TOL[dtype]
    for (W, b), (W2, b2) in zip(params, ref_params):
        assert W.dtype == W2.dtype and err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]
    gpu = emulated.gpu
    if strategy == "persistent":
        assert gpu.launches.count("train_persistent<%s, %d>" % (kc.CTYPES[dtype], kc.ACT_CODES[case[0]])) == 1
        assert not any(name == "gemm" for name in gpu.launches)
    elif strategy == "graph":
        assert gpu.captures == 1 and gpu.replays == 6
    else:
        assert gpu.captures == 0 and gpu.launches.count("loss_finish") == 6


def test_emulated_auto_strategy_and_tf32_flag(emulated):
    be = CupyBackend()
    X, y = datasets.load("and")
    p = be.params_from_numpy(init_params([2, 4, 1], 42, "float64"))
    be.train(p, be.asarray(X), be.asarray(y), lr=0.1, epochs=3)
    assert be.last_run["strategy"] == "persistent"
    n, sizes = 700, [6, 8, 1]  # too big for one block (50 KB of shared memory)
    X, y = data(n, sizes, "float32")
    for tf32, compute in ((False, 68), (True, 77)):
        be = CupyBackend(allow_tf32=tf32)
        emulated.cublas.compute_types.clear()
        p = be.params_from_numpy(init_params(sizes, 0, "float32"))
        be.train(p, be.asarray(X), be.asarray(y), lr=0.01, epochs=2)
        assert be.last_run["strategy"] == "graph"
        assert set(emulated.cublas.compute_types) == {compute}


def test_emulated_failed_capture_falls_back_to_the_step_path_under_auto(emulated, monkeypatch):
    def broken(self, mode=None):
        raise RuntimeError("cudaErrorStreamCaptureUnsupported")

    monkeypatch.setattr(FakeStream, "begin_capture", broken)
    case = ("tanh", "sum", [6, 8, 1], 700)  # too big for one block: auto picks the graph
    be, got, want, params, ref_params = _train_both("auto", "float32", case, epochs=2, lr=0.01)
    assert be.last_run["strategy"] == "step" and "capture failed" in be.last_run["why"]
    assert err(got, want) <= TOL["float32"]
    with pytest.raises(RuntimeError, match="CaptureUnsupported"):
        _train_both("graph", "float32", case, epochs=2, lr=0.01)


def test_emulated_direct_calls_match_the_reference(emulated):
    for dtype in ("float64", "float32"):
        act, red, sizes, n = CASES[1]
        X, y = data(n, sizes, dtype)
        params = init_params(sizes, 2, dtype)
        npb, be = NumpyBackend(), CupyBackend()
        bp, bX, by = be.params_from_numpy(params), be.asarray(X), be.asarray(y)
        y_hat, cache = be.forward(bp, bX, activation=act)
        want_hat, want_cache = npb.forward(params, X, activation=act)
        assert len(cache) == len(want_cache) and err(be.to_numpy(y_hat), want_hat) <= TOL[dtype]
        assert abs(be.loss(by, y_hat) - npb.loss(y, want_hat)) <= TOL[dtype]
        grads = be.backward(bp, cache, bX, by, activation=act, grad_reduction=red)
        want_grads = npb.backward(params, want_cache, X, y, activation=act, grad_reduction=red)
        for (dW, db), (dW2, db2) in zip(grads, want_grads):
            assert err(be.to_numpy(dW), dW2) <= TOL[dtype] and err(be.to_numpy(db), db2) <= TOL[dtype]
        be.sgd_update(bp, grads, 0.5)
        npb.sgd_update(params, want_grads, 0.5)
        loss = be.step(bp, bX, by, lr=0.1, activation=act, grad_reduction=red)
        want_loss = npb.step(params, X, y, lr=0.1, activation=act, grad_reduction=red)
        assert abs(loss - want_loss) <= TOL[dtype] * abs(want_loss)
        for (W, b), (W2, b2) in zip(be.params_to_numpy(bp), params):
            assert err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]
        assert emulated.gpu.captures == 0


def test_emulated_step_allocates_nothing_after_the_first_call(emulated, monkeypatch):
    """The workspace and pointer tables are cached per shape: later steps allocate and upload nothing."""
    act, red, sizes, n = CASES[1]
    X, y = data(n, sizes, "float64")
    params = init_params(sizes, 2, "float64")
    npb, be = NumpyBackend(), CupyBackend()
    bp, bX, by = be.params_from_numpy(params), be.asarray(X), be.asarray(y)
    losses = [be.step(bp, bX, by, lr=0.1, activation=act, grad_reduction=red)]

    def no_allocation(a):
        raise AssertionError("step allocated device memory (or copied host data to the device)")

    monkeypatch.setattr(emulated.cp, "_new", no_allocation)
    losses += [be.step(bp, bX, by, lr=0.1, activation=act, grad_reduction=red) for _ in range(3)]
    want = [npb.step(params, X, y, lr=0.1, activation=act, grad_reduction=red) for _ in range(4)]
    assert err(losses, want) <= TOL["float64"]
    for (W, b), (W2, b2) in zip(be.params_to_numpy(bp), params):
        assert err(W, W2) <= TOL["float64"] and err(b, b2) <= TOL["float64"]


def test_emulated_callback_forces_the_step_path(emulated):
    seen = []
    be = CupyBackend(strategy="graph")
    X, y = datasets.load("xor")
    p = be.params_from_numpy(init_params([2, 4, 1], 42, "float64"))
    hist = be.train(p, be.asarray(X), be.asarray(y), lr=0.1, epochs=4, callback=lambda e, loss: seen.append((e, loss)))
    assert be.last_run["strategy"] == "step" and emulated.gpu.captures == 0
    assert seen == [(e + 1, float(h)) for e, h in enumerate(hist)]


@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_emulated_divergence_raises_at_the_numpy_backend_epoch(emulated, strategy):
    sizes = [3, 5, 1]
    X, y = data(8, sizes, "float64")
    with pytest.raises(TrainingDiverged) as want:
        NumpyBackend().train(init_params(sizes, 0, "float64"), X, y, lr=1e300, epochs=6)
    be = CupyBackend(strategy=strategy)
    p = be.params_from_numpy(init_params(sizes, 0, "float64"))
    with pytest.raises(TrainingDiverged) as got:
        be.train(p, be.asarray(X), be.asarray(y), lr=1e300, epochs=6)
    assert got.value.epoch == want.value.epoch and got.value.lr == 1e300
    assert len(got.value.history) == got.value.epoch and not math.isfinite(got.value.history[-1])
    np.testing.assert_allclose(got.value.history[:-1], want.value.history[:-1], rtol=1e-12)


def test_emulated_backend_rejects_foreign_arrays(emulated):
    be = CupyBackend()
    X, y = datasets.load("and")
    with pytest.raises(TypeError, match="asarray"):
        be.train(init_params([2, 4, 1]), X, y, lr=0.1, epochs=2)
    p = be.params_from_numpy(init_params([3, 4, 1]))
    with pytest.raises(ValueError, match="chain"):
        be.train(p, be.asarray(X), be.asarray(y), lr=0.1, epochs=2)


def test_emulated_model_fit_through_the_registry(emulated):
    X, y = datasets.load("and")
    want = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=50, backend="numpy")
    got = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=50, backend="cupy")
    assert err(got, want) <= 1e-12


# ================================================================ on a GPU
LAB = os.path.join(os.path.dirname(__file__), "data")
GPU_CASES = CASES[:3] + [("relu", "mean", [16, 64, 32, 3], 1000), ("tanh", "sum", [8, 256, 1], 4096)]


@pytest.mark.gpu
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: f"{c[0]}-{c[1]}-{'x'.join(map(str, c[2]))}-N{c[3]}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_gpu_parity_with_the_numpy_backend(gpu, strategy, dtype, case):
    act, red, sizes, n = case
    if strategy == "persistent" and not kc.persistent_plan(n, sizes, dtype).fits:
        strategy = "graph"
    lr = 0.1 if red == "mean" or n < 200 else 0.1 / n
    be, got, want, params, ref_params = _train_both(strategy, dtype, (act, red, sizes, n), epochs=8, lr=lr)
    assert be.last_run["strategy"] == strategy
    assert err(got, want) <= TOL[dtype]
    for (W, b), (W2, b2) in zip(params, ref_params):
        assert err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_direct_calls_match_the_reference(gpu, dtype):
    act, red, sizes, n = GPU_CASES[3]  # 3 layers, 1000 samples
    X, y = data(n, sizes, dtype)
    params = init_params(sizes, 2, dtype)
    npb, be = NumpyBackend(), CupyBackend()
    bp, bX, by = be.params_from_numpy(params), be.asarray(X), be.asarray(y)
    y_hat, cache = be.forward(bp, bX, activation=act)
    want_hat, want_cache = npb.forward(params, X, activation=act)
    assert err(be.to_numpy(y_hat), want_hat) <= TOL[dtype]
    grads = be.backward(bp, cache, bX, by, activation=act, grad_reduction=red)
    for (dW, db), (dW2, db2) in zip(grads, npb.backward(params, want_cache, X, y, activation=act, grad_reduction=red)):
        assert err(be.to_numpy(dW), dW2) <= TOL[dtype] and err(be.to_numpy(db), db2) <= TOL[dtype]
    loss = be.step(bp, bX, by, lr=0.1, activation=act, grad_reduction=red)
    assert abs(loss - npb.step(params, X, y, lr=0.1, activation=act, grad_reduction=red)) <= TOL[dtype] * loss


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["and", "xor"])
@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_gpu_labs(gpu, name, strategy):
    with np.load(os.path.join(LAB, f"lab_{name}.npz")) as f:
        lab = {k: f[k] for k in f.files}
    X, y = datasets.load(name)
    be = CupyBackend(strategy=strategy)
    p = be.params_from_numpy(init_params([2, 4, 1], 42, "float64"))
    hist = be.train(p, be.asarray(X), be.asarray(y), lr=0.1, epochs=len(lab["losses"]))
    assert err(hist, lab["losses"]) <= 1e-11
    (W1, b1), (W2, b2) = be.params_to_numpy(p)
    assert err(W1, lab["W1"]) <= 1e-11 and err(W2, lab["W2"]) <= 1e-11


@pytest.mark.gpu
def test_gpu_model_fit_and_describe(gpu):
    X, y = datasets.load("and")
    want = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=500, backend="numpy")
    got = MLP([2, 4, 1], seed=42).fit(X, y, lr=0.1, epochs=500, backend="cupy")
    assert err(got, want) <= 1e-11
    row = next(r for r in available_backends() if r["name"] == "cupy")
    assert row["available"] and row["device"].startswith("cuda:0 (")
    assert get_backend("cupy").device.startswith("cuda:0 (")


@pytest.mark.gpu
@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_gpu_divergence(gpu, strategy):
    sizes = [3, 5, 1]
    X, y = data(8, sizes, "float64")
    with pytest.raises(TrainingDiverged) as want:
        NumpyBackend().train(init_params(sizes, 0, "float64"), X, y, lr=1e300, epochs=30)
    be = CupyBackend(strategy=strategy)
    p = be.params_from_numpy(init_params(sizes, 0, "float64"))
    with pytest.raises(TrainingDiverged) as got:
        be.train(p, be.asarray(X), be.asarray(y), lr=1e300, epochs=30)
    assert got.value.epoch == want.value.epoch


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_graph_replay_equals_the_step_path(gpu, dtype):
    sizes, n = [32, 128, 64, 1], 3000
    X, y = data(n, sizes, dtype)
    out = {}
    for strategy in ("graph", "step"):
        be = CupyBackend(strategy=strategy)
        p = be.params_from_numpy(init_params(sizes, 5, dtype))
        hist = be.train(p, be.asarray(X), be.asarray(y), lr=1e-3, epochs=20)
        out[strategy] = (hist, be.params_to_numpy(p))
    # the same kernels and cuBLAS calls in the same order: equal up to cuBLAS's choice of algorithm
    assert err(out["graph"][0], out["step"][0]) <= {"float64": 1e-13, "float32": 1e-6}[dtype]
    for (W, _), (W2, _) in zip(out["graph"][1], out["step"][1]):
        assert err(W, W2) <= TOL[dtype]


@pytest.mark.gpu
def test_gpu_float32_matmuls_do_not_use_tf32_by_default(gpu):
    rng = np.random.RandomState(0)
    A, B = rng.randn(256, 2048).astype(np.float32), rng.randn(2048, 256).astype(np.float32)
    exact = A.astype(np.float64) @ B.astype(np.float64)
    be = CupyBackend()
    assert be.allow_tf32 is False
    C = be._cp.empty((256, 256), dtype=np.float32)
    with be._dev:
        be._gemm(C, be.asarray(A), be.asarray(B))
    assert err(be.to_numpy(C), exact) <= 1e-5  # TF32 (10-bit mantissa) would be ~1e-3


@pytest.mark.gpu
def test_gpu_training_is_deterministic(gpu):
    sizes, n = [16, 64, 1], 5000
    X, y = data(n, sizes, "float32")
    hists = []
    for _ in range(2):
        be = CupyBackend(strategy="graph")
        p = be.params_from_numpy(init_params(sizes, 0, "float32"))
        hists.append(be.train(p, be.asarray(X), be.asarray(y), lr=1e-4, epochs=10))
    np.testing.assert_array_equal(hists[0], hists[1])


# ---------------------------------------------------------------- on a GPU: the softmax head and mini-batches
def _fit_both(strategy, dtype, sizes, n, output, batch_size, epochs=5, lr=0.05, red="mean", act="relu", X=None):
    rng = np.random.RandomState(0)
    if X is None:
        X = rng.randn(n, sizes[0]).astype(dtype)
    y = (np.eye(sizes[-1], dtype=dtype)[rng.randint(0, sizes[-1], n)] if output == "softmax"
         else (rng.rand(n, sizes[-1]) > 0.5).astype(dtype))
    params = init_params(sizes, 4, dtype)
    ref_p = [(W.copy(), b.copy()) for W, b in params]
    kw = dict(lr=lr, epochs=epochs, activation=act, grad_reduction=red, output=output, batch_size=batch_size,
              shuffle_seed=1)
    want = NumpyBackend().train(ref_p, X, y, **kw)
    be = CupyBackend(strategy=strategy)
    bp = be.params_from_numpy(params)
    got = be.train(bp, be.asarray(X), be.asarray(y), **kw)
    return be, got, want, be.params_to_numpy(bp), ref_p


@pytest.mark.gpu
@pytest.mark.parametrize("output,batch_size", [("softmax", None), ("softmax", 64), ("softmax", 1000),
                                               ("sigmoid", 64), ("sigmoid", 1000)])  # 1000 rows: 64 leaves 40
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy", ["auto", "step"])
def test_gpu_softmax_and_minibatch_parity_with_the_numpy_backend(gpu, strategy, dtype, output, batch_size):
    sizes = [16, 64, 32, 10] if output == "softmax" else [16, 64, 32, 3]
    be, got, want, params, ref_params = _fit_both(strategy, dtype, sizes, 1000, output, batch_size)
    assert err(got, want) <= TOL[dtype]
    for (W, b), (W2, b2) in zip(params, ref_params):
        assert err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]
    assert be.last_run["strategy"] == ("graph" if strategy == "auto" else "step")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_softmax_survives_logits_of_1e4(gpu, dtype):
    sizes, n = [8, 16, 5], 200
    X = (np.random.RandomState(2).randn(n, sizes[0]) * 1e3).astype(dtype)  # logits of order 1e3 to 1e4
    npb, be = NumpyBackend(), CupyBackend()
    params = init_params(sizes, 0, dtype)
    logp, _ = be.forward(be.params_from_numpy(params), be.asarray(X), output="softmax")
    want, _ = npb.forward(params, X, output="softmax")
    assert np.abs(want).max() > 1e3 and np.isfinite(be.to_numpy(logp)).all()
    assert err(be.to_numpy(logp), want) <= TOL[dtype]
    _, got, want_hist, _, _ = _fit_both("auto", dtype, sizes, n, "softmax", 32, epochs=2, lr=1e-6, X=X)
    assert np.isfinite(got).all() and err(got, want_hist) <= TOL[dtype]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_gpu_minibatch_graph_replay_equals_kernel_by_kernel(gpu, dtype):
    out = {}
    for strategy in ("graph", "step"):
        be, hist, _, params, _ = _fit_both(strategy, dtype, [32, 128, 10], 3000, "softmax", 256, epochs=6)
        assert be.last_run["strategy"] == strategy
        out[strategy] = (hist, params)
    assert err(out["graph"][0], out["step"][0]) <= {"float64": 1e-13, "float32": 1e-6}[dtype]
    for (W, _), (W2, _) in zip(out["graph"][1], out["step"][1]):
        assert err(W, W2) <= TOL[dtype]


@pytest.mark.gpu
def test_gpu_softmax_blobs_fit_gives_the_numpy_labels(gpu):
    X, y = datasets.load("blobs", n_samples=2000, n_features=16, n_classes=10, seed=0)
    kw = dict(lr=0.1, epochs=10, batch_size=64, grad_reduction="mean")
    want, got = MLP([16, 64, 10], output="softmax", seed=0), MLP([16, 64, 10], output="softmax", seed=0)
    h_want, h_got = want.fit(X, y, backend="numpy", **kw), got.fit(X, y, backend="cupy", **kw)
    assert got.backend_ == "cupy" and err(h_got, h_want) <= 1e-10
    assert np.array_equal(got.predict(X), want.predict(X))
