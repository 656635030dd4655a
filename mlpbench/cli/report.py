"""``mlpbench report``: the results page (Markdown) from ``results.json`` files, and the README's summary block.

``mlpbench report RESULTS [RESULTS ...] -o OUT.md [--readme README.md]``: a
RESULTS that is a folder stands for every ``results.json`` under it. The page
and the block are ``suite/report.py``'s; this module checks every path first
(a missing input, a file that is not a results file, an output that cannot be
written, a README without its markers: exit 2, one line naming the path) and
only then renders and writes.
"""

from __future__ import annotations

import os
import shlex
import sys

from ..core.fileio import atomic_write, check_output_file
from ..suite import report

FORMATS = {".md": "Markdown"}


def add_report(sub):
    p = sub.add_parser("report", help="a Markdown results page from results.json files; the README's summary",
                       description="Render the results of `mlpbench bench` runs as Markdown, every number read "
                                   "from their results.json.")
    p.add_argument("inputs", nargs="+", metavar="RESULTS",
                   help="results.json files written by mlpbench bench, or folders (every results.json under them)")
    p.add_argument("-o", "--output", metavar="OUT.md", help="write the page here (default: print it)")
    p.add_argument("--readme", metavar="README.md",
                   help=f"rewrite the summary between the lines {report.BEGIN} and {report.END} in this file")
    return p


def check_paths(args) -> None:
    """Every user fault as ``ValueError`` naming the path, before any file is read in full or written."""
    if args.output is not None:
        suffix = os.path.splitext(args.output)[1].lower()
        if suffix not in FORMATS:
            raise ValueError(f"-o {args.output}: the format comes from the suffix, and Markdown (.md) is the format "
                             f"available; got {suffix or 'no suffix'!r}")
        check_output_file(args.output, "-o")
    if args.readme is not None:
        if not os.path.isfile(args.readme):
            raise ValueError(f"--readme {args.readme}: no such file")
        check_output_file(args.readme, "--readme")
        if not os.access(args.readme, os.R_OK | os.W_OK):
            raise ValueError(f"--readme {args.readme}: cannot read and write it")
    for path in args.inputs:
        if not os.path.exists(path):
            raise ValueError(f"{path}: no such file or folder")
        if not (os.path.isdir(path) or os.access(path, os.R_OK)):
            raise ValueError(f"{path}: cannot read it")


def regenerate_command(inputs, output=None, readme=None) -> str:
    """The ``mlpbench report`` command line for these paths (relative to the working folder where under it)."""
    parts = ["mlpbench", "report", *map(report.rel, inputs)]
    parts += ["-o", report.rel(output)] if output else []
    return shlex.join(parts + (["--readme", report.rel(readme)] if readme else []))


def render(inputs, output=None, readme=None) -> tuple[str, str | None]:
    """``(page, readme_text)``: the page, and the README's new text (``None`` without ``readme``)."""
    files, folders = report.find_results(inputs)
    page = report.collect(files, out=output, command=regenerate_command(inputs, output, readme), folders=folders)
    new_readme = None
    if readme is not None:
        try:
            with open(readme, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError:
            raise ValueError(f"--readme {readme}: not a UTF-8 text file") from None
        new_readme = report.replace_block(text, report.readme_block(page, readme), readme)
    return report.markdown(page), new_readme


def cmd_report(args) -> int:
    check_paths(args)
    if args.readme is not None:  # its markers, before the results are read
        with open(args.readme, encoding="utf-8", errors="replace") as f:
            report.replace_block(f.read(), "", args.readme)
    page, new_readme = render(args.inputs, args.output, args.readme)
    if args.output is None and args.readme is None:
        sys.stdout.write(page)
        return 0
    if args.output is not None:
        atomic_write(args.output, page)
        print(f"wrote {args.output}")
    if new_readme is not None:
        atomic_write(args.readme, new_readme)
        print(f"wrote the results summary in {args.readme}")
    return 0
