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
