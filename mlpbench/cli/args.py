"""Argument types for the command line: every value is checked when the command line is read.

Each factory returns an ``argparse`` ``type=`` callable that raises
``argparse.ArgumentTypeError`` with what was expected, so a bad value is one
line naming the option (``argument --seed: ...``) before any work starts; output
paths are checked here too, so a typo never costs a training run.
"""

from __future__ import annotations

import argparse
import math

from ..core import fileio
from ..core.validation import parse_list

PLOT_SUFFIXES = (".png", ".pdf", ".svg")


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on stderr (exit 2), naming the option."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {' '.join(str(message).split())} (see {self.prog} --help)\n")


def _wrap(fn, what):
    def check(text):
        try:
            return fn(text)
        except (ValueError, TypeError) as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    check.__name__ = what
    return check


def output_file(suffixes=None):
    """A path a file can be written to (its folder exists and is writable); the path, unchanged."""
    return _wrap(lambda text: fileio.check_output_file(text, None, suffixes), "output file")


def output_dir(files=()):
    """A folder that exists or can be created, and is writable."""
    return _wrap(lambda text: fileio.check_output_dir(text, None, files), "output folder")


def _int(text):
    try:
        return int(str(text).strip())
    except ValueError:
        raise ValueError(f"expected an integer; got {text!r}") from None


def int_range(lo, hi=None):
    """An int in ``[lo, hi]``."""
    def parse(text):
        value = _int(text)
        if value < lo or (hi is not None and value > hi):
            bound = f"in [{lo}, {hi}]" if hi is not None else f">= {lo}"
            raise ValueError(f"must be an integer {bound}; got {value}")
        return value

    return _wrap(parse, "int")


def real(lo=None, hi=None, lo_open=False):
    """A finite float in ``[lo, hi]`` (``(lo, hi]`` with ``lo_open``)."""
    def parse(text):
        try:
            value = float(str(text).strip())
        except ValueError:
            raise ValueError(f"expected a number; got {text!r}") from None
        too_low = lo is not None and (value <= lo if lo_open else value < lo)
        if not math.isfinite(value) or too_low or (hi is not None and value > hi):
            lo_txt = "" if lo is None else (f" > {lo:g}" if lo_open else f" >= {lo:g}")
            hi_txt = "" if hi is None else f" and <= {hi:g}"
            raise ValueError(f"must be a finite number{lo_txt}{hi_txt}; got {text!r}")
        return value

    return _wrap(parse, "number")


def int_list(lo=1):
    """A comma (or space) separated, non-empty list of ints ``>= lo``; the text, unchanged."""
    def parse(text):
        items = parse_list(text)
        if not items:
            raise ValueError("expected a comma list of integers, e.g. 1,64,1024; got nothing")
        for t in items:
            if _int(t) < lo:
                raise ValueError(f"every value must be an integer >= {lo}; got {t!r}")
        return text

    return _wrap(parse, "int list")


def choice_list(choices):
    """A comma separated, non-empty list of ``choices``; the text, unchanged."""
    def parse(text):
        items = parse_list(text)
        if not items:
            raise ValueError(f"expected a comma list of {', '.join(choices)}; got nothing")
        bad = [t for t in items if t not in choices]
        if bad:
            raise ValueError(f"{bad[0]!r} is not one of {', '.join(choices)}")
        return text

    return _wrap(parse, "list")


def reject_unused(args, names, context):
    """``ValueError`` when any option in ``names`` was given (not ``None`` / ``False``): it would be ignored."""
    given = [f"--{n.replace('_', '-')}" for n in names if getattr(args, n, None) not in (None, False)]
    if given:
        raise ValueError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply {context}; "
                         "it would be ignored")


def scheduler_address(text):
    """A Dask scheduler address, ``[PROTOCOL://]HOST:PORT`` (checked here: Dask would take a malformed one
    for a host to wait for); the text, stripped."""
    address = str(text).strip()
    rest = address.split("://", 1)[1] if "://" in address else address
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or any(c.isspace() for c in address):
        raise argparse.ArgumentTypeError(f"expected a scheduler address such as tcp://10.0.0.5:8786; got {text!r}")
    return address


def nonempty(text):
    """Any text but an empty one."""
    if not str(text).strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


__all__ = ["PLOT_SUFFIXES", "Parser", "choice_list", "int_list", "int_range", "nonempty", "output_dir",
           "output_file", "real", "reject_unused", "scheduler_address"]
