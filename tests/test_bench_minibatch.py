"""The ``epoch`` op, the ``minibatch`` preset, external reference rows (scikit-learn) and ``auto`` per batch size."""

import argparse
import copy
import json
import sys

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.auto import choose as auto
from mlpbench.suite import cases, subjects
from mlpbench.measure import peaks as perf
from mlpbench.suite import references as refs
from mlpbench.suite import results as R
from mlpbench.auto.cache import cache_key, fingerprint, key_fields
from mlpbench.backends import BackendSpec, register_backend, supporting, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.suite.sweep import run_sweep
from mlpbench.cli.app import main

from helpers import assert_verdicts_follow_from_samples, short_lab


class Counting(NumpyBackend):
    """NumPy, counting every SGD update and recording each ``train`` call's keywords."""

    name = "counting"
    updates = 0
    trains: list = []

    def _sgd_update(self, params, grads, lr):
        type(self).updates += 1
        super()._sgd_update(params, grads, lr)

    def train(self, params, X, y, **kw):
        type(self).trains.append(dict(kw, rows=X.shape[0]))
        return super().train(params, X, y, **kw)


class SigmoidOnly(NumpyBackend):
    name = "sigmoidonly"
    outputs = ("sigmoid",)


@pytest.fixture
def counting(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    Counting.updates, Counting.trains = 0, []
    register_backend("counting", Counting)
    register_backend("sigmoidonly", SigmoidOnly)
    yield Counting
    unregister_backend("counting")
    unregister_backend("sigmoidonly")


def _small_peaks():
    peaks = perf.Peaks([("numpy", NumpyBackend())], ["float64"], cpu_limit=256, memcpy_bytes=2 ** 20)
    peaks.sample()
    return peaks


# ---------------------------------------------------------------- the op and its cases
@pytest.mark.parametrize("batch_size, updates", [(16, 4), (25, 2), (50, 1), (64, 1), (None, 1)])
def test_the_epoch_subject_runs_exactly_one_epoch(counting, batch_size, updates):
    case = cases.Case("epoch", 50, (3, 5, 4), "float64", batch_size=batch_size, output="softmax", seed=3)
    X, y = cases.case_data(case)
    X0, y0 = X.copy(), y.copy()
    subject, _ = subjects.op_subject("counting", Counting(), case, X, y, backend_warmup=False)
    counting.updates, counting.trains = 0, []
    history = subject.fn()
    assert counting.updates == updates and history.shape == (1,)  # one epoch: ceil(N / batch) updates
    history = subject.fn()
    assert counting.updates == 2 * updates and history.shape == (1,)
    kw = counting.trains[-1]
    assert kw["epochs"] == 1 and kw["output"] == "softmax" and kw["rows"] == 50
    if batch_size is None:
        assert "batch_size" not in kw
    else:  # shuffled, seeded by the case: every call (and every backend) draws the same order
        assert (kw["batch_size"], kw["shuffle"], kw["shuffle_seed"]) == (batch_size, True, 3)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(y, y0)


def test_epoch_cases_carry_batch_size_and_head_and_reject_what_does_not_apply():
    case = cases.Case("epoch", 16384, (64, 64, 10), "float32", batch_size=16, output="softmax")
    assert case.label == "epoch f32 N=16384 B=16 64-64-10 softmax"
    assert case.key() != cases.Case("epoch", 16384, (64, 64, 10), "float32", batch_size=64, output="softmax").key()
    assert cases.Case("step", 8, (2, 3, 1), "float64").label == "step f64 N=8 2-3-1"  # older labels unchanged
    X, y = cases.case_data(case)
    assert y.shape == (16384, 10) and (y.sum(axis=1) == 1).all() and y.dtype == np.float32  # one-hot rows
    with pytest.raises(ValueError, match="batch_size applies to ops"):
        cases.Case("step", 8, (2, 3, 1), "float64", batch_size=4)
    with pytest.raises(ValueError, match="batch_size must be"):
        cases.Case("epoch", 8, (2, 3, 1), "float64", batch_size=0)
    with pytest.raises(ValueError, match="output must be"):
        cases.Case("epoch", 8, (2, 3, 1), "float64", output="tanh")
    with pytest.raises(ValueError, match="batch_size applies to ops"):
        cases.sweep("quick", batch_sizes=[16])  # the quick preset times steps only
    assert perf.flops("epoch", 64, (3, 5, 4)) == perf.flops_step(64, (3, 5, 4))
    full = perf.bytes_moved("epoch", 64, (3, 5, 4), "float64")
    assert full == perf.bytes_moved("step", 64, (3, 5, 4), "float64")
    assert perf.bytes_moved("epoch", 64, (3, 5, 4), "float64", batch_size=16) > full  # params once per batch


def test_the_minibatch_preset_grid(counting):
    grid = cases.sweep("minibatch")
    epochs = [c for c in grid if c.op == "epoch"]
    assert {(c.n_samples, c.layer_sizes, c.batch_size, c.dtype) for c in epochs} == {
        (16384, (64, h, 10), b, dt) for h in (64, 512) for b in (16, 64, 256, 1024) for dt in ("float64", "float32")}
    assert len(epochs) == 16 and all(c.output == "softmax" and c.epochs == 1 for c in epochs)
    assert [c.dataset for c in grid if c.op == "train"] == ["and", "and"]  # every preset times the lab too
    preset = cases.get_preset("minibatch")
    assert preset.references == ("sklearn",)
    names = cases.default_backends(preset)
    assert names == supporting("softmax") and "numpy" in names and "counting" in names
    assert "sigmoidonly" not in names  # every backend with the softmax head, and only those
    assert "sigmoidonly" in cases.default_backends(preset, output="sigmoid")
    narrowed = cases.sweep("minibatch", batch_sizes=[32], hidden=[8], dtypes=["float64"], labs=())
    assert [c.label for c in narrowed] == ["epoch f64 N=16384 B=32 64-8-10 softmax"]


# ---------------------------------------------------------------- reference rows
def test_sklearn_row_settings_and_one_call_is_one_epoch():
    pytest.importorskip("sklearn")
    case = cases.Case("epoch", 200, (6, 7, 5, 4), "float32", batch_size=32, output="softmax", lr=0.05, seed=4)
    X, y = cases.case_data(case)
    X0 = X.copy()
    subject, warmup_s = refs.reference_subject("sklearn", refs.REFERENCES["sklearn"], case, X, y)
    clf = subject.fn.estimator
    params = clf.get_params()
    assert {k: params[k] for k in ("solver", "momentum", "nesterovs_momentum", "alpha", "learning_rate",
                                   "learning_rate_init", "batch_size", "shuffle", "activation",
                                   "hidden_layer_sizes", "early_stopping")} == {
        "solver": "sgd", "momentum": 0.0, "nesterovs_momentum": False, "alpha": 0.0, "learning_rate": "constant",
        "learning_rate_init": 0.05, "batch_size": 32, "shuffle": True, "activation": "relu",
        "hidden_layer_sizes": (7, 5), "early_stopping": False}
    assert warmup_s > 0 and clf.t_ == 200 and clf.n_iter_ == 1  # the first call (init) is the warm-up
    assert [W.shape for W in clf.coefs_] == [(6, 7), (7, 5), (5, 4)] and clf.out_activation_ == "softmax"
    assert all(W.dtype == np.float32 for W in clf.coefs_)  # the case's dtype, kept
    for calls in (1, 2, 3):
        before = [W.copy() for W in clf.coefs_]
        subject.fn()
        assert clf.n_iter_ == 1 and clf.t_ == 200 * (calls + 1)  # exactly one epoch per call
        assert len(clf.loss_curve_) == calls + 1
        assert not np.array_equal(before[0], clf.coefs_[0])  # it trained
    np.testing.assert_array_equal(X, X0)
    labels, classes = refs.sklearn_targets(case, y)
    np.testing.assert_array_equal(labels, np.argmax(y, axis=1))
    np.testing.assert_array_equal(classes, np.arange(4))
    # the sigmoid head: one logistic unit (binary), or K of them (multilabel)
    for k in (1, 3):
        c = cases.Case("epoch", 60, (3, 4, k), "float64", batch_size=16, activation="sigmoid")
        s, _ = refs.reference_subject("sklearn", refs.REFERENCES["sklearn"], c, *cases.case_data(c))
        s.fn()
        est = s.fn.estimator
        assert est.out_activation_ == "logistic" and est.coefs_[-1].shape == (4, k) and est.t_ == 120
        assert est.get_params()["activation"] == "logistic"


def test_references_say_which_cases_they_cannot_run():
    ref = refs.REFERENCES["sklearn"]
    assert ref.applies(cases.Case("epoch", 8, (2, 3, 10), "float64", batch_size=4, output="softmax")) is None
    assert "op 'epoch' only" in ref.applies(cases.lab_case())
    assert "2 classes" in ref.applies(cases.Case("epoch", 8, (2, 3, 2), "float64", output="softmax"))
    with pytest.raises(ValueError, match="does not apply"):
        refs.reference_subject("sklearn", ref, cases.lab_case(), *cases.case_data(cases.lab_case()))
    with pytest.raises(ValueError, match="unknown reference 'nope'"):
        refs.ready(["nope"])


def _no_sklearn(monkeypatch):
    for name in [m for m in sys.modules if m == "sklearn" or m.startswith("sklearn.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn raises ImportError; find_spec says None


def test_without_scikit_learn_the_row_is_skipped_with_the_reason(monkeypatch, tmp_path, capsys):
    _no_sklearn(monkeypatch)
    ok, reason = refs.REFERENCES["sklearn"].availability()
    assert not ok and "scikit-learn is not installed" in reason and 'pip install "mlpbench[bench]"' in reason
    made, skipped = refs.ready(["sklearn"])
    assert made == [] and skipped == [{"backend": "sklearn", "reason": reason}]
    out = tmp_path / "res"
    code = main(["bench", "--preset", "minibatch", "--backends", "numpy", "--batch", "64", "--hidden", "4",
                 "--batch-size", "16", "--dtype", "float64", "--no-lab", "--min-time", "0", "--max-time", "0.2",
                 "--repeat", "3", "--quiet", "--no-plots", "--out", str(out)])
    text = capsys.readouterr()
    assert code == 0 and "skipping sklearn: scikit-learn is not installed" in text.err
    doc = json.loads((out / "results.json").read_text())
    assert doc["status"] == "complete" and {p["backend"] for p in doc["points"]} == {"numpy"}
    assert {"backend": "sklearn", "reason": reason} in doc["skipped"]


def _python_loop_reference(calls):
    """A reference row in a few lines: a plain Python loop over the mini-batches (the mechanism, sklearn aside)."""
    def build(case, X, y):
        def epoch():
            calls.append(X.shape[0])
            for s in range(0, X.shape[0], case.batch_size or X.shape[0]):
                X[s:s + case.batch_size].sum()
        epoch()
        return epoch

    return refs.Reference("loop", ("numpy",), "numpy", "a Python loop over the batches", build,
                          lambda case: None if case.op == "epoch" else "epoch only")


def test_reference_rows_are_judged_against_the_baseline_and_results_round_trip(monkeypatch, tmp_path, capsys):
    short_lab(monkeypatch)
    calls = []
    monkeypatch.setitem(refs.REFERENCES, "loop", _python_loop_reference(calls))
    case = cases.Case("epoch", 64, (4, 8, 3), "float64", batch_size=16, output="softmax")
    grid = [case, cases.lab_case()]
    names = ["loop"] + (["sklearn"] if refs.REFERENCES["sklearn"].availability()[0] else [])
    references, skipped = refs.ready(names)
    assert not skipped
    doc = run_sweep(grid, [("numpy", NumpyBackend())], tmp_path / "new", min_time=0.001, max_time=0.3,
                    min_rounds=3, config={"references": {n: r.what for n, r in references}}, peaks=_small_peaks(),
                    references=references, settle_s=0.0)
    assert doc["status"] == "complete" and not doc["errors"]
    points = {(p["backend"], p["case"]): p for p in doc["points"]}
    assert set(points) == {("numpy", case.label), ("numpy", "lab-and f64 2-4-1 x500")} | {
        (n, case.label) for n in names}  # a reference row only where it applies: not at the lab
    assert calls and set(calls) == {64}
    for n in names:
        p = points[(n, case.label)]
        assert p["reference"] is True and p["op"] == "epoch" and p["batch_size"] == 16 and p["output"] == "softmax"
        assert p["ratio"] > 0 and p["verdict"] in R.stats.VERDICTS and p["median_s"] > 0 and p["warmup_s"] > 0
    base = points[("numpy", case.label)]
    assert "reference" not in base and base["verdict"] == "baseline"
    assert_verdicts_follow_from_samples(doc)  # each reference row's verdict is the one its samples give
    assert (base["batch_size"], base["output"]) == (16, "softmax")
    lab = points[("numpy", "lab-and f64 2-4-1 x500")]
    assert (lab["batch_size"], lab["output"]) == (None, "sigmoid")
    assert "loop (reference)" in R.points_table(doc["points"])
    # round trip: the file reads back, its CSV has the new columns, and --compare matches point by point
    loaded = R.load(tmp_path / "new" / "results.json")
    assert loaded["points"] == json.loads(R.to_json({"points": doc["points"]}))["points"]
    csv_head = (tmp_path / "new" / "results.csv").read_text().splitlines()[0].split(",")
    assert {"batch_size", "output"} <= set(csv_head)
    rows = R.compare(loaded, loaded)
    assert {(r["backend"], r["case"]) for r in rows} == set(points)
    # an older /2 file (points without batch_size / output) still compares with the full-batch points
    old = copy.deepcopy(loaded)
    for p in old["points"]:
        p.pop("batch_size"), p.pop("output")
    old_path = tmp_path / "old.json"
    old_path.write_text(json.dumps(old))
    assert [r["case"] for r in R.compare(R.load(old_path), loaded)] == ["lab-and f64 2-4-1 x500"]
    assert main(["bench", "--compare", str(old_path), str(tmp_path / "new" / "results.json")]) == 0
    assert "1 points compared" in capsys.readouterr().out


# ---------------------------------------------------------------- the command line
def test_bench_flags_for_batch_size_output_and_references(counting, capsys):
    assert main(["bench", "--preset", "minibatch", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "epoch f64 N=16384 B=16 64-64-10 softmax" in out and "epoch f32 N=16384 B=1024 64-512-10 softmax" in out
    assert "18 cases" in out and "+ references sklearn" in out and "sigmoidonly" not in out and "counting" in out
    assert main(["bench", "--preset", "minibatch", "--references", "none", "--dry-run"]) == 0
    assert "references" not in capsys.readouterr().out.splitlines()[-1]
    assert main(["bench", "--preset", "quick", "--op", "epoch", "--batch-size", "8,32", "--output", "softmax",
                 "--batch", "64", "--hidden", "4", "--no-lab", "--dry-run"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[:2] == ["epoch f64 N=64 B=8 32-4-2 softmax", "epoch f64 N=64 B=32 32-4-2 softmax"]
    for argv, message in ((["--batch-size", "0"], "argument --batch-size: every value must be an integer >= 1"),
                          (["--batch-size", "x"], "argument --batch-size: expected an integer"),
                          (["--output", "tanh"], "argument --output: invalid choice"),
                          (["--references", "nope"], "argument --references: 'nope' is not one of none, idiomatic-jax, "),
                          (["--preset", "quick", "--batch-size", "16"], "--batch-size: batch_size applies to ops")):
        assert main(["bench", *argv, "--dry-run"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1


def test_bench_minibatch_end_to_end(capsys, tmp_path):
    out = tmp_path / "res"
    code = main(["bench", "--preset", "minibatch", "--backends", "numpy", "--batch", "256", "--hidden", "8",
                 "--batch-size", "64,128", "--dtype", "float32", "--no-lab", "--min-time", "0", "--max-time", "0.3",
                 "--repeat", "3", "--quiet", "--no-plots", "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0
    doc = R.load(out / "results.json")
    with_sklearn = refs.REFERENCES["sklearn"].availability()[0]
    assert {p["backend"] for p in doc["points"]} == {"numpy"} | ({"sklearn"} if with_sklearn else set())
    assert sorted({p["batch_size"] for p in doc["points"]}) == [64, 128]
    assert doc["config"]["grid"]["batch_size"] == "64,128"
    if with_sklearn:
        assert "sklearn (reference)" in text and "reference row sklearn: scikit-learn MLPClassifier" in text
        assert doc["machine"]["versions"]["sklearn"]


# ---------------------------------------------------------------- auto, per batch size and head
def test_auto_cache_keys_distinguish_batch_sizes_and_heads():
    full = cache_key(16384, [64, 64, 10], "float64", "relu")
    keys = {full, cache_key(16384, [64, 64, 10], "float64", "relu", "softmax", None),
            *(cache_key(16384, [64, 64, 10], "float64", "relu", "softmax", b) for b in (16, 64, 256, 1024)),
            cache_key(16384, [64, 64, 10], "float64", "relu", "sigmoid", 64)}
    assert len(keys) == 7
    assert full == f"{fingerprint()}|float64|relu|N16384|64x64x16"  # a full-batch sigmoid fit: the key as before
    assert cache_key(16384, [64, 64, 10], "float64", "relu", "softmax", 100) == \
        cache_key(16384, [64, 64, 10], "float64", "relu", "softmax", 128)  # power-of-two buckets, as N
    assert cache_key(100, [2, 4, 1], "float64", "relu", "softmax", 5000) == \
        cache_key(100, [2, 4, 1], "float64", "relu", "softmax", 128)  # a batch beyond N is N's bucket
    f = key_fields(cache_key(16384, [64, 64, 10], "float32", "tanh", "softmax", 64) + "|only numpy")
    assert f == {"dtype": "float32", "activation": "tanh", "n": "N16384", "shape": "64x64x16", "output": "softmax",
                 "batch": "B64", "only": "numpy"}
    assert key_fields(full)["output"] == "sigmoid" and key_fields(full)["batch"] == "full"


def test_auto_times_a_minibatch_fit_on_its_minibatch_epoch(counting, monkeypatch):
    """MLP.fit(backend="auto", batch_size=64) times candidates on shuffled epochs of batches of 64, softmax head."""
    monkeypatch.setattr(auto, "candidates", lambda names=None, output="sigmoid": (
        [BackendSpec("counting")], {}))
    prepared = []
    real_prepare = Counting.prepare
    monkeypatch.setattr(Counting, "prepare", lambda self, *a, **k: prepared.append(1) or real_prepare(self, *a, **k))
    rng = np.random.RandomState(0)
    X, y = rng.rand(300, 5), rng.randint(0, 4, 300)
    model = MLP([5, 6, 4], output="softmax", seed=2)
    model.fit(X, y, lr=0.1, epochs=2, batch_size=64, grad_reduction="mean", backend="auto")
    assert model.backend_ == "counting" and "batch 64, softmax" in model.backend_reason_
    timed = [t for t in counting.trains if t["lr"] == 1e-6 and t["rows"] == 300 and t.get("batch_size") == 64]
    assert timed, counting.trains  # the candidate was timed on the fit's mini-batch epoch ...
    assert all(t["output"] == "softmax" and t["shuffle"] for t in timed)
    probe = [t for t in counting.trains if t["rows"] == 64]  # ... and probed for parity on mini-batches
    assert probe and all(t["batch_size"] == 21 and t["output"] == "softmax" for t in probe)
    assert prepared == []  # never on the full-batch prepared step
    entries = auto.Cache().entries()
    assert len(entries) == 1 and next(iter(entries)).endswith("|softmax|B64")
    counting.trains = []
    model.fit(X, y, lr=0.1, epochs=2, batch_size=16, grad_reduction="mean", backend="auto")  # decided again
    assert any(t.get("batch_size") == 16 for t in counting.trains if t["lr"] == 1e-6 and t["rows"] == 300)
    assert sorted(key_fields(k)["batch"] for k in auto.Cache().entries()) == ["B16", "B64"]
    counting.trains = []
    model.fit(X, y, lr=0.1, epochs=2, batch_size=64, grad_reduction="mean", backend="auto")  # from the cache
    assert [(t["lr"], t["epochs"], t["batch_size"]) for t in counting.trains] == [(0.1, 2, 64)]  # the fit alone


def test_tune_fills_the_minibatch_presets_fits():
    from mlpbench.cli.tune import _shapes

    args = argparse.Namespace(preset="minibatch", dtype="float32", activation="relu")
    shapes = _shapes(args)
    assert shapes[0] == (4, (2, 4, 1), "float64", "sigmoid", None)  # the lab first
    assert set(shapes[1:]) == {(16384, (64, h, 10), "float32", "softmax", b) for h in (64, 512)
                               for b in (16, 64, 256, 1024)}
    std = _shapes(argparse.Namespace(preset="quick", dtype=None, activation="relu"))
    assert all(s[3:] == ("sigmoid", None) for s in std)
