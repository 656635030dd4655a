"""A cluster run's checks and files, in plain Python (no Dask): what ``suite/cluster.py`` decides and writes.

Checks, each a ``ValueError`` with one line naming the worker or package: every worker holds the
``mlpbench`` resource and one task thread (``check_workers``); client and workers have the same mlpbench and
NumPy, and the same version of every backend package both have (``check_versions``, on
``Client.get_versions``); one worker per machine (``check_machines``: two workers on one host with one name
refused, with two overridden names warned about); under ``split`` one machine fingerprint (``check_split``).

Files (``ClusterFiles``): ``OUT/<machine>/results.json`` (and ``.csv``) per machine, the ``mlpbench.bench/2``
schema with that machine's record, peaks, points and ``status``; and the merged ``OUT/results.json`` with
every point tagged ``"machine"``, a top-level ``"cluster": {"mode", "scheduler"}`` and ``"machines"``
(name, host, worker, file, status, points). Both are rewritten (atomically) as each point comes back.
``expand(files)`` is how ``mlpbench report`` reads a merged file: under ``each`` its machine files stand in
for it (one run per machine, side by side); under ``split`` it stands for them (one run over the grid).
"""

from __future__ import annotations

import json
import os

from .results import ResultsWriter, load
from .sweep import _noise

#: the worker resource a task holds while it measures: one per machine keeps its points exclusive
RESOURCE = "mlpbench"
MODES = ("each", "split")
#: the machine record's fields that must agree under ``split`` (the name and host may differ)
FINGERPRINT = ("cpu", "arch", "os", "cores_logical", "cores_physical", "threads_available", "gpus", "blas",
               "versions", "env", "backends")
#: packages whose versions must be equal on the client and every worker, installed or not
REQUIRED = ("mlpbench", "numpy")
WORKER_HINT = f"start one per machine: dask worker ADDRESS --nworkers 1 --nthreads 1 --resources {RESOURCE}=1"


def check_workers(address, workers) -> None:
    """``workers``: ``scheduler_info()["workers"]``; each must hold the resource and one thread."""
    if not workers:
        raise ValueError(f"--scheduler {address}: no worker is connected; {WORKER_HINT}")
    for addr, w in sorted(workers.items()):
        if (w.get("resources") or {}).get(RESOURCE, 0) < 1:
            raise ValueError(f"worker {addr} has no {RESOURCE!r} resource; {WORKER_HINT}")
        if w.get("nthreads") != 1:
            raise ValueError(f"worker {addr} runs {w.get('nthreads')} task threads, not 1; {WORKER_HINT}")


def check_versions(versions, packages) -> None:
    """``versions``: ``Client.get_versions(packages=...)``; ``REQUIRED`` equal everywhere, ``packages`` (the
    backends') equal wherever both sides have them. A worker without a backend skips it, as locally."""
    here = versions["client"]["packages"]
    for addr, w in sorted(versions["workers"].items()):
        there = w["packages"]
        for pkg in dict.fromkeys((*REQUIRED, *packages)):
            a, b = here.get(pkg), there.get(pkg)
            if a != b and (pkg in REQUIRED or (a is not None and b is not None)):
                raise ValueError(f"version mismatch: {pkg} {a or 'not installed'} here, {b or 'not installed'} on "
                                 f"worker {addr}; install the same {pkg} on every machine")


def fingerprint(record) -> dict:
    return {k: record.get(k) for k in FINGERPRINT}


def check_machines(infos) -> list[str]:
    """``infos``: each worker's ``cluster_worker.setup``; refuse two workers of one name on one host, or one
    name on two hosts; the warnings for one host under two names (tests, ``MLPBENCH_MACHINE_NAME``)."""
    by_name, by_host = {}, {}
    for info in infos:
        by_name.setdefault(info["name"], []).append(info)
        by_host.setdefault(info["host"], []).append(info)
    for name, group in by_name.items():
        if len(group) > 1:
            a, b = group[:2]
            where = (f"on one machine (host {a['host']})" if a["host"] == b["host"]
                     else f"on hosts {a['host']} and {b['host']}")
            raise ValueError(f"workers {a['address']} and {b['address']} both report machine {name!r} {where}: "
                             f"their measurements would contend; {WORKER_HINT}")
    return [f"warning: workers {', '.join(i['address'] for i in group)} (machines "
            f"{', '.join(i['name'] for i in group)}) share host {host}: their points run at the same time and "
            "contend for its cores (names overridden by MLPBENCH_MACHINE_NAME are taken as distinct machines)"
            for host, group in by_host.items() if len(group) > 1]


def check_split(infos) -> None:
    """Under ``split`` every machine's fingerprint is the same; else the odd one out, and what differs."""
    groups = {}
    for info in infos:
        groups.setdefault(json.dumps(fingerprint(info["record"]), sort_keys=True, default=str), []).append(info)
    if len(groups) < 2:
        return
    usual = max(groups.values(), key=len)
    odd = next(i for i in infos if i not in usual)
    ref, fp = fingerprint(usual[0]["record"]), fingerprint(odd["record"])
    key = next(k for k in FINGERPRINT if ref[k] != fp[k])
    raise ValueError(f"--on split: worker {odd['address']} (machine {odd['name']}) differs from {usual[0]['name']} "
                     f"in {key}: {_short(fp[key])} vs {_short(ref[key])}; split needs identical machines "
                     "(--on each compares different ones)")


def _short(value, n=80) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= n else text[:n - 3] + "..."


class ClusterFiles:
    """The per-machine files and the merged one, each rewritten as points come back."""

    def __init__(self, out_dir, config, mode, scheduler):
        self.out_dir, self.mode = os.fspath(out_dir), mode
        self.config = dict(config, cluster={"mode": mode, "scheduler": scheduler})
        self.writers, self.entries = {}, {}
        self.merged = ResultsWriter(self.out_dir, {}, {}, self.config)
        self.merged.doc.update(cluster=self.config["cluster"], machines=[])
        self.merged.write()

    def add_machine(self, info) -> None:
        """A machine met for the first time (its ``setup``, or a point from a worker started since)."""
        name = info["name"]
        if name in self.writers:
            return
        self.writers[name] = ResultsWriter(os.path.join(self.out_dir, name), info["record"], info.get("peak") or {},
                                           dict(self.config, cluster=dict(self.config["cluster"], machine=name)),
                                           info["skipped_backends"])
        self.entries[name] = {"name": name, "host": info["host"], "worker": info.get("address"),
                              "file": f"{name}/results.json", "status": "running", "points": 0}
        self.merged.doc["machines"].append(self.entries[name])
        if self.mode == "split" and not self.merged.doc["machine"]:
            # the machines are identical: the first one's record, without its name
            self.merged.doc["machine"] = {k: v for k, v in info["record"].items() if k not in ("name", "host")}
        self.merged.write()

    def add_result(self, res) -> None:
        """One case's ``cluster_worker.run_point`` result: into its machine's file and the merged one."""
        self.add_machine(res)
        w, name = self.writers[res["name"]], res["name"]
        w.doc["points"] += res["points"]
        w.doc["errors"] += res["errors"]
        w.doc["skipped"] += res["skipped"]
        w.doc["peak"] = res["peak"]
        w.write()
        self.entries[name]["points"] = len(w.doc["points"])
        tag = {"machine": name}
        for key in ("points", "errors", "skipped"):
            self.merged.doc[key] += [dict(x, **tag) for x in res[key]]
        self.merged.write()

    def add_error(self, case, error, machine=None) -> None:
        """A case that raised on ``machine`` (``None``: lost with every worker it was given to, under split)."""
        entry = {"backend": "*", "case": case, "error": error}
        if machine is not None:
            self.writers[machine].add_error("*", case, error)
            entry["machine"] = machine
        self.merged.doc["errors"].append(entry)
        self.merged.write()

    def finish_machine(self, name, status) -> None:
        w = self.writers[name]
        if w.doc["status"] != "running":
            return
        w.doc["noise"] = _noise(w.doc["points"])
        w.finish(status)
        self.entries[name]["status"] = status
        self.merged.write()

    def finish(self, status, merged_status=None, error=None) -> None:
        """Every machine still running ends ``status``; the merged file ``merged_status`` (default the same)."""
        for name in self.writers:
            self.finish_machine(name, status)
        if self.mode == "split":
            self.merged.doc["noise"] = _noise(self.merged.doc["points"])
        self.merged.finish(merged_status or status, error)


def expand(files) -> list[str]:
    """``files`` as ``mlpbench report`` reads them: a merged ``each`` file becomes its machine files; a merged
    ``split`` file stays and its machine files go; every file once."""
    out, drop = [], set()
    for f in files:
        try:
            doc = load(f)
        except (OSError, ValueError):  # read_run says what is wrong with it
            doc = {}
        cluster = doc.get("cluster") if isinstance(doc.get("cluster"), dict) else None
        parts = [os.path.join(os.path.dirname(f), m["file"]) for m in doc.get("machines") or []
                 if isinstance(m, dict) and isinstance(m.get("file"), str)] if cluster else []
        if cluster and cluster.get("mode") == "each":
            out += parts
        else:
            out.append(f)
            drop.update(os.path.abspath(p) for p in parts)
    seen, kept = set(), []
    for f in out:
        key = os.path.abspath(f)
        if key not in seen and key not in drop:
            seen.add(key)
            kept.append(f)
    return kept

