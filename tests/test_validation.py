"""Bad input gets a clear ValueError/TypeError naming the argument, before any math."""

import numpy as np
import pytest

from mlpbench import MLP, datasets

X_AND, Y_AND = datasets.load("and")


def fit(X=X_AND, y=Y_AND, **kw):
    return MLP([2, 4, 1]).fit(X, y, **{"epochs": 3, **kw})


@pytest.mark.parametrize(
    "X, y, exc, match",
    [
        (np.zeros(4), Y_AND, ValueError, "X must be 2-D"),
        (np.zeros((4, 2, 1)), Y_AND, ValueError, "X must be 2-D"),
        (X_AND, np.zeros((4, 2)), ValueError, r"y must have shape \(4, 1\)"),
        (X_AND, np.zeros((4, 1, 1)), ValueError, "y must have shape"),
        (X_AND, np.zeros((3, 1)), ValueError, "y has 3 samples but X has 4"),
        (X_AND, np.zeros(3), ValueError, "y has 3 samples but X has 4"),
        (np.zeros((4, 3)), Y_AND, ValueError, r"X has 3 features but the model expects 2"),
        (np.array([[np.nan, 0.0]] * 4), Y_AND, ValueError, "X contains NaN or inf"),
        (np.array([[np.inf, 0.0]] * 4), Y_AND, ValueError, "X contains NaN or inf"),
        (X_AND, np.array([[0.0], [np.nan], [0.0], [1.0]]), ValueError, "y contains NaN or inf"),
        (X_AND, np.array([[0.0], [2.0], [0.0], [1.0]]), ValueError, r"y must lie in \[0, 1\]"),
        (X_AND, np.array([[0.0], [-0.5], [0.0], [1.0]]), ValueError, r"y must lie in \[0, 1\]"),
        (np.zeros((0, 2)), np.zeros((0, 1)), ValueError, "X must be non-empty"),
        (np.array([["a", "b"]] * 4), Y_AND, TypeError, "X must hold real numbers"),
        (X_AND.astype(complex), Y_AND, TypeError, "X must hold real numbers"),
        (X_AND.astype(bool), Y_AND, TypeError, "X must hold real numbers"),
        (X_AND, np.array([["0"], ["1"], ["1"], ["0"]]), TypeError, "y must hold real numbers"),
        (np.array([[1e39, 0.0]] * 4), Y_AND, None, None),
    ],
)
def test_bad_arrays(X, y, exc, match):
    if exc is None:  # fine in float64; the float32 model rejects it below
        fit(X, y)
        with pytest.raises(ValueError, match="X overflows float32"):
            MLP([2, 4, 1], dtype="float32").fit(X, y, epochs=1)
        return
    with pytest.raises(exc, match=match):
        fit(X, y)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"lr": 0}, ValueError, "lr must be finite and > 0"),
        ({"lr": -0.1}, ValueError, "lr must be finite and > 0"),
        ({"lr": float("nan")}, ValueError, "lr must be finite"),
        ({"lr": float("inf")}, ValueError, "lr must be finite"),
        ({"lr": "0.1"}, TypeError, "lr must be a real number"),
        ({"epochs": 0}, ValueError, "epochs must be >= 1"),
        ({"epochs": -5}, ValueError, "epochs must be >= 1"),
        ({"epochs": 2.5}, TypeError, "epochs must be an int"),
        ({"epochs": True}, TypeError, "epochs must be an int"),
        ({"grad_reduction": "avg"}, ValueError, "grad_reduction must be one of"),
        ({"backend": "tensorflow"}, ValueError, "unknown backend 'tensorflow'; known backends: numpy"),
        ({"backend": 3}, TypeError, "backend must be a string"),
        ({"callback": 5}, TypeError, "callback must be callable"),
    ],
)
def test_bad_fit_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        fit(**kwargs)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        ({"layer_sizes": [2, 0, 1]}, ValueError, r"layer_sizes\[1\] must be >= 1; got 0 in \[2, 0, 1\]"),
        ({"layer_sizes": [2, 4, -3]}, ValueError, r"layer_sizes\[2\] must be >= 1; got -3 in \[2, 4, -3\]"),
        ({"layer_sizes": [2]}, ValueError, "at least an input and an output"),
        ({"layer_sizes": [2, 4.5, 1]}, TypeError, r"layer_sizes\[1\] must be an int; got float 4.5 in"),
        ({"layer_sizes": [True, 4, 1]}, TypeError, r"layer_sizes\[0\] must be an int; got bool"),
        ({"layer_sizes": "241"}, TypeError, "layer_sizes must be a sequence"),
        ({"layer_sizes": 4}, TypeError, "layer_sizes must be a sequence"),
        ({"activation": "gelu"}, ValueError, "activation must be one of"),
        ({"activation": None}, TypeError, "activation must be a string"),
        ({"dtype": "int32"}, ValueError, "dtype must be one of"),
        ({"dtype": "float16"}, ValueError, "dtype must be one of"),
        ({"dtype": None}, ValueError, "dtype must be one of"),
        ({"dtype": "banana"}, TypeError, "dtype must be one of"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
    ],
)
def test_bad_model_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MLP(**kwargs)


def test_unknown_backend_from_environment(monkeypatch):
    monkeypatch.setenv("MLPBENCH_BACKEND", "nope")
    with pytest.raises(ValueError, match="unknown backend 'nope'"):
        fit()


def test_inputs_are_never_modified():
    X = np.asfortranarray(X_AND.copy())
    y = Y_AND.copy()
    X0, y0 = X.copy(), y.copy()
    model = MLP([2, 4, 1])
    model.fit(X, y, epochs=50)
    model.predict(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_fortran_int_and_list_inputs_give_the_same_result():
    ref = MLP([2, 4, 1]).fit(X_AND, Y_AND, epochs=200)
    for X, y in [
        (np.asfortranarray(X_AND), Y_AND),
        (X_AND.astype(np.int64), Y_AND.astype(np.int32).ravel()),
        (X_AND.tolist(), Y_AND.ravel().tolist()),
        (X_AND[:, ::-1][:, ::-1], Y_AND),  # non-contiguous view
    ]:
        np.testing.assert_array_equal(MLP([2, 4, 1]).fit(X, y, epochs=200), ref)


def test_params_getter_returns_copies():
    model = MLP([2, 4, 1])
    model.params[0][0][:] = 99
    assert (model.params[0][0] != 99).all()


def test_predict_threshold_is_checked():
    with pytest.raises(ValueError, match="threshold"):
        MLP().predict(X_AND, threshold=2)
