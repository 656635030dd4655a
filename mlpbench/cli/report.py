"""``mlpbench report``: the results page (Markdown or HTML) from ``results.json`` files, and the README's summary.

``mlpbench report RESULTS [RESULTS ...] -o OUT.html|OUT.md [--markdown OUT.md] [--readme README.md]``: a
RESULTS that is a folder stands for every ``results.json`` under it; the format of ``-o`` comes from its
suffix. The Markdown page and the block are ``suite/report.py``'s, the self-contained HTML page
``suite/html_report.py``'s; this module checks every path first
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

FORMATS = {".md": "Markdown", ".html": "HTML", ".htm": "HTML"}


def add_report(sub):
    p = sub.add_parser("report", help="an HTML or Markdown report of results.json files; the README's summary",
                       description="Render the results of `mlpbench bench` runs as one self-contained HTML page "
                                   "or as Markdown, every number read from their results.json.")
    p.add_argument("inputs", nargs="+", metavar="RESULTS",
                   help="results.json files written by mlpbench bench, or folders (every results.json under them)")
    p.add_argument("-o", "--output", metavar="OUT.html",
                   help="write the page here, HTML (.html) or Markdown (.md) by its suffix (default: print the "
                        "Markdown page)")
    p.add_argument("--markdown", metavar="OUT.md", help="(also) write the Markdown page here")
    p.add_argument("--readme", metavar="README.md",
                   help=f"rewrite the summary between the lines {report.BEGIN} and {report.END} in this file")
    return p


def check_paths(args) -> None:
    """Every user fault as ``ValueError`` naming the path, before any file is read in full or written."""
    if args.output is not None:
        suffix = os.path.splitext(args.output)[1].lower()
        if suffix not in FORMATS:
            raise ValueError(f"-o {args.output}: the format comes from the suffix: HTML (.html) or Markdown (.md); "
                             f"got {suffix or 'no suffix'!r}")
        check_output_file(args.output, "-o")
    if getattr(args, "markdown", None) is not None:
        if os.path.splitext(args.markdown)[1].lower() != ".md":
            raise ValueError(f"--markdown {args.markdown}: the Markdown page's name ends in .md")
        check_output_file(args.markdown, "--markdown")
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


def is_html(path) -> bool:
    return path is not None and FORMATS.get(os.path.splitext(path)[1].lower()) == "HTML"


def render_html(inputs, output) -> str:
    """The self-contained HTML page of ``inputs`` (runs sorted by machine, then path, as the Markdown page)."""
    from ..suite import html_report

    files, _ = report.find_results(inputs)
    page = report.collect(files)
    return html_report.html(page.runs, regenerate_command(inputs, output))


def render(inputs, output=None, readme=None) -> tuple[str, str | None]:
    """``(page, readme_text)``: the Markdown page, and the README's new text (``None`` without ``readme``)."""
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
    md_out = args.markdown or (None if is_html(args.output) else args.output)
    html = render_html(args.inputs, args.output) if is_html(args.output) else None
    page, new_readme = (None, None) if html is not None and md_out is None and args.readme is None else \
        render(args.inputs, md_out, args.readme)
    if args.output is None and args.readme is None and args.markdown is None:
        sys.stdout.write(page)
        return 0
    for path, text in ((args.output, html if html is not None else page), (args.markdown, page)):
        if path is not None:
            atomic_write(path, text)  # the whole page or nothing: never a half-written report
            print(f"wrote {path}")
    if new_readme is not None:
        atomic_write(args.readme, new_readme)
        print(f"wrote the results summary in {args.readme}")
    return 0
