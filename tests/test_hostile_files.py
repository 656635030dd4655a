"""Files that lie: ``MLP.load`` and the data loaders check before they allocate and name the file."""

from __future__ import annotations

import io
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.core.data import load_files


def open_fds():
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


def npy_bytes(arr=None, header_shape=None, dtype=None, data=None):
    """A .npy member; ``header_shape``/``dtype``/``data`` override what the header claims or holds."""
    buf = io.BytesIO()
    if arr is not None:
        np.save(buf, arr, allow_pickle=False)
        return buf.getvalue()
    dt = np.dtype(dtype)
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(dt), "fortran_order": False,
                                              "shape": header_shape})
    return buf.getvalue() + (data or b"")


def write_zip(path, members, compress=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compress) as zf:
        for name, payload in members.items():
            zf.writestr(name, payload)


def meta(sizes=(2, 4, 1), dtype="float64"):
    return {"layer_sizes.npy": npy_bytes(np.array(sizes)), "activation.npy": npy_bytes(np.array("relu")),
            "dtype.npy": npy_bytes(np.array(dtype)), "seed.npy": npy_bytes(np.array(1))}


def good_params(sizes=(2, 4, 1), dtype="float64"):
    out = {}
    for i, (fi, fo) in enumerate(zip(sizes[:-1], sizes[1:])):
        out[f"W{i}.npy"] = npy_bytes(np.ones((fi, fo), dtype))
        out[f"b{i}.npy"] = npy_bytes(np.zeros((1, fo), dtype))
    return out


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "m.npz"
    MLP([2, 16, 8, 1], seed=3).save(path)
    return path


@pytest.mark.parametrize("keep", [0, 10, 100, 0.3, 0.6, 0.9, -22, -1])
def test_truncated_model_is_a_value_error_naming_the_file_and_leaks_no_handle(saved, keep):
    data = saved.read_bytes()
    n = keep if isinstance(keep, int) and keep >= 0 else int(len(data) * keep) if keep > 0 else len(data) + keep
    bad = saved.parent / "cut.npz"
    bad.write_bytes(data[:n])
    before = open_fds()
    with pytest.raises(ValueError, match="cut.npz"):
        MLP.load(bad)
    assert open_fds() == before


def test_a_npy_file_given_as_a_model(tmp_path):
    path = tmp_path / "arr.npy"
    np.save(path, np.zeros(3))
    with pytest.raises(ValueError, match="arr.npy"):
        MLP.load(path)
    with pytest.raises(ValueError, match="folder"):
        MLP.load(tmp_path)


@pytest.mark.parametrize("sizes", [(2, 10**9, 1), (10**6, 10**5, 1), (2, 2**40, 1)])
def test_claimed_huge_layers_are_refused_before_allocating(tmp_path, sizes):
    path = tmp_path / "crafted.npz"
    write_zip(path, {**meta(sizes), **good_params((2, 4, 1))})  # 2 KB, claims a huge net
    assert path.stat().st_size < 4096
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"crafted\.npz.*(no 'W0'|member 'W0' is)"):
            MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 5 * 2**20, f"allocated {peak} bytes before refusing"


@pytest.mark.parametrize("member, payload, text", [
    ("W0.npy", npy_bytes(header_shape=(2, 4), dtype="float64", data=b"\0" * 16), "truncated|bytes"),
    ("W0.npy", npy_bytes(np.ones((2, 4), ">f8")), "dtype"),
    ("W0.npy", npy_bytes(np.ones((4, 2))), r"expected W \(2, 4\)"),
    ("W0.npy", npy_bytes(np.ones((2, 4), np.float32)), "dtype"),
    ("b0.npy", npy_bytes(np.ones((1, 4)) * np.nan), "NaN"),
    ("layer_sizes.npy", npy_bytes(np.array([2.0, 4.0, 1.0])), "int"),
    ("layer_sizes.npy", npy_bytes(np.array([2, 0, 1])), ">= 1"),
    ("activation.npy", npy_bytes(np.array("gelu")), "gelu"),
    ("dtype.npy", npy_bytes(np.array(">f8")), ">f8"),
    ("seed.npy", npy_bytes(np.array(-5.5)), "seed"),
    ("W0.npy", b"not a npy" * 20, "magic|npy|format"),
    ("W0.npy", b"not a npy", "member .W0. is 9 bytes"),
])
def test_corrupt_members_are_value_errors_naming_the_file(tmp_path, member, payload, text):
    path = tmp_path / "bad.npz"
    write_zip(path, {**meta(), **good_params(), member: payload})
    with pytest.raises(ValueError, match=text) as info:
        MLP.load(path)
    assert "bad.npz" in str(info.value)


def test_an_unused_huge_member_is_never_read(tmp_path):
    """A zip bomb riding along: 256 MiB of zeros, a few hundred KB compressed; load reads only W/b and metadata."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, payload in {**meta(), **good_params()}.items():
            zf.writestr(name, payload)
        with zf.open("junk.npy", "w", force_zip64=True) as f:
            block = b"\0" * 2**20
            for _ in range(256):
                f.write(block)
    tracemalloc.start()
    try:
        model = MLP.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert model.layer_sizes == [2, 4, 1] and peak < 5 * 2**20


def test_a_bomb_in_a_needed_member_is_refused_from_the_zip_directory(tmp_path):
    path = tmp_path / "bomb.npz"
    members = {**meta(), **good_params()}
    members["W0.npy"] = npy_bytes(np.zeros((2, 4))) + b"\0" * (64 * 2**20)  # 64 MiB where 64 bytes belong
    write_zip(path, members, zipfile.ZIP_DEFLATED)
    with pytest.raises(ValueError, match=r"bomb\.npz.*member 'W0' is \d+ bytes"):
        MLP.load(path)


def test_an_encrypted_member_is_a_value_error(saved):
    data = bytearray(saved.read_bytes())
    start = data.find(b"PK\x01\x02")
    while start != -1:  # set the "encrypted" flag of every central directory entry
        data[start + 8] |= 1
        start = data.find(b"PK\x01\x02", start + 4)
    bad = saved.parent / "locked.npz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"locked\.npz.*encrypted"):
        MLP.load(bad)


def test_a_good_file_still_round_trips(saved):
    m = MLP.load(saved)
    assert m.layer_sizes == [2, 16, 8, 1] and m.seed == 3 and m.params[0][0].flags.c_contiguous


# ---------------------------------------------------------------- data files
@pytest.mark.parametrize("text, rows", [
    ("\ufeff0,0,0\n0,1,1\n1,0,1\n1,1,1\n", 4),             # BOM before a data row
    ("\ufeffx1,x2,y\n0,0,0\n0,1,1\n", 2),                   # BOM before a header
    ("x1,x2,y\n0,0,0\n1,1,1\n", 2),                         # header
    ("x1,,y\n0,0,0\n1,1,1\n", 2),                           # header with an empty name
    ("\n0,0,0\n1,1,1\n\n", 2),                              # blank lines
    ("1e-3,2,1\n0,1,0\n", 2),                               # exponent notation
])
def test_csv_header_guess_keeps_every_data_row(tmp_path, text, rows):
    path = tmp_path / "d.csv"
    path.write_bytes(text.encode("utf-8"))
    X, y = load_files(path)
    assert X.shape == (rows, 2) and y.shape == (rows, 1)


@pytest.mark.parametrize("text, match", [
    ("0,,1\n1,1,1\n", "d.csv"),          # an empty cell in a data row is a missing value, not a header
    ("0,1,1\n1,1\n", "d.csv"),            # ragged
    ("x,y,z\n", "no data rows"),
    ("", "no data rows"),
])
def test_bad_csv_is_a_value_error_naming_the_file(tmp_path, text, match):
    path = tmp_path / "d.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        load_files(path)


def test_bad_npy_files(tmp_path):
    cases = {
        "complex.npy": np.array([[1 + 1j, 0], [1, 1]]),
        "strings.npy": np.array([["a", "b"], ["c", "d"]]),
        "bools.npy": np.array([[True, False], [False, True]]),
    }
    for name, arr in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(ValueError, match=name):
            load_files(tmp_path / name)
    np.savez(tmp_path / "a.npz", x=np.zeros((2, 2)))
    os.replace(tmp_path / "a.npz", tmp_path / "a.npy")
    with pytest.raises(ValueError, match=r"a\.npy.*\.npz archive"):
        load_files(tmp_path / "a.npy")
    np.save(tmp_path / "cut.npy", np.zeros((100, 3)))
    (tmp_path / "cut.npy").write_bytes((tmp_path / "cut.npy").read_bytes()[:300])
    with pytest.raises(ValueError, match=r"cut\.npy.*truncated"):
        load_files(tmp_path / "cut.npy")
    (tmp_path / "dir.csv").mkdir()
    with pytest.raises(ValueError, match=r"dir\.csv.*folder"):
        load_files(tmp_path / "dir.csv")
    with pytest.raises(FileNotFoundError):
        load_files(tmp_path / "missing.npy")


@pytest.mark.parametrize("kwargs, match", [
    ({"noise": -1}, "noise must be finite and >= 0"), ({"noise": float("nan")}, "noise"),
    ({"seed": -1}, r"seed must be an int in \[0, 2\*\*32 - 1\]"), ({"seed": 2**32}, "seed"),
    ({"n_samples": 2.5}, "n_samples must be an int"), ({"n_samples": 1}, "n_samples must be >= 2"),
])
def test_generated_dataset_arguments_are_named(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        datasets.load("moons", **kwargs)
