"""Parity: the error measure, every installed backend against the reference, and a corrupted backend caught."""

import json
import math

import numpy as np
import pytest

from mlpbench.suite import cases, parity
from mlpbench.backends import backend_names, get_backend, register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.cli.app import main


# ---------------------------------------------------------------- the error measure
def test_normwise_error_is_max_abs_difference_over_max_abs_reference():
    ref = np.array([[1.0, -4.0], [2.0, 0.5]])
    a = ref.copy()
    a[1, 0] += 1e-3
    assert parity.normwise_error(a, ref) == pytest.approx(1e-3 / 4.0)
    assert parity.normwise_error(ref, ref) == 0.0


def test_normwise_error_on_mismatches_and_non_finite_values():
    ref = np.array([1.0, np.nan, np.inf])
    assert parity.normwise_error(ref.copy(), ref) == 0.0  # the same NaN / inf pattern compares the rest
    assert parity.normwise_error(np.array([1.0, 0.0, np.inf]), ref) == math.inf
    assert parity.normwise_error(np.ones(3), np.ones(4)) == math.inf
    assert parity.normwise_error(np.zeros(0), np.zeros(0)) == 0.0
    # an all-zero reference falls back to the dtype's tiny: any difference is huge
    assert parity.normwise_error(np.array([1e-30], np.float32), np.zeros(1, np.float32)) > 1


def test_tolerances_are_defined_once_per_dtype_and_ulps_scale_by_epsilon():
    assert set(parity.TOLERANCES) == {"float64", "float32"}
    assert parity.TOLERANCES["float64"] < parity.TOLERANCES["float32"] < 1e-3
    assert parity.ulps(np.finfo(np.float32).eps * 3, "float32") == pytest.approx(3)


# ---------------------------------------------------------------- reference vs itself
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_backend_is_the_reference_bit_for_bit(dtype):
    results = parity.check_backend(NumpyBackend(), [16, 32, 24, 2], 20, dtype, "tanh", "mean", steps=2)
    names = [r.tensor for r in results]
    for t in ("y_hat", "loss", "dW1", "db1", "dW3", "db3", "losses of 2 steps", "W3 after 2 steps",
              "train loss history (2 epochs)", "b1 after train"):
        assert t in names
    assert all(r.passed and r.error == 0.0 for r in results)
    assert {r.tolerance for r in results} == {parity.TOLERANCES[dtype]}


def test_check_backend_validates_its_arguments():
    with pytest.raises(ValueError, match="activation"):
        parity.check_backend(NumpyBackend(), [2, 4, 1], 4, "float64", activation="gelu")
    with pytest.raises(ValueError, match="dtype"):
        parity.check_backend(NumpyBackend(), [2, 4, 1], 4, "float16")
    with pytest.raises(ValueError, match="n_samples"):
        parity.check_backend(NumpyBackend(), [2, 4, 1], 0, "float64")


# ---------------------------------------------------------------- every installed backend
# the quick preset's small cases, as check_backend runs them (the sigmoid head, full batch): each once
SMALL = list({(c.layer_sizes, c.n_samples, c.activation, c.grad_reduction, c.steps): c
              for c in cases.parity_cases("quick") if c.n_samples <= 100}.values())


#: the backends whose parity through ``parity.check_backend`` runs with ``-m slow`` (``.ci/run`` runs it): JAX
#: compiles every case's shapes with XLA, ~9 s a dtype here; its forward, gradients, steps and trajectory are
#: checked in the default run by test_peers.py (its grid) and test_minibatch.py (mini-batch and softmax)
SLOW_PARITY = {"jax"}
EVERY_BACKEND = [pytest.param(name, marks=[pytest.mark.slow] if name in SLOW_PARITY else []) for name in backend_names()]


@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)  # the fixture skips what cannot run
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_available_backend_matches_the_reference(backend_name, dtype):
    backend = get_backend(backend_name)
    results = []
    for c in SMALL:
        results += parity.check_backend(backend, c.layer_sizes, c.n_samples, dtype, c.activation, c.grad_reduction,
                                        c.steps)
    results += parity.check_lab(backend, "and", dtype)
    bad = parity.first_failure(results)
    assert bad is None, bad.describe()


# ---------------------------------------------------------------- a corrupted backend
class PerturbedGradient(NumpyBackend):
    """Shifts dW1 by 1e-3 of its largest entry: a plausible kernel bug, caught by parity."""

    name = "perturbed"

    def backward(self, params, cache, X, y, **kw):
        grads = super().backward(params, cache, X, y, **kw)
        dW, db = grads[0]
        grads[0] = (dW + 1e-3 * np.abs(dW).max(), db)
        return grads


class Raising(NumpyBackend):
    name = "raising"

    def backward(self, *args, **kw):
        raise RuntimeError("kernel launch failed")


@pytest.fixture
def fake_backends():
    register_backend("perturbed", PerturbedGradient)
    register_backend("raising", Raising)
    yield
    unregister_backend("perturbed")
    unregister_backend("raising")


def test_a_perturbed_gradient_fails_with_the_tensor_named(fake_backends):
    results = parity.check_backend(PerturbedGradient(), [2, 4, 1], 4, "float64")
    bad = parity.first_failure(results)
    assert bad is not None and bad.tensor == "dW1"
    assert bad.error > parity.TOLERANCES["float64"]
    assert "dW1" in bad.describe()
    ok, failure = parity.probe(PerturbedGradient(), [32, 64, 1], 1000, "float32", "relu")
    assert not ok and "dW1" in failure
    assert parity.probe(NumpyBackend(), [32, 64, 1], 1000, "float32", "relu") == (True, None)


class Upcasting(NumpyBackend):
    """Computes a float32 case in float64: more accurate, but not what was asked."""

    def forward(self, params, X, **kw):
        return super().forward([(W.astype(np.float64), b) for W, b in params], X.astype(np.float64), **kw)


def test_a_backend_returning_the_wrong_dtype_fails():
    results = parity.check_backend(Upcasting(), [2, 4, 1], 4, "float32")
    bad = parity.first_failure(results)
    assert bad.tensor == "y_hat" and bad.note == "dtype float64, expected float32"


def test_a_backend_that_raises_is_reported_not_crashing(fake_backends):
    results = parity.check_backend(Raising(), [2, 4, 1], 4, "float32")
    assert [r.tensor for r in results if r.passed] == ["y_hat", "loss"]
    bad = parity.first_failure(results)
    assert bad.tensor == "backward (raised)" and "kernel launch failed" in bad.note


def test_cli_parity_fails_and_names_the_first_failing_tensor(fake_backends, tmp_path, capsys):
    out = tmp_path / "parity.json"
    code = main(["parity", "--backends", "numpy,perturbed,raising", "--dtype", "float64", "--no-lab", "--quiet",
                 "--json", str(out)])
    text = capsys.readouterr()
    assert code == 1
    assert "first failing tensor: perturbed / relu/sum N=4 2-4-1 float64 / dW1" in text.out
    assert "FAIL" in text.out and "backward (raised)" in text.out
    doc = json.loads(out.read_text())
    assert doc["schema"] == "mlpbench.parity/1" and doc["passed"] is False
    assert doc["tolerances"] == parity.TOLERANCES
    assert {r["backend"] for r in doc["results"]} == {"numpy", "perturbed", "raising"}
    assert all(r["passed"] for r in doc["results"] if r["backend"] == "numpy")


def test_cli_parity_passes_and_skips_unavailable_backends_with_their_reason(capsys):
    code = main(["parity", "--backends", "numpy,cupy", "--dtype", "float32", "--no-lab", "--quiet"])
    text = capsys.readouterr()
    try:
        available = get_backend("cupy") is not None
    except Exception:
        available = False
    assert code == 0
    assert "parity OK" in text.out
    if not available:
        assert "skipping cupy:" in text.err


def test_cli_parity_rejects_bad_arguments(capsys):
    assert main(["parity", "--dtype", "float16"]) == 2
    assert main(["parity", "--preset", "nope"]) == 2
    assert "float16" in capsys.readouterr().err


# ---------------------------------------------------------------- mini-batch and softmax cases
WORKLOAD = [c for c in cases.parity_cases("quick") if c.output != "sigmoid" or c.batch_size is not None]


def test_the_workload_cases_cover_depths_heads_and_a_batch_size_that_does_not_divide_n():
    assert {c.output for c in WORKLOAD} == {"sigmoid", "softmax"}
    assert len({len(c.layer_sizes) for c in WORKLOAD if c.output == "softmax"}) >= 3
    assert any(c.batch_size and c.n_samples % c.batch_size for c in WORKLOAD)
    assert any(c.batch_size is None for c in WORKLOAD if c.output == "softmax")


@pytest.mark.parametrize("backend_name", EVERY_BACKEND, indirect=True)  # the fixture skips what cannot run
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_backend_declaring_the_head_matches_the_reference_on_workload_cases(backend_name, dtype):
    backend = get_backend(backend_name)
    results = []
    for c in WORKLOAD:
        if c.output not in backend.outputs:
            continue  # the refusal is tested in test_minibatch.py
        results += parity.check_backend(backend, c.layer_sizes, c.n_samples, dtype, c.activation, c.grad_reduction,
                                        c.steps, output=c.output, batch_size=c.batch_size)
    assert results  # every backend runs at least the sigmoid mini-batch case
    assert any("batches of" in r.tensor for r in results)
    bad = parity.first_failure(results)
    assert bad is None, bad.describe()


def test_parity_catches_a_wrong_softmax_gradient():
    class WrongSoftmax(NumpyBackend):
        name = "wrong_softmax"

        def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
            grads = super()._backward(params, cache, X, y, activation, grad_reduction, output)
            dW, db = grads[-1]
            grads[-1] = (dW, db * 1.001)
            return grads

    results = parity.check_backend(WrongSoftmax(), (8, 16, 3), 37, "float64", "tanh", "mean",
                                   output="softmax", batch_size=10)
    bad = parity.first_failure(results)
    assert bad is not None and bad.tensor == "db2"
    # the same backend on the sigmoid head is fine: the corruption is in the softmax path only
    assert parity.first_failure(parity.check_backend(NumpyBackend(), (8, 16, 3), 37, "float64", "tanh", "mean",
                                                     output="softmax", batch_size=10)) is None


def test_a_shuffled_minibatch_trajectory_differs_from_full_batch():
    full = {r.tensor: r for r in parity.check_backend(NumpyBackend(), (6, 12, 2), 40, "float64", "relu", "mean")}
    mini = {r.tensor: r for r in parity.check_backend(NumpyBackend(), (6, 12, 2), 40, "float64", "relu", "mean",
                                                      batch_size=8)}
    assert "train loss history (3 epochs of batches of 8)" in mini
    assert "train loss history (3 epochs)" in full
