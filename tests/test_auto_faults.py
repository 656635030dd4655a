"""backend='auto' under faults: bad cache entries and folders, the user's callback exceptions, global settings."""

import json
import os
import warnings

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.auto import choose as auto
from mlpbench.backends import BackendSpec, availability, register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend

NUMPY_ONLY = ["numpy"]


pytestmark = pytest.mark.usefixtures("isolated_cache")  # conftest.py: the cache in tmp_path


def _key():
    return auto.cache_key(4, [2, 4, 1], "float64", "relu") + "|only numpy"


def _good_entry():
    return auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY).to_json()


def _write(path, entries):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": auto.SCHEMA, "entries": entries}))


BAD = {
    "unknown backend": lambda e: e["measured"]["numpy"]["backend"].update(name="nosuch"),
    "unknown options": lambda e: e["measured"]["numpy"]["backend"].update(options={"warp": 9}),
    "missing field": lambda e: e.pop("measured"),
    "wrong type": lambda e: e["measured"]["numpy"].update(seconds_per_epoch="fast"),
    "not an object": lambda e: e.clear() or e.update(x=[1]),
}


@pytest.mark.parametrize("fault", sorted(BAD))
def test_an_invalid_entry_is_dropped_with_one_warning_naming_file_and_entry(isolated_cache, fault):
    entry = _good_entry()
    auto.shared_cache.cache_clear()
    BAD[fault](entry)
    _write(isolated_cache, {_key(): entry})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY)
        auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY)
    mine = [w for w in caught if "dropping entry" in str(w.message)]
    assert len(mine) == 1 and str(isolated_cache) in str(mine[0].message) and _key() in str(mine[0].message)
    assert [c.label for c in d.ranking] == ["numpy"] and not d.cached
    stored = json.loads(isolated_cache.read_text())["entries"][_key()]
    assert stored["measured"]["numpy"]["backend"]["name"] == "numpy"  # decided again and rewritten


def test_a_cache_folder_that_is_a_file_warns_once_and_works_without_cache(tmp_path, monkeypatch):
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(blocker))
    X, y = datasets.load("and")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):
            MLP().fit(X, y, epochs=20, backend="auto")
    mine = [w for w in caught if "cannot be used" in str(w.message)]
    assert len(mine) == 1 and str(blocker) in str(mine[0].message)
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores permissions")
@pytest.mark.parametrize("mode", [0o000, 0o500])
def test_an_unreadable_or_unwritable_folder_warns_once(isolated_cache, mode):
    folder = isolated_cache.parent
    folder.mkdir(parents=True)
    if mode == 0o500:
        _write(isolated_cache, {})
    os.chmod(folder, mode)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            d1 = auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY)
            d2 = auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY)
        mine = [w for w in caught if "cannot be used" in str(w.message)]
        assert len(mine) == 1 and str(isolated_cache) in str(mine[0].message)
        assert d1.ranking and d2.ranking and d2.cached  # kept in memory
    finally:
        os.chmod(folder, 0o700)


def _tune(capsys, monkeypatch, *args, cache_dir):
    """``mlpbench tune ARGS`` in process with ``MLPBENCH_CACHE_DIR=cache_dir``: (exit code, stdout, stderr)."""
    from mlpbench.cli import main

    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(cache_dir))
    auto.shared_cache.cache_clear()
    rc = main(["tune", *args])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_tune_show_and_clear_handle_every_fault(tmp_path, isolated_cache, monkeypatch, capsys):
    entry = _good_entry()
    bad = json.loads(json.dumps(entry))
    bad["measured"]["numpy"]["backend"]["name"] = "nosuch"
    _write(isolated_cache, {_key(): entry, "broken-key": bad})
    rc, out, err = _tune(capsys, monkeypatch, "--show", cache_dir=isolated_cache.parent)
    assert rc == 0 and err == ""
    assert "invalid entry" in out and "broken-key" in out and "nosuch" in out
    assert "numpy" in out
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    for cmd, says in (("--show", "cannot be read"), ("--clear", "cannot clear")):  # a file where the folder goes
        rc, out, err = _tune(capsys, monkeypatch, cmd, cache_dir=blocker)
        assert rc == 2 and out == "" and len(err.splitlines()) == 1, (cmd, err)
        assert err.startswith("mlpbench tune: error: ") and says in err and str(blocker / "auto.json") in err
    assert blocker.read_text() == "x"
    if os.geteuid() != 0:
        os.chmod(isolated_cache.parent, 0o500)
        try:
            rc, out, err = _tune(capsys, monkeypatch, "--clear", cache_dir=isolated_cache.parent)
            assert rc == 2
            assert len(err.strip().splitlines()) == 1 and "auto.json" in err
        finally:
            os.chmod(isolated_cache.parent, 0o700)
    rc, out, err = _tune(capsys, monkeypatch, "--budget", "-1", cache_dir=isolated_cache.parent)
    assert rc == 2 and "--budget" in err


class StopTraining(Exception):
    pass


def _stopper(at):
    seen = []
    err = StopTraining("enough")

    def callback(epoch, loss):
        seen.append(epoch)
        if epoch == at:
            raise err
    return callback, seen, err


BACKENDS = ["numpy", "numba", "numba[strategy=loop]", "torch", "jax", "auto"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_callback_exception_propagates_unchanged_once_per_epoch(backend):
    name = backend.split("[")[0]
    if name != "auto" and not availability(name)[0]:
        pytest.skip(f"{name} not installed")
    X, y = datasets.load("and")
    model = MLP()
    before = model.params
    callback, seen, err = _stopper(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fallback warning either
        with pytest.raises(StopTraining) as info:
            if "[" in backend:
                spec = BackendSpec.of("numba", strategy="loop")
                model._train_on(spec.make(), X, y, dict(lr=0.1, epochs=10, activation="relu",
                                                        grad_reduction="sum", callback=callback))
            else:
                model.fit(X, y, epochs=10, backend=backend, callback=callback)
    assert info.value is err
    assert seen == [1, 2, 3]
    for (W0, b0), (W1, b1) in zip(before, model.params):
        np.testing.assert_array_equal(W0, W1)
        np.testing.assert_array_equal(b0, b1)


def test_jax_backend_scopes_x64():
    if not availability("jax")[0]:
        pytest.skip("jax not installed")
    import jax

    from mlpbench.backends import get_backend

    assert not jax.config.jax_enable_x64
    be = get_backend("jax")
    be.warmup([2, 4, 1], 4, "float64")
    assert not jax.config.jax_enable_x64
    assert jax.numpy.ones(2).dtype == np.float32
    seen = []
    X, y = datasets.load("and")
    MLP().fit(X, y, epochs=3, backend="jax", callback=lambda e, loss: seen.append(jax.numpy.ones(1).dtype))
    assert seen == [np.float32] * 3  # the user's callback sees the user's setting


def test_break_even_reason_names_the_numbers_and_ties_are_stable():
    d = auto.Decision([], {"a": 1e-6, "b": 4e-5, "c": 1.01e-6}, {}, (4, (2, 4, 1)), epochs=5000,
                      first_call_s={"a": 0.8, "b": 0.0, "c": 0.8}, margin=0.02)
    specs = {lab: BackendSpec(lab) for lab in "abc"}
    d.ranking = auto.rank(d, specs)
    assert [c.label for c in d.ranking] == ["b", "a", "c"]  # 0.2 s beats 0.805 s: loading does not pay off
    assert "b: 40 us/epoch x 5000 + 0 s load vs a 1 us/epoch x 5000 + 0.8 s load" in d.reason
    d.paid = frozenset("ac")  # both already loaded in this process: a and c tie within the margin
    assert [c.label for c in auto.rank(d, specs)] == ["a", "c", "b"]
    d.seconds_per_epoch["c"] = 0.99e-6
    assert [c.label for c in auto.rank(d, specs)] == ["a", "c", "b"]  # same: prior rank, then label


class Other(NumpyBackend):
    name = "other"


def test_a_provisional_decision_is_used_then_refined(monkeypatch):
    register_backend("other", Other)
    try:
        monkeypatch.setattr(auto, "LOAD_FLOOR_S", 10.0)  # nothing not yet loaded can pay off
        d = auto.choose(4, [2, 4, 1], "float64", epochs=100, names=["numpy", "other"])
        assert [c.label for c in d.ranking] == ["numpy"] and d.provisional
        assert "provisional: not timed other" in d.reason and "other" in d.untimed
        again = auto.choose(4, [2, 4, 1], "float64", epochs=100, names=["numpy", "other"])
        assert again.cached and again.provisional
        monkeypatch.setattr(auto, "LOAD_FLOOR_S", 0.0)  # now it could win: timed on this call, entry refined
        refined = auto.choose(4, [2, 4, 1], "float64", epochs=100, names=["numpy", "other"])
        assert not refined.cached and not refined.provisional
        assert {c.label for c in refined.ranking} == {"numpy", "other"} and "provisional" not in refined.reason
        last = auto.choose(4, [2, 4, 1], "float64", epochs=7, names=["numpy", "other"])
        assert last.cached and not last.provisional and "x 7" in last.reason  # the same numbers, other epochs
    finally:
        unregister_backend("other")


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "10"])
def test_choose_rejects_bad_epochs(bad):
    with pytest.raises(ValueError, match="epochs"):
        auto.choose(4, [2, 4, 1], "float64", epochs=bad, names=NUMPY_ONLY)


def test_budget_must_be_positive():
    with pytest.raises(ValueError, match="budget_s"):
        auto.choose(4, [2, 4, 1], "float64", budget_s=-1, names=NUMPY_ONLY)


def test_unreadable_and_unwritable_caches_warn_once_even_as_root(isolated_cache, monkeypatch):
    """The permission faults simulated at the system call (root ignores file modes)."""
    from mlpbench.auto import cache as auto_cache

    _write(isolated_cache, {})
    real_open = os.open

    def no_read(path, *a, **k):  # the one reader of user files opens with os.open
        if str(path) == str(isolated_cache):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", no_read)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = [auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY) for _ in range(2)]
    monkeypatch.setattr(os, "open", real_open)
    mine = [w for w in caught if "cannot be used" in str(w.message)]
    assert len(mine) == 1 and str(isolated_cache) in str(mine[0].message)
    assert d[0].ranking and d[1].cached

    auto.shared_cache.cache_clear()

    def no_write(path, text):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(auto_cache, "atomic_write", no_write)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = [auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY) for _ in range(2)]
    mine = [w for w in caught if "cannot be used" in str(w.message)]
    assert len(mine) == 1 and "Permission denied" in str(mine[0].message)
    assert d[0].ranking and d[1].cached


def test_without_epochs_the_ranking_is_by_seconds_per_epoch():
    d = auto.Decision([], {"a": 3e-6, "b": 1e-6}, {}, (4, (2, 4, 1)), first_call_s={"a": 0.0, "b": 5.0},
                      paid=frozenset("ab"))
    assert [c.label for c in auto.rank(d, {lab: BackendSpec(lab) for lab in "ab"})] == ["b", "a"]
    d.epochs = 10
    d.paid = frozenset()
    assert [c.label for c in auto.rank(d, {lab: BackendSpec(lab) for lab in "ab"})] == ["a", "b"]
