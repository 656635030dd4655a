"""SIGINT and SIGTERM for one command: exit 130 / 143 within a second, on every backend, in every phase.

``interrupts(prefix)`` installs, for the command's run:

* handlers that record the interrupt in ``core.interrupt`` (so a loop raises it again if native code's
  callback swallowed it) and raise it: ``KeyboardInterrupt``, or ``Terminated`` for SIGTERM; inside a
  garbage-collector callback or a ``__del__``, where Python would print the exception and drop it, they only
  record it; inside an import too, where an exception raised while a native extension initialises leaves it
  half-built (interrupting ``import jax`` crashed the interpreter at exit, SIGSEGV or SIGABRT, in 3 of 60 tries
  and failed the import in a fourth);
* ``signal.set_wakeup_fd`` on a socket a watcher thread reads: the C-level handler writes the signal's number
  there at once, even while the main thread sits in native code (a JAX compile, a blocking device wait) where no
  Python handler can run. If the command has not ended ``GRACE_S`` seconds later, the watcher prints the one
  line and ends the process with the signal's exit code.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import socket
import threading

from ..core import interrupt

#: seconds the command has to unwind after a signal before the watcher ends the process
GRACE_S = 0.6
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it stops as cleanly as on Ctrl-C."""


def message(prefix, signum) -> str:
    return f"{prefix}: terminated (SIGTERM)" if signum == signal.SIGTERM else f"{prefix}: interrupted"


def _swallowed(frame) -> bool:
    """The handler runs inside code whose exceptions Python prints ("Exception ignored in ...") and drops: a
    garbage-collector callback (JAX's ``_xla_gc_callback``) or a ``__del__``."""
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _importing(frame) -> bool:
    """The handler runs inside an import (a module's body, or Python code a native extension's init calls)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib."):
            return True
        frame = frame.f_back
    return False


def _handler(signum, frame):
    exc = Terminated if signum == signal.SIGTERM else KeyboardInterrupt
    interrupt.record(exc)
    # else the next ``interrupt.check()`` raises it, or the watcher ends the process GRACE_S later
    if not (_swallowed(frame) or _importing(frame)):
        raise exc()


def _watch(sock, done, prefix):
    while True:
        try:
            data = sock.recv(16)
        except OSError:
            return
        if not data or done.is_set():
            return
        codes = [CODES[s] for s in data if s in CODES]
        if codes and not done.wait(GRACE_S):
            with contextlib.suppress(OSError):
                os.write(2, (message(prefix, signal.SIGTERM if codes[-1] == 143 else signal.SIGINT) + "\n").encode())
            os._exit(codes[-1])


@contextlib.contextmanager
def interrupts(prefix):
    """Signal handling for one command run in the main thread (elsewhere: nothing changes)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # a signal the parent set to be ignored (a background job of a non-interactive shell: SIGINT) stays ignored
    previous = {s: signal.signal(s, _handler) for s in CODES if signal.getsignal(s) is not signal.SIG_IGN}
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    done = threading.Event()
    try:
        old_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # pragma: no cover - not the main interpreter
        old_fd = None
    thread = threading.Thread(target=_watch, args=(reader, done, prefix), name="mlpbench-signals", daemon=True)
    thread.start()
    interrupt.clear()
    try:
        yield
    finally:
        done.set()
        if old_fd is not None:
            signal.set_wakeup_fd(old_fd)
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        with contextlib.suppress(OSError):
            writer.send(b"\0")  # wakes the watcher, which sees ``done`` and returns
        thread.join(1.0)
        reader.close()
        writer.close()
        interrupt.clear()


__all__ = ["CODES", "GRACE_S", "Terminated", "interrupts", "message"]
