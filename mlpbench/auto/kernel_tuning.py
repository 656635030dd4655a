"""``mlpbench tune``'s kernel calibration: when numba's mini-batch kernel should split a batch over the threads.

The threaded mini-batch kernel pays two fork/joins per batch; whether its rows
per thread and work per batch amortize them depends on the CPU (issue 25: at
batch 64 an Intel Xeon lost with it where the AMD EPYC it was tuned on won).
``calibrate_batches`` measures both kernels on this machine over a small grid,
the ``minibatch`` preset's net (``[64, H, 10]``, softmax head) at widths
``WIDTHS`` and batches of ``BATCHES`` rows, one epoch of ``ROWS`` rows per
sample, ``ROUNDS`` rounds alternating the two kernels (which goes first
alternates too), each sample after the process's other threads went quiet
(``measure.quiet``), the grid swept ``PASSES`` times, and up to
``EXTRA_PASSES`` more over the points whose passes disagree. The threaded /
one-core ratio of the medians at each point (its lowest over the passes) goes
to ``machine_rules.fit_batch_thresholds``, whose two thresholds (rows per
thread, multiply-adds per batch) are stored for this machine in ``tuned.json``
(``core.tuned``), which the backend then reads instead of its rule. About 10 s
with Numba's cache warm (2-core AMD EPYC); the kernels' first compile apart.
"""

from __future__ import annotations

import statistics
import time
import warnings

from ..backends import availability, backend_class
from ..backends.cpu_threads import blas_controller, numba_threads
from ..backends.numba import machine_rules as rules
from ..core import tuned
from ..core.params import init_params, macs
from ..core.validation import DTYPES
from ..measure import quiet
from ..suite.cases import make_data

#: hidden widths of the calibration net ``[64, H, 10]``: the ``minibatch`` preset's
WIDTHS = (64, 512)
#: rows per batch measured; rows per thread are these over the thread count
BATCHES = (16, 32, 64, 128, 256)
#: rows of the calibration data: one epoch is one sample (1.4-19 ms here, 16-256 batches)
ROWS = 4096
#: alternating rounds per point; the medians of these decide
ROUNDS = 7
#: passes over the whole grid; a point's ratio is its lowest pass median (the pass where the other cores were
#: free: a neighbour busy for seconds made every threaded point 1.2-3.3x slower in one of three single-pass
#: calibrations on the 2-core AMD EPYC VM, and would have stored "never thread")
PASSES = 2
#: the two best passes of a point further apart than this factor: the point is measured again in an extra pass,
#: and the calibration warns that the machine was busy when they still disagree
BUSY_SPREAD = 1.5
#: extra passes at most, over the points whose passes disagree
EXTRA_PASSES = 2
#: seconds a sample waits at most for the other threads to go quiet
SETTLE_CAP_S = 0.25


def _epoch(backend, params, X, y, nb) -> None:
    backend.train(params, X, y, lr=0.01, epochs=1, activation="relu", grad_reduction="mean", output="softmax",
                  batch_size=nb, shuffle_seed=1)


def measure_point(sizes, nb, dtype, threads, rows=ROWS, rounds=ROUNDS) -> float:
    """Median seconds of an epoch on ``threads`` threads over the same on one thread (batches of ``nb``)."""
    cls = backend_class("numba")
    X, y = make_data(rows, sizes, dtype, output="softmax")
    subjects = []
    for t in (1, threads):
        be = cls(threads=t)
        params = be.params_from_numpy(init_params(sizes, 1, dtype))
        subjects.append((be, params, []))
    with rules.forced_batch_thresholds(1, 0):
        for be, params, _ in subjects:
            _epoch(be, params, X, y, nb)  # compiled, buffers touched
        if subjects[1][0].last_run["numba_threads"] != threads:
            raise RuntimeError(f"the threaded kernel ran on {subjects[1][0].last_run['numba_threads']} threads, "
                               f"not {threads}")
        for r in range(rounds):
            for be, params, times in subjects[:: 1 if r % 2 == 0 else -1]:
                quiet.wait(SETTLE_CAP_S)
                t0 = time.perf_counter()
                _epoch(be, params, X, y, nb)
                times.append(time.perf_counter() - t0)
    return statistics.median(subjects[1][2]) / statistics.median(subjects[0][2])


def calibrate_batches(dtypes=DTYPES, widths=WIDTHS, batches=BATCHES, rows=ROWS, rounds=ROUNDS, passes=PASSES,
                      threads=None):
    """``(value, note)``: the measured thresholds per dtype (``tuned.json``'s ``numba.batch_threads``) and a
    warning when the passes disagreed (else ""); or None and why nothing was measured (numba unavailable, one
    thread, BLAS that cannot be pinned)."""
    ok, why = availability("numba")
    if not ok:
        return None, f"numba is not available ({why})"
    if blas_controller() is None:
        return None, "BLAS cannot be pinned to one thread here (threadpoolctl), so the kernel never threads"
    threads = threads or numba_threads()
    if threads < 2:
        return None, "Numba has one thread here: the one-core kernel always runs"
    grid = [(dtype, [64, h, 10], nb) for dtype in dtypes for h in widths for nb in batches if nb >= threads]
    ratios = {g: [] for g in range(len(grid))}
    for k in range(passes + EXTRA_PASSES):
        for g, (dtype, sizes, nb) in enumerate(grid):
            if k < passes or _disputed(ratios[g]):  # the extra passes: where the two best passes disagree
                ratios[g].append(measure_point(sizes, nb, dtype, threads, rows, rounds))
    value = {"threads": threads, "rows": rows, "rounds": rounds, "passes": passes}
    for dtype in dtypes:
        points = []
        for g, (dt, sizes, nb) in enumerate(grid):
            if dt == dtype:
                points.append((nb // threads, macs(nb, sizes), min(ratios[g]), ratios[g]))
        min_rows, min_macs, lost = rules.fit_batch_thresholds([p[:3] for p in points])
        value[dtype] = {"min_rows": min_rows, "min_macs": min_macs, "lost": round(lost, 4),
                        "points": [[r, m, round(q, 4), [round(x, 4) for x in qs]] for r, m, q, qs in points]}
    disputed = [q for q in ratios.values() if _disputed(q)]
    return value, "" if not disputed else (
        f"the passes disagreed by up to {max(sorted(q)[1] / min(q) for q in disputed):.2f}x at {len(disputed)} of "
        f"{len(grid)} points: the machine was busy; run mlpbench tune again when it is idle")


def _disputed(q) -> bool:
    """The two best passes of a point more than ``BUSY_SPREAD`` apart."""
    return len(q) >= 2 and sorted(q)[1] > BUSY_SPREAD * min(q)


def store(value) -> str:
    """Save ``value`` as this machine's batch thresholds (a dtype it does not measure keeps its earlier value);
    the file's path."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unusable earlier file is written over
        old = tuned.load(rules.TUNED_SECTION, rules.tuned_key())
    kept = {dt: old[dt] for dt in DTYPES if isinstance(old, dict) and dt in old and dt not in value}
    return tuned.save(rules.TUNED_SECTION, rules.tuned_key(), {**value, **kept})


def describe(itemsize) -> str:
    """One line: the thresholds the backend uses now for this dtype, where they come from, and the rule's."""
    rows, min_macs, source = rules.batch_thresholds(itemsize)
    rule = f"; the rule's: {rules.batch_min_rows()} rows, {rules.batch_min_macs(itemsize):.3g} MACs" \
        if source != "rule" else ""
    return f"{rows} rows per thread and {min_macs:.3g} multiply-adds per batch ({source}{rule})"
