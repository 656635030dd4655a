"""Mini-batch SGD and the softmax head through the contract and the model."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.backends import backend_class, get_backend, register_backend, supporting, unregister_backend
from mlpbench.backends.base import epoch_orders
from mlpbench.kernels import reference as ref
from mlpbench.core.params import init_params

from helpers import labelled

TOL = {"float64": 1e-10, "float32": 2e-4}


def hand_loop(params, X, y, lr, epochs, batch_size, seed, activation="relu", grad_reduction="mean",
              output="sigmoid", shuffle=True):
    """Mini-batch SGD written out from the spec, on copies of ``params``; returns (history, params)."""
    params = [(W.copy(), b.copy()) for W, b in params]
    rng = np.random.default_rng(seed)
    history = []
    for _ in range(epochs):
        order = rng.permutation(len(X)) if shuffle else np.arange(len(X))
        losses = []
        for s in range(0, len(X), batch_size):
            idx = order[s:s + batch_size]
            y_hat, acts = ref.forward(np, params, X[idx], activation, output)
            losses.append(float(ref.loss(np, y[idx], y_hat, output)))
            ref.sgd_update(params, ref.backward(np, params, acts, y[idx], activation, grad_reduction, output), lr)
        history.append(sum(losses) / len(losses))
    return np.array(history), params


def problem(n=37, sizes=(5, 8, 3), output="softmax", dtype="float64", seed=0):
    return (*labelled(n, sizes, dtype, output, seed), init_params(list(sizes), 1, dtype))


def test_epoch_orders_are_permutations_from_one_generator():
    got = epoch_orders(10, True, 5)
    rng = np.random.default_rng(5)
    for _ in range(3):
        np.testing.assert_array_equal(next(got), rng.permutation(10))
    np.testing.assert_array_equal(next(epoch_orders(4, False, 5)), np.arange(4))


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
@pytest.mark.parametrize("batch_size,shuffle", [(10, True), (37, True), (1, False), (64, True), (8, False)])
def test_numpy_minibatch_is_the_spec_loop_bit_for_bit(output, batch_size, shuffle):
    X, y, params = problem(output=output)
    want_hist, want_params = hand_loop(params, X, y, 0.3, 4, batch_size, 7, output=output, shuffle=shuffle)
    be = get_backend("numpy")
    p = be.params_from_numpy(params)
    hist = be.train(p, X, y, lr=0.3, epochs=4, grad_reduction="mean", output=output, batch_size=batch_size,
                    shuffle=shuffle, shuffle_seed=7)
    np.testing.assert_array_equal(hist, want_hist)
    for (W, b), (eW, eb) in zip(p, want_params):
        np.testing.assert_array_equal(W, eW)
        np.testing.assert_array_equal(b, eb)


def test_every_batch_is_one_update_and_the_last_partial_batch_is_included():
    calls = []

    class Counting(backend_class("numpy")):
        def _step(self, params, X, y, *args, **kw):
            calls.append(len(X))
            return super()._step(params, X, y, *args, **kw)

    X, y, params = problem(n=37)
    Counting().train(params, X, y, lr=0.1, epochs=2, output="softmax", batch_size=10)
    assert calls == [10, 10, 10, 7] * 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_every_backend_follows_the_reference_minibatch_trajectory(backend_name, dtype, output):
    be = get_backend(backend_name)
    X, y, params = problem(dtype=dtype, output=output)
    if output not in be.outputs:  # a backend that does not declare the head refuses it, naming itself
        with pytest.raises(ValueError, match=f"backend {backend_name!r} does not support output={output!r}"):
            be.train(be.params_from_numpy(params), be.asarray(X), be.asarray(y), lr=0.2, epochs=1, output=output,
                     batch_size=10)
        return
    want, want_params = hand_loop(params, X, y, 0.2, 3, 10, 4, activation="tanh", output=output)
    p = be.params_from_numpy(params)
    hist = be.train(p, be.asarray(X), be.asarray(y), lr=0.2, epochs=3, activation="tanh", grad_reduction="mean",
                    output=output, batch_size=10, shuffle_seed=4)
    np.testing.assert_allclose(hist, want, rtol=TOL[dtype])
    for (W, b), (eW, eb) in zip(be.params_to_numpy(p), want_params):
        assert np.max(np.abs(W - eW)) <= TOL[dtype] * max(np.max(np.abs(eW)), 1)
        assert np.max(np.abs(b - eb)) <= TOL[dtype] * max(np.max(np.abs(eb)), 1)


def test_a_backend_without_the_head_refuses_it_before_any_kernel_runs():
    class SigmoidOnly(backend_class("numpy")):
        name = "sigmoid_only"
        outputs = ("sigmoid",)

        def _forward(self, *args, **kw):
            raise AssertionError("a kernel ran")

        _step = _backward = _train = _train_batches = _forward

    be = SigmoidOnly()
    X, y, params = problem()
    for call in (lambda: be.train(params, X, y, lr=0.1, epochs=1, output="softmax"),
                 lambda: be.step(params, X, y, lr=0.1, output="softmax"),
                 lambda: be.forward(params, X, output="softmax")):
        with pytest.raises(ValueError, match="backend 'sigmoid_only' does not support output='softmax'.*'sigmoid'"):
            call()
    register_backend("sigmoid_only", SigmoidOnly)
    try:
        assert "sigmoid_only" not in supporting("softmax") and "numpy" in supporting("softmax")
        model = MLP([5, 8, 3], output="softmax")
        before = model.params
        with pytest.raises(ValueError, match="sigmoid_only"):
            model.fit(X, y.argmax(axis=1), epochs=1, backend="sigmoid_only")
        for (W, b), (eW, eb) in zip(model.params, before):
            np.testing.assert_array_equal(W, eW)
    finally:
        unregister_backend("sigmoid_only")


def test_bad_batching_arguments_are_named():
    X, y, _ = problem(output="sigmoid", sizes=(5, 8, 1))
    model = MLP([5, 8, 1])
    for kw, exc, text in [({"batch_size": 0}, ValueError, "batch_size"), ({"batch_size": 2.5}, TypeError, "batch_size"),
                          ({"batch_size": True}, TypeError, "batch_size"), ({"shuffle": "yes"}, TypeError, "shuffle"),
                          ({"shuffle_seed": -1}, ValueError, "shuffle_seed")]:
        with pytest.raises(exc, match=text):
            model.fit(X, y, epochs=1, batch_size=kw.pop("batch_size", 4), **kw)
    with pytest.raises(ValueError, match="output"):
        MLP([5, 8, 3], output="softmx")
    with pytest.raises(ValueError, match="at least 2 output units"):
        MLP([5, 8, 1], output="softmax")


def test_fit_full_batch_is_unchanged_and_shuffle_seed_defaults_to_the_model_seed():
    X, y, _ = problem(output="sigmoid", sizes=(5, 8, 1))
    a, b = MLP([5, 8, 1], seed=3), MLP([5, 8, 1], seed=3)
    np.testing.assert_array_equal(a.fit(X, y, epochs=5), b.fit(X, y, epochs=5, batch_size=None))
    h1 = MLP([5, 8, 1], seed=3).fit(X, y, epochs=3, batch_size=8, grad_reduction="mean")
    h2 = MLP([5, 8, 1], seed=3).fit(X, y, epochs=3, batch_size=8, grad_reduction="mean", shuffle_seed=3)
    h3 = MLP([5, 8, 1], seed=3).fit(X, y, epochs=3, batch_size=8, grad_reduction="mean", shuffle_seed=4)
    np.testing.assert_array_equal(h1, h2)
    assert not np.array_equal(h1, h3)


def test_softmax_labels_ints_and_one_hot_train_alike_and_inputs_are_untouched():
    X, Y, _ = problem(n=40, sizes=(5, 8, 3))
    labels = Y.argmax(axis=1)
    keep_X, keep_labels = X.copy(), labels.copy()
    a, b = MLP([5, 8, 3], output="softmax"), MLP([5, 8, 3], output="softmax")
    np.testing.assert_array_equal(a.fit(X, labels, lr=0.1, epochs=3, batch_size=16),
                                  b.fit(X, Y, lr=0.1, epochs=3, batch_size=16))
    np.testing.assert_array_equal(X, keep_X)
    np.testing.assert_array_equal(labels, keep_labels)
    proba = a.predict_proba(X)
    assert proba.shape == (40, 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    pred = a.predict(X)
    assert pred.shape == (40,) and pred.dtype.kind == "i"
    np.testing.assert_array_equal(pred, proba.argmax(axis=1))


@pytest.mark.parametrize("y,text", [
    (np.array([0, 1, 3] * 3 + [0]), r"labels in \[0, 3\)"),
    (np.array([0, 1, -1] * 3 + [0]), r"labels in \[0, 3\)"),
    (np.array([0.5] * 10), "not all integers"),
    (np.zeros((10, 2)), "one-hot of shape"),
    (np.full((10, 3), 1 / 3), "must be one-hot"),
    (np.zeros((10, 3)), "must be one-hot"),
    (np.array([0, 1]), "10 rows"),
    (np.array(["a"] * 10), "real numbers"),
])
def test_softmax_bad_labels_are_errors_naming_y(y, text):
    X = np.zeros((10, 5))
    with pytest.raises((ValueError, TypeError), match=text) as info:
        MLP([5, 4, 3], output="softmax").fit(X, y, epochs=1)
    assert str(info.value).startswith("y ")


def test_save_and_load_keep_output_and_old_files_load_as_sigmoid(tmp_path):
    X, Y, _ = problem(n=20, sizes=(5, 8, 3))
    model = MLP([5, 8, 3], output="softmax", dtype="float32")
    model.fit(X, Y.argmax(axis=1), epochs=2, batch_size=8)
    model.save(tmp_path / "m.npz")
    back = MLP.load(tmp_path / "m.npz")
    assert back.output == "softmax"
    np.testing.assert_array_equal(back.predict_proba(X), model.predict_proba(X))
    # a file written before the head existed: no "output" member
    with np.load(tmp_path / "m.npz") as f:
        members = {k: f[k] for k in f.files if k != "output"}
    members["layer_sizes"] = np.array([5, 8, 1])
    members["W1"], members["b1"] = members["W1"][:, :1].copy(), members["b1"][:, :1].copy()
    np.savez(tmp_path / "old.npz", **members)
    assert MLP.load(tmp_path / "old.npz").output == "sigmoid"
    members["output"] = np.array("softmax")
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(ValueError, match="bad.npz.*2 output units"):
        MLP.load(tmp_path / "bad.npz")
    members["output"] = np.array("linear")
    np.savez(tmp_path / "bad2.npz", **members)
    with pytest.raises(ValueError, match="bad2.npz.*output"):
        MLP.load(tmp_path / "bad2.npz")


def test_digits_softmax_predictions_agree_across_the_backends_declaring_the_head(backend_name):
    from mlpbench import datasets

    pytest.importorskip("sklearn")
    X, y = datasets.load("digits")
    if "softmax" not in get_backend(backend_name).outputs:
        with pytest.raises(ValueError, match=f"backend {backend_name!r} does not support output='softmax'"):
            MLP([64, 32, 10], output="softmax").fit(X, y, epochs=1, batch_size=64, backend=backend_name)
        return
    kw = dict(lr=0.1, epochs=3, batch_size=64, grad_reduction="mean")
    ref_model, model = MLP([64, 32, 10], output="softmax"), MLP([64, 32, 10], output="softmax")
    want = ref_model.fit(X, y, backend="numpy", **kw)
    got = model.fit(X, y, backend=backend_name, **kw)
    np.testing.assert_allclose(got, want, rtol=1e-10)
    assert model.backend_ == backend_name
    np.testing.assert_array_equal(model.predict(X), ref_model.predict(X))
    assert np.mean(model.predict(X) == y) > 0.75  # learning, after 3 epochs


def test_minibatch_callback_per_epoch_and_divergence_keeps_the_params():
    from mlpbench.backends import TrainingDiverged

    X, Y, _ = problem(n=40, sizes=(5, 8, 3))
    seen = []
    model = MLP([5, 8, 3], output="softmax")
    history = model.fit(X, Y, lr=0.1, epochs=4, batch_size=16, callback=lambda e, loss: seen.append((e, loss)))
    assert seen == [(e + 1, h) for e, h in enumerate(history)]
    before = model.params
    with pytest.raises(TrainingDiverged) as info:
        model.fit(X * 1e3, Y, lr=1e6, epochs=50, batch_size=16, grad_reduction="sum")
    assert 1 <= info.value.epoch <= 50 and not np.isfinite(info.value.history[-1])
    for (W, b), (eW, eb) in zip(model.params, before):
        np.testing.assert_array_equal(W, eW)
        np.testing.assert_array_equal(b, eb)


def test_auto_chooses_only_backends_with_the_softmax_head(tmp_path, monkeypatch):
    """A softmax fit on backend='auto' never lands on a backend without the head (it would refuse the fit)."""
    from mlpbench import MLP
    from mlpbench.backends import supporting

    from mlpbench.auto import choose as auto

    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path))
    seen = []
    real = auto.choose

    def spy(*args, **kwargs):
        seen.append((kwargs.get("output"), real(*args, **kwargs)))
        return seen[-1][1]

    monkeypatch.setattr(auto, "choose", spy)

    class SigmoidOnly(backend_class("numpy")):
        name = "sigmoid_only"
        outputs = ("sigmoid",)

    rng = np.random.RandomState(0)
    X = rng.rand(40, 3)
    y = rng.randint(0, 3, size=40)
    model = MLP([3, 5, 3], output="softmax", seed=1)
    register_backend("sigmoid_only", SigmoidOnly)
    try:
        history = model.fit(X, y, lr=0.1, epochs=3, backend="auto", grad_reduction="mean")
        assert "sigmoid_only" not in supporting("softmax")
        output, decision = seen[-1]
        assert decision.rejected["sigmoid_only"] == "does not support output='softmax'"
        for name, cls in ((n, auto.backend_class(n)) for n in auto.backend_names()):  # the rest: rejected, with why
            if "softmax" not in cls.outputs and cls.availability()[0]:
                assert decision.rejected[name] == "does not support output='softmax'"
    finally:
        unregister_backend("sigmoid_only")
    assert history.shape == (3,) and np.isfinite(history).all()
    assert model.backend_.split("[")[0] in supporting("softmax")
    assert output == "softmax" and decision.ranking
    assert {c.name for c in decision.ranking} <= set(supporting("softmax"))
