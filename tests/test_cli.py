import re
import subprocess
import sys

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.cli.app import main


def test_train_deeper_float32_and_save(tmp_path, capsys):
    path = tmp_path / "m.npz"
    rc = main(["train", "--dataset", "xor", "--hidden", "8", "4", "--activation", "tanh", "--epochs", "300",
               "--print-every", "100", "--dtype", "float32", "--save", str(path)])
    out = capsys.readouterr().out
    assert rc == 0
    assert [ln.split("|")[0].strip() for ln in out.splitlines() if ln.startswith("Epoch")] == [
        "Epoch    1", "Epoch  100", "Epoch  200", "Epoch  300"]
    assert "Accuracy:" in out and "wall time" in out
    model = MLP.load(path)
    assert model.layer_sizes == [2, 8, 4, 1] and model.dtype == np.float32


def test_train_plot_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "out.png"
    assert main(["train", "--dataset", "moons", "--epochs", "50", "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_train_on_a_csv_file(tmp_path, capsys):
    csv = tmp_path / "d.csv"
    csv.write_text("0,0,0\n0,1,1\n1,0,1\n1,1,1\n")
    assert main(["train", "--dataset", str(csv), "--epochs", "2000", "--print-every", "1000"]) == 0
    assert "Accuracy: 1.0000" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["train", "--lr", "-1"], "lr must be finite and > 0"),
    (["train", "--backend", "nope"], "unknown backend 'nope'"),
    (["train", "--hidden", "0"], "layer_sizes must all be >= 1"),
    (["train", "--dataset", "iris"], "unknown dataset 'iris'"),
])
def test_train_errors_are_one_clear_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_divergence_is_reported(capsys):
    rc = main(["train", "--dataset", "blobs", "--n-features", "8", "--lr", "1000", "--epochs", "300",
               "--hidden", "16"])
    assert rc == 2
    assert "diverged" in capsys.readouterr().err


def test_backends_table_and_console_script():
    proc = subprocess.run([sys.executable, "-m", "mlpbench", "backends"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:5] == ["name", "available", "version", "device", "threads"]
    names = [ln.split()[0] for ln in lines[2:]]
    assert {"numpy", "numba", "cupy", "torch", "jax"} <= set(names)


def test_backends_warmup_reports_first_call_time(capsys):
    assert main(["backends", "--warmup"]) == 0
    out = capsys.readouterr().out
    numpy_row = next(ln for ln in out.splitlines() if ln.startswith("numpy "))
    assert "first call" in numpy_row and "(float32)" in numpy_row


# ---------------------------------------------------------------- mini-batch, softmax, digits
def _accuracies(out):
    line = next(line for line in out.splitlines() if line.startswith("Train accuracy"))
    train, test = line.split("|")
    return float(train.split(":")[1].split()[0]), float(test.split(":")[1].split()[0])


def test_digits_softmax_minibatch_reaches_96_percent_test_accuracy(capsys):
    argv = ["train", "--dataset", "digits", "--hidden", "128", "--output", "softmax", "--batch-size", "64",
            "--epochs", "30", "--lr", "0.1", "--grad-reduction", "mean"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    epochs = [line for line in out.splitlines() if line.startswith("Epoch")]
    assert len(epochs) == 30  # the loss per epoch
    losses = [float(line.split("Loss:")[1]) for line in epochs]
    assert losses[-1] < losses[0] / 10
    train, test = _accuracies(out)
    assert test >= 0.96 and train >= test - 0.05
    assert "(1438 rows)" in out and "(359 rows)" in out  # the default --test-fraction 0.2
    assert "Backend: numpy" in out and "batch size 64" in out and "ms/epoch" in out
    # the time per epoch, and apart the first epoch (a JIT compile or cache load on numba) and the rest
    m = re.search(r"wall time ([\d.]+) s \(([\d.]+) ms/epoch; first epoch ([\d.]+) s, then ([\d.]+) ms/epoch\)", out)
    wall, per_epoch, first, rest = map(float, m.groups())
    assert per_epoch == pytest.approx(wall / 30 * 1e3, rel=0.01, abs=0.002)
    assert 0 < first <= wall and first + 29 * rest / 1e3 == pytest.approx(wall, rel=0.1, abs=0.01)


def test_k_class_blobs_on_the_cli_and_a_seeded_split(capsys):
    argv = ["train", "--dataset", "blobs", "--n-classes", "4", "--n-features", "3", "--n-samples", "400",
            "--noise", "0.3", "--output", "softmax", "--batch-size", "32", "--epochs", "20", "--lr", "0.1",
            "--grad-reduction", "mean", "--test-fraction", "0.25", "--hidden", "16"]
    assert main(argv) == 0
    first = capsys.readouterr().out
    assert "(300 rows)" in first and "(100 rows)" in first
    assert _accuracies(first)[1] >= 0.9
    assert main(argv) == 0
    assert capsys.readouterr().out.split("wall time")[0] == first.split("wall time")[0]  # seeded: same run


@pytest.mark.parametrize("argv,message", [
    (["--dataset", "moons", "--n-classes", "3"], "--n-classes applies to --dataset blobs only"),
    (["--dataset", "digits", "--n-samples", "100"], "'digits' is a fixed"),
    (["--dataset", "moons", "--test-fraction", "1"], "--test-fraction must be in [0, 1)"),
    (["--dataset", "moons", "--output", "softmx"], "output must be one of"),
    (["--dataset", "digits"], "y must lie in [0, 1]"),
])
def test_workload_faults_are_one_line(argv, message, capsys):
    assert main(["train", "--epochs", "1", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_backend_without_the_head_is_one_line(capsys):
    from plugins.threaded_numpy import ThreadedNumpyBackend  # a sigmoid-only backend

    from mlpbench.backends import register_backend, unregister_backend

    register_backend("threaded_numpy", ThreadedNumpyBackend)
    try:
        argv = ["train", "--epochs", "1", "--dataset", "digits", "--output", "softmax", "--backend", "threaded_numpy"]
        assert main(argv) == 2
    finally:
        unregister_backend("threaded_numpy")
    err = capsys.readouterr().err
    assert "does not support output='softmax'" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_digits_without_scikit_learn_is_exit_2_naming_the_extra(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    assert main(["train", "--dataset", "digits", "--output", "softmax", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert 'pip install "mlpbench[data]"' in err and "Traceback" not in err
