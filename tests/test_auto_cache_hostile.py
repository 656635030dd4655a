"""The auto cache against hostile files (issue 21): every bad entry is dropped with one warning and never
crashes a fit or ``tune --show``; whole-file faults (deep JSON, a device, a FIFO lock, a held lock) degrade to
working without the cache; ``tune`` refuses a cache folder it cannot write before timing anything."""

import json
import os
import sys
import warnings

import pytest
from filelock import FileLock

from mlpbench.auto import cache as auto_cache
from mlpbench.auto import choose as auto
from mlpbench.cli import main

NUMPY_ONLY = ["numpy"]
pytestmark = pytest.mark.usefixtures("isolated_cache")  # conftest.py: the cache in tmp_path


@pytest.fixture(scope="module")
def good_entry(tmp_path_factory):
    cache = auto.Cache(str(tmp_path_factory.mktemp("seed") / "auto.json"))
    return auto.choose(4, [2, 4, 1], "float64", names=NUMPY_ONLY, cache=cache).to_json()


def _key():
    return auto.cache_key(4, [2, 4, 1], "float64", "relu") + "|only numpy"


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _numpy(e):
    return e["measured"]["numpy"]


def _numba(e, label, **options):
    """A measurement of numba (the JIT backend that takes ``threads``) stored under ``label``."""
    e["measured"][label] = dict(_numpy(e), backend={"name": "numba", "options": options})


BAD = {  # each crashed a fit or slipped through unwarned on main
    "unknown strategy": lambda e: _numba(e, "numba[evil]", strategy="evil"),
    "backend mismatch": lambda e: _numpy(e)["backend"].update(name="torch"),
    "400-digit int": lambda e: _numpy(e).update(seconds_per_epoch=10**400),
    "400-digit size": lambda e: e["shape"].__setitem__(0, 10**400),
    "threads -1": lambda e: _numba(e, "numba[loop]", strategy="loop", threads=-1),
    "threads '2'": lambda e: _numba(e, "numba[loop]", strategy="loop", threads="2"),
    "NaN created": lambda e: e.update(created=float("nan")),
    "negative uses": lambda e: e.update(uses={"fits": -1}),
}


@pytest.mark.parametrize("fault", sorted(BAD))
def test_a_bad_entry_is_dropped_with_one_warning_and_decided_again(isolated_cache, good_entry, fault):
    entry = json.loads(json.dumps(good_entry))
    BAD[fault](entry)
    _write(isolated_cache, json.dumps({"schema": auto.SCHEMA, "entries": {_key(): entry}}))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = auto.choose(4, [2, 4, 1], "float64", epochs=10, names=NUMPY_ONLY)
    mine = [w for w in caught if "dropping entry" in str(w.message)]
    assert len(mine) == 1 and _key() in str(mine[0].message), [str(w.message) for w in caught]
    assert [c.label for c in d.ranking] == ["numpy"] and not d.cached


def test_tune_show_lists_every_bad_entry_and_exits_0(isolated_cache, good_entry, monkeypatch, capsys):
    entries = {"good": good_entry}
    for fault, spoil in BAD.items():
        entries[fault] = json.loads(json.dumps(good_entry))
        spoil(entries[fault])
    _write(isolated_cache, json.dumps({"schema": auto.SCHEMA, "entries": entries}))
    assert main(["tune", "--show"]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "(1 entries)" in out
    assert all(f"invalid entry (dropped when read): {fault}:" in out for fault in BAD), out


@pytest.mark.parametrize("content", ["[" * 100_000 + "]" * 100_000, '{"schema": ' + "9" * 5000 + "}"])
def test_a_file_nested_too_deep_or_with_a_huge_int_is_rebuilt_not_a_crash(isolated_cache, content, capsys):
    _write(isolated_cache, content)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = auto.choose(4, [2, 4, 1], "float64", epochs=10, names=NUMPY_ONLY)
    assert d.ranking and any("ignoring corrupt" in str(w.message) for w in caught)
    assert json.loads(isolated_cache.read_text())["schema"] == auto.SCHEMA  # rebuilt
    auto.shared_cache.cache_clear()
    assert main(["tune", "--show"]) == 0 and "Traceback" not in capsys.readouterr().err


def _works_without_cache(says):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        d = auto.choose(4, [2, 4, 1], "float64", epochs=10, names=NUMPY_ONLY)
    mine = [str(w.message) for w in caught if "cannot be used" in str(w.message)]
    assert d.ranking and len(mine) == 1 and says in mine[0], [str(w.message) for w in caught]


def test_a_cache_file_linked_to_a_device_is_not_read(isolated_cache):
    isolated_cache.parent.mkdir(parents=True)
    os.symlink("/dev/zero", isolated_cache)
    _works_without_cache("character device")


def test_a_fifo_lock_does_not_hang(isolated_cache):
    isolated_cache.parent.mkdir(parents=True)
    os.mkfifo(str(isolated_cache) + ".lock")
    _works_without_cache("not a regular file")


def test_a_held_lock_times_out_into_working_without_cache(isolated_cache, monkeypatch):
    monkeypatch.setattr(auto_cache, "LOCK_TIMEOUT_S", 0.2)
    isolated_cache.parent.mkdir(parents=True)
    with FileLock(str(isolated_cache) + ".lock"):  # another holder (flock is per open file, even in one process)
        _works_without_cache("held by another process")


def test_tune_refuses_a_cache_folder_that_is_a_file_before_timing(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(blocker))
    monkeypatch.setattr(auto, "choose", lambda *a, **k: pytest.fail("timed before checking the cache"))
    assert main(["tune", "--budget", "0.01"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "MLPBENCH_CACHE_DIR" in err and "blocker" in err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG convention is Linux's")
def test_a_relative_xdg_cache_home_is_ignored(monkeypatch, tmp_path):
    monkeypatch.delenv("MLPBENCH_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CACHE_HOME", "rel")
    assert auto_cache.cache_dir() == os.path.join(os.path.expanduser("~"), ".cache", "mlpbench")


def test_entries_are_checked_once_per_read_not_again_on_every_write(isolated_cache, good_entry, monkeypatch):
    _write(isolated_cache, json.dumps({"schema": auto.SCHEMA, "entries": {f"k{i}": good_entry for i in range(50)}}))
    calls = []
    real = auto_cache.check_entry
    monkeypatch.setattr(auto_cache, "check_entry", lambda e: calls.append(1) or real(e))
    cache = auto.Cache(str(isolated_cache))
    assert cache.get("k0") is not None and len(calls) == 50  # parsed once, at load
    for i in range(3):
        cache.put(f"new{i}", good_entry)
    assert len(calls) == 50  # on main every put checked every entry again: quadratic in the cache's size
    assert len(json.loads(isolated_cache.read_text())["entries"]) == 53
