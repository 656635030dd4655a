"""MLP behaviour: depth, activations, divergence, save/load, repr, env backend."""

import os

import numpy as np
import pytest

import mlpbench
from mlpbench import MLP, TrainingDiverged, datasets
from mlpbench.backends import BackendUnavailable, available_backends, get_backend


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("hidden", [[2], [4], [8], [8, 4], [6, 6, 6]])
def test_any_depth_and_activation_learns_and(activation, hidden):
    X, y = datasets.load("and")
    model = MLP([2, *hidden, 1], activation=activation, seed=0)
    history = model.fit(X, y, lr=0.5, epochs=3000)
    assert history[-1] < history[0]
    assert history.shape == (3000,) and np.isfinite(history).all()


def test_multi_output():
    X, y = datasets.load("and")
    Y = np.hstack([y, 1 - y])
    model = MLP([2, 4, 2], seed=1)
    model.fit(X, Y, epochs=2000)
    assert model.predict_proba(X).shape == (4, 2)
    np.testing.assert_array_equal(model.predict(X), Y.astype(int))


def test_mean_reduction_is_sum_divided_by_n():
    X, y = datasets.load("moons", n_samples=50)
    a, b = MLP([2, 5, 1]), MLP([2, 5, 1])
    a.fit(X, y, lr=0.05, epochs=5, grad_reduction="sum")
    b.fit(X, y, lr=0.05 * 50, epochs=5, grad_reduction="mean")
    for (Wa, ba), (Wb, bb) in zip(a.params, b.params):
        np.testing.assert_allclose(Wa, Wb, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(ba, bb, rtol=1e-12, atol=1e-14)


def test_callback_sees_every_epoch():
    X, y = datasets.load("and")
    seen = []
    history = MLP().fit(X, y, epochs=7, callback=lambda e, loss: seen.append((e, loss)))
    assert [e for e, _ in seen] == list(range(1, 8))
    np.testing.assert_array_equal([loss for _, loss in seen], history)


def test_divergence_raises_and_keeps_the_params():
    X, y = datasets.load("blobs", n_samples=200, n_features=8, seed=3)
    model = MLP([8, 16, 1], seed=0)
    before = model.params
    with pytest.raises(TrainingDiverged, match="diverged at epoch") as info:
        model.fit(X * 100, y, lr=1e3, epochs=500)
    err = info.value
    assert 1 <= err.epoch <= 500 and len(err.history) == err.epoch
    assert not np.isfinite(err.history[-1]) or err.epoch == 500
    for (W0, b0), (W1, b1) in zip(before, model.params):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_fit_continues_from_current_params():
    X, y = datasets.load("and")
    a, b = MLP(), MLP()
    a.fit(X, y, epochs=10)
    a.fit(X, y, epochs=10)
    b.fit(X, y, epochs=20)
    np.testing.assert_array_equal(a.params[0][0], b.params[0][0])


def test_save_and_load_round_trip(tmp_path):
    X, y = datasets.load("xor")
    model = MLP([2, 8, 4, 1], activation="tanh", dtype="float32", seed=3)
    model.fit(X, y, epochs=100)
    path = tmp_path / "m.npz"
    model.save(path)
    loaded = MLP.load(path)
    assert repr(loaded) == repr(model)
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_load_validates(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, layer_sizes=np.array([2, 4, 1]), activation=np.array("relu"), dtype=np.array("float64"),
             seed=np.array(1), W0=np.zeros((2, 3)), b0=np.zeros((1, 4)), W1=np.zeros((4, 1)), b1=np.zeros((1, 1)))
    with pytest.raises(ValueError, match=r"layer 0: expected W \(2, 4\)"):
        MLP.load(path)
    np.savez(path, layer_sizes=np.array([2, 1]), activation=np.array("relu"), dtype=np.array("float64"),
             seed=np.array(1), W0=np.zeros((2, 1), np.float32), b0=np.zeros((1, 1)))
    with pytest.raises(ValueError, match="expected dtype float64"):
        MLP.load(path)
    np.savez(path, x=np.zeros(3))
    with pytest.raises(ValueError, match="not an mlpbench model file"):
        MLP.load(path)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="could not read model file"):
        MLP.load(tmp_path / "junk.npz")


def test_repr_shows_the_structure():
    assert repr(MLP([2, 4, 1])) == "MLP([2, 4, 1], activation='relu', dtype='float64', seed=42, params=17)"


def test_backend_from_environment(monkeypatch):
    X, y = datasets.load("and")
    monkeypatch.setenv("MLPBENCH_BACKEND", "numpy")
    model = MLP()
    model.fit(X, y, epochs=2)
    assert model.backend_ == "numpy"


def test_registry_lists_every_backend_without_raising():
    rows = {r["name"]: r for r in available_backends()}
    assert {"numpy", "numba", "cupy", "torch", "jax"} <= set(rows)
    assert rows["numpy"]["available"] and rows["numpy"]["version"] == np.__version__
    for row in rows.values():
        assert row["available"] or row["reason"]


def test_backend_unavailable_has_install_hint(monkeypatch):
    from mlpbench.backends import numpy_backend

    monkeypatch.setattr(numpy_backend.NumpyBackend, "availability", classmethod(lambda cls: (False, "testing")))
    with pytest.raises(BackendUnavailable, match="testing") as info:
        get_backend("numpy")
    assert isinstance(info.value, ImportError) and isinstance(info.value, RuntimeError)


def test_public_api():
    assert set(mlpbench.__all__) >= {"MLP", "get_backend", "available_backends", "datasets"}
