"""The reference math validated on its own: finite differences, stability, warnings."""

import warnings

import numpy as np
import pytest

from mlpbench.kernels import reference as ref
from mlpbench.core.params import init_params


def loss_for_grad(params, X, y, activation, grad_reduction):
    """The function whose gradient `backward` returns: the summed BCE (lab) or the mean BCE."""
    y_hat, _ = ref.forward(np, params, X, activation)
    # unclipped BCE: the lab's output gradient y_hat - y ignores the clip
    total = -np.sum(y * np.log(y_hat) + (1 - y) * np.log(1 - y_hat))
    return total if grad_reduction == "sum" else total / X.shape[0]


def assert_finite_differences(params, grads, loss, h=1e-6, tol=1e-6):
    """Every gradient entry against a central difference of ``loss()`` (params perturbed in place, then restored)."""
    for li, (W, b) in enumerate(params):
        for arr, g in ((W, grads[li][0]), (b, grads[li][1])):
            assert g.shape == arr.shape
            num = np.zeros_like(arr)
            for idx in np.ndindex(arr.shape):
                old = arr[idx]
                arr[idx] = old + h
                up = loss()
                arr[idx] = old - h
                down = loss()
                arr[idx] = old
                num[idx] = (up - down) / (2 * h)
            err = np.max(np.abs(num - g)) / max(np.max(np.abs(g)), np.max(np.abs(num)), 1e-8)
            assert err <= tol, (li, err)


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("grad_reduction", ["sum", "mean"])
def test_backward_matches_central_finite_differences(activation, depth, grad_reduction):
    rng = np.random.RandomState(depth * 7 + len(activation))
    sizes = [int(rng.randint(1, 5))] + [int(rng.randint(1, 6)) for _ in range(depth - 1)] + [int(rng.randint(1, 3))]
    n = int(rng.randint(1, 9))
    params = init_params(sizes, seed=int(rng.randint(1000)))
    # shift biases away from 0 so no ReLU input sits at its kink
    params = [(W, b + rng.uniform(0.05, 0.3, b.shape)) for W, b in params]
    X = rng.randn(n, sizes[0])
    y = (rng.rand(n, sizes[-1]) > 0.5).astype(float)
    _, acts = ref.forward(np, params, X, activation)
    grads = ref.backward(np, params, acts, y, activation, grad_reduction)
    assert_finite_differences(params, grads, lambda: loss_for_grad(params, X, y, activation, grad_reduction))


def test_relu_derivative_is_zero_at_zero():
    a = ref.relu(np, np.array([[-1.0, 0.0, 2.0]]))
    d = ref.relu_backward(np, np.ones((1, 3)), a)
    np.testing.assert_array_equal(d, [[0.0, 0.0, 1.0]])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sigmoid_and_loss_raise_no_warning_for_huge_inputs(dtype):
    z = np.array([[-1e4, -800.0, -100.0, -1.0, 0.0, 1.0, 100.0, 800.0, 1e4]], dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is benign
            p = ref.sigmoid(np, z)
            loss = ref.bce_loss(np, np.ones_like(p), p)
            loss0 = ref.bce_loss(np, np.zeros_like(p), p)
    assert p.dtype == dtype
    assert np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all()
    assert np.isfinite(loss) and np.isfinite(loss0)
    assert p[0, 4] == 0.5


def test_sigmoid_equals_the_lab_formula_wherever_it_does_not_overflow():
    z = np.linspace(-709.78, 709.78, 200001).reshape(1, -1)
    lab = 1 / (1 + np.exp(-z))
    np.testing.assert_array_equal(ref.sigmoid(np, z), lab)


def test_float64_loss_uses_the_lab_clip():
    p = np.array([[0.0], [1.0], [0.3]])
    y = np.array([[0.0], [1.0], [1.0]])
    lab_p = np.clip(p, 1e-8, 1 - 1e-8)
    lab = -np.mean(y * np.log(lab_p) + (1 - y) * np.log(1 - lab_p))
    assert ref.bce_loss(np, y, p) == lab


def test_float32_loss_stays_finite_where_the_lab_clip_does_not():
    p = np.array([[1.0], [0.0]], dtype=np.float32)
    y = np.array([[0.0], [1.0]], dtype=np.float32)
    assert np.float32(1) - np.float32(1e-8) == 1  # why the lab's clip fails in float32
    assert np.isfinite(ref.bce_loss(np, y, p))


def test_init_params_is_the_lab_draw_order():
    rs = np.random.RandomState(42)
    W1, W2 = rs.randn(2, 4) * 0.5, rs.randn(4, 1) * 0.5
    (a, b1), (c, b2) = init_params([2, 4, 1], seed=42)
    np.testing.assert_array_equal(a, W1)
    np.testing.assert_array_equal(c, W2)
    assert not b1.any() and not b2.any() and b1.shape == (1, 4) and b2.shape == (1, 1)


def test_init_params_leaves_the_global_rng_alone():
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    init_params([3, 5, 2], seed=1)
    assert np.random.rand() == expected


# ---------------------------------------------------------------- the softmax head
def summed_cross_entropy(params, X, y, activation, grad_reduction):
    """The function whose gradient the softmax head's `backward` returns: summed (or mean) cross-entropy."""
    logits = X
    for i, (W, b) in enumerate(params):
        z = logits @ W + b
        logits = z if i == len(params) - 1 else ref.ACTIVATIONS[activation](np, z)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)  # the textbook formula, small logits only
    total = -np.sum(y * np.log(p))
    return total if grad_reduction == "sum" else total / X.shape[0]


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("grad_reduction", ["sum", "mean"])
def test_softmax_backward_matches_central_finite_differences(activation, depth, grad_reduction):
    rng = np.random.RandomState(depth * 11 + len(activation))
    k = int(rng.randint(2, 5))
    sizes = [int(rng.randint(1, 5))] + [int(rng.randint(1, 6)) for _ in range(depth - 1)] + [k]
    n = int(rng.randint(1, 9))
    params = [(W, b + rng.uniform(0.05, 0.3, b.shape)) for W, b in init_params(sizes, seed=int(rng.randint(1000)))]
    X = rng.randn(n, sizes[0])
    y = np.eye(k)[rng.randint(0, k, n)]
    logp, acts = ref.forward(np, params, X, activation, "softmax")
    assert acts[-1] is logp
    grads = ref.backward(np, params, acts, y, activation, grad_reduction, "softmax")
    # the reported loss is the batch mean: the summed loss over N
    np.testing.assert_allclose(float(ref.loss(np, y, logp, "softmax")) * n,
                               summed_cross_entropy(params, X, y, activation, "sum"), rtol=1e-12)
    assert_finite_differences(params, grads,
                              lambda: summed_cross_entropy(params, X, y, activation, grad_reduction))


def test_softmax_output_error_is_softmax_minus_onehot_over_n_under_mean():
    z = np.array([[1.0, 2.0, 3.0], [0.5, -0.5, 0.0]])
    y = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    logp = ref.log_softmax(np, z)
    np.testing.assert_allclose(ref.output_error(logp, y, "sum", np, "softmax"), p - y, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(ref.output_error(logp, y, "mean", np, "softmax"), (p - y) / 2, rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_log_softmax_and_cross_entropy_are_stable_for_huge_logits(dtype):
    z = np.array([[-1e4, 0.0, 1e4], [1e4, 1e4, -1e4], [-1e4, -1e4, -1e4], [3.0, 1.0, 0.2]], dtype=dtype)
    y = np.eye(3, dtype=dtype)[[0, 2, 1, 0]]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with np.errstate(over="raise", invalid="raise", divide="raise"):  # underflow to 0 is benign
            logp = ref.log_softmax(np, z)
            loss = float(ref.loss(np, y, logp, "softmax"))
            dz = ref.output_error(logp, y, "mean", np, "softmax")
    assert logp.dtype == dtype and dz.dtype == dtype
    assert np.isfinite(logp).all() and (logp <= 0).all()
    # exact values: -2e4 for the first row's class 0; log(1/2) in row 2; log(1/3) in row 3
    assert logp[0, 0] == -2e4 and logp[0, 2] == 0
    np.testing.assert_allclose(logp[1, :2], np.log(0.5), rtol=1e-6)
    np.testing.assert_allclose(logp[2], np.log(1 / 3), rtol=1e-6)
    ref_row3 = z[3].astype(np.float64) - np.log(np.exp(z[3].astype(np.float64)).sum())
    np.testing.assert_allclose(logp[3], ref_row3, rtol=1e-6)
    # loss: mean of 2e4, 2e4 + log 2, log 3, -logp[3, 0]
    want = (2e4 + (2e4 + np.log(2)) + np.log(3) - ref_row3[0]) / 4
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert np.isfinite(dz).all() and np.all(np.abs(dz) <= 1)


def test_sigmoid_head_is_the_default_and_unchanged():
    rng = np.random.RandomState(3)
    params = init_params([3, 4, 2], seed=1)
    X, y = rng.randn(5, 3), (rng.rand(5, 2) > 0.5).astype(float)
    a, acts_a = ref.forward(np, params, X, "tanh")
    b, acts_b = ref.forward(np, params, X, "tanh", "sigmoid")
    np.testing.assert_array_equal(a, b)
    for (dW, db), (eW, eb) in zip(ref.backward(np, params, acts_a, y, "tanh", "mean"),
                                  ref.backward(np, params, acts_b, y, "tanh", "mean", "sigmoid")):
        np.testing.assert_array_equal(dW, eW)
        np.testing.assert_array_equal(db, eb)
    assert float(ref.loss(np, y, a)) == ref.bce_loss(np, y, a)
