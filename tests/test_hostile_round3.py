"""Issue 21's files that are not what they claim: FIFOs and devices refused by the one reader of user files (never
a hang, never reading /dev/zero into memory), crafted .npy shapes, the CSV header guess, and the compare gate."""

from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.cli import main
from mlpbench.core.data import load_files
from mlpbench.core.fileio import read_json, read_user_file
from mlpbench.suite import results as R


def _one_line_exit_2(capsys, argv, culprit):
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2 and len(err.splitlines()) == 1 and culprit in err and "Traceback" not in err, (rc, err)
    return out


# ---------------------------------------------------------------- not regular files
@pytest.fixture
def specials(tmp_path):
    for name in ("x.csv", "x.npy", "model.npz", "cmp.json"):
        os.mkfifo(tmp_path / name)  # opened for reading with no writer: a plain open() would hang here
    for name in ("zero.csv", "zero.npy", "zero.npz", "zero.json"):
        os.symlink("/dev/zero", tmp_path / name)  # read in full: memory without end
    return tmp_path


@pytest.mark.parametrize("name, kind", [("x.csv", "FIFO"), ("x.npy", "FIFO"), ("zero.csv", "character device"),
                                        ("zero.npy", "character device")])
def test_data_files_that_are_fifos_or_devices_are_refused_by_name(specials, name, kind):
    with pytest.raises(ValueError, match=rf"{name}.*{kind}"):
        load_files(specials / name)


@pytest.mark.parametrize("name", ["model.npz", "zero.npz"])
def test_model_files_that_are_fifos_or_devices_are_refused_by_name(specials, name):
    with pytest.raises(ValueError, match=name):
        MLP.load(specials / name)


def test_the_cli_refuses_them_in_one_line(specials, capsys, tmp_path):
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"schema": R.SCHEMA, "machine": {}, "peak": {}, "config": {}, "points": []}))
    _one_line_exit_2(capsys, ["train", "--dataset", str(specials / "zero.csv")], "zero.csv")
    _one_line_exit_2(capsys, ["train", "--dataset", str(specials / "x.csv")], "x.csv")
    _one_line_exit_2(capsys, ["compare", str(good), str(specials / "zero.json")], "zero.json")
    _one_line_exit_2(capsys, ["bench", "--compare", str(good), str(specials / "cmp.json")], "cmp.json")


def test_the_reader_caps_size_before_reading(tmp_path):
    (tmp_path / "big").write_bytes(b"x" * 1000)
    with pytest.raises(ValueError, match="big.*1000 bytes"):
        read_user_file(tmp_path / "big", 999)
    assert read_user_file(tmp_path / "big", 1000) == b"x" * 1000


@pytest.mark.parametrize("text, says", [("[" * 100_000 + "]" * 100_000, "nested too deep"),
                                        ('{"a": ' + "1" * 5000 + "}", "5000 digits")])
def test_json_nested_too_deep_or_with_huge_ints_is_a_value_error_naming_the_file(tmp_path, text, says):
    (tmp_path / "f.json").write_text(text)
    with pytest.raises(ValueError, match=rf"f\.json.*{says}"):
        read_json(tmp_path / "f.json", 1 << 20)


# ---------------------------------------------------------------- crafted .npy shapes
def _npy(tmp_path, shape, data=b""):
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f8", "fortran_order": False, "shape": shape})
    (tmp_path / "s.npy").write_bytes(buf.getvalue() + data)
    return tmp_path / "s.npy"


@pytest.mark.parametrize("shape", [(0, 99999999999999999999), (2**32, 2**32), (2**62, 4)])
def test_npy_shapes_that_overflow_or_wrap_int64_are_truncated_files(tmp_path, shape):
    with pytest.raises(ValueError, match=r"s\.npy.*(truncated|dimension outside|more than any array)"):
        load_files(_npy(tmp_path, shape, b"\0" * 16))


# ---------------------------------------------------------------- the CSV header guess
@pytest.mark.parametrize("first, bad", [("0,0,O", "'O'"), ("\u22121,0,0", "'\u22121'"), ("0x1,0,0", "'0x1'")])
def test_a_first_row_with_a_typo_is_a_bad_data_row_not_a_header(tmp_path, first, bad):
    (tmp_path / "d.csv").write_text(f"{first}\n0,1,1\n1,0,1\n1,1,0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=rf"d\.csv' line 1, column \d: .*{bad}"):
        load_files(tmp_path / "d.csv")


def test_row_numbers_after_a_header_and_blank_lines_are_the_file_lines(tmp_path):
    (tmp_path / "d.csv").write_text("x1,x2,y\n0,0,0\n\n1,1,a\n")
    with pytest.raises(ValueError, match=r"d\.csv' line 4, column 3: could not convert string 'a'"):
        load_files(tmp_path / "d.csv")


# ---------------------------------------------------------------- the compare gate
SAME = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0]


def _point(n, samples=SAME, **over):
    p = {"backend": "numpy", "op": "step", "dtype": "float64", "n_samples": n, "layer_sizes": [4, 8, 1],
         "activation": "relu", "epochs": 1, "batch_size": None, "output": "sigmoid", "case": f"step N={n}",
         "device": "cpu", "min_s": 1.0, "median_s": 1.0, "iqr_s": 0.0, "ratio": 1.0, "ratio_ci": [1.0, 1.0],
         "verdict": "baseline", "first_s": 0.1, "rounds": 8, "samples_s": samples, "noisy": False, "gflops": 1.0,
         "pct_peak": 1.0}
    p.update(over)
    return p


def _doc(path, points, status="complete"):
    path.write_text(json.dumps({"schema": R.SCHEMA, "status": status, "machine": {"cpu": "x"}, "peak": {},
                                "config": {}, "points": points}))
    return str(path)


@pytest.fixture
def old(tmp_path):
    return _doc(tmp_path / "old.json", [_point(1), _point(2), _point(3)])


@pytest.mark.parametrize("points, status, says", [
    ([_point(1)], "complete", "2 of 3 points of"),  # two points missing from NEW
    ([_point(1), _point(2), _point(3)], "failed", "'failed'"),
    ([_point(1), _point(2), _point(3)], "interrupted", "'interrupted'"),
    ([_point(1), _point(2), _point(3, samples=[2.1], median_s=2.1)], "complete", "too few samples"),
])
def test_the_gate_fails_on_missing_points_unfinished_runs_and_undecidable_slowdowns(old, tmp_path, capsys,
                                                                                      points, status, says):
    new = _doc(tmp_path / "new.json", points, status)
    assert main(["compare", old, new]) == 0  # without the gate: said, not failed
    assert says in capsys.readouterr().out
    assert main(["compare", old, new, "--fail-on-regression"]) == 1
    out = capsys.readouterr().out
    assert "gate fails: " in out and says in out


@pytest.mark.parametrize("spoil, culprit", [
    ({"samples_s": []}, "samples_s"), ({"samples_s": None}, "samples_s"), ({"samples_s": [True, 1.0]}, "samples_s"),
    ({"samples_s": [[1.0], [1.0]]}, "samples_s"), ({"samples_s": {"a": 1.0}}, "samples_s"),
    ({"layer_sizes": None}, "layer_sizes"), ({"dtype": ["float64"]}, "dtype"),
])
def test_unusable_points_are_exit_2_naming_the_file_and_point(old, tmp_path, capsys, spoil, culprit):
    new = _doc(tmp_path / "new.json", [_point(1), _point(2), _point(3, **spoil)])
    _one_line_exit_2(capsys, ["compare", old, new, "--fail-on-regression"], f"new.json: point 2: {culprit}")


def test_duplicated_points_and_hostile_json_are_exit_2_naming_the_file(old, tmp_path, capsys):
    dup = _doc(tmp_path / "dup.json", [_point(1), _point(2), _point(3), _point(2)])
    _one_line_exit_2(capsys, ["compare", old, dup], "dup.json: point 3 repeats point 1")
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    _one_line_exit_2(capsys, ["compare", old, str(tmp_path / "deep.json")], "deep.json")
    (tmp_path / "int.json").write_text(json.dumps(_point(1)).replace('"n_samples": 1', '"n_samples": ' + "7" * 5000))
    _one_line_exit_2(capsys, ["compare", old, str(tmp_path / "int.json")], "int.json")


# ---------------------------------------------------------------- float64 overflow in predict_proba
def test_float64_inputs_that_overflow_a_layer_are_refused_and_huge_finite_logits_are_right():
    m = MLP([2, 4, 1], seed=0)
    with pytest.raises(ValueError, match=r"X row 1 overflows float64 in layer 0"):
        m.predict_proba([[0.0, 0.0], [1e308, 1e308]])  # was 5.56e-309, with only NumPy's warning
    with np.errstate(all="raise"):  # no warning either
        p = m.predict_proba([[1e300, 1e300], [-1e300, -1e300], [0.0, 0.0]])
    assert p[0, 0] == 1.0 and p[2, 0] == 0.5 and 0.0 <= p[1, 0] <= 1.0


# ---------------------------------------------------------------- plots and links through the one atomic writer
class _FigOnFullDisk:
    def savefig(self, f, **kwargs):
        f.write(b"\x89PNG half a plot")
        raise OSError(28, "No space left on device")


def test_a_plot_on_a_full_disk_leaves_the_old_file_whole_and_no_new_file(tmp_path):
    from mlpbench.suite import plots

    closed = []
    plt = type("plt", (), {"close": staticmethod(closed.append)})
    (tmp_path / "m.png").write_bytes(b"the old plot")
    for name in ("m.png", "new.png"):
        with pytest.raises(OSError, match=name):
            plots._save(plt, _FigOnFullDisk(), str(tmp_path / name))
    assert (tmp_path / "m.png").read_bytes() == b"the old plot" and not (tmp_path / "new.png").exists()
    assert sorted(os.listdir(tmp_path)) == ["m.png"] and len(closed) == 2  # no temp file left; figures closed


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "m.npz"
    target.write_bytes(b"old")
    os.symlink(target, tmp_path / "link.npz")
    MLP([2, 3, 1], seed=1).save(tmp_path / "link.npz")
    assert os.path.islink(tmp_path / "link.npz") and MLP.load(target).layer_sizes == [2, 3, 1]
    assert main(["train", "--epochs", "2", "--save", str(tmp_path / "link.npz")]) == 0
    assert os.path.islink(tmp_path / "link.npz")


# ---------------------------------------------------------------- one bench run per --out
def test_a_second_bench_on_one_out_is_refused_naming_the_first(tmp_path, capsys):
    from mlpbench.suite import runlock

    out = str(tmp_path / "run")
    with runlock.held() as first:
        first(out, "mlpbench bench --preset quick")
        argv = ["bench", "--backends", "numpy", "--no-lab", "--batch", "4", "--hidden", "4", "--features", "2", "--op",
                "forward", "--dtype", "float64", "--max-time", "0.05", "--passes", "1", "--no-plots", "--quiet",
                "--out", out]
        _one_line_exit_2(capsys, argv, f"pid {os.getpid()}")
    assert sorted(os.listdir(out)) == []  # the first run's lock and owner files are gone with it


def test_a_disk_full_at_the_end_of_a_run_leaves_it_failed_not_running(tmp_path, monkeypatch):
    w = R.ResultsWriter(tmp_path, {}, {}, {})

    def full(path, data):
        raise OSError(28, "No space left on device", path)

    monkeypatch.setattr(R, "atomic_write", full)
    with pytest.raises(OSError):
        w.finish("failed", "OSError: no space")
    assert json.loads((tmp_path / "results.json").read_text())["status"] == "failed"


def test_jax_float64_scope_is_not_seen_by_other_threads():
    jax = pytest.importorskip("jax")
    import threading

    from mlpbench.backends import jax_backend

    inside, seen = threading.Event(), []

    def other():
        inside.wait(10)
        seen.append(bool(jax.config.jax_enable_x64))

    t = threading.Thread(target=other)
    t.start()
    with jax_backend._x64(True):
        assert jax.config.jax_enable_x64
        inside.set()
        t.join(10)
    assert seen == [False]


def test_jax_platforms_naming_no_platform_here_makes_jax_unavailable_in_every_tool():
    """``JAX_PLATFORMS=cuda`` on a machine whose JAX has no CUDA: ``backends`` says jax is unavailable and names
    the variable, and ``train --backend jax`` is one line, exit 2 (a fresh process: JAX reads it at first use)."""
    import subprocess
    import sys

    pytest.importorskip("jax", reason="jax is not installed (the peers extra)")
    env = dict(os.environ, JAX_PLATFORMS="cuda")
    probe = subprocess.run([sys.executable, "-c", "import jax; jax.devices()"], env=env, capture_output=True)
    if probe.returncode == 0:
        pytest.skip("this JAX has a CUDA platform: JAX_PLATFORMS=cuda is valid here")
    listing = subprocess.run([sys.executable, "-m", "mlpbench", "backends"], env=env, capture_output=True, text=True)
    (row,) = [ln for ln in listing.stdout.splitlines() if ln.split()[:1] == ["jax"]]
    assert listing.returncode == 0 and row.split()[1] == "no" and "JAX_PLATFORMS='cuda'" in row, row
    train = subprocess.run([sys.executable, "-m", "mlpbench", "train", "--backend", "jax", "--epochs", "2"], env=env,
                           capture_output=True, text=True)
    assert train.returncode == 2 and "JAX_PLATFORMS" in train.stderr and len(train.stderr.strip().splitlines()) == 1
