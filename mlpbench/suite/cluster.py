"""``mlpbench bench --scheduler ADDRESS``: a sweep on a Dask cluster (``distributed``, the ``cluster`` extra).

Imported only with ``--scheduler`` (plain ``bench`` and ``import mlpbench.cli`` never load Dask). The
client checks the cluster (``cluster_files``: resources and threads, versions, one worker per machine, one
fingerprint under ``split``), runs ``cluster_worker.setup`` on every worker (the machine's record, skipped
backends and peaks, made there), then submits one task per case: under ``each`` pinned to every worker in
turn, under ``split`` to whichever worker is free. Every task holds the worker's one ``mlpbench`` resource,
so a machine measures one case at a time and nothing else of the sweep meanwhile. Each result is written
as it comes back (``ClusterFiles``).

Faults: a worker that leaves keeps its finished points; under ``split`` Dask gives its unfinished cases to
the others (a case lost with every worker it met is an error), under ``each`` its file ends ``interrupted``
and its queued cases are cancelled. Ctrl-C or SIGTERM cancels every queued case (a case being measured
runs to its end, at most ``--max-time``, and is dropped), ends every file ``interrupted`` and propagates.
"""

from __future__ import annotations

import os
import sys
import time
import uuid

from ..backends import packages
from ..core.fileio import check_output_dir
from . import cluster_files as F
from . import cluster_worker as W
from .progress import Progress

#: seconds between looks at the cases and at which workers are still there, while no case comes back
POLL_S = 0.2


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ValueError("--scheduler needs Dask's distributed: pip install 'mlpbench[cluster]'") from None
    return distributed


def connect(address):
    """A ``distributed.Client`` on ``address`` (Dask's connect timeout, ``distributed.comm.timeouts.connect``);
    ``ValueError`` naming the address when no scheduler answers there."""
    distributed = _distributed()
    try:
        return distributed.Client(address, set_as_default=False)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        why = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"--scheduler {address}: no Dask scheduler answers there ({why})") from None


def _workers(client) -> dict:
    """Every worker the scheduler knows now, by address (asked directly: ``Client.scheduler_info`` returns
    the client's cached identity, which its own periodic refresh may replace by one without the workers)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]


def setup(client, address, mode, job, warn) -> list[dict]:
    """The checks, and every worker's ``cluster_worker.setup``; the workers' infos, each with its address."""
    workers = _workers(client)
    F.check_workers(address, workers)
    backend_packages = packages(distributions=True)
    F.check_versions(client.get_versions(packages=[*F.REQUIRED, *backend_packages]), backend_packages)
    futures = {addr: client.submit(W.setup, job, key=f"mlpbench-setup-{job['run']}-{i}", workers=[addr],
                                   resources={F.RESOURCE: 1}, pure=False) for i, addr in enumerate(sorted(workers))}
    infos = []
    for addr, fut in futures.items():
        try:
            info = dict(fut.result(), address=addr)
        except Exception as exc:  # noqa: BLE001 - the worker's own fault (e.g. a bad MLPBENCH_MACHINE_NAME) or its loss
            raise ValueError(f"worker {addr}: setting up the sweep failed ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())})") from None
        if info["problem"]:
            raise ValueError(f"worker {addr} (machine {info['name']}): {info['problem']}")
        infos.append(info)
    infos.sort(key=lambda i: i["name"])  # the files list the machines by name
    for line in F.check_machines(infos):
        warn(line)
    if mode == "split":
        F.check_split(infos)
    return infos


def run(address, mode, cases, job, config, out_dir, progress=None, warn=None) -> F.ClusterFiles:
    """Measure ``cases`` on the cluster at ``address`` (``mode`` ``each`` or ``split``); the files written.

    ``job``: what every task needs (``backends`` specs, ``references`` names, ``baseline``, ``dtypes``,
    ``timing``: ``sweep.measure_point``'s keywords); ``config`` goes into every file.
    """
    if mode not in F.MODES:
        raise ValueError(f"--on must be one of {', '.join(F.MODES)}; got {mode!r}")
    warn = warn or (lambda line: print(line, file=sys.stderr))
    job = dict(job, run=uuid.uuid4().hex[:12])
    client = connect(address)
    try:
        infos = setup(client, address, mode, job, warn)
        for info in infos:  # each machine's folder, before any case runs
            check_output_dir(os.path.join(out_dir, info["name"]), "--out", ("results.json", "results.csv"))
        files = F.ClusterFiles(out_dir, config, mode, address)
        for info in infos:
            files.add_machine(info)
        _sweep(client, mode, cases, job, infos, files, progress or Progress(0, enabled=False), warn, address)
        return files
    finally:
        client.close()


def _submit(client, job, cases, infos, mode) -> dict:
    """future -> (machine name or None, case label): every case per machine (``each``) or once (``split``)."""
    out, common = {}, {"resources": {F.RESOURCE: 1}, "pure": False}
    everyone = [w["address"] for w in infos]
    for info in infos if mode == "each" else [None]:
        for i, case in enumerate(cases):
            if info is None:  # any of the workers checked at the start (one joining later takes no part)
                f = client.submit(W.run_point, job, case, key=f"mlpbench-{job['run']}-{i}", priority=-i,
                                  workers=everyone, **common)
            else:
                f = client.submit(W.run_point, job, case, key=f"mlpbench-{job['run']}-{info['name']}-{i}",
                                  workers=[info["address"]], priority=-i, **common)
            out[f] = (None if info is None else info["name"], case.label)
    return out


def _sweep(client, mode, cases, job, infos, files, progress, warn, address) -> None:
    futures = _submit(client, job, cases, infos, mode)
    owner = {info["name"]: info["address"] for info in infos}
    pending = set(futures)
    progress.total = max(len(futures), 1)
    before = set(owner.values())
    try:
        while pending:
            done = [f for f in futures if f in pending and f.done()]  # in submission order
            pending.difference_update(done)
            for f in done:
                _collect(f, futures[f], files, progress)
            now = set(_workers(client))
            alive, before = now | before, now  # a worker is gone once two looks in a row miss it
            pending -= _left(client, mode, owner, files, futures, pending, alive, warn)
            if not alive & set(owner.values()):  # split: none of the run's workers left to take the rest
                break
            if not done:
                time.sleep(POLL_S)
    except KeyboardInterrupt as exc:
        client.cancel(list(pending))
        files.finish("interrupted")
        exc.results_doc = files.merged.doc
        raise
    except BaseException as exc:
        client.cancel(list(pending))
        files.finish("failed", error=f"{type(exc).__name__}: {exc}")
        raise
    finally:
        progress.close()
    if pending:
        client.cancel(list(pending))
        files.finish("interrupted")
        raise ValueError(f"--scheduler {address}: every worker of the run left the cluster; "
                         f"{len(files.merged.doc['points'])} points kept in {files.out_dir}")
    lost = [e["name"] for e in files.entries.values() if e["status"] == "interrupted"]
    files.finish("complete", "interrupted" if mode == "each" and lost else "complete")


def _collect(f, where, files, progress) -> None:
    name, label = where
    if f.status == "finished":
        files.add_result(f.result())
    elif f.status == "error":
        exc = f.exception()
        files.add_error(label, f"{type(exc).__name__}: {' '.join(str(exc).split())}", name)
    progress.advance(label)


def _left(client, mode, owner, files, futures, pending, alive, warn) -> set:
    """Machines whose worker is not among ``alive`` end ``interrupted``; under ``each`` their queued cases are
    cancelled (returned: no longer pending); under ``split`` Dask hands them to the other workers."""
    dropped = set()
    for name, addr in owner.items():
        if addr in alive or files.entries[name]["status"] != "running":
            continue
        mine = {f for f in pending if futures[f][0] == name} if mode == "each" else set()
        client.cancel(list(mine))
        dropped |= mine
        files.finish_machine(name, "interrupted")
        rest = f"{len(mine)} of its cases cancelled" if mode == "each" else "its unfinished cases go to the others"
        warn(f"worker {addr} (machine {name}) left the cluster: {name}/results.json ends interrupted with its "
             f"{files.entries[name]['points']} points; {rest}")
    return dropped
