"""``Backend.prepare``: arguments checked once; the handle's results equal ``step`` / ``train`` on every backend."""

from __future__ import annotations

import numpy as np
import pytest

from mlpbench.backends import get_backend
from mlpbench.cases import make_data
from mlpbench.params import init_params

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
