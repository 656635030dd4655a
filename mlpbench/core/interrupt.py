"""A signal that is never lost: what the command line's SIGINT/SIGTERM handlers recorded, for loops to raise again.

Python runs a signal's handler in the main thread at the next bytecode, wherever that is: inside a callback of
native code (JAX's ``_xla_gc_callback`` during a compile), whose exception native code prints as "Exception
ignored" and drops. So the handler (``cli/signals.py``) records the exception here before raising it, and the
loops between native calls (``backends/epochs.epoch_loop``, a jitted backend's chunk loop, the measurement
engine's rounds, the bench sweep's points) call ``check()``, which raises it again. Without the command line's
handlers nothing is ever recorded and ``check()`` costs one global lookup.
"""

from __future__ import annotations

#: the exception class a handler raised and no one has handled yet (None: nothing pending)
pending = None


def record(exc_type) -> None:
    global pending
    pending = exc_type


def clear() -> None:
    global pending
    pending = None


def check() -> None:
    """Raise the pending interrupt again (native code swallowed it); nothing when none is pending."""
    if pending is not None:
        raise pending()


__all__ = ["check", "clear", "pending", "record"]
