"""``Backend.prepare``: arguments checked once; the handle's results equal ``step`` / ``train`` on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbench.backends import get_backend
from mlpbench.suite.cases import make_data
from mlpbench.core.params import init_params

SIZES = [3, 5, 2]


def _setup(be, dtype, n=7):
    X, y = make_data(n, SIZES, dtype, seed=3)
    params = init_params(SIZES, 5, dtype)
    return be.params_from_numpy(params), be.asarray(X), be.asarray(y)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_prepared_run_and_step_equal_train_and_step(backend_name, dtype):
    be = get_backend(backend_name)
    p1, X, y = _setup(be, dtype)
    p2, _, _ = _setup(be, dtype)
    want = be.train(p1, X, y, lr=0.05, epochs=6, activation="tanh", grad_reduction="mean")
    handle = be.prepare(p2, X, y, lr=0.05, activation="tanh", grad_reduction="mean")
    got = handle.run(6)
    np.testing.assert_array_equal(got, want)
    for (W1, b1), (W2, b2) in zip(be.params_to_numpy(p1), be.params_to_numpy(p2)):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)
    loss_a = be.step(p1, X, y, lr=0.05, activation="tanh", grad_reduction="mean")
    loss_b = handle.step()
    assert loss_a == loss_b and np.isfinite(loss_b)


@pytest.mark.parametrize("kwargs, match", [
    ({"lr": -1.0}, "lr"), ({"lr": 0.1, "activation": "gelu"}, "activation"),
    ({"lr": 0.1, "grad_reduction": "max"}, "grad_reduction"),
])
def test_prepare_checks_its_arguments_once_up_front(kwargs, match):
    be = get_backend("numpy")
    p, X, y = _setup(be, "float64")
    with pytest.raises(ValueError, match=match):
        be.prepare(p, X, y, **kwargs)


def test_prepared_run_checks_epochs_and_callback():
    be = get_backend("numpy")
    p, X, y = _setup(be, "float64")
    handle = be.prepare(p, X, y, lr=0.1)
    with pytest.raises(ValueError, match="epochs"):
        handle.run(0)
    with pytest.raises(TypeError, match="callback"):
        handle.run(2, callback=3)
    seen = []
    handle.run(3, callback=lambda e, loss: seen.append(e))
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_prepared_steps_equal_steps_over_many_epochs(backend_name, dtype):
    be = get_backend(backend_name)
    p1, X, y = _setup(be, dtype)
    p2, _, _ = _setup(be, dtype)
    handle = be.prepare(p2, X, y, lr=0.1, activation="relu")
    want = [be.step(p1, X, y, lr=0.1, activation="relu") for _ in range(5)]
    got = [handle.step() for _ in range(5)]
    assert got == want and all(isinstance(g, float) for g in got)
    for (W1, b1), (W2, b2) in zip(be.params_to_numpy(p1), be.params_to_numpy(p2)):
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


def test_numba_prepared_step_calls_the_compiled_entry_point():
    pytest.importorskip("numba")
    from mlpbench.backends.numba.prepared import NumbaPrepared
    from mlpbench.kernels.numba import internals as numba_internals

    be = get_backend("numba")
    p, X, y = _setup(be, "float64", n=1)
    handle = be.prepare(p, X, y, lr=0.1)
    assert isinstance(handle, NumbaPrepared)
    before = be.params_to_numpy(p)
    handle.step()  # the first step resolves the kernel and packs its arguments
    dispatcher = handle.stepper.kernel
    if numba_internals.PUBLIC_ONLY:
        assert handle._call is dispatcher
    else:  # the entry point skips the dispatcher's typing of every argument
        assert handle._call is not dispatcher and callable(handle._call)
    assert not np.array_equal(before[0][0], be.params_to_numpy(p)[0][0])  # updated in place


def test_numba_prepare_on_foreign_params_takes_the_generic_handle():
    pytest.importorskip("numba")
    from mlpbench.backends.base import Prepared
    from mlpbench.backends.numba.prepared import NumbaPrepared

    be = get_backend("numba")
    X, y = make_data(4, SIZES, "float64", seed=3)
    params = [(W.copy(), b.copy()) for W, b in init_params(SIZES, 5, "float64")]  # not views of one vector
    handle = be.prepare(params, X, y, lr=0.1)
    assert type(handle) is Prepared and not isinstance(handle, NumbaPrepared)
    ref = [(W.copy(), b.copy()) for W, b in init_params(SIZES, 5, "float64")]
    assert handle.step() == be.step(ref, X, y, lr=0.1)
    np.testing.assert_array_equal(params[0][0], ref[0][0])


def test_jax_prepared_step_donates_the_old_params_buffers():
    pytest.importorskip("jax")
    be = get_backend("jax")
    p, X, y = _setup(be, "float64")
    user = init_params(SIZES, 5, "float64")
    handle = be.prepare(p, X, y, lr=0.1)
    old_W = p[0][0]
    handle.step()
    assert p[0][0] is not old_W and old_W.is_deleted()  # reused for the new params, not copied
    np.testing.assert_array_equal(user[0][0], init_params(SIZES, 5, "float64")[0][0])


def test_fit_trains_through_prepare(monkeypatch):
    from mlpbench import MLP
    from mlpbench.backends.base import Backend

    calls = []
    real = Backend.prepare

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Backend, "prepare", spy)
    X, y = make_data(6, [2, 3, 1], "float64", seed=1)
    hist = MLP([2, 3, 1], seed=0).fit(X, y, lr=0.2, epochs=4, backend="numpy", grad_reduction="mean")
    assert len(hist) == 4 and calls == [{"lr": 0.2, "activation": "relu", "grad_reduction": "mean"}]
