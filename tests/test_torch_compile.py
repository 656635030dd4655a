"""The torch backend's ``compile`` option: the compiled epoch runs the reference's math, is compiled
once per shape outside the timed calls, and falls back to eager (with one warning) when it fails."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import require_backend

from mlpbench.backends import get_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.core.params import init_params

from helpers import assert_close, flat

SIZES = [3, 7, 2]


@pytest.fixture
def tb():
    require_backend("torch")
    from mlpbench.backends import torch_backend

    return torch_backend


def problem(dtype, n=33, seed=0):
    rng = np.random.RandomState(seed)
    X = rng.randn(n, SIZES[0]).astype(dtype)
    X[0] = 0  # ReLU's kink
    y = (rng.rand(n, SIZES[-1]) > 0.5).astype(dtype)
    return init_params(SIZES, seed + 1, dtype), X, y


def run(be, params0, X, y, **kw):
    """``train`` for 12 epochs, then 3 prepared steps: (history + step losses, final params)."""
    p = be.params_from_numpy(params0)
    bX, by = be.asarray(X), be.asarray(y)
    hist = list(be.train(p, bX, by, lr=0.05, epochs=12, **kw))
    handle = be.prepare(p, bX, by, lr=0.05, **kw)
    hist += [handle.step() for _ in range(3)]
    return np.array(hist), be.params_to_numpy(p)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_compiled_epoch_follows_the_reference_without_recompiling(tb, dtype):
    import torch

    params0, X, y = problem(dtype)
    kw = dict(activation="relu", grad_reduction="mean")
    want, want_params = run(NumpyBackend(), params0, X, y, **kw)
    be = get_backend("torch", device="cpu", threads=1, compile=True)
    p = be.params_from_numpy(params0)
    be.prepare(p, be.asarray(X), be.asarray(y), lr=0.05, **kw)  # compiles this shape, on copies of p
    # then no call may compile again: a guard that the copies passed and real params fail would show here
    with torch.compiler.set_stance("fail_on_recompile"):
        got, got_params = run(be, params0, X, y, **kw)
    assert [v for v in tb._COMPILED.values() if v is None] == [], "torch.compile failed here"
    assert_close(got, want, dtype, "compiled history and steps")
    assert_close(flat(got_params), flat(want_params), dtype, "params")
    # every lr and reduction share the one graph of this shape (lr and 1/N are inputs, not constants)
    compiled = len(tb._COMPILED)
    with torch.compiler.set_stance("fail_on_recompile"):
        run(be, params0, X, y, activation="relu", grad_reduction="sum")
    assert len(tb._COMPILED) == compiled


def test_a_failed_compile_warns_once_and_runs_eager(tb, monkeypatch):
    import torch

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(tb, "_COMPILED", {})
    monkeypatch.setattr(torch, "compile", broken)
    params0, X, y = problem("float64")
    want, want_params = run(get_backend("torch", device="cpu", compile=False), params0, X, y)
    be = get_backend("torch", device="cpu", compile=True)
    with pytest.warns(RuntimeWarning, match="torch.compile failed .*no C.. compiler here.*running eager") as rec:
        got, got_params = run(be, params0, X, y)
    assert len([w for w in rec if issubclass(w.category, RuntimeWarning)]) == 1
    np.testing.assert_array_equal(got, want)  # the very same eager path
    np.testing.assert_array_equal(flat(got_params), flat(want_params))


def test_eager_unless_asked(tb, monkeypatch):
    """``compile`` defaults to False (measured slower here; see the module docstring): nothing is compiled."""
    made = []
    monkeypatch.setattr(tb.TorchBackend, "_compile", lambda self, torch, params, X, *a: made.append(X.shape[0]))
    monkeypatch.setattr(tb, "_COMPILED", {})
    params0, X, y = problem("float64")
    be = get_backend("torch", device="cpu")
    assert be.compile is False and be.describe()["compile"] is False
    p = be.params_from_numpy(params0)
    be.train(p, be.asarray(X), be.asarray(y), lr=0.1, epochs=2)
    be.prepare(p, be.asarray(X), be.asarray(y), lr=0.1).step()
    assert made == []
    get_backend("torch", device="cpu", compile=True).prepare(p, be.asarray(X), be.asarray(y), lr=0.1)
    assert made == [33]


@pytest.mark.parametrize("value", ["auto", "yes", 1, None])
def test_compile_option_is_checked(tb, value):
    with pytest.raises(ValueError, match="compile must be True or False"):
        get_backend("torch", device="cpu", compile=value)
