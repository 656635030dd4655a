"""Every CLI subcommand over bad invocations: exit 2, ONE line on stderr naming the culprit, no traceback.

The invocations run in process (``main(argv)`` returns the exit code); real processes only where a process
is what is tested: the console script's exit code and output, ``| head -1`` ending cleanly. Plus: output
paths are checked before any work, every ``OSError`` and ``MemoryError`` is one line, and an mlpbench bug
still shows its traceback.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from mlpbench.cli import app as cli
from mlpbench.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("faults")
    (d / "x.csv").mkdir()  # a folder with a data file's name
    np.save(d / "complex.npy", np.array([[1 + 2j, 0], [3, 1]]))
    np.savez(d / "archive.npy.npz", x=np.zeros((3, 3)))
    os.replace(d / "archive.npy.npz", d / "archive.npy")  # an .npz under a .npy name
    (d / "regular").write_text("a file, not a folder")
    (d / "empty.csv").write_text("a,b,c\n")
    (d / "notjson.json").write_text("{not json")
    (d / "y.npy").write_bytes(b"")
    (d / "binary.json").write_bytes(b"\xff\xfe\x00garbage")
    (d / "points.json").write_text('{"schema": "mlpbench.bench/1", "machine": {}, "peak": {}, "config": {}, "points": [1, 2]}')
    return d


# (argv, env, the text stderr must contain: the option, path or variable at fault)
CASES = [
    # train: output paths, checked before training
    (["train", "--save", "/"], {}, "--save"),
    (["train", "--save", "{d}/no/such/folder/m.npz"], {}, "--save"),
    (["train", "--save", "{d}/regular/m.npz"], {}, "regular"),
    (["train", "--plot", "out"], {}, "--plot"),
    (["train", "--plot", "{d}"], {}, "--plot"),
    # train: numbers
    (["train", "--seed", "-1"], {}, "--seed"),
    (["train", "--seed", str(2**32)], {}, "--seed"),
    (["train", "--noise", "-1", "--dataset", "moons"], {}, "--noise"),
    (["train", "--noise", "nan", "--dataset", "moons"], {}, "--noise"),
    (["train", "--epochs", "0"], {}, "--epochs"),
    (["train", "--epochs", "abc"], {}, "--epochs"),
    (["train", "--print-every", "0"], {}, "--print-every"),
    (["train", "--n-samples", "1", "--dataset", "moons"], {}, "--n-samples"),
    (["train", "--hidden", "x"], {}, "--hidden"),
    (["train", "--lr", "inf"], {}, "--lr"),
    # issue 21: checked before work, and named
    (["train", "--hidden", "0"], {}, "--hidden"),
    (["train", "--epochs", "200000", "--save", "/proc/m.npz"], {}, "--save"),
    (["train", "--epochs", "200000", "--plot", "/proc/m.png"], {}, "--plot"),
    (["train", "--epochs", "1000000000000"], {}, "1000000000000 epochs needs about"),  # the loss history
    (["train", "--backend", "numba", "--epochs", "2"], {"NUMBA_NUM_THREADS": "0"}, "NUMBA_NUM_THREADS"),
    (["bench", "--repeat", "500"], {}, "--repeat"),
    (["bench", "--backends", "numpy,numpy", "--no-lab", "--batch", "1", "--hidden", "4"], {}, "numpy given twice"),
    # train: sizes that cannot fit are refused before allocating
    (["train", "--hidden", "1000000000"], {}, "needs about"),
    (["train", "--dataset", "blobs", "--n-samples", "200000", "--hidden", "200000", "--epochs", "1"], {}, "needs about"),
    # train: data
    (["train", "--dataset", "and", "--y-file", "{d}/y.npy"], {}, "--y-file"),
    (["train", "--dataset", "xor", "--n-samples", "10"], {}, "--n-samples"),
    (["train", "--dataset", "moons", "--n-features", "3"], {}, "--n-features"),
    (["train", "--dataset", "{d}/x.csv"], {}, "x.csv"),
    (["train", "--dataset", "{d}/complex.npy"], {}, "complex"),
    (["train", "--dataset", "{d}/archive.npy"], {}, ".npz"),
    (["train", "--dataset", "{d}/missing.csv"], {}, "missing.csv"),
    (["train", "--dataset", "{d}/empty.csv"], {}, "empty.csv"),
    (["train", "--dataset", "iris"], {}, "iris"),
    (["train", "--dtype", ">f8"], {}, ">f8"),
    (["train", "--activation", "gelu"], {}, "gelu"),
    (["train", "--backend", "nope"], {}, "nope"),
    (["train"], {"MLPBENCH_BACKEND": "nonsense"}, "MLPBENCH_BACKEND"),
    (["train", "--bogus"], {}, "--bogus"),
    # bench
    (["bench", "--batch", "abc"], {}, "--batch"),
    (["bench", "--batch", ""], {}, "--batch"),
    (["bench", "--hidden", "0"], {}, "--hidden"),
    (["bench", "--min-time", "nan"], {}, "--min-time"),
    (["bench", "--min-time", "inf"], {}, "--min-time"),
    (["bench", "--max-time", "0"], {}, "--max-time"),
    (["bench", "--repeat", "0"], {}, "--repeat"),
    (["bench", "--passes", "0"], {}, "--passes"),
    (["bench", "--compare", "a.json", "b.json", "--passes", "2"], {}, "--passes"),
    (["bench", "--dtype", "float16"], {}, "--dtype"),
    (["bench", "--op", "fwd"], {}, "--op"),
    (["bench", "--preset", "huge"], {}, "huge"),
    (["bench", "--backends", "nope"], {}, "nope"),
    (["bench", "--backends", "numpy[threads=2]", "--no-lab", "--batch", "1", "--hidden", "4"], {}, "numpy[threads=2]"),
    (["bench", "--out", "{d}/regular"], {}, "--out"),
    (["bench", "--fail-on-regression"], {}, "--fail-on-regression"),
    (["bench", "--compare", "{d}/missing.json", "{d}/missing.json"], {}, "missing.json"),
    (["bench", "--compare", "{d}/notjson.json", "{d}/notjson.json"], {}, "notjson.json"),
    (["bench", "--compare", "a", "b", "--threshold", "-1"], {}, "--threshold"),
    (["bench", "--compare", "{d}/binary.json", "{d}/binary.json"], {}, "binary.json"),
    (["bench", "--compare", "{d}/points.json", "{d}/points.json"], {}, "points.json"),
    (["bench", "--compare", "{d}/points.json", "{d}/points.json", "--batch", "1"], {}, "--batch"),
    (["bench", "--threshold", "0.2"], {}, "--threshold"),
    # parity
    (["parity", "--dtype", ""], {}, "--dtype"),
    (["parity", "--dtype", "float16"], {}, "--dtype"),
    (["parity", "--json", "/"], {}, "--json"),
    (["parity", "--backends", "nope"], {}, "nope"),
    (["parity", "--backends", "numpy[threads=2]"], {}, "numpy[threads=2]"),
    (["parity", "--backends", "cupy[bogus=1]"], {}, "cupy[bogus=1]"),  # invalid whether or not a GPU is here
    (["parity", "--preset", "huge"], {}, "huge"),
    (["parity", "--strict"], {}, "--strict"),
    # tune
    (["tune", "--json", "{d}/t.json"], {}, "--json"),
    (["tune", "--budget", "0"], {}, "--budget"),
    (["tune", "--budget", "nan"], {}, "--budget"),
    (["tune", "--dtype", "half"], {}, "--dtype"),
    (["tune", "--show", "--clear"], {}, "--clear"),
    (["tune", "--check", "--json", "{d}/no/such/t.json"], {}, "--json"),
    (["tune", "--show", "--dtype", "float32"], {}, "--dtype"),
    (["tune", "--activation", "gelu"], {}, "gelu"),
    (["tune", "--check", "--activation", "gelu"], {}, "gelu"),
    (["tune", "--clear", "--budget", "3"], {}, "--budget"),
    (["tune", "--check", "--budget", "3"], {}, "--budget"),
    # backends, and no command at all
    (["backends", "--bogus"], {}, "--bogus"),
    ([], {}, "command"),
]


def one_error_line(err, command):
    """The one line on stderr: ``mlpbench <command>: error: ...`` (``mlpbench: error:`` from the top parser)."""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), f"expected one line on stderr, got {len(lines)}:\n{err}"
    assert re.match(rf"mlpbench( {re.escape(command)})?: error: \S", lines[0]), lines[0]
    return lines[0]


@pytest.mark.parametrize("argv, env, culprit", CASES, ids=[" ".join(c[0]) or "(none)" for c in CASES])
def test_bad_invocation_is_exit_2_and_one_line_naming_the_culprit(argv, env, culprit, files, tmp_path, monkeypatch,
                                                                 capsys):
    argv = [a.replace("{d}", str(files)) for a in argv]
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    rc = main(argv)
    out, err = capsys.readouterr()
    assert rc == 2, f"exit {rc}; stderr: {err}; stdout: {out[-500:]}"
    assert out == ""  # refused before any work or output
    line = one_error_line(err, argv[0] if argv else "")
    assert culprit in line, line
    assert not (tmp_path / "cache").exists()  # nothing measured, nothing cached


def test_closed_stdout_and_a_full_device_are_one_line_naming_stdout(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdout", None)  # what Python sets when started with stdout closed (>&-)
    assert main(["train", "--epochs", "2"]) == 2
    assert "stdout is closed" in one_error_line(capsys.readouterr().err, "train")
    with open("/dev/full", "w") as full:
        monkeypatch.setattr(sys, "stdout", full)
        assert main(["train", "--epochs", "2"]) == 2
    assert "<stdout>: No space left on device" in one_error_line(capsys.readouterr().err, "train")


def test_output_path_is_checked_before_training(monkeypatch, capsys):
    from mlpbench.model import MLP

    def never(*a, **k):
        raise AssertionError("training started before the output path was checked")

    monkeypatch.setattr(MLP, "fit", never)
    for opt, path in (("--save", "/"), ("--save", "/no/such/folder/m.npz"), ("--plot", "out"), ("--plot", "/")):
        assert cli.main(["train", "--epochs", "1000000000", opt, path]) == 2
        assert opt in capsys.readouterr().err


def test_missing_plotting_library_is_reported_before_training(monkeypatch, capsys, tmp_path):
    from mlpbench.suite import plots
    from mlpbench.model import MLP

    def no_matplotlib():
        raise ImportError('plotting needs matplotlib: pip install "mlpbench[bench]"')

    def never(*a, **k):
        raise AssertionError("training started")

    monkeypatch.setattr(plots, "require_matplotlib", no_matplotlib)
    monkeypatch.setattr(MLP, "fit", never)
    assert cli.main(["train", "--plot", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--plot" in err and "mlpbench[bench]" in err


def _entry_points():
    """``python -m mlpbench``, and the installed ``mlpbench`` console script beside this Python where there is one."""
    script = os.path.join(os.path.dirname(sys.executable), "mlpbench")
    return [[sys.executable, "-m", "mlpbench"]] + ([[script]] if os.access(script, os.X_OK) else [])


@pytest.mark.parametrize("entry", _entry_points(), ids=lambda e: "console-script" if len(e) == 1 else "python-m")
def test_the_entry_points_exit_2_with_one_line_and_without_training(entry):
    """A real process through each entry point: the exit code reaches the shell, one line, no traceback, and
    a billion epochs would take hours, so the command can only end within the timeout by not training."""
    proc = subprocess.run([*entry, "train", "--epochs", "1000000000", "--save", "/"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT}, timeout=60)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "--save" in one_error_line(proc.stderr, "train")


@pytest.mark.parametrize("exc, text", [
    (PermissionError(errno.EACCES, "Permission denied", "/data/x.csv"), "/data/x.csv: Permission denied"),
    (IsADirectoryError(errno.EISDIR, "Is a directory", "/data/d.npy"), "/data/d.npy: Is a directory"),
    (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/f/m.npz"), "/f/m.npz: Not a directory"),
    (FileExistsError(errno.EEXIST, "File exists", "/out"), "/out: File exists"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/m.npz"), "/out/m.npz: No space left on device"),
    (MemoryError("Unable to allocate 7.45 GiB for an array"), "Unable to allocate 7.45 GiB"),
    (MemoryError(), "out of memory"),
])
def test_environment_faults_are_one_line(monkeypatch, capsys, exc, text):
    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_backends", fail)
    assert cli.main(["backends"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and text in err and "Traceback" not in err


@pytest.mark.parametrize("bug", [AttributeError("x"), KeyError("k"), RuntimeError("bug"), IndexError("i")])
def test_an_mlpbench_bug_still_shows_its_traceback(monkeypatch, bug):
    def fail(args):
        raise bug

    monkeypatch.setattr(cli, "cmd_backends", fail)
    with pytest.raises(type(bug)):
        cli.main(["backends"])


def test_stdout_closed_early_ends_cleanly():
    """``mlpbench train ... | head -1``: no traceback, no 'Exception ignored' noise."""
    proc = subprocess.Popen([sys.executable, "-m", "mlpbench", "train", "--epochs", "20000", "--print-every", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, "PYTHONPATH": ROOT})
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    rc = proc.wait(timeout=120)
    assert first.startswith(b"Epoch    1 | Loss:")
    assert err == "" and rc == 2, (rc, err)


def test_empty_backend_variable_means_unset(monkeypatch, capsys):
    monkeypatch.setenv("MLPBENCH_BACKEND", "")
    assert cli.main(["train", "--epochs", "2"]) == 0
    assert "Backend: numpy" in capsys.readouterr().out


def test_the_default_out_folder_is_checked_before_work(tmp_path, monkeypatch, capsys):
    from mlpbench.suite import sweep as benchmark

    def never(*a, **k):
        raise AssertionError("the sweep started")

    monkeypatch.setattr(benchmark, "run_sweep", never)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "results").write_text("a file where the default output folder goes")
    assert cli.main(["bench", "--backends", "numpy", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err and "'results'" in err
