import sys

import numpy as np
import pytest

from mlpbench import datasets


@pytest.mark.parametrize("name, truth", [("and", [0, 0, 0, 1]), ("or", [0, 1, 1, 1]), ("xor", [0, 1, 1, 0])])
def test_logic_tables(name, truth):
    X, y = datasets.load(name)
    np.testing.assert_array_equal(X, [[0, 0], [0, 1], [1, 0], [1, 1]])
    np.testing.assert_array_equal(y.ravel(), truth)
    assert X.dtype == y.dtype == np.float64 and y.shape == (4, 1)


@pytest.mark.parametrize("name", ["moons", "circles", "spirals", "blobs"])
def test_generated_are_seeded_balanced_and_shaped(name):
    X, y = datasets.load(name, n_samples=101, seed=5)
    X2, _ = datasets.load(name, n_samples=101, seed=5)
    X3, _ = datasets.load(name, n_samples=101, seed=6)
    assert X.shape == (101, 2) and y.shape == (101, 1)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, X3)
    assert set(np.unique(y)) == {0.0, 1.0} and abs(y.sum() - 50.5) <= 1


def test_blobs_features_and_noise():
    X, _ = datasets.load("blobs", n_samples=20, n_features=7)
    assert X.shape == (20, 7)
    Xa, _ = datasets.load("moons", n_samples=20, noise=0)
    Xb, _ = datasets.load("moons", n_samples=20, noise=0.3)
    assert not np.array_equal(Xa, Xb)
    with pytest.raises(ValueError, match="n_features applies to 'blobs' only"):
        datasets.load("moons", n_features=3)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset 'iris'"):
        datasets.load("iris")


def test_load_files_npy_and_csv(tmp_path):
    X, y = datasets.load("moons", n_samples=10)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y.ravel())
    X2, y2 = datasets.load_files(tmp_path / "X.npy", tmp_path / "y.npy")
    np.testing.assert_array_equal(X2, X)
    np.testing.assert_array_equal(y2, y)
    csv = tmp_path / "d.csv"
    csv.write_text("x1,x2,label\n" + "\n".join(f"{float(a)!r},{float(b)!r},{int(c)}" for (a, b), c in zip(X, y.ravel())))
    X3, y3 = datasets.load_files(csv)
    np.testing.assert_array_equal(X3, X)
    np.testing.assert_array_equal(y3, y)
    with pytest.raises(ValueError, match="unsupported file type"):
        datasets.load_files(tmp_path / "d.txt")


# ---------------------------------------------------------------- multi-class sets
def test_digits_is_scikit_learns_bundled_set_scaled_to_unit_range():
    from sklearn.datasets import load_digits

    X, y = datasets.load("digits")
    raw_X, raw_y = load_digits(return_X_y=True)
    assert X.shape == (1797, 64) and y.shape == (1797,)
    assert X.dtype == np.float64 and y.dtype == np.int64
    np.testing.assert_array_equal(X * 16, raw_X)
    np.testing.assert_array_equal(y, raw_y)
    assert X.min() == 0 and X.max() == 1
    np.testing.assert_array_equal(np.unique(y), np.arange(10))


def test_digits_without_scikit_learn_names_the_extra(monkeypatch):
    from mlpbench.core.data import DatasetUnavailable

    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DatasetUnavailable, match=r'digits.*scikit-learn.*pip install "mlpbench\[data\]"'):
        datasets.load("digits")
    assert issubclass(DatasetUnavailable, ImportError)


def test_digits_refuses_generator_options():
    with pytest.raises(ValueError, match="digits"):
        datasets.load("digits", noise=0.1)


def test_k_class_blobs():
    X, y = datasets.load("blobs", n_samples=103, n_features=5, n_classes=4, seed=3)
    assert X.shape == (103, 5) and y.shape == (103,) and y.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y), [26, 26, 26, 25])
    X2, y2 = datasets.load("blobs", n_samples=103, n_features=5, n_classes=4, seed=3)
    np.testing.assert_array_equal(X, X2)
    assert not np.array_equal(X, datasets.load("blobs", n_samples=103, n_features=5, n_classes=4, seed=4)[0])
    # low noise: every point is nearer its own class mean than any other
    X, y = datasets.load("blobs", n_samples=400, n_features=3, n_classes=5, noise=0.05, seed=0)
    means = np.stack([X[y == k].mean(axis=0) for k in range(5)])
    nearest = np.argmin(((X[:, None, :] - means[None]) ** 2).sum(axis=2), axis=1)
    np.testing.assert_array_equal(nearest, y)


def test_two_class_blobs_are_unchanged_by_n_classes():
    X, y = datasets.load("blobs", n_samples=50, n_features=3, seed=2)
    X2, y2 = datasets.load("blobs", n_samples=50, n_features=3, seed=2, n_classes=2)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert y.shape == (50, 1)


@pytest.mark.parametrize("kw,text", [({"n_classes": 1}, "n_classes"), ({"n_classes": 2.5}, "n_classes"),
                                     ({"n_classes": 300}, "n_classes")])
def test_bad_n_classes(kw, text):
    with pytest.raises((ValueError, TypeError), match=text):
        datasets.load("blobs", n_samples=200, **kw)
    with pytest.raises(ValueError, match="n_classes applies to 'blobs' only"):
        datasets.load("moons", n_classes=3)
