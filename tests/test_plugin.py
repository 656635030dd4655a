"""A backend written outside the package (tests/plugins/threaded_numpy.py), registered with one call,
shows up in every tool with no edit anywhere else."""

import importlib.metadata
import json

import pytest

from mlpbench.auto import choose as auto
from mlpbench import available_backends, backends
from mlpbench.backends import BackendSpec, backend_names, packages, register_backend, unregister_backend
from mlpbench.cli.app import main
from plugins.threaded_numpy import ThreadedNumpyBackend

NAME = "threaded_numpy"


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    register_backend(NAME, ThreadedNumpyBackend)  # the one call
    yield
    unregister_backend(NAME)


def test_a_one_file_backend_appears_in_every_tool(plugin, tmp_path, capsys):
    row = next(r for r in available_backends() if r["name"] == NAME)
    assert row["available"] and row["device"] == "cpu" and row["version"] == importlib.metadata.version("threadpoolctl")

    assert main(["parity", "--backends", f"{NAME}[threads=1]", "--dtype", "float64,float32", "--no-lab", "--quiet",
                 "--strict"]) == 0
    out = capsys.readouterr().out
    assert f"{NAME}[threads=1]" in out and "parity OK" in out

    res = tmp_path / "res"
    assert main(["bench", "--backends", f"{NAME}[threads=1]", "--batch", "2", "--hidden", "3", "--features", "4",
                 "--dtype", "float64", "--op", "step", "--no-lab", "--repeat", "3", "--min-time", "0", "--quiet",
                 "--no-plots", "--out", str(res)]) == 0
    doc = json.loads((res / "results.json").read_text())
    assert {p["backend"] for p in doc["points"]} == {"numpy", f"{NAME}[threads=1]"}
    assert doc["machine"]["backends"][f"{NAME}[threads=1]"]["threads"] == 1
    assert set(ThreadedNumpyBackend.requires) <= set(doc["machine"]["versions"])

    found, _ = auto.candidates()
    assert BackendSpec(NAME) in found
    decision = auto.choose(4, [2, 4, 1], "float64", names=[NAME])
    assert decision.ranking == [BackendSpec(NAME)]
    capsys.readouterr()
    assert main(["tune", "--show"]) == 0
    assert f"{NAME} " in capsys.readouterr().out


def test_the_registry_reads_the_plugins_facts(plugin):
    assert "threadpoolctl" in packages()  # recorded in results.json because the plugin requires it
    unregister_backend(NAME)
    assert "threadpoolctl" not in packages()


def test_an_entry_point_registers_a_backend_lazily(monkeypatch):
    class EntryPoint:  # what importlib.metadata returns for a distribution's [mlpbench.backends] entry
        name, value = NAME, "plugins.threaded_numpy:ThreadedNumpyBackend"

    seen = []

    def entry_points(group):
        seen.append(group)
        return [EntryPoint()]

    monkeypatch.setattr(importlib.metadata, "entry_points", entry_points)
    monkeypatch.setattr(backends, "_entry_points_read", False)
    try:
        assert NAME in backend_names() and seen == ["mlpbench.backends"]
        assert backends.backend_class(NAME) is ThreadedNumpyBackend
        backend_names()
        assert seen == ["mlpbench.backends"]  # read once
    finally:
        unregister_backend(NAME)


def test_a_backend_whose_default_instance_fails_is_still_listed(plugin):
    class NeedsAnArgument(ThreadedNumpyBackend):
        def __init__(self, path):
            super().__init__()

    register_backend(NAME, NeedsAnArgument)
    row = next(r for r in available_backends() if r["name"] == NAME)
    assert row["available"] and row["device"] == "cpu" and "describe() failed: TypeError" in row["notes"]
