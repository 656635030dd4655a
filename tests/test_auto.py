"""backend='auto': validated, measured, cached choice with fallback."""

import json
import logging
import multiprocessing
import os

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.auto import choose as auto
from mlpbench.backends import BackendSpec, register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend


class CorruptBackend(NumpyBackend):
    """Fast and wrong: perturbs the first weight gradient."""

    name = "corrupt"

    def backward(self, params, cache, X, y, **kw):
        grads = super().backward(params, cache, X, y, **kw)
        dW, db = grads[0]
        grads[0] = (dW * 1.01 + 1e-3, db)
        return grads


class BrokenBackend(NumpyBackend):
    """Passes parity, then fails at run time the way a GPU out of memory would."""

    name = "broken"

    def _train(self, *a, **kw):  # what train and a prepared run both call
        raise MemoryError("out of memory allocating 8 GiB on the device")


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    register_backend("corrupt", CorruptBackend)
    register_backend("broken", BrokenBackend)
    yield tmp_path / "cache" / "auto.json"
    unregister_backend("corrupt")
    unregister_backend("broken")


def test_a_backend_that_fails_parity_is_never_chosen():
    d = auto.choose(4, [2, 4, 1], "float64", names=["numpy", "corrupt"])
    assert [c.label for c in d.ranking] == ["numpy"]
    assert "failed parity" in d.rejected["corrupt"]
    assert "W" in d.rejected["corrupt"] or "grad" in d.rejected["corrupt"]


def test_decision_is_cached_on_disk_and_in_memory(isolated_cache, monkeypatch):
    first = auto.choose(4, [2, 4, 1], "float64", names=["numpy"])
    assert not first.cached and isolated_cache.exists()
    data = json.loads(isolated_cache.read_text())
    assert data["schema"] == auto.SCHEMA and len(data["entries"]) == 1

    calls = []
    monkeypatch.setattr(auto, "calibrate", lambda *a, **k: calls.append(a))
    again = auto.choose(4, [2, 4, 1], "float64", names=["numpy"])
    assert again.cached and [c.label for c in again.ranking] == ["numpy"]
    auto.shared_cache.cache_clear()  # a fresh process: the decision comes from the file
    from_disk = auto.choose(3, [2, 3, 1], "float64", names=["numpy"])  # same power-of-two bucket
    assert from_disk.cached and not calls
    assert "(cached)" in from_disk.reason


def test_a_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(isolated_cache):
    isolated_cache.parent.mkdir(parents=True)
    isolated_cache.write_text("{not json")
    with pytest.warns(RuntimeWarning, match="corrupt"):
        d = auto.choose(4, [2, 4, 1], "float64", names=["numpy"])
    assert d.ranking
    assert json.loads(isolated_cache.read_text())["schema"] == auto.SCHEMA


def test_a_cache_from_another_version_is_ignored_with_a_warning(isolated_cache):
    isolated_cache.parent.mkdir(parents=True)
    isolated_cache.write_text(json.dumps({"schema": "mlpbench.auto/0", "entries": {"x": 1}}))
    with pytest.warns(RuntimeWarning, match="another version"):
        auto.choose(4, [2, 4, 1], "float64", names=["numpy"])
    entries = json.loads(isolated_cache.read_text())["entries"]
    assert "x" not in entries and len(entries) == 1


def test_a_decision_from_another_machine_is_not_used(isolated_cache):
    key = auto.cache_key(4, [2, 4, 1], "float64", "relu") + "|only corrupt,numpy"
    foreign_key = "Some Other CPU|64 cores|no gpu|" + key.split("|", 3)[3]
    foreign = auto.Decision([BackendSpec("corrupt")], {"corrupt": 1e-9}, {}, (4, (2, 4, 1)))
    isolated_cache.parent.mkdir(parents=True)
    isolated_cache.write_text(json.dumps({"schema": auto.SCHEMA, "entries": {foreign_key: foreign.to_json()}}))
    d = auto.choose(4, [2, 4, 1], "float64", names=["numpy", "corrupt"])
    assert not d.cached and [c.label for c in d.ranking] == ["numpy"]


def _writer(path, worker):
    cache = auto.Cache(path)
    for i in range(15):
        cache.put(f"w{worker}-{i}", auto.Decision([BackendSpec("numpy")], {"numpy": 1e-5}, {}, (4, (2, 4, 1))))


def test_concurrent_writers_lose_nothing(tmp_path):
    path = str(tmp_path / "shared" / "auto.json")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    entries = json.loads(open(path).read())["entries"]
    assert sorted(entries) == sorted(f"w{w}-{i}" for w in range(4) for i in range(15))
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


def test_fit_auto_records_and_logs_the_choice(caplog, monkeypatch):
    monkeypatch.setattr(auto, "candidates", lambda names=None, output="sigmoid": ([BackendSpec("numpy")], {}))
    X, y = datasets.load("and")
    model = MLP()
    with caplog.at_level(logging.INFO, logger="mlpbench.auto.choose"):
        history = model.fit(X, y, epochs=100, backend="auto")
    assert model.backend_ == "numpy"
    assert model.backend_reason_.startswith("numpy: ") and "N=4, [2, 4, 1]" in model.backend_reason_
    assert any("numpy" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(history, MLP().fit(X, y, epochs=100, backend="numpy"))


def test_a_backend_failing_mid_fit_falls_back_to_the_next(monkeypatch):
    decision = auto.Decision([BackendSpec("broken"), BackendSpec("numpy")],
                             {"broken": 1e-6, "numpy": 1e-5}, {}, (4, (2, 4, 1)))
    monkeypatch.setattr(auto, "choose", lambda *a, **k: decision)
    X, y = datasets.load("and")
    model = MLP()
    with pytest.warns(RuntimeWarning, match="broken failed at run time"):
        history = model.fit(X, y, epochs=50, backend="auto")
    assert model.backend_ == "numpy"
    assert "fallback after broken failed (MemoryError" in model.backend_reason_
    np.testing.assert_array_equal(history, MLP().fit(X, y, epochs=50))


def test_whole_loop_and_step_strategies_are_separate_candidates(monkeypatch):
    class Two(NumpyBackend):
        name = "two"
        strategies = ("loop", "step")

        def __init__(self, strategy="loop"):
            self.strategy = strategy

        @classmethod
        def strategy_applies(cls, strategy, n_samples, layer_sizes, dtype):
            return strategy == "step" or n_samples <= 8

    register_backend("two", Two)
    try:
        found, _ = auto.candidates(["two"])
        assert [c.label for c in found] == ["two[loop]", "two[step]"]
        small = auto.choose(4, [2, 4, 1], "float64", names=["two"])
        big = auto.choose(64, [2, 4, 1], "float64", names=["two"])
        assert {c.label for c in small.ranking} == {"two[loop]", "two[step]"}
        assert [c.label for c in big.ranking] == ["two[step]"] and "not suited" in big.rejected["two[loop]"]
    finally:
        unregister_backend("two")


def test_bucket_and_key():
    assert [auto.bucket(n) for n in (1, 2, 3, 4, 5, 1000, 1024, 1025)] == [1, 2, 4, 4, 8, 1024, 1024, 2048]
    assert auto.cache_key(3, [2, 3, 1], "float32", "tanh") == auto.cache_key(4, [2, 4, 1], np.float32, "tanh")
    assert auto.cache_key(5, [2, 4, 1], "float64", "relu") != auto.cache_key(4, [2, 4, 1], "float64", "relu")


class WrongLoop(NumpyBackend):
    """Right on every op (forward, backward, step), wrong on the whole-loop run of its ``loop`` strategy."""

    name = "wrongloop"
    strategies = ("loop", "step")

    def __init__(self, strategy="loop"):
        self.strategy = strategy

    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback):
        history = super()._train(params, X, y, lr, epochs, activation, grad_reduction, callback)
        if self.strategy == "loop":
            params[0][0][...] += 1e-3  # a fused kernel that forgot part of an update
        return history


def test_a_strategy_candidate_is_probed_on_the_run_it_does_and_rejected_when_wrong():
    register_backend("wrongloop", WrongLoop)
    try:
        ok, failure = auto.parity.probe_run(WrongLoop("loop"), [2, 4, 1], 4, "float64")
        assert not ok and "prepared run" in failure and "W1" in failure
        assert auto.parity.probe_run(WrongLoop("step"), [2, 4, 1], 4, "float32") == (True, None)
        d = auto.choose(4, [2, 4, 1], "float64", epochs=5000, names=["wrongloop"])
        assert [c.label for c in d.ranking] == ["wrongloop[step]"]
        assert "failed parity" in d.rejected["wrongloop[loop]"] and "prepared run" in d.rejected["wrongloop[loop]"]
    finally:
        unregister_backend("wrongloop")


class Jitty(NumpyBackend):
    """The NumPy math behind a fake JIT: its first construction 'compiles' (counted by compile_seconds)."""

    name = "jitty"
    prior_rank = 0  # wins a tie with numpy (the same math), so the refresh is what is tested
    compiled = 0.0

    @classmethod
    def compile_seconds(cls):
        return cls.compiled

    def __init__(self):
        if Jitty.compiled == 0.0:
            t0 = __import__("time").perf_counter()
            while __import__("time").perf_counter() - t0 < 0.2:  # the compile, paid once per process
                pass
            Jitty.compiled = 0.2


def test_a_first_call_that_compiled_is_recorded_without_the_compile_and_refreshed_when_it_decides(monkeypatch):
    register_backend("jitty", Jitty)
    try:
        d = auto.choose(4, [2, 4, 1], "float64", epochs=5000, names=["numpy", "jitty"])
        assert auto.paid()["jitty"] >= 0.2 and d.compile_s["jitty"] == pytest.approx(0.2)
        assert d.first_call_s["jitty"] == pytest.approx(auto.paid()["jitty"] - 0.2)  # what a later process pays
        # a later process (nothing paid): the recorded cost is a lower bound; when it would win with it,
        # the candidate is loaded again and the entry refreshed with the cost it really has
        monkeypatch.setattr(auto, "_PAID", {})
        monkeypatch.setattr(auto, "_LATER", {})
        entry = auto.shared_cache(auto.cache_path()).get(auto.cache_key(4, [2, 4, 1], "float64", "relu") +
                                                         "|only jitty,numpy")
        cached = auto.Decision.from_json(entry, 5000)
        specs = {c.label: c for c in cached.ranking}
        if cached.ranking[0].label == "jitty":
            again = auto.choose(4, [2, 4, 1], "float64", epochs=5000, names=["numpy", "jitty"])
            assert not again.cached and "jitty" in auto.paid() and again.compile_s["jitty"] == 0.0
            assert not auto._stale(auto.Decision.from_json(auto.shared_cache(auto.cache_path()).get(
                auto.cache_key(4, [2, 4, 1], "float64", "relu") + "|only jitty,numpy"), 5000), specs)
        else:  # it cannot win even at its lower bound: nothing to refresh, the cache decides
            assert not auto._stale(cached, specs)
            assert auto.choose(4, [2, 4, 1], "float64", epochs=5000, names=["numpy", "jitty"]).cached
    finally:
        unregister_backend("jitty")
