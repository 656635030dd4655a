"""Waiting, before a sample, until no other thread of this process runs: the previous subject's pool gone idle.

A thread pool keeps its workers spinning after a call, so that the next call
finds them awake: OpenBLAS (NumPy's, and SciPy's that the numba kernels'
matmuls call) for 2^28 cycles, about 0.1 s; GNU OpenMP (torch) about 10 ms.
A subject timed while another library's workers still spin shares the cores
with them. Measured (AMD EPYC, 2 cores, N=1024, ``[32, 512, 1]`` float64 step,
median of 7, against the same subject after its own kind;
``python bench/settle_check.py 1024 512``): torch right after numpy 17x slower
with no pause and with a 3 ms pause, 0.9x after this wait; numpy right after
torch 2.4x, then 0.7x. A fixed pause long enough for OpenBLAS would cost 0.1 s
before every one of a sweep's thousands of samples, most of them after a
subject whose pool does not spin at all (numba's one-core kernels, jax).

So the wait is as long as the spinning, not longer: it polls the state of
every other thread of the process (``/proc/self/task/*/stat``: ``R`` is
running or runnable, which a spinning worker always is, even when it yields)
and returns once none has run for ``CALM`` polls in a row. CPU time would
not do: the kernel accounts another thread's time at the scheduler tick
(4 ms here), so a spinning worker can show no time for a poll or two.

``available()`` is false where the process's threads cannot be read (not
Linux); the engine then falls back to its fixed or scaled pause.

The wait is still dear where OpenBLAS runs: ~0.1 s after every NumPy
sample, 80 % of a mid-size point's time (AMD EPYC, standard preset: 64
waits, 2.16 s of a 2.5 s cap). OpenBLAS reads its spin once, when it loads,
from ``OPENBLAS_THREAD_TIMEOUT`` (2^n cycles); ``mlpbench bench`` starts
itself again with ``n = SPIN_LOG2_CYCLES`` where the variable is unset
(``short_spin_env``; ``cli/app.entry``). Within a sample nothing changes: a
step's gaps between two BLAS calls are microseconds at the sizes where waking
a pool would show, and where a gap outlasts 2^23 cycles (2 ms at 4 GHz) the
wake-up (tens of microseconds) is under 2.5 % of that gap alone. Measured
(AMD EPYC, numpy step, float64, medians of 25 samples, four alternating
processes each): N=1024 H=512 5.4-6.8 ms at the default, 6.1-9.8 at n=24,
5.6-8.2 at n=22; N=16384 H=512 88.6-94.2 / 87.3-97.1 / 88.1-100.1 ms: the
processes' spread, no shift. At n=23 a mid-size point's waits averaged
4.6 ms (N=1024 H=512 float64: 140 waits, 0.65 s), and the standard preset's
mid-size points ran 35-48 rounds where they ran 13-16.
"""

from __future__ import annotations

import os
import threading
import time

TASKS = "/proc/self/task"
#: seconds between two looks at the threads
POLL_S = 0.001
#: polls in a row with no other thread running before the process counts as quiet (one could fall between a
#: worker's yield and its next spin)
CALM = 2
#: OpenBLAS's idle workers spin 2^n cycles before they sleep: its variable, and the n a benchmark process
#: runs with (OpenBLAS's default is 28, ~0.1 s; 23 is 2-4 ms at 2-4 GHz)
SPIN_ENV = "OPENBLAS_THREAD_TIMEOUT"
SPIN_LOG2_CYCLES = 23


def available() -> bool:
    """Whether this process's threads can be read here."""
    return running_others() is not None


def running_others():
    """How many threads of this process other than the caller's are running or runnable; None where unknown."""
    try:
        tasks = os.listdir(TASKS)
    except OSError:
        return None
    me, n = str(threading.get_native_id()), 0
    for tid in tasks:
        if tid == me:
            continue
        try:
            with open(f"{TASKS}/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:  # the thread ended meanwhile
            continue
        end = stat.rfind(b")")  # the name, in parentheses, may hold spaces and parentheses itself
        if stat[end + 2:end + 3] == b"R":
            n += 1
    return n


def wait(cap_s, poll_s=POLL_S, calm=CALM, clock=time.perf_counter) -> tuple[float, bool]:
    """Sleep until no other thread of the process has run for ``calm`` polls ``poll_s`` apart, at most ``cap_s``
    seconds. Returns ``(seconds waited, quiet)``: ``quiet`` false when the cap ended it (a thread that never
    rests, or threads that cannot be read)."""
    t0, still = clock(), 0
    while True:
        n = running_others()
        if n is None:
            return clock() - t0, False
        still = still + 1 if n == 0 else 0
        if still >= calm:
            return clock() - t0, True
        if clock() - t0 >= cap_s:
            return clock() - t0, False
        time.sleep(poll_s)


def short_spin_env(environ) -> dict | None:
    """``environ`` with OpenBLAS's spin set to 2^``SPIN_LOG2_CYCLES`` cycles, to start a benchmark process with;
    None where ``SPIN_ENV`` is already set (the user's value stands, and a process started this way is not
    started again)."""
    if SPIN_ENV in environ:
        return None
    return {**environ, SPIN_ENV: str(SPIN_LOG2_CYCLES)}


class Settle:
    """The engine's pause before each sample: until no other thread runs (``threads``, where they can be read),
    at most ``cap_s``; else ``cap_s``, or with ``scaled`` at most the previous sample (``last``). ``record``: the
    waits counted over this pass and the earlier ones' ``counts`` ({} without ``threads``)."""

    def __init__(self, cap_s, scaled=False, threads=False, counts=None):
        self.cap_s, self.scaled, self.last = cap_s, scaled, cap_s
        self.threads = bool(threads) and cap_s > 0 and available()
        self.counts = dict(counts) if counts else {"waits": 0, "waited_s": 0.0, "capped": 0}

    def __call__(self) -> None:
        if self.threads:
            waited, calm = wait(self.cap_s)
            self.counts["waits"] += 1
            self.counts["waited_s"] += waited
            self.counts["capped"] += not calm
            return
        pause = min(self.cap_s, self.last) if self.scaled else self.cap_s
        if pause > 0:
            time.sleep(pause)

    @property
    def record(self) -> dict:
        return self.counts if self.threads else {}


__all__ = ["CALM", "POLL_S", "SPIN_ENV", "SPIN_LOG2_CYCLES", "Settle", "available", "running_others", "short_spin_env",
           "wait"]
