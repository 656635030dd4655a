"""The options several subcommands share, each declared once as an ``argparse`` parent (``parents=[...]``).

A parent is made fresh per subcommand (argparse shares the parent's actions with the child), so a command
can word its own help and default while the flag, its type and its check stay the same everywhere.
"""

from __future__ import annotations

import argparse

from . import args as A
from ..core.validation import ACTIVATIONS
from ..core.validation import DTYPES
from ..suite.cases import PRESETS


def _parent() -> argparse.ArgumentParser:
    return argparse.ArgumentParser(add_help=False)


def preset(default: str, what: str = "") -> argparse.ArgumentParser:
    """``--preset NAME`` of ``suite/cases.py``."""
    p = _parent()
    p.add_argument("--preset", default=default, choices=tuple(PRESETS), metavar="PRESET",
                   help=f"{' | '.join(PRESETS)}{what} (default {default})")
    return p


def dtypes(default=None, shown="the preset's") -> argparse.ArgumentParser:
    """``--dtype float64,float32``: a comma list of the dtypes the suite runs."""
    p = _parent()
    p.add_argument("--dtype", default=default, type=A.choice_list(DTYPES), help=f"{','.join(DTYPES)} (default {shown})")
    return p


def activation() -> argparse.ArgumentParser:
    """``--activation`` of the hidden layers, checked when the command line is read."""
    p = _parent()
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="the hidden layers' activation (default relu)")
    return p


def backends(shown: str) -> argparse.ArgumentParser:
    """``--backends SPECS``: registry specs (``numba[loop]``, ``numba[*]``; see ``backends.parse_specs``)."""
    p = _parent()
    p.add_argument("--backends", type=A.nonempty, help=f"comma list, e.g. numpy,numba[loop],cupy (default: {shown})")
    return p


def no_lab(what: str) -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--no-lab", action="store_true", help=what)
    return p


def quiet() -> argparse.ArgumentParser:
    p = _parent()
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def json_file(what: str) -> argparse.ArgumentParser:
    """``--json PATH``, a writable file path (checked when the command line is read)."""
    p = _parent()
    p.add_argument("--json", metavar="PATH", type=A.output_file(), help=what)
    return p


def regression_gate(when: str = "") -> argparse.ArgumentParser:
    """``--threshold`` and ``--fail-on-regression`` of a comparison of two results files."""
    p = _parent()
    p.add_argument("--threshold", type=A.real(0), default=None,
                   help=f"regression threshold{when}: slower by more than this fraction (default 0.10 = 10%%)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help=f"exit 1{when} on a significant regression beyond the threshold")
    return p


__all__ = ["activation", "backends", "dtypes", "json_file", "no_lab", "preset", "quiet", "regression_gate"]
