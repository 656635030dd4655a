"""The lab reproduced bit for bit in float64 by the numpy backend.

The oracle is the lab's own code (``lab_code.py``) run live in this process, compared
with ``==``: both sides use the BLAS kernel this machine picks, so the comparison holds
on any CPU. The stored run (``tests/data/lab_*.npz``) stays as a cross-check within a
few ulps: another OpenBLAS kernel (``OPENBLAS_CORETYPE``) sums the tiny matmuls in another
order and moves the last bits.
"""

import functools
import os

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.cli.app import main
from lab_code import LAB_RUNS, run_lab

DATA = os.path.join(os.path.dirname(__file__), "data")
#: the BLAS that computed the stored files (``record_lab.py`` stores it in newer recordings)
RECORDED_WITH = "OpenBLAS 0.3.31, SkylakeX kernel, x86-64"
#: how far (normwise, in ulps of the tensor's largest element) another kernel moved the stored
#: values: at most 7 ulps under the Haswell, Sandybridge, Nehalem and Katmai kernels
CROSS_CHECK_ULPS = 16


def stored(name):
    with np.load(os.path.join(DATA, f"lab_{name}.npz")) as f:
        return {k: f[k] for k in f.files}


@functools.lru_cache(maxsize=None)
def live(name):
    """The lab's code run here, now, in this process."""
    return run_lab(name)


def blas_here():
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown BLAS"
    return ", ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} kernel"
                     for p in threadpool_info() if p.get("user_api") == "blas") or "unknown BLAS"


@pytest.mark.parametrize("name", ["and", "xor"])
def test_history_probabilities_and_params_equal_the_lab_code_run_here(name):
    lab = live(name)
    _, epochs, _ = LAB_RUNS[name]
    X, y = datasets.load(name)
    model = MLP([2, 4, 1], activation="relu", dtype="float64", seed=42)
    history = model.fit(X, y, lr=0.1, epochs=epochs, backend="numpy")
    assert history.dtype == np.float64 and history.shape == (epochs,)
    np.testing.assert_array_equal(history, lab["losses"])
    np.testing.assert_array_equal(model.predict_proba(X), lab["y_hat"])
    (W1, b1), (W2, b2) = model.params
    for ours, key in ((W1, "W1"), (b1, "b1"), (W2, "W2"), (b2, "b2")):
        np.testing.assert_array_equal(ours, lab[key])


@pytest.mark.parametrize("name", ["and", "xor"])
def test_stored_run_agrees_with_the_lab_code_within_a_few_ulps(name):
    """Guards the stored files (and the lab code): same printed lines, numbers within a few ulps."""
    here, lab = live(name), stored(name)
    assert list(here["lines"]) == list(lab["lines"])
    recorded = str(lab["blas"]) if "blas" in lab else RECORDED_WITH
    for key in ("losses", "y_hat", "W1", "b1", "W2", "b2"):
        ref = lab[key]
        ulps = np.max(np.abs(here[key] - ref)) / np.spacing(np.max(np.abs(ref)))
        assert ulps <= CROSS_CHECK_ULPS, (
            f"{name} {key}: {ulps:g} ulps from the stored run (recorded with {recorded}; here {blas_here()})")


def test_the_cross_check_would_catch_a_real_difference():
    lab = stored("and")
    moved = lab["losses"] * (1 + 1e-12)  # ~4500 ulps: more than any BLAS kernel's reordering
    ulps = np.max(np.abs(moved - lab["losses"])) / np.spacing(np.max(np.abs(lab["losses"])))
    assert ulps > CROSS_CHECK_ULPS


@pytest.mark.parametrize("name", ["and", "xor"])
def test_cli_prints_exactly_the_lab_lines(name, capsys):
    _, epochs, every = LAB_RUNS[name]
    rc = main(["train", "--dataset", name, "--hidden", "4", "--lr", "0.1", "--epochs", str(epochs),
               "--seed", "42", "--print-every", str(every), "--backend", "numpy"])
    assert rc == 0
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if ln.startswith("Epoch")]
    assert lines == list(live(name)["lines"])
    assert len(lines) == 11


def test_and_lab_first_and_last_lines():
    lines = list(live("and")["lines"])
    assert lines[0] == "Epoch    1 | Loss: 0.7045"
    assert lines[1] == "Epoch  500 | Loss: 0.0068"
    assert lines[-1] == "Epoch 5000 | Loss: 0.0006"


def test_xor_seed_42_does_not_learn_as_in_the_lab():
    """One hidden unit is dead from init: the lab's XOR run stalls near loss 0.477."""
    X, y = datasets.load("xor")
    model = MLP([2, 4, 1], seed=42)
    history = model.fit(X, y, lr=0.1, epochs=8000)
    assert history[-1] > 0.4
    assert (model.predict(X) == y).mean() < 1.0


def test_float32_and_lab_learns_the_same_labels_with_finite_losses():
    X, y = datasets.load("and")
    m64, m32 = MLP([2, 4, 1], dtype="float64"), MLP([2, 4, 1], dtype="float32")
    m64.fit(X, y, epochs=5000)
    h32 = m32.fit(X, y, epochs=5000)
    assert np.isfinite(h32).all()
    assert m32.params[0][0].dtype == np.float32
    np.testing.assert_array_equal(m32.predict(X), m64.predict(X))
    np.testing.assert_array_equal(m32.predict(X), y.astype(int))
    assert abs(h32[-1] - m64.history_[-1]) < 1e-3
