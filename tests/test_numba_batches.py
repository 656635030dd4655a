"""The Numba backend's fused mini-batch SGD and softmax head (``backends/numba/minibatch``, ``kernels/numba/batches``).

The fused path (every batch of an epoch in one compiled call) is held to the
contract's generic loop (``Backend._train_batches``: one ``_step`` per batch,
rows gathered in NumPy) run on the same backend, to the per-op path, and to
the NumPy reference, at the backend issues' bars (``helpers.TOL``: float64
1e-12, float32 1e-5, normwise). Skipped as a whole where numba is missing.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import require_backend

from mlpbench import MLP
from mlpbench.backends import Backend, TrainingDiverged, get_backend
from mlpbench.backends.base import epoch_orders, head
from mlpbench.kernels import reference as ref
from mlpbench.core.params import init_params

from helpers import assert_close, flat, labelled


@pytest.fixture(scope="module", autouse=True)
def _numba_available():
    require_backend("numba")


def problem(sizes, n, dtype, output, seed=0):
    return (init_params(sizes, seed + 1, dtype), *labelled(n, sizes, dtype, output, seed, p_one=0.7))


def generic(be, params, X, y, lr, epochs, activation, grad_reduction, batch_size, seed, output, shuffle=True):
    """The contract's per-batch loop on backend ``be`` (its own ``_step``), same orders as ``train``."""
    return Backend._train_batches(be, params, X, y, lr, epochs, activation, grad_reduction, None, batch_size,
                                  epoch_orders(X.shape[0], shuffle, seed), **head(output))


class PerOp(type(get_backend("numba"))):
    """The Numba backend with the contract's per-op step: its forward / loss / backward / sgd kernels."""

    _step = Backend._step


CASES = [  # sizes, activation, grad_reduction, batch size (37 rows: 10 leaves a partial batch of 7)
    ([5, 8, 3], "tanh", "mean", 10),
    ([5, 12, 8, 4], "relu", "mean", 16),
    ([5, 6, 2], "sigmoid", "sum", 10),
    ([5, 3], "relu", "mean", 8),  # one layer: no hidden activation
    ([5, 16, 2], "tanh", "mean", 37),  # one batch of every row
]
SIGMOID_ONLY = [([5, 16, 1], "relu", "sum", 10)]  # one output unit: no softmax


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("output,sizes,activation,grad_reduction,batch_size",
                         [(o,) + c for o in ("sigmoid", "softmax") for c in map(tuple, CASES)]
                         + [("sigmoid",) + tuple(c) for c in SIGMOID_ONLY])
def test_fused_minibatch_train_is_the_generic_per_step_loop(dtype, output, sizes, activation, grad_reduction,
                                                           batch_size):
    be = get_backend("numba")
    params, X, y = problem(sizes, 37, dtype, output)
    lr = 0.3 if grad_reduction == "mean" else 0.03
    kw = dict(lr=lr, epochs=4, activation=activation, grad_reduction=grad_reduction, output=output,
              batch_size=batch_size, shuffle_seed=5)
    fused = be.params_from_numpy(params)
    hist = be.train(fused, X, y, **kw)
    assert be.last_run["strategy"] == "batches" and be.last_run["batch_rows"] == batch_size
    assert hist.dtype == np.float64 and hist.shape == (4,)
    for other in (be, PerOp()):
        p = other.params_from_numpy(params)
        want = generic(other, p, X, y, lr, 4, activation, grad_reduction, batch_size, 5, output)
        assert_close(hist, want, dtype, f"{type(other).__name__} history")
        assert_close(flat(fused), flat(p), dtype, f"{type(other).__name__} params")
    numpy_be = get_backend("numpy")
    p = numpy_be.params_from_numpy(params)
    assert_close(hist, numpy_be.train(p, X, y, **kw), dtype, "reference history")
    assert_close(flat(fused), flat(p), dtype, "reference params")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chunked_calls_a_callback_and_foreign_params_give_the_same_result(monkeypatch, dtype):
    from mlpbench.backends.numba import minibatch as numba_minibatch

    be = get_backend("numba")
    params, X, y = problem([6, 10, 4], 45, dtype, "softmax")
    kw = dict(lr=0.2, epochs=5, activation="relu", grad_reduction="mean", output="softmax", batch_size=8,
              shuffle_seed=3)
    one = be.params_from_numpy(params)
    h_one = be.train(one, X, y, **kw)  # every epoch in one call
    monkeypatch.setattr(numba_minibatch, "ORDER_ELEMS", 2 * 45)  # two epochs per call
    two = be.params_from_numpy(params)
    h_two = be.train(two, X, y, **kw)
    seen = []
    cb = be.params_from_numpy(params)
    h_cb = be.train(cb, X, y, callback=lambda e, loss: seen.append((e, loss)), **kw)
    foreign = [(W.copy(), b.copy()) for W, b in params]  # not views of one vector: a flat copy, copied back
    h_foreign = be.train(foreign, X, y, **kw)
    for h, p in ((h_two, two), (h_cb, cb), (h_foreign, foreign)):
        np.testing.assert_array_equal(h, h_one)
        np.testing.assert_array_equal(flat(p), flat(one))
    assert seen == [(e + 1, float(h_one[e])) for e in range(5)]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_without_shuffle_and_at_full_batch_the_rows_go_in_order(dtype):
    be, numpy_be = get_backend("numba"), get_backend("numpy")
    params, X, y = problem([4, 7, 3], 30, dtype, "softmax")
    for kw in (dict(batch_size=7, shuffle=False), dict(batch_size=30), dict()):  # the last: full-batch train
        kw.update(lr=0.1, epochs=3, activation="tanh", output="softmax")
        p, q = be.params_from_numpy(params), numpy_be.params_from_numpy(params)
        assert_close(be.train(p, X, y, **kw), numpy_be.train(q, X, y, **kw), dtype, f"history {kw}")
        assert_close(flat(p), flat(q), dtype, f"params {kw}")
    # a full-batch softmax step: the loss before the update, as the reference's
    p, q = be.params_from_numpy(params), numpy_be.params_from_numpy(params)
    for _ in range(2):
        assert_close(be.step(p, X, y, lr=0.1, output="softmax"), numpy_be.step(q, X, y, lr=0.1, output="softmax"),
                     dtype, "step loss")
    assert_close(flat(p), flat(q), dtype, "step params")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("sizes", [[3, 4], [3, 5, 4]])
def test_softmax_with_extreme_logits_is_finite_and_warns_nothing(dtype, sizes):
    """Logits up to 1e4 in magnitude: a naive softmax overflows ``exp`` (inf / inf = nan) in both dtypes."""
    be = get_backend("numba")
    params, X, y = problem(sizes, 12, dtype, "softmax")
    W, b = params[-1]
    params[-1] = (W, np.array([[1e4, -1e4, 0.0, 9e3]], dtype=dtype))  # the logits: 1e4 apart and more
    with warnings.catch_warnings(), np.errstate(all="raise"):
        warnings.simplefilter("error")
        p = be.params_from_numpy(params)
        logp, cache = be.forward(p, X, output="softmax")
        loss = be.loss(y, logp, output="softmax")
        grads = be.backward(p, cache, X, y, output="softmax")
        h = be.train(be.params_from_numpy(params), X, y, lr=1e-3, epochs=2, output="softmax", batch_size=5)
    want = ref.forward(np, params, X, "relu", "softmax")[0]  # the reference's stable log-softmax
    assert np.isfinite(logp).all() and (logp <= 0).all() and logp.min() < -5e3
    np.testing.assert_allclose(np.exp(logp).sum(axis=1), 1, rtol=1e-6)
    assert_close(logp, want, dtype, "log-probabilities")
    assert_close(loss, float(ref.cross_entropy(np, y, want)), dtype, "loss")
    assert all(np.isfinite(g).all() for pair in grads for g in pair) and np.isfinite(h).all()


def test_the_users_arrays_are_unchanged():
    be = get_backend("numba")
    params, X, y = problem([5, 8, 3], 37, "float64", "softmax")
    copies = [a.copy() for a in (X, y)] + [a.copy() for pair in params for a in pair]
    be.train(be.params_from_numpy(params), X, y, lr=0.1, epochs=2, output="softmax", batch_size=10)
    labels = y.argmax(axis=1)
    copies.append(labels.copy())
    model = MLP([5, 8, 3], output="softmax", seed=1)
    before = [a.copy() for pair in model.params for a in pair]
    model.fit(X, labels, epochs=2, lr=0.1, batch_size=10, backend="numba")
    for a, b in zip([X, y] + [a for pair in params for a in pair] + [labels], copies):
        np.testing.assert_array_equal(a, b)
    assert any((a != b).any() for a, b in zip([a for pair in model.params for a in pair], before))


@pytest.mark.parametrize("output", ["sigmoid", "softmax"])
def test_divergence_raises_with_the_history_up_to_it(output):
    be = get_backend("numba")
    sizes = [5, 8, 3] if output == "softmax" else [5, 8, 1]
    params, X, y = problem(sizes, 37, "float64", output)
    X = X * 1e3
    with pytest.raises(TrainingDiverged) as info:
        be.train(be.params_from_numpy(params), X, y, lr=1e300, epochs=5, output=output, batch_size=10,
                 grad_reduction="sum")
    err = info.value
    assert 1 <= err.epoch <= 5 and len(err.history) == err.epoch and not np.isfinite(err.history[-1])
    assert np.isfinite(err.history[:-1]).all()
    model = MLP(sizes, output=output, seed=1)
    before = [a.copy() for pair in model.params for a in pair]
    with pytest.raises(TrainingDiverged):
        model.fit(X, y if output == "sigmoid" else y.argmax(axis=1), epochs=5, lr=1e300, batch_size=10,
                  backend="numba")
    for a, b in zip([a for pair in model.params for a in pair], before):
        np.testing.assert_array_equal(a, b)  # the model keeps its pre-fit params


# ---------------------------------------------------------------- checks run by test_numba_environments.py
def fused_minibatch_parity():
    """The kernels as plain Python (``NUMBA_DISABLE_JIT``, coverage), and without Numba's internals
    (``np.dot`` instead of ``numba_xxgemm``, no on-disk cache): the same trajectory as NumPy."""
    rng = np.random.RandomState(0)
    X = rng.randn(23, 3)
    for output, y in (("softmax", np.eye(3)[rng.randint(0, 3, 23)]), ("sigmoid", (rng.rand(23, 3) > 0.5) * 1.0)):
        kw = dict(lr=0.1, epochs=2, activation="tanh", grad_reduction="mean", output=output, batch_size=5,
                  shuffle_seed=4)
        ref, be = get_backend("numpy"), get_backend("numba")
        p, q = ref.params_from_numpy(init_params([3, 5, 3], 0)), be.params_from_numpy(init_params([3, 5, 3], 0))
        h_ref, h = ref.train(p, X, y, **kw), be.train(q, X, y, **kw)
        assert np.abs(h - h_ref).max() <= 1e-12 * np.abs(h_ref).max(), (output, h, h_ref)
        for (W, b), (V, c) in zip(p, q):
            assert np.abs(W - V).max() <= 1e-12 and np.abs(b - c).max() <= 1e-12, output
