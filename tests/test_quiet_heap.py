"""The sweep's measurement environment: the wait for other threads to rest (measure/quiet.py) and the kept heap
(measure/heap.py)."""

import hashlib
import subprocess
import sys
import textwrap
import threading

import pytest

from mlpbench.measure import engine as M
from mlpbench.measure import heap, quiet

from test_measure import FakeClock, timed

LINUX = sys.platform.startswith("linux")
needs_proc = pytest.mark.skipif(not quiet.available(), reason="this OS does not show a process's threads (/proc)")


class Busy:
    """A thread that runs without the GIL (hashing a large buffer releases it) until stopped."""

    def __init__(self):
        self.stop, self.data = threading.Event(), b"x" * (8 << 20)
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop.is_set():
            hashlib.sha256(self.data).digest()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


@needs_proc
def test_a_running_thread_is_seen_and_the_wait_ends_once_it_rests():
    with Busy():
        seen = max(quiet.running_others() for _ in range(50))
        waited, calm = quiet.wait(0.05)
    assert seen >= 1  # the hashing thread is running or runnable at some of 50 polls
    assert not calm and 0.05 <= waited < 1.0  # it never rested: the cap ended the wait
    waited, calm = quiet.wait(1.0)
    assert calm and waited < 0.5  # gone: quiet after a few polls


def test_where_threads_cannot_be_read_the_wait_says_so_at_once(monkeypatch):
    monkeypatch.setattr(quiet, "TASKS", "/nonexistent/task")
    assert quiet.running_others() is None and not quiet.available()
    waited, calm = quiet.wait(5.0)
    assert not calm and waited < 0.1


def test_the_engine_waits_for_quiet_before_every_sample_and_counts_it(monkeypatch):
    clock, caps, pauses = FakeClock(), [], []
    monkeypatch.setattr(M.quiet, "available", lambda: True)

    def wait(cap):
        caps.append(cap)
        return (cap, False) if len(caps) == 2 else (0.001, True)

    monkeypatch.setattr(M.quiet, "wait", wait)
    monkeypatch.setattr(M.time, "sleep", pauses.append)
    m = M.measure([timed(clock, "a", 0.02), timed(clock, "b", 0.02)], min_time=0.01, min_rounds=3, max_rounds=3,
                  settle_s=0.05, settle_scaled=True, settle_quiet=True, clock=clock)
    # before a, its A/A copy and b, every round
    assert caps == [0.05] * (3 * m.rounds) and pauses == []  # and no sleep
    assert m.settled == {"waits": 3 * m.rounds, "waited_s": pytest.approx(0.05 + 0.001 * (3 * m.rounds - 1)),
                         "capped": 1}
    assert m.to_dict()["settled"] == m.settled


def test_without_the_threads_to_read_the_engine_falls_back_to_the_scaled_pause(monkeypatch):
    clock, pauses = FakeClock(), []
    monkeypatch.setattr(M.quiet, "available", lambda: False)
    monkeypatch.setattr(M.quiet, "wait", lambda cap: pytest.fail("no threads to read: no wait"))
    monkeypatch.setattr(M.time, "sleep", pauses.append)
    m = M.measure([timed(clock, "a", 0.02), timed(clock, "b", 0.02)], min_time=0.01, min_rounds=3, max_rounds=3,
                  settle_s=0.05, settle_scaled=True, settle_quiet=True, clock=clock)
    assert len(pauses) == 3 * m.rounds and max(pauses[1:]) < 0.05 and m.settled == {} and "settled" not in m.to_dict()


@pytest.mark.skipif(not LINUX, reason="mallopt is glibc's")
def test_a_kept_heap_faults_no_page_in_again_and_the_system_one_does():
    code = textwrap.dedent("""
        import resource, sys
        import numpy as np
        from mlpbench.measure import heap
        print(heap.keep_freed() if sys.argv[1] == "keep" else "system")
        faults = []
        for _ in range(4):
            r0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            a = np.ones((4096, 2048)); b = a * 2.0  # 64 MiB each, freed at once
            del a, b
            faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - r0)
        print(*faults)
    """)
    got = {}
    for mode in ("keep", "system"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, check=True).stdout
        said, faults = out.splitlines()
        got[mode] = (said, [int(f) for f in faults.split()])
    assert got["keep"][0] == "keep" and got["system"][0] == "system"
    assert got["keep"][1][0] > 100 and got["keep"][1][1:] == [0, 0, 0]  # faulted in once, then reused
    assert min(got["system"][1][1:]) > 100  # handed back, faulted in again at every call (2 MiB pages: ~600)


def test_the_heap_modes_are_checked():
    from mlpbench.suite import sweep

    with pytest.raises(ValueError, match="heap must be one of"):
        sweep._heap("fast")
    assert sweep._heap("system") == "system" and heap.MODES == ("keep", "system")


# ---------------------------------------------------------------- OpenBLAS's spin in a benchmark process
def test_short_spin_env_sets_openblas_spin_unless_the_user_did():
    mine = {"PATH": "/bin"}
    env = quiet.short_spin_env(mine)
    assert env == {"PATH": "/bin", quiet.SPIN_ENV: str(quiet.SPIN_LOG2_CYCLES)} and mine == {"PATH": "/bin"}
    assert quiet.short_spin_env({quiet.SPIN_ENV: "28"}) is None


def test_bench_starts_itself_again_with_the_short_spin_and_nothing_else_does():
    from mlpbench.cli import app

    calls = []

    def execve(path, argv, env):
        calls.append((path, argv, env))

    app.respawn_with_short_spin(["bench", "--preset", "quick"], {"HOME": "/h"}, execve)
    assert len(calls) == 1
    path, argv, env = calls[0]
    assert path == sys.executable and argv == list(sys.orig_argv)
    assert env == {"HOME": "/h", quiet.SPIN_ENV: str(quiet.SPIN_LOG2_CYCLES)}
    app.respawn_with_short_spin(["bench"], {quiet.SPIN_ENV: "20"}, execve)  # the user's value stands
    app.respawn_with_short_spin(["train", "--epochs", "3"], {}, execve)  # only the benchmark
    app.respawn_with_short_spin([], {}, execve)
    assert len(calls) == 1

    def refused(*_):
        raise PermissionError("exec not allowed here")

    app.respawn_with_short_spin(["bench"], {}, refused)  # runs on with the default spin
