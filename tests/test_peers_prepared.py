"""The peers' prepared steps (the path the bench times): the same results as ``step`` whatever the
caller's JAX x64 setting, which they leave as they found it."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from mlpbench.backends import get_backend
from mlpbench.core.params import init_params

SIZES = [3, 5, 1]


def problem(be, dtype):
    rng = np.random.RandomState(7)
    X = rng.uniform(-1, 1, (6, SIZES[0])).astype(dtype)
    y = (rng.rand(6, SIZES[-1]) > 0.5).astype(dtype)
    return be.params_from_numpy(init_params(SIZES, 8, dtype)), be.asarray(X), be.asarray(y)


@pytest.mark.parametrize("caller_x64", [False, True])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_jax_prepared_step_in_either_caller_x64_mode(dtype, caller_x64):
    """float32's prepared step runs in the caller's mode (no x64 needed), float64's turns it on for
    the call: either way the losses and params equal ``step``'s, bit for bit."""
    require_backend("jax")
    import jax

    be = get_backend("jax", device="cpu")
    p1, X, y = problem(be, dtype)
    p2, _, _ = problem(be, dtype)
    want = [be.step(p1, X, y, lr=0.2, activation="tanh") for _ in range(4)]
    before = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", caller_x64)
    try:
        handle = be.prepare(p2, X, y, lr=0.2, activation="tanh")
        got = [handle.step() for _ in range(4)]
        be.synchronize()
        assert bool(jax.config.jax_enable_x64) is caller_x64
    finally:
        jax.config.update("jax_enable_x64", before)
    assert got == want and all(isinstance(v, float) for v in got)
    for (W1, b1), (W2, b2) in zip(be.params_to_numpy(p1), be.params_to_numpy(p2)):
        assert W2.dtype == np.dtype(dtype)
        np.testing.assert_array_equal(W1, W2)
        np.testing.assert_array_equal(b1, b2)


def test_jax_synchronize_waits_for_the_last_result_then_has_nothing_left():
    require_backend("jax")
    be = get_backend("jax", device="cpu")
    a = be.asarray(np.arange(6.0))
    assert be._last is a
    be.synchronize()
    assert be._last is None
    be.synchronize()  # nothing pending: a no-op
