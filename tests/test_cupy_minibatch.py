"""The CuPy backend's softmax head and mini-batches, on the CPU through ``fake_cupy.py`` (the real CUDA
sources run by the emulator; stream capture forbids allocations, uploads and host synchronisation), against
the NumPy backend. The GPU runs of the same paths are in ``test_cupy_backend.py`` (``gpu`` marker)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.backends import TrainingDiverged
from mlpbench.backends.cupy import minibatch as cupy_minibatch
from mlpbench.backends.cupy.backend import CupyBackend, choose_strategy
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.core.params import init_params

import fake_cupy
from fake_cupy import FakeStream
from helpers import labelled

TOL = {"float64": 1e-11, "float32": 1e-5}
CASES = [  # activation, grad_reduction, layer sizes, samples, batch size (None: full batch)
    ("tanh", "mean", [3, 6, 5, 4], 37, 10),  # 4 batches, the last one of 7 rows
    ("relu", "sum", [4, 3, 3], 20, 8),
    ("sigmoid", "mean", [5, 3], 12, 5),  # one layer: multinomial logistic regression
]


@pytest.fixture
def emulated(monkeypatch):
    return fake_cupy.install(monkeypatch)


def err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def data(n, sizes, dtype, output, seed=0):
    return labelled(n, sizes, dtype, output, seed)


def train_both(strategy, dtype, case, output, epochs=4, lr=0.1, batch_size="case", **kw):
    """``(backend, history, want, params, want_params)``: the cupy backend on the fake against numpy."""
    act, red, sizes, n, nb = case
    nb = nb if batch_size == "case" else batch_size
    X, y = data(n, sizes, dtype, output)
    params = init_params(sizes, 1, dtype)
    ref_p = [(W.copy(), b.copy()) for W, b in params]
    args = dict(lr=lr, epochs=epochs, activation=act, grad_reduction=red, output=output, batch_size=nb,
                shuffle_seed=5, **kw)
    want = NumpyBackend().train(ref_p, X, y, **args)
    be = CupyBackend(strategy=strategy)
    bp = be.params_from_numpy(params)
    got = be.train(bp, be.asarray(X), be.asarray(y), **args)
    return be, got, want, be.params_to_numpy(bp), ref_p


def assert_close(got, want, params, want_params, dtype):
    assert got.dtype == np.float64 and got.shape == want.shape
    assert err(got, want) <= TOL[dtype]
    for (W, b), (W2, b2) in zip(params, want_params):
        assert W.dtype == W2.dtype and err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]


def test_softmax_is_declared_and_never_takes_the_one_block_trainer():
    assert "softmax" in CupyBackend.outputs
    assert choose_strategy(4, [2, 4, 3], "float64", "auto", output="softmax")[0] == "graph"
    strategy, why = choose_strategy(4, [2, 4, 3], "float64", "persistent", output="softmax")
    assert strategy == "graph" and "sigmoid head only" in why
    assert choose_strategy(4, [2, 4, 3], "float64", "step", output="softmax")[0] == "step"


# ---------------------------------------------------------------- the softmax head, full batch
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{len(c[2]) - 1}layers")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy", CupyBackend.strategies)
def test_emulated_softmax_full_batch_train_matches_the_numpy_backend(emulated, strategy, dtype, case):
    be, got, want, params, want_params = train_both(strategy, dtype, case, "softmax", batch_size=None)
    assert_close(got, want, params, want_params, dtype)
    want_strategy = "graph" if strategy == "persistent" else strategy
    assert be.last_run["strategy"] == want_strategy
    launches = emulated.gpu.launches
    assert not any(name.startswith(("train_persistent", "output_error_colsum")) for name in launches)
    fused = [name for name in launches if name.startswith("softmax_error_colsum")]
    assert len(fused) == 4 and not any(name.startswith("bias_log_softmax") for name in launches)  # one per epoch
    assert emulated.gpu.captures == (1 if want_strategy == "graph" else 0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_emulated_softmax_direct_calls_match_the_reference(emulated, dtype):
    act, red, sizes, n, _ = CASES[0]
    X, y = data(n, sizes, dtype, "softmax")
    X[0] *= 1e3  # logits of order 1e3-1e4 in a row: a naive softmax overflows
    params = init_params(sizes, 2, dtype)
    npb, be = NumpyBackend(), CupyBackend()
    bp, bX, by = be.params_from_numpy(params), be.asarray(X), be.asarray(y)
    kw = dict(activation=act, output="softmax")
    logp, cache = be.forward(bp, bX, **kw)
    want_logp, want_cache = npb.forward(params, X, **kw)
    assert np.isfinite(be.to_numpy(logp)).all() and err(be.to_numpy(logp), want_logp) <= TOL[dtype]
    assert abs(be.loss(by, logp, output="softmax") - npb.loss(y, want_logp, output="softmax")) <= TOL[dtype]
    grads = be.backward(bp, cache, bX, by, grad_reduction=red, **kw)
    for (dW, db), (dW2, db2) in zip(grads, npb.backward(params, want_cache, X, y, grad_reduction=red, **kw)):
        assert err(be.to_numpy(dW), dW2) <= TOL[dtype] and err(be.to_numpy(db), db2) <= TOL[dtype]
    loss = be.step(bp, bX, by, lr=0.1, grad_reduction=red, **kw)
    want_loss = npb.step(params, X, y, lr=0.1, grad_reduction=red, **kw)
    assert abs(loss - want_loss) <= TOL[dtype] * abs(want_loss)
    for (W, b), (W2, b2) in zip(be.params_to_numpy(bp), params):
        assert err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]


# ---------------------------------------------------------------- mini-batches
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{len(c[2]) - 1}layers-N{c[3]}-B{c[4]}")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("strategy", ["auto", "step"])
def test_emulated_minibatches_follow_the_numpy_trajectory(emulated, strategy, dtype, case, output):
    epochs = 4
    be, got, want, params, want_params = train_both(strategy, dtype, case, output, epochs=epochs)
    assert_close(got, want, params, want_params, dtype)
    n, nb = case[3], case[4]
    n_batches = -(-n // nb)
    assert n % nb and be.last_run["batches"] == n_batches and be.last_run["batch_rows"] == nb  # a partial batch
    gpu = emulated.gpu
    if strategy == "auto":  # one epoch captured once, replayed per epoch
        assert be.last_run["strategy"] == "graph" and gpu.captures == 1 and gpu.replays == epochs
    else:
        assert be.last_run["strategy"] == "step" and gpu.captures == 0
    names = [name.split("<")[0] for name in gpu.launches]
    assert names.count("gather_batch") == names.count("sgd_multi") == epochs * n_batches
    assert names.count("loss_finish") == epochs * n_batches and names.count("epoch_finish") == epochs


def test_emulated_batch_larger_than_the_data_is_one_full_batch_per_epoch(emulated):
    be, got, want, params, want_params = train_both("auto", "float64", CASES[1], "softmax", batch_size=64)
    assert_close(got, want, params, want_params, "float64")
    assert be.last_run["batches"] == 1 and be.last_run["batch_rows"] == 20


def test_emulated_orders_uploaded_in_chunks_of_epochs(emulated, monkeypatch):
    """Orders for 2 epochs per upload: 5 epochs are 3 uploads, each between replays of the same graph."""
    monkeypatch.setattr(cupy_minibatch, "ORDER_ELEMS", 2 * CASES[0][3] + 1)
    uploads = []
    real_set = fake_cupy.FakeArray.set
    monkeypatch.setattr(fake_cupy.FakeArray, "set", lambda self, a, stream=None: (uploads.append(a.shape),
                                                                                   real_set(self, a, stream)))
    be, got, want, params, want_params = train_both("auto", "float64", CASES[0], "softmax", epochs=5)
    assert_close(got, want, params, want_params, "float64")
    assert uploads == [(2, 37), (2, 37), (1, 37)] and emulated.gpu.captures == 1 and emulated.gpu.replays == 5


@pytest.mark.parametrize("strategy", ["auto", "step"])
def test_emulated_minibatch_workspace_is_allocated_once_per_fit(emulated, strategy):
    """The device allocations of a fit do not grow with its batches or epochs: none per batch, none per epoch."""
    counts = {}
    for epochs, batch_size in [(1, 18), (2, 9), (3, 6)]:  # 2, 4, 7 batches per epoch (the last partial)
        emulated.allocations.clear()
        train_both(strategy, "float32", CASES[0], "softmax", epochs=epochs, batch_size=batch_size)
        counts[(epochs, batch_size)] = len(emulated.allocations)
    assert len(set(counts.values())) == 1, counts


def test_emulated_minibatch_callback_gets_each_epochs_loss(emulated):
    seen = []
    be, got, want, params, want_params = train_both("auto", "float64", CASES[0], "softmax", epochs=3,
                                                    callback=lambda e, loss: seen.append((e, loss)))
    assert_close(got, want, params, want_params, "float64")
    assert seen[3:] == [(e + 1, float(h)) for e, h in enumerate(got)] and emulated.gpu.replays == 3  # numpy's first


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("strategy", ["auto", "step"])
def test_emulated_minibatch_divergence_raises_at_the_numpy_backend_epoch(emulated, strategy, output):
    with pytest.raises(TrainingDiverged) as want:
        train_both("step", "float64", CASES[1], output, epochs=6, lr=1e300)
    with pytest.raises(TrainingDiverged) as got:
        train_both(strategy, "float64", CASES[1], output, epochs=6, lr=1e300)
    assert got.value.epoch == want.value.epoch and not math.isfinite(got.value.history[-1])


def test_emulated_failed_capture_falls_back_to_kernel_by_kernel_under_auto(emulated, monkeypatch):
    def broken(self, mode=None):
        raise RuntimeError("cudaErrorStreamCaptureUnsupported")

    monkeypatch.setattr(FakeStream, "begin_capture", broken)
    be, got, want, params, want_params = train_both("auto", "float32", CASES[0], "softmax")
    assert be.last_run["strategy"] == "step" and "capture failed" in be.last_run["why"]
    assert_close(got, want, params, want_params, "float32")
    with pytest.raises(RuntimeError, match="CaptureUnsupported"):
        train_both("graph", "float32", CASES[0], "softmax")


def test_emulated_softmax_model_fit_with_minibatches_through_the_registry(emulated):
    rng = np.random.RandomState(0)
    y = rng.randint(0, 3, 90)  # int labels: the model hands the backend one-hot rows
    X = rng.randn(90, 4) + y[:, None]
    kw = dict(lr=0.05, epochs=5, batch_size=16, grad_reduction="mean")
    want = MLP([4, 6, 3], output="softmax", seed=3)
    got = MLP([4, 6, 3], output="softmax", seed=3)
    h_want = want.fit(X, y, backend="numpy", **kw)
    h_got = got.fit(X, y, backend="cupy", **kw)
    assert got.backend_ == "cupy" and err(h_got, h_want) <= 1e-11
    assert np.array_equal(got.predict(X), want.predict(X))
