"""``bench --scheduler`` on real clusters (slow; CI runs ``pytest -m slow``): two worker processes on this host
with their machine names overridden, both modes, a worker SIGKILLed mid-split, the client's SIGINT, an address
that does not answer, a version mismatch, and real ``dask scheduler`` / ``dask worker`` processes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from mlpbench.cli.app import main
from mlpbench.suite import results as R

pytestmark = pytest.mark.slow
distributed = None  # imported by the fixture below, so that the default run (slow tests deselected) never loads it


@pytest.fixture(scope="module", autouse=True)
def _distributed():
    global distributed
    distributed = pytest.importorskip("distributed", reason="the cluster extra (pip install 'mlpbench[cluster]')")

#: a tiny grid: 4 cases of NumPy alone, one pass, a short budget per case
GRID = ["bench", "--backends", "numpy", "--batch", "16", "--hidden", "4,8", "--op", "forward,step", "--dtype",
        "float64", "--no-lab", "--passes", "1", "--max-time", "0.05", "--quiet", "--no-plots"]
LABELS = sorted(f"{op} f64 N=16 32-{h}-1" for op in ("forward", "step") for h in (4, 8))
#: a longer one (8 cases of about a second each), for the faults that strike midway
LONG = ["bench", "--backends", "numpy", "--batch", "16", "--hidden", "4,8,12,16", "--op", "forward,step", "--dtype",
        "float64", "--no-lab", "--passes", "1", "--repeat", "20", "--min-time", "0.02", "--max-time", "2", "--quiet",
        "--no-plots"]


def local_cluster(names):
    """Worker processes (``Nanny``, as ``LocalCluster`` makes them), one per name, each with the ``mlpbench``
    resource, one thread and its own ``MLPBENCH_MACHINE_NAME``."""
    workers = {n: {"cls": distributed.Nanny, "options": {"nthreads": 1, "resources": {"mlpbench": 1},
                                                        "env": {"MLPBENCH_MACHINE_NAME": n}, "silence_logs": 50}}
               for n in names}
    return distributed.SpecCluster(workers=workers, silence_logs=50, scheduler={
        "cls": distributed.Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}})


@pytest.fixture(scope="module")
def cluster():
    with local_cluster(["m1", "m2"]) as c:
        yield c


def load_all(out):
    merged = R.load(out / "results.json")
    return merged, {m["name"]: R.load(out / m["file"]) for m in merged["machines"]}


def test_each_runs_the_whole_grid_on_every_machine(cluster, tmp_path, capsys):
    out = tmp_path / "each"
    assert main([*GRID, "--scheduler", cluster.scheduler_address, "--out", str(out)]) == 0
    merged, machines = load_all(out)
    assert merged["status"] == "complete" and sorted(machines) == ["m1", "m2"]
    for name, doc in machines.items():
        assert doc["status"] == "complete" and sorted(p["case"] for p in doc["points"]) == LABELS
        assert doc["machine"]["name"] == name and doc["machine"]["host"]  # the record made on that machine
        assert doc["config"]["command"].startswith("mlpbench bench --preset quick --backends numpy")
    assert sorted((p["machine"], p["case"]) for p in merged["points"]) == sorted(
        (m, c) for m in ("m1", "m2") for c in LABELS)
    err = capsys.readouterr().err
    assert "share host" in err  # two names on one host: warned about, taken as two machines
    assert main(["report", str(out)]) == 0
    assert "| m1 | [m1]" in capsys.readouterr().out


def test_split_covers_every_case_exactly_once(cluster, tmp_path):
    out = tmp_path / "split"
    assert main([*GRID, "--scheduler", cluster.scheduler_address, "--on", "split", "--out", str(out)]) == 0
    merged, machines = load_all(out)
    assert merged["status"] == "complete" and sorted(p["case"] for p in merged["points"]) == LABELS
    assert sorted(p["case"] for doc in machines.values() for p in doc["points"]) == LABELS
    for p in merged["points"]:
        assert p["case"] in [q["case"] for q in machines[p["machine"]]["points"]]


def test_a_version_mismatch_is_refused_naming_the_package(cluster, tmp_path, monkeypatch, capsys):
    """Simulated: the workers report another NumPy through ``Client.get_versions``."""
    real = distributed.Client.get_versions

    def other_numpy(self, check=False, packages=None):
        v = real(self, check=check, packages=packages)
        for w in v["workers"].values():
            w["packages"]["numpy"] = "0.0.1"
        return v

    monkeypatch.setattr(distributed.Client, "get_versions", other_numpy)
    assert main([*GRID, "--scheduler", cluster.scheduler_address, "--out", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("mlpbench bench: error: version mismatch: numpy ") and "0.0.1 on worker tcp://" in line
    assert not (tmp_path / "results.json").exists()


def test_an_address_that_does_not_answer_is_exit_2_in_one_line(tmp_path):
    env = dict(os.environ, DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT="2s")
    p = subprocess.run([sys.executable, "-m", "mlpbench", *GRID, "--scheduler", "tcp://127.0.0.1:9", "--out",
                        str(tmp_path)], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [
        ("mlpbench bench: error: --scheduler tcp://127.0.0.1:9: no Dask scheduler answers there (Timed out trying "
         "to connect to tcp://127.0.0.1:9 after 2 s)")]


def wait_for(check, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"no {what} within {timeout} s")


def points_of(path):
    try:
        return [(p.get("machine"), p["case"]) for p in json.loads(path.read_text())["points"]]
    except (OSError, ValueError):
        return []


def kill_midway(out, names, mode):
    """``main``'s exit code and the first points of ``names[0]``, whose worker is SIGKILLed right after them."""
    with local_cluster(names) as c, distributed.Client(c, set_as_default=False) as client:
        rc = []
        t = threading.Thread(target=lambda: rc.append(main([*LONG, "--scheduler", c.scheduler_address, "--on", mode,
                                                             "--out", str(out)])))
        t.start()
        before = wait_for(lambda: [p for p in points_of(out / "results.json") if p[0] == names[0]], 120, "a point")
        worker = next(m["worker"] for m in json.loads((out / "results.json").read_text())["machines"]
                      if m["name"] == names[0])
        os.kill(client.run(os.getpid, workers=[worker])[worker], signal.SIGKILL)
        t.join(300)
    return rc, {case for _, case in before}


def test_a_worker_killed_mid_split_keeps_its_points_and_the_others_finish_the_grid(tmp_path):
    out = tmp_path / "killed"
    rc, before = kill_midway(out, ["k1", "k2"], "split")
    assert rc == [0]
    merged, machines = load_all(out)
    cases = sorted(p["case"] for p in merged["points"])
    assert merged["status"] == "complete" and len(cases) == 8 and len(set(cases)) == 8
    assert sorted(p["case"] for doc in machines.values() for p in doc["points"]) == cases
    assert before <= {p["case"] for p in machines["k1"]["points"]}  # kept
    assert machines["k1"]["status"] == "interrupted" and machines["k2"]["status"] == "complete"


def test_a_worker_killed_under_each_ends_its_file_interrupted_and_the_others_complete(tmp_path):
    out = tmp_path / "each-killed"
    rc, before = kill_midway(out, ["e1", "e2"], "each")
    assert rc == [1]  # a machine lost: not a complete run
    merged, machines = load_all(out)
    assert merged["status"] == "interrupted"
    assert {m["name"]: m["status"] for m in merged["machines"]} == {"e1": "interrupted", "e2": "complete"}
    assert before <= {p["case"] for p in machines["e1"]["points"]} and len(machines["e1"]["points"]) < 8
    assert sorted(p["case"] for p in machines["e2"]["points"]) == sorted(
        f"{op} f64 N=16 32-{h}-1" for op in ("forward", "step") for h in (4, 8, 12, 16))


def test_client_sigint_leaves_every_file_interrupted_and_readable_and_the_workers_stop(tmp_path):
    out = tmp_path / "sigint"
    with local_cluster(["s1", "s2"]) as c, distributed.Client(c, set_as_default=False) as client:
        proc = subprocess.Popen([sys.executable, "-m", "mlpbench", *LONG, "--scheduler", c.scheduler_address,
                                 "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: {m for m, _ in points_of(out / "results.json")} == {"s1", "s2"}, 120, "point of each")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 130, err
        # the workers stop: nothing of the sweep is left on the scheduler once the case being measured ends
        wait_for(lambda: client.run_on_scheduler(lambda dask_scheduler: not dask_scheduler.tasks), 20, "idle cluster")
    merged, machines = load_all(out)
    assert {merged["status"]} | {d["status"] for d in machines.values()} == {"interrupted"}
    assert 2 <= len(merged["points"]) < 16
    assert main(["report", str(out), "-o", str(tmp_path / "page.md")]) == 0
    assert "interrupted (" in (tmp_path / "page.md").read_text()
    assert main(["compare", str(out / "s1/results.json"), str(out / "s2/results.json")]) == 0


def test_real_dask_scheduler_and_worker_processes_on_loopback(tmp_path, capsys):
    """``dask scheduler`` and two ``dask worker`` processes, as the README starts them, started and stopped here."""
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    sched_file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(sched_file)], stderr=subprocess.DEVNULL)]
    try:
        address = wait_for(lambda: sched_file.exists() and json.loads(sched_file.read_text() or "{}").get("address"),
                           60, "scheduler file")
        for name in ("r1", "r2"):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--resources", "mlpbench=1",
                                           "--no-dashboard"], env=dict(os.environ, MLPBENCH_MACHINE_NAME=name),
                                          stderr=subprocess.DEVNULL))
        with distributed.Client(address, set_as_default=False) as client:
            client.wait_for_workers(2, timeout=60)
        out = tmp_path / "real"
        assert main([*GRID, "--scheduler", address, "--out", str(out)]) == 0
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
    merged, machines = load_all(out)
    assert merged["status"] == "complete" and sorted(machines) == ["r1", "r2"]
    assert all(sorted(p["case"] for p in d["points"]) == LABELS for d in machines.values())
    assert "r1 (host" in capsys.readouterr().out
