"""One ``bench`` run per ``--out`` folder: a second run is refused with a line naming the run that holds it.

``held()`` is the command's scope: it yields ``acquire(out_dir, what)``, which takes a ``filelock`` lock in the
folder (``.mlpbench-bench.lock``, never waited for) and records who holds it (``.mlpbench-bench.owner``: pid,
start time, command line); the scope's end releases both. Without the lock two runs on one folder both exited 0
and one run's results were lost (issue 21).
"""

from __future__ import annotations

import contextlib
import datetime
import os

from filelock import FileLock, Timeout

from ..core.fileio import atomic_write, read_user_file

LOCK, OWNER = ".mlpbench-bench.lock", ".mlpbench-bench.owner"


def _owner(out_dir) -> str:
    try:
        return read_user_file(os.path.join(out_dir, OWNER), 4096, "lock owner").decode("utf-8", "replace").strip()
    except (OSError, ValueError):
        return "owner unknown"


@contextlib.contextmanager
def held():
    """Yields ``acquire(out_dir, what)``; every lock taken through it is released when the block ends."""
    taken = []

    def acquire(out_dir, what) -> None:
        os.makedirs(out_dir, exist_ok=True)
        lock = FileLock(os.path.join(out_dir, LOCK), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ValueError(f"--out {out_dir}: another mlpbench bench is writing there ({_owner(out_dir)}); "
                             "wait for it to end or give another --out") from None
        taken.append((lock, os.path.join(out_dir, OWNER)))
        started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
        atomic_write(taken[-1][1], f"pid {os.getpid()}, started {started}: {what}\n")

    try:
        yield acquire
    finally:
        for lock, owner in reversed(taken):
            for path in (owner, lock.lock_file):  # removed while still held: no litter in a results folder
                with contextlib.suppress(OSError):
                    os.unlink(path)
            lock.release()


__all__ = ["held"]
