"""``bench --scheduler`` without a cluster: the checks, the files, how report and compare read them, and that
the local path never loads Dask (the cluster itself: ``tests/test_cluster.py``, marked slow)."""

from __future__ import annotations

import json
import os
import sys

import pytest

from mlpbench.backends import get_backend
from mlpbench.cli.app import main
from mlpbench.measure.peaks import Peaks
from mlpbench.suite import cluster_files as F
from mlpbench.suite import results as R
from mlpbench.suite.cases import Case
from mlpbench.suite.cluster_worker import Collector
from mlpbench.suite.machine import machine_name
from mlpbench.suite.sweep import measure_point

CHILD = r"""
import sys
import mlpbench.cli
after_import = sorted(m for m in ("dask", "distributed") if m in sys.modules)
from mlpbench.cli.app import main
rc = main(["bench", "--backends", "numpy", "--batch", "8", "--hidden", "4", "--op", "forward", "--dtype", "float64",
           "--no-lab", "--passes", "1", "--max-time", "0.05", "--quiet", "--no-plots", "--out", sys.argv[1]])
print(rc, after_import, sorted(m for m in ("dask", "distributed") if m in sys.modules))
"""
CHILDREN = {"local": lambda folder: {"argv": [sys.executable, "-c", CHILD, folder]}}


def versions(client, **workers):
    return {"client": {"packages": client}, "workers": {a: {"packages": p} for a, p in workers.items()}}


BASE = {"mlpbench": "0.1.0", "numpy": "2.0.0", "numba": "0.60.0", "torch": None}


def test_versions_must_match_for_mlpbench_numpy_and_the_backends_both_sides_have():
    F.check_versions(versions(BASE, w1=dict(BASE, torch="2.1.0"), w2=dict(BASE, numba=None)), ["numba", "torch"])
    with pytest.raises(ValueError, match=r"^version mismatch: numpy 2\.0\.0 here, 1\.26\.0 on worker w2;"):
        F.check_versions(versions(BASE, w1=BASE, w2=dict(BASE, numpy="1.26.0")), ["numba"])
    with pytest.raises(ValueError, match="numba 0.60.0 here, 0.59.1 on worker w1"):
        F.check_versions(versions(BASE, w1=dict(BASE, numba="0.59.1")), ["numba"])
    with pytest.raises(ValueError, match="mlpbench 0.1.0 here, not installed on worker w1"):
        F.check_versions(versions(BASE, w1=dict(BASE, mlpbench=None)), [])


@pytest.mark.parametrize("workers, match", [
    ({}, "no worker is connected"),
    ({"tcp://a:1": {"nthreads": 1, "resources": {}}}, "worker tcp://a:1 has no 'mlpbench' resource"),
    ({"tcp://a:1": {"nthreads": 4, "resources": {"mlpbench": 1}}}, "worker tcp://a:1 runs 4 task threads, not 1"),
])
def test_every_worker_holds_the_resource_and_one_thread(workers, match):
    with pytest.raises(ValueError, match=match):
        F.check_workers("tcp://s:8786", workers)
    F.check_workers("tcp://s:8786", {"tcp://a:1": {"nthreads": 1, "resources": {"mlpbench": 1}}})


def info(name, host, address, **record):
    return {"name": name, "host": host, "address": address,
            "record": {"cpu": "X", "cores_logical": 8, "versions": {"numpy": "2"}, "name": name, **record}}


def test_two_workers_on_one_machine_are_refused_and_two_names_on_one_host_warned_about():
    with pytest.raises(ValueError, match="workers tcp://a and tcp://b both report machine 'm' on one machine"):
        F.check_machines([info("m", "h", "tcp://a"), info("m", "h", "tcp://b")])
    with pytest.raises(ValueError, match="on hosts h1 and h2"):
        F.check_machines([info("m", "h1", "tcp://a"), info("m", "h2", "tcp://b")])
    (warning,) = F.check_machines([info("m1", "h", "tcp://a"), info("m2", "h", "tcp://b"), info("m3", "g", "tcp://c")])
    assert warning.startswith("warning: workers tcp://a, tcp://b (machines m1, m2) share host h")
    assert F.check_machines([info("m1", "h1", "tcp://a"), info("m2", "h2", "tcp://b")]) == []


def test_split_refuses_machines_that_differ_naming_the_odd_one_out():
    same = [info("m1", "h1", "tcp://a"), info("m2", "h2", "tcp://b")]
    F.check_split(same)  # the name and host may differ
    odd = [*same, info("m3", "h3", "tcp://c", cores_logical=16)]
    with pytest.raises(ValueError, match=r"worker tcp://c \(machine m3\) differs from m1 in cores_logical: 16 vs 8"):
        F.check_split(odd)


def test_machine_name_is_the_override_else_the_host(monkeypatch):
    monkeypatch.setenv("MLPBENCH_MACHINE_NAME", "node-7")
    assert machine_name() == "node-7"
    monkeypatch.setenv("MLPBENCH_MACHINE_NAME", "../etc")
    with pytest.raises(ValueError, match="MLPBENCH_MACHINE_NAME='../etc'"):
        machine_name()
    monkeypatch.delenv("MLPBENCH_MACHINE_NAME")
    assert machine_name() and "/" not in machine_name()


@pytest.mark.parametrize("argv, match", [
    (["--scheduler", "nowhere"], "argument --scheduler: expected a scheduler address"),
    (["--scheduler", "tcp://h:99999"], "argument --scheduler: expected a scheduler address"),
    (["--on", "split"], "--on does not apply without --scheduler"),
    (["--compare", "a", "b", "--scheduler", "tcp://h:1"], "--scheduler does not apply with --compare"),
])
def test_cluster_options_are_checked_before_any_work(tmp_path, capsys, argv, match):
    assert main(["bench", "--out", str(tmp_path), *argv]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1


def test_without_the_cluster_extra_scheduler_is_exit_2_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed: ImportError
    assert main(["bench", "--scheduler", "tcp://127.0.0.1:8786", "--backends", "numpy", "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == ("mlpbench bench: error: --scheduler needs Dask's distributed: pip install 'mlpbench[cluster]'")
    assert not os.listdir(tmp_path)


# ---------------------------------------------------------------- the files, fed as the client feeds them
CASES = [Case("forward", 8, (4, 4, 1), "float64"), Case("step", 8, (4, 4, 1), "float64")]


@pytest.fixture(scope="module")
def measured():
    """Each case measured as a worker measures it (``measure_point`` into a ``Collector``), once for the module."""
    backends = [("numpy", get_backend("numpy"))]
    peaks, warm, out = Peaks(backends, ["float64"]), set(), []
    for case in CASES:
        c = Collector()
        measure_point(case, backends, c, peaks, warm, min_time=0, max_time=0.05, min_rounds=3, passes=1)
        out.append((case.label, c.doc))
    return out


def result(name, label, doc):
    return {"name": name, "host": "h", "address": f"tcp://{name}:1", "case": label, **doc,
            "record": {"cpu": "X", "name": name}, "skipped_backends": [], "peak": {}}


def cluster_run(out, mode, measured, deliveries, status="complete", merged=None):
    files = F.ClusterFiles(out, {"command": "mlpbench bench", "baseline": "numpy"}, mode, "tcp://s:8786")
    for name in ("m1", "m2"):
        files.add_machine({**result(name, "", {}), "skipped_backends": [{"backend": "cupy", "reason": "no GPU"}]})
    for name, i in deliveries:
        files.add_result(result(name, *measured[i]))
    files.finish(status, merged)
    return files


def test_each_machine_file_holds_its_points_and_the_merged_file_lists_the_machines(tmp_path, measured):
    out = tmp_path / "each"
    cluster_run(out, "each", measured, [("m1", 0), ("m2", 0), ("m1", 1), ("m2", 1)])
    merged = R.load(out / "results.json")
    assert merged["cluster"] == {"mode": "each", "scheduler": "tcp://s:8786"} and merged["status"] == "complete"
    assert [(m["name"], m["file"], m["status"], m["points"]) for m in merged["machines"]] == [
        ("m1", "m1/results.json", "complete", 2), ("m2", "m2/results.json", "complete", 2)]
    for name in ("m1", "m2"):
        doc = R.load(out / name / "results.json")
        assert doc["status"] == "complete" and doc["machine"]["name"] == name
        assert [p["case"] for p in doc["points"]] == [c.label for c in CASES]
        assert doc["skipped"] == [{"backend": "cupy", "reason": "no GPU"}] and doc["noise"]["points"] == 2
        assert [p for p in merged["points"] if p["machine"] == name] == [dict(p, machine=name) for p in doc["points"]]
        assert (out / name / "results.csv").read_text().count("\n") == 3


def test_split_files_hold_every_case_once_and_a_lost_machine_ends_interrupted(tmp_path, measured):
    out = tmp_path / "split"
    files = F.ClusterFiles(out, {"baseline": "numpy"}, "split", "tcp://s:8786")
    for name in ("m1", "m2"):
        files.add_machine(result(name, "", {}))
    files.add_result(result("m1", *measured[0]))
    files.finish_machine("m1", "interrupted")  # its worker left; its case stays
    files.add_result(result("m2", *measured[1]))
    files.finish("complete")
    merged = R.load(out / "results.json")
    assert sorted(p["case"] for p in merged["points"]) == sorted(c.label for c in CASES)
    assert "name" not in merged["machine"] and merged["status"] == "complete"
    assert [m["status"] for m in merged["machines"]] == ["interrupted", "complete"]
    assert R.load(out / "m1" / "results.json")["points"][0]["case"] == CASES[0].label


def test_expand_reads_a_merged_each_file_as_its_machines_and_a_split_one_as_itself(tmp_path, measured):
    cluster_run(tmp_path / "e", "each", measured, [("m1", 0), ("m2", 0)])
    cluster_run(tmp_path / "s", "split", measured, [("m1", 0), ("m2", 1)])
    e, s = str(tmp_path / "e"), str(tmp_path / "s")
    parts = [os.path.join(e, "m1", "results.json"), os.path.join(e, "m2", "results.json")]
    assert F.expand([os.path.join(e, "results.json")]) == parts
    assert F.expand([os.path.join(e, "results.json"), *parts]) == parts
    assert F.expand([os.path.join(s, "results.json"), os.path.join(s, "m1", "results.json")]) == [
        os.path.join(s, "results.json")]


def test_report_compares_the_machines_and_compare_reads_interrupted_machine_files(tmp_path, measured, capsys):
    """Ctrl-C's files (every one ``interrupted``): the report shows one run per machine, by its name;
    ``compare`` reads two machines' files."""
    out = tmp_path / "run"
    cluster_run(out, "each", measured, [("m1", 0), ("m2", 0), ("m1", 1)], status="interrupted")
    assert {R.load(p)["status"] for p in (out / "results.json", out / "m1/results.json", out / "m2/results.json")} == {
        "interrupted"}
    capsys.readouterr()
    assert main(["report", str(out)]) == 0
    page = capsys.readouterr().out
    assert "| m1 | [m1]" in page and "| m2 | [m2]" in page and "| interrupted (2 points kept) |" in page
    assert "| interrupted (1 points kept) |" in page
    assert main(["compare", str(out / "m1/results.json"), str(out / "m2/results.json")]) == 0
    text = capsys.readouterr().out
    assert "1 points compared" in text and CASES[0].label in text


def test_a_point_error_goes_to_its_machine_and_a_lost_case_to_the_merged_file(tmp_path):
    files = F.ClusterFiles(tmp_path, {}, "each", "tcp://s:1")
    files.add_machine(result("m1", "", {}))
    files.add_error("case A", "RuntimeError: boom", "m1")
    files.add_error("case B", "KilledWorker: lost")
    files.finish("complete")
    assert json.loads((tmp_path / "m1" / "results.json").read_text())["errors"] == [
        {"backend": "*", "case": "case A", "error": "RuntimeError: boom"}]
    assert [e.get("machine") for e in R.load(tmp_path / "results.json")["errors"]] == ["m1", None]


def test_import_and_a_local_bench_load_no_dask(children):
    """Last in the module: the child runs beside the tests above (tests/children.py)."""
    rc, out, err = children.result(__name__, "local")
    assert rc == 0, err[-2000:]
    assert out.strip().splitlines()[-1] == "0 [] []"


# ---------------------------------------------------------------- the client's loop, on a stand-in client
class StandInFuture:
    def __init__(self, value):
        self.status, self.value = "pending", value

    def done(self):
        return self.status != "pending"

    def result(self):
        return self.value

    def exception(self):
        return RuntimeError("boom")


class StandInClient:
    """What ``cluster._sweep`` uses of a ``distributed.Client``; each look at the workers plays the next step:
    ``(cases to finish as (machine, index), addresses present)``."""

    def __init__(self, steps):
        self.steps, self.futures, self.cancelled = list(steps), {}, []
        self.scheduler = type("rpc", (), {"identity": None})()

    def submit(self, fn, job, case, key, workers=None, **kw):
        name = {"tcp://a": "m1", "tcp://b": "m2"}[workers[0]]
        point = {"backend": "numpy", "case": case.label, "verdict": "baseline", "layer_sizes": [4, 4, 1]}
        f = StandInFuture(result(name, case.label, {"points": [point], "errors": [], "skipped": []}))
        self.futures[name, len([k for k in self.futures if k[0] == name])] = f
        return f

    def cancel(self, futures):
        for f in futures:
            f.status = "cancelled"
        self.cancelled += futures

    def sync(self, fn, **kw):
        finish, present = self.steps.pop(0) if self.steps else ([k for k in self.futures], ["tcp://b"])
        for key in finish:
            if self.futures[key].status == "pending":
                self.futures[key].status = "finished"
        return {"workers": {a: {} for a in present}}


def stand_in_sweep(folder, mode, n_cases, steps, monkeypatch):
    """``cluster._sweep`` over machines m1 (tcp://a) and m2 (tcp://b) on a ``StandInClient`` playing ``steps``;
    ``(cases, client, warnings)``."""
    from mlpbench.suite import cluster

    monkeypatch.setattr(cluster, "POLL_S", 0)
    cases = [Case("forward", 8 + i, (4, 4, 1), "float64") for i in range(n_cases)]
    infos = [dict(result(n, "", {}), address=a) for n, a in (("m1", "tcp://a"), ("m2", "tcp://b"))]
    client, lines = StandInClient(steps), []
    files = F.ClusterFiles(folder, {}, mode, "tcp://s:1")
    for i in infos:
        files.add_machine(i)
    cluster._sweep(client, mode, cases, {"run": "r"}, infos, files, cluster.Progress(0, enabled=False), lines.append,
                   "tcp://s:1")
    return cases, client, lines


def test_each_drops_a_machine_only_when_two_looks_miss_its_worker(tmp_path, monkeypatch):
    cases, client, lines = stand_in_sweep(tmp_path, "each", 4, [
        ([("m1", 0), ("m2", 0)], ["tcp://a", "tcp://b"]),
        ([("m2", 1)], ["tcp://b"]),  # m1 missed once: a slow answer, not a loss
        ([("m1", 1)], ["tcp://a", "tcp://b"]),
        ([], ["tcp://b"]), ([], ["tcp://b"])], monkeypatch)  # missed twice: gone
    merged = json.loads((tmp_path / "results.json").read_text())
    assert [(m["name"], m["status"], m["points"]) for m in merged["machines"]] == [
        ("m1", "interrupted", 2), ("m2", "complete", 4)]
    assert merged["status"] == "interrupted"
    assert sorted(f.value["case"] for f in client.cancelled) == [cases[2].label, cases[3].label]  # m1's queued
    (line,) = lines
    assert line.startswith("worker tcp://a (machine m1) left the cluster: m1/results.json ends interrupted with its 2")


def test_split_ends_interrupted_when_every_worker_of_the_run_left(tmp_path, monkeypatch):
    """A worker that joins later (here tcp://c, e.g. a restarted one) takes no part: the run stops, exit 2."""
    with pytest.raises(ValueError, match=r"^--scheduler tcp://s:1: every worker of the run left the cluster; 1 points"):
        stand_in_sweep(tmp_path, "split", 3, [([("m1", 0)], ["tcp://a", "tcp://b"]), ([], ["tcp://c"]),
                                              ([], ["tcp://c"])], monkeypatch)
    merged = json.loads((tmp_path / "results.json").read_text())
    assert merged["status"] == "interrupted" and [m["status"] for m in merged["machines"]] == ["interrupted"] * 2
    assert [p["case"] for p in merged["points"]] == [Case("forward", 8, (4, 4, 1), "float64").label]
