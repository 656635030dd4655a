"""What a Dask worker runs for ``mlpbench bench --scheduler`` (the client side is ``suite/cluster.py``).

Two tasks, both plain functions of plain data (a ``job`` dict and a ``Case``), so that Dask ships them by
reference to any worker with mlpbench installed; neither imports Dask. ``setup(job)`` makes the machine's
sweep context once per worker process (its backends and references, ready or skipped with the reason as
locally; its peaks) and returns the machine's own record; ``run_point(job, case)`` measures one case with
``sweep.measure_point`` in that context and returns its points, errors and skip. The context lives as long
as the worker process and belongs to one run (``job["run"]``): a restarted worker makes it again.
"""

from __future__ import annotations

import os
import platform

from ..backends import ready
from . import references as refs
from .machine import THREAD_ENV, machine_info, machine_name, threads_available
from .sweep import measure_peaks, measure_point

_CONTEXT = {}


class Collector:
    """The writer ``measure_point`` fills: one case's points, errors and skip, kept in memory."""

    def __init__(self):
        self.doc = {"points": [], "errors": [], "skipped": []}

    def write(self) -> None:
        """Nothing to write: the client writes the files as the points come back."""

    def add_error(self, backend, case, error) -> None:
        self.doc["errors"].append({"backend": backend, "case": case, "error": error})

    def add_skipped_case(self, case, reason) -> None:
        self.doc["skipped"].append({"backend": "*", "case": case, "reason": reason})


def _address() -> str | None:
    try:
        from distributed import get_worker  # present wherever this runs as a task

        return get_worker().address
    except (ImportError, ValueError):
        return None


def _free_threads() -> dict:
    """Undo the thread limits Dask's nanny gives a worker (``OMP_NUM_THREADS=1`` and the like, from its config
    ``distributed.nanny.pre-spawn-environ``): a point uses the machine's cores as it does locally. A variable
    still at the nanny's value is removed (before any backend library is imported here) and the BLAS and
    OpenMP pools already loaded get every core this process may use back; ``{variable: value}`` removed."""
    try:
        import dask.config

        nanny = dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}
    except ImportError:
        return {}
    removed = {k: os.environ.pop(k) for k in THREAD_ENV if k in nanny and os.environ.get(k) == str(nanny[k])}
    if removed:
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(limits=threads_available())
        except ImportError:
            pass
    return removed


def _context(job) -> dict:
    ctx = _CONTEXT.get(job["run"])
    if ctx is not None:
        return ctx
    _CONTEXT.clear()
    freed = _free_threads()
    baseline = job["baseline"]
    backends, skipped = ready(job["backends"])
    references, ref_skipped = refs.ready(job["references"])
    backends = sorted(backends, key=lambda lb: lb[0] != baseline)
    ctx = {"name": machine_name(), "host": platform.node(), "pid": os.getpid(), "backends": backends,
           "references": references, "skipped": skipped + ref_skipped, "warm": set(), "problem": None}
    ctx["record"] = dict(machine_info(backends + references), name=ctx["name"], host=ctx["host"],
                         **({"dask_env_removed": freed} if freed else {}))
    if baseline not in [lb for lb, _ in backends]:
        reason = next((s["reason"] for s in skipped if s["backend"] == baseline), "not among the backends")
        ctx["problem"] = f"the baseline {baseline} cannot run there ({reason})"
        ctx["peaks"] = None
    else:
        ctx["peaks"] = measure_peaks(backends, job["dtypes"])
    _CONTEXT[job["run"]] = ctx
    return ctx


def setup(job) -> dict:
    """The machine's sweep context, made here once: its name, host, record, skipped backends, peaks, and a
    ``problem`` (e.g. no baseline) that keeps it out of the run."""
    ctx = _context(job)
    return {"name": ctx["name"], "host": ctx["host"], "pid": ctx["pid"], "address": _address(),
            "record": ctx["record"], "skipped_backends": ctx["skipped"], "problem": ctx["problem"],
            "peak": None if ctx["peaks"] is None else ctx["peaks"].to_dict()}


def run_point(job, case) -> dict:
    """One case measured on this machine: ``{"name", "host", "address", "case", "points", "errors", "skipped",
    "record", "peak"}`` (``record`` and ``peak``: this machine's, for a worker the client has not met)."""
    ctx = _context(job)
    if ctx["problem"]:
        raise RuntimeError(f"machine {ctx['name']}: {ctx['problem']}")
    out = Collector()
    measure_point(case, ctx["backends"], out, ctx["peaks"], ctx["warm"], references=ctx["references"],
                  **job["timing"])
    return {"name": ctx["name"], "host": ctx["host"], "address": _address(), "case": case.label,
            **out.doc, "record": ctx["record"], "skipped_backends": ctx["skipped"], "peak": ctx["peaks"].to_dict()}
