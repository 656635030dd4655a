"""No silent coercion: a value is used as given, or refused naming the argument."""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.auto import choose as auto
from mlpbench.backends import backend_from_env
from mlpbench.cli.app import main

NON_NATIVE = np.dtype("float64").newbyteorder("S")


@pytest.mark.parametrize("sizes", [{2, 4, 1}, {2: 1, 4: 1, 1: 1}, (s for s in (2, 4, 1)), frozenset({2, 1}),
                                   iter([2, 4, 1])])
def test_unordered_or_one_shot_layer_sizes_are_refused(sizes):
    with pytest.raises(TypeError, match="layer_sizes must be a sequence"):
        MLP(sizes)


@pytest.mark.parametrize("sizes", [[2, 4, 1], (2, 4, 1), np.array([2, 4, 1]), range(2, 5)])
def test_ordered_layer_sizes_are_accepted(sizes):
    assert MLP(sizes).layer_sizes == [int(s) for s in sizes]


@pytest.mark.parametrize("dtype", [">f8", "<f4" if NON_NATIVE.byteorder == "<" else ">f4", NON_NATIVE,
                                   NON_NATIVE.newbyteorder("S").newbyteorder("S")])
def test_non_native_byte_order_is_refused(dtype):
    with pytest.raises(ValueError, match="native byte order"):
        MLP([2, 4, 1], dtype=dtype)


@pytest.mark.parametrize("dtype", ["float64", "=f8", np.float32, np.dtype("float32")])
def test_native_dtypes_are_accepted_and_saved_reloadable(dtype, tmp_path):
    m = MLP([2, 3, 1], dtype=dtype)
    m.save(tmp_path / "m.npz")
    assert MLP.load(tmp_path / "m.npz").dtype == m.dtype == np.dtype(np.dtype(dtype).name)


@pytest.mark.parametrize("threshold, error", [(True, TypeError), (np.bool_(False), TypeError), ("0.5", TypeError),
                                              (None, TypeError), (float("nan"), ValueError), (1.5, ValueError),
                                              (-0.1, ValueError)])
def test_bad_thresholds_are_refused(threshold, error):
    X, _ = datasets.load("and")
    with pytest.raises(error, match="threshold"):
        MLP().predict(X, threshold=threshold)


@pytest.mark.parametrize("threshold", [np.int64(1), np.int32(0), np.float32(0.5), 0, 1, 0.25])
def test_numeric_thresholds_of_any_numpy_type_are_accepted(threshold):
    X, _ = datasets.load("and")
    assert MLP().predict(X, threshold=threshold).shape == (4, 1)


@pytest.mark.parametrize("seed, error", [(-1, ValueError), (2**32, ValueError), (True, TypeError), (1.0, TypeError)])
def test_seed_errors_name_the_argument_and_range(seed, error):
    with pytest.raises(error, match="seed must be an int"):
        MLP(seed=seed)


def test_cache_dir_expands_the_home_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    for value, expected in (("~/x", tmp_path / "x"), ("~", tmp_path), ("/abs/dir", "/abs/dir")):
        monkeypatch.setenv("MLPBENCH_CACHE_DIR", value)
        assert auto.cache_dir() == str(expected)
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", "")
    assert auto.cache_dir().endswith(os.path.join("", "mlpbench")) and "~" not in auto.cache_dir()
    monkeypatch.setenv("XDG_CACHE_HOME", "~/c")
    assert auto.cache_dir() == str(tmp_path / "c" / "mlpbench")


@pytest.mark.parametrize("value, expected", [("", "numpy"), ("  ", "numpy"), ("numpy", "numpy"), ("auto", "auto")])
def test_backend_variable(monkeypatch, value, expected):
    monkeypatch.setenv("MLPBENCH_BACKEND", value)
    assert backend_from_env() == expected


@pytest.mark.parametrize("value", ["nonsense", "NUMPY", "numpy[threads=1]"])
def test_bad_backend_variable_is_named(monkeypatch, value):
    monkeypatch.setenv("MLPBENCH_BACKEND", value)
    with pytest.raises(ValueError, match=r"MLPBENCH_BACKEND="):
        backend_from_env()
    X, y = datasets.load("and")
    with pytest.raises(ValueError, match=r"MLPBENCH_BACKEND="):
        MLP().fit(X, y, epochs=1)


@pytest.mark.parametrize("soft", [0.7, 0.8, 0.9])
def test_train_report_does_not_truncate_soft_labels(tmp_path, capsys, soft):
    """Targets 0 / ``soft``: the old report cast ``soft`` to 0 and scored a perfect model at 75%."""
    csv = tmp_path / "soft.csv"
    csv.write_text("".join(f"{a},{b},{soft if a or b else 0}\n" for a in (0, 1) for b in (0, 1)))
    assert main(["train", "--dataset", str(csv), "--epochs", "3000", "--print-every", "3000"]) == 0
    out = capsys.readouterr().out
    assert "Accuracy: 1.0000 (against targets thresholded at 0.5)" in out
    assert "soft targets" in out


def test_plot_path_is_written_as_given_and_reported_as_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    for name in ("curve.png", "curve.svg", "curve.PDF"):
        assert main(["train", "--dataset", "and", "--epochs", "20", "--plot", str(tmp_path / name)]) == 0
        assert f"Wrote {tmp_path / name}" in capsys.readouterr().out
        assert (tmp_path / name).stat().st_size > 0
    assert sorted(os.listdir(tmp_path)) == ["curve.PDF", "curve.png", "curve.svg"]
