"""``mlpbench.suite.idiomatic``: plain JAX / PyTorch code for the lab's MLP computes the reference's math.

The idiomatic builders are the peers' yardstick (issue 13, item 5), so they must
run the same math as ``kernels/reference.py``: the same losses step after step,
and the same history from ``train``, to the per-dtype bars of ``helpers.TOL``
(their formulas differ from the reference's in rounding only: ``jax.nn.sigmoid``,
``binary_cross_entropy``, autograd through ``binary_cross_entropy_with_logits``, which
has no clip: the same loss wherever the clip is inactive, as here). No timing is
asserted here.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from mlpbench.suite import idiomatic
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.suite.cases import Case, make_data
from mlpbench.core.params import init_params

from helpers import assert_close

SIZES = [3, 6, 5, 1]


def need(library):
    """Skip, with the reason, where the library behind ``library`` is not installed."""
    module = library.partition(".")[0]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed (pip install 'mlpbench[peers]')")


def problem(dtype, n=9, seed=2):
    """Params, inputs (one row all zeros: ReLU's kink) and 0/1 targets, as NumPy arrays."""
    X, y = make_data(n, SIZES, dtype, seed=seed)
    X[0] = 0
    return init_params(SIZES, seed + 1, dtype), X, y


def reference_losses(params, X, y, lr, steps, grad_reduction):
    ref = NumpyBackend()
    p = ref.params_from_numpy(params)
    return [ref.step(p, X, y, lr=lr, grad_reduction=grad_reduction) for _ in range(steps)]


@pytest.mark.parametrize("grad_reduction", ["sum", "mean"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("library", ["jax", "torch", "torch.autograd"])
def test_step_losses_follow_the_reference(library, dtype, grad_reduction):
    need(library)
    params, X, y = problem(dtype)
    lr = 0.3 if grad_reduction == "mean" else 0.05
    want = reference_losses(params, X, y, lr, 6, grad_reduction)
    step = idiomatic.build(library, "step", params, X, y, lr, grad_reduction=grad_reduction)
    got = [step() for _ in range(6)]
    assert all(isinstance(v, float) for v in got)
    assert_close(got, want, dtype, f"{library} step losses")
    assert got[-1] < got[0], "six steps of a small lr should lower the loss"


@pytest.mark.parametrize("library, dtype", [("jax", "float64"), ("jax", "float32"), ("torch", "float64"),
                                            ("torch", "float32"), ("torch.compile", "float32"),
                                            ("torch.autograd", "float64")])
def test_train_histories_continue_the_reference_trajectory(library, dtype):
    """Two calls of ``train`` (4 epochs each) = the reference's 8 steps: params carry over between calls."""
    need(library)
    params, X, y = problem(dtype)
    want = reference_losses(params, X, y, 0.1, 8, "sum")
    train = idiomatic.build(library, "train", params, X, y, 0.1, epochs=4)
    first, second = train(), train()
    assert first.dtype == second.dtype == np.float64 and first.shape == second.shape == (4,)
    assert_close(np.concatenate([first, second]), want, dtype, f"{library} train history")


def test_builders_leave_the_callers_arrays_alone():
    need("torch")
    params, X, y = problem("float64")
    before = [a.copy() for pair in params for a in pair] + [X.copy(), y.copy()]
    idiomatic.build("torch", "train", params, X, y, 0.1, epochs=3)()
    after = [a for pair in params for a in pair] + [X, y]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_case_builder_runs_a_bench_case():
    """The bench's reference-row hook: ``builder(case, X, y)`` for the case's own params and settings."""
    need("jax")
    case = Case("train", 8, (2, 4, 1), "float64", epochs=5, lr=0.2, grad_reduction="mean", seed=4)
    X, y = make_data(8, case.layer_sizes, "float64", seed=4)
    got = idiomatic.case_builder("jax")(case, X, y)()
    ref = NumpyBackend()
    p = ref.params_from_numpy(init_params(case.layer_sizes, case.seed, "float64"))
    want = ref.train(p, X, y, lr=0.2, epochs=5, grad_reduction="mean")
    assert_close(got, want, "float64", "case history")
    with pytest.raises(ValueError, match="activation"):
        idiomatic.case_builder("jax")(Case("step", 8, (2, 4, 1), "float64", activation="tanh"), X, y)


@pytest.mark.parametrize("args, kwargs, error, match", [
    (("numpy", "step"), {}, ValueError, "library"),
    (("jax", "forward"), {}, ValueError, "op"),
    (("jax", "train"), {"epochs": 0}, ValueError, "epochs"),
    (("jax", "step"), {"grad_reduction": "max"}, ValueError, "grad_reduction"),
])
def test_bad_arguments_are_named_before_anything_runs(args, kwargs, error, match):
    params, X, y = problem("float64")
    with pytest.raises(error, match=match):
        idiomatic.build(*args, params, X, y, 0.1, **kwargs)


def test_mixed_or_integer_dtypes_are_a_type_error():
    params, X, y = problem("float64")
    with pytest.raises(TypeError, match="float32 or float64"):
        idiomatic.build("jax", "step", params, X, y.astype(np.float32), 0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        idiomatic.build("jax", "step", params, X.astype(int), y.astype(int), 0.1)
    with pytest.raises(ValueError, match="same number of rows"):
        idiomatic.build("jax", "step", params, X, y[:-1], 0.1)


# ---------------------------------------------------------------- as reference rows of the bench
@pytest.mark.parametrize("name", ["idiomatic-jax", "idiomatic-torch", "idiomatic-torch.compile"])
def test_idiomatic_reference_rows_build_one_timed_call(name):
    from mlpbench.suite import references
    from mlpbench.suite.cases import case_data

    ref = references.REFERENCES[name]
    need(name.split("-", 1)[1])
    case = Case("step", 9, (3, 6, 1), "float64")
    assert ref.applies(case) is None and ref.peer == name.split("-", 1)[1].split(".")[0]
    for other in (Case("epoch", 9, (3, 6, 1), "float64", batch_size=4), Case("step", 9, (3, 6, 1), "float64", "tanh")):
        assert ref.applies(other)  # a reason, not None
    X, y = case_data(case)
    X0 = X.copy()
    subject, warmup_s = references.reference_subject(name, ref, case, X, y)
    first, second = subject.fn(), subject.fn()
    assert warmup_s > 0 and np.isfinite(first) and second < first  # training goes on from call to call
    assert np.array_equal(X, X0)


def test_yardsticks_compare_a_peer_with_its_rows_round_by_round():
    from mlpbench.suite import references

    def point(backend, samples, case="step f64 N=9 3-6-1"):
        return {"backend": backend, "case": case, "samples_s": samples}

    rounds = 12
    points = [point("torch", [1.05] * rounds), point("idiomatic-torch", [1.0] * rounds),
              point("idiomatic-torch.compile", [0.5] * rounds), point("jax", [1.0] * 3), point("idiomatic-jax", [1.0] * 3),
              point("torch", [1.0] * rounds, "other"), point("numpy", [9.0] * rounds)]
    lines = references.yardsticks(points)
    assert "torch / idiomatic-torch at step f64 N=9 3-6-1: 1.05x [1.05, 1.05]: within 10%" in lines
    assert "torch / idiomatic-torch.compile at step f64 N=9 3-6-1: 2.1x [2.1, 2.1]: slower by more than 10%" in lines
    assert "jax / idiomatic-jax at step f64 N=9 3-6-1: 1x: undecided (too few rounds)" in lines
    assert len(lines) == 3  # "other" has no yardstick row, numpy none at all
