"""The per-shape whole-loop kernel (``fixed.train_loop_fixed``) and its branch-free ``exp`` (``scalar._exp``).

Each (shape, N, activation, dtype) here is one compilation (compile-time constants), the costliest in
the suite, so the grid is four of them chosen to reach every path of the kernel between them: depths 1
to 4, each hidden activation, both dtypes, a width-1 layer, 2 outputs, N = 8 (NumPy's 8-accumulator
sums), and divergence. The loss's paths are runtime arguments, so every kernel runs both: "sum" with 0/1
targets (the product of probabilities) and "mean" with soft targets (the per-term loss).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from mlpbench.backends import TrainingDiverged, get_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.core.params import init_params

from helpers import assert_close, flat

REF = NumpyBackend()


@pytest.fixture(scope="module", autouse=True)
def _numba_available():
    require_backend("numba")


def ulps(a, b):
    """``|a - b|`` in units of the last place of float64 ``b`` (``b`` may be long double)."""
    return np.abs((a.astype(np.longdouble) - b) / np.spacing(np.abs(b.astype(np.float64)))).astype(np.float64)


def test_exp_is_within_an_ulp_and_keeps_nan():
    from numba import njit

    from mlpbench.kernels.numba.scalar import _exp

    @njit
    def exp_all(x):
        out = np.empty_like(x)
        for i in range(x.size):
            out[i] = _exp(x[i])
        return out

    rng = np.random.RandomState(0)
    x = np.concatenate([np.linspace(-708.0, 709.78, 200_001), rng.uniform(-40, 40, 100_000),
                        rng.uniform(-1e-3, 1e-3, 10_000), [0.0, -0.0, 1.0, -1.0, 709.78, -708.0]])
    ours = exp_all(x)
    assert np.isfinite(ours).all()
    if np.finfo(np.longdouble).nmant > 52:  # x87 / quad long double: the true value to ~1e-19
        assert ulps(ours, np.exp(x.astype(np.longdouble))).max() < 1.0
    else:  # against libm's own (< 1 ulp) exp
        assert ulps(ours, np.exp(x)).max() <= 2.0
    assert np.isnan(_exp(np.nan))
    # below -708 it saturates at exp(-708), where 1 + exp(x) is 1 as it is for the true value
    assert 1.0 + _exp(-750.0) == 1.0 and _exp(-1e300) == _exp(-708.0) > 0.0


# (sizes, N, activation, dtype): every one is a tiny net the backend sends to the per-shape kernel
# (backends/numba/jit._use_fixed)
LAB = ([2, 4, 1], 4, "relu", "float64")  # the lab's kernel (compiled for the lab anyway): depth 2, ReLU
DEEP = ([3, 2, 1, 2, 2], 2, "sigmoid", "float64")  # depth 4, a width-1 layer, sigmoid; it also diverges below
CASES = [
    LAB,
    ([3, 2], 8, "relu", "float64"),  # depth 1 (no hidden activation), 2 outputs, N = 8: the 8-accumulator sums
    ([2, 2, 2, 1], 3, "tanh", "float32"),  # depth 3, tanh, float32
    DEEP,
]


def case_data(sizes, n, dtype, soft):
    rng = np.random.RandomState(len(sizes) + n)
    X = rng.uniform(-1, 1, (n, sizes[0])).astype(dtype)
    hard = rng.rand(n, sizes[-1]) < 0.7
    y = (rng.uniform(0.1, 0.9, (n, sizes[-1])) if soft else hard).astype(dtype)
    return X, y


@pytest.mark.parametrize("sizes, n, activation, dtype", CASES)
def test_fixed_kernel_matches_reference(sizes, n, activation, dtype):
    be = get_backend("numba", strategy="loop")
    p0 = init_params(sizes, 3, dtype)
    for grad_reduction, soft in (("sum", False), ("mean", True)):  # one compiled kernel runs both
        X, y = case_data(sizes, n, dtype, soft)
        p, pr = be.params_from_numpy(p0), REF.params_from_numpy(p0)
        kw = dict(lr=0.3, epochs=300, activation=activation, grad_reduction=grad_reduction)
        h, h_ref = be.train(p, X, y, **kw), REF.train(pr, X, y, **kw)
        where = f"{sizes} N={n} {activation} {grad_reduction}{' soft' if soft else ''}"
        assert be.last_run["fixed_shape"]
        assert h.dtype == np.float64 and h.shape == (300,)
        assert_close(h, h_ref, dtype, f"history {where}")
        assert_close(flat(p), flat(pr), dtype, f"params {where}")


def test_fixed_kernel_stops_at_the_first_nonfinite_loss_like_the_reference(monkeypatch):
    """Sigmoid hidden units, weights x 1e3 and lr 1e308 overflow to inf - inf in a few epochs (on DEEP's
    kernel: no compilation of its own)."""
    from mlpbench.backends.numba import jit as numba_jit

    sizes, n, _, dtype = DEEP
    X, y = case_data(sizes, n, dtype, soft=False)
    p0 = [(W * 1e3, b) for W, b in init_params(sizes, 42)]
    kw = dict(lr=1e308, epochs=50, activation="sigmoid")

    def diverged(be, generic=False):
        if generic:
            monkeypatch.setattr(numba_jit, "FIXED_MAX_MACS", -1)
        with pytest.raises(TrainingDiverged) as info, np.errstate(all="ignore"):
            be.train(be.params_from_numpy(p0), X, y, **kw)
        if be is not REF:
            assert be.last_run["fixed_shape"] is not generic
        return info.value

    ref = diverged(REF)
    fixed = diverged(get_backend("numba", strategy="loop"))
    generic = diverged(get_backend("numba", strategy="loop"), generic=True)
    assert fixed.epoch == generic.epoch == ref.epoch and ref.epoch < 50
    assert_close(fixed.history[:-1], ref.history[:-1], "float64", "history before the divergence")
    assert np.isnan(fixed.history[-1])
