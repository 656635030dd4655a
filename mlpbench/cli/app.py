"""``mlpbench train | backends | parity | bench | compare | tune | report``: the command line.

This module holds the top-level parser, ``main`` and the ONE place where user and environment faults become
exit 2 and one line on stderr. Each command is a module (``cli/train.py``, ``cli/backends.py``,
``cli/parity.py``, ``cli/bench.py``, ``cli/compare.py``, ``cli/tune.py``, ``cli/report.py``) with a pair
``add_<name>(subparsers) -> parser`` / ``cmd_<name>(args) -> exit code``; the options several commands share
are declared once, as argparse parents, in ``cli/options.py``, and the value types in ``cli/args.py``.
"""

from __future__ import annotations

import contextlib
import os
import sys

from ..measure.quiet import short_spin_env
from . import args as A
from .backends import add_backends, cmd_backends
from .bench import add_bench, cmd_bench
from .compare import add_compare, cmd_compare
from .parity import add_parity, cmd_parity
from .report import add_report, cmd_report
from .signals import CODES, Terminated, interrupts
from .train import add_train, cmd_train
from .tune import add_tune, cmd_tune


def build_parser():
    parser = A.Parser(prog="mlpbench", description=__doc__.splitlines()[0].replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    # each command's function is looked up here, when the parser is built (a test may stand one in)
    for add, run in ((add_train, cmd_train), (add_backends, cmd_backends), (add_parity, cmd_parity),
                     (add_bench, cmd_bench), (add_compare, cmd_compare), (add_tune, cmd_tune),
                     (add_report, cmd_report)):
        add(sub).set_defaults(func=run)
    return parser


def _describe(exc) -> str:
    """One line for a user or environment fault."""
    if isinstance(exc, OSError) and exc.filename is not None:
        text = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "") + f": {exc.strerror or exc}"
    elif isinstance(exc, MemoryError):
        text = f"out of memory: {exc}" if "memory" not in str(exc) else str(exc)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


STDOUT = "<stdout>"


class _NamedStdout:
    """stdout for one command: an ``OSError`` from writing it (a full disk, ``> /dev/full``) names stdout."""

    def __init__(self, stream):
        self._stream = stream

    def __getattr__(self, name):
        return getattr(self._stream, name)

    def _call(self, fn, *args):
        try:
            return fn(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror or str(exc), STDOUT) from None

    def write(self, text):
        return self._call(self._stream.write, text)

    def flush(self):
        return self._call(self._stream.flush)


def _stdout_gone():
    """The reader of stdout went away (``| head -1``): send the rest of the output nowhere."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv=None) -> int:
    """Run one command. User and environment faults: exit 2 and one line on stderr; Ctrl-C 130; SIGTERM 143."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a bad command line (2, its one line already printed)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    prefix = f"mlpbench {args.command}"
    if sys.stdout is None:  # started with stdout closed (``>&-``)
        print(f"{prefix}: error: stdout is closed; redirect it (e.g. > /dev/null) instead", file=sys.stderr)
        return 2
    stdout, sys.stdout = sys.stdout, _NamedStdout(sys.stdout)
    try:
        with interrupts(prefix):
            return _run(args, prefix)
    finally:
        sys.stdout = stdout


def entry() -> None:
    """The console script and ``python -m mlpbench``: exit with ``main``'s code. After SIGINT / SIGTERM (130 /
    143) the process ends without the interpreter's teardown (``os._exit`` once stdout and stderr are
    flushed): a native runtime's threads may still be running (JAX's, signalled during its first compile), and
    tearing the interpreter down under them crashed it after the one line (SIGSEGV, 5 of 24 tries on a loaded
    machine). Nothing else is left to do by then: every file mlpbench writes is complete and closed
    (``core/fileio.atomic_write``) before ``main`` returns."""
    respawn_with_short_spin()
    code = main()
    if code in CODES.values():
        _flush_std()
        os._exit(code)
    sys.exit(code)


def respawn_with_short_spin(argv=None, environ=None, execve=os.execve) -> None:
    """``mlpbench bench`` starts itself again, the same command line, with OpenBLAS's idle spin cut to 2^23
    cycles where ``OPENBLAS_THREAD_TIMEOUT`` is unset (OpenBLAS reads it only when it loads, and NumPy is
    loaded by now): the sweep waits out that spin before every sample (``measure/quiet.py`` says why, and
    what it changes: nothing within a sample). Other commands, a user's own value, or a platform without
    ``exec`` run on as they are; so does a start that fails (the wait then lasts the default spin)."""
    argv = sys.argv[1:] if argv is None else argv
    if os.name != "posix" or not argv or argv[0] != "bench":
        return
    env = short_spin_env(os.environ if environ is None else environ)
    if env is None:
        return
    _flush_std()
    with contextlib.suppress(OSError):
        execve(sys.executable, list(sys.orig_argv), env)


def _flush_std() -> None:
    """Flush stdout and stderr before the process is replaced or ends without its teardown; a stream already
    gone (a closed pipe) is left as it is."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()


def _run(args, prefix) -> int:
    from ..backends import BackendUnavailable, TrainingDiverged
    from ..core.data import DatasetUnavailable

    try:
        rc = int(args.func(args) or 0)
        sys.stdout.flush()
        return rc
    except BrokenPipeError:
        _stdout_gone()
        return 2
    except (ValueError, TypeError, OSError, MemoryError, BackendUnavailable, DatasetUnavailable,
            TrainingDiverged) as exc:
        try:
            sys.stdout.flush()  # what the command printed comes before the error
        except OSError:
            _stdout_gone()  # the unflushed rest goes nowhere, not into a second error at exit
        print(f"{prefix}: error: {_describe(exc)}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"{prefix}: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{prefix}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    entry()
