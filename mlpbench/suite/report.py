"""The results page: Markdown generated from ``results.json`` files, every number read from them, none typed.

Two steps, kept apart so that another format (a self-contained HTML page) can
grow from the same data: ``collect(files) -> Page`` reads the files into plain
records (numbers as measured, nothing formatted), and ``markdown(page)`` /
``readme_block(page, readme)`` format them. The words at the end of a run
(verdict counts, the peers' yardstick lines, the A/A control, a peak that
moved) come from ``summary.py``, the same lines ``mlpbench bench`` prints; the
agreement of two runs of the same command from ``stability.py``.

Deterministic: runs sorted by machine and path, rows in the file's order,
numbers to fixed significant figures, links relative to the page; the same
files give the same bytes (``tests/test_report.py`` fails when a committed
page drifts from its files).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass, field

from . import results as R
from . import report_input, summary
from .cluster_files import expand
from ..measure import stats
from .stability import Stability, compare_runs, coverage_text, stability_lines

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
RESULTS_FILE = "results.json"


# ---------------------------------------------------------------- the data model
@dataclass(frozen=True)
class Cell:
    """One backend at one point."""

    backend: str
    median_s: float | None
    ratio: float | None
    ratio_ci: tuple
    verdict: str
    pct_peak: float | None
    noisy: bool
    control: str | None  # the baseline's A/A verdict


@dataclass
class Row:
    """One point of the grid: its shape, and each backend's cell."""

    case: str
    dtype: str
    op: str
    n_samples: int
    layer_sizes: tuple
    batch_size: int | None
    epochs: int
    cells: dict = field(default_factory=dict)


@dataclass
class Run:
    path: str  # the results.json, relative to the working folder when under it
    name: str  # its folder's name
    machine_slug: str
    command: str
    started: str | None
    status: str
    error: str | None
    wall_s: float | None
    machine: list  # [(what, text)]
    peaks: list  # summary.peak_lines
    baseline: str
    backends: list  # the columns, the baseline first
    references: list  # those of them that are external reference rows (``references.py``)
    counts: dict  # backend -> {verdict: n}
    notes: list  # summary.closing_notes
    rows: list
    skipped: list
    errors: list
    doc: dict


@dataclass(frozen=True)
class Pair:
    """Two runs of the same command on the same machine, and how they agree."""

    a: Run
    b: Run
    stability: Stability


@dataclass
class Page:
    runs: list
    pairs: list
    out: str | None  # where the page is written (links are relative to it)
    command: str  # the command that regenerates it
    folders: list  # the folders of runs it was given


# ---------------------------------------------------------------- reading
def rel(path) -> str:
    """``path`` relative to the working folder when it lies under it, else absolute; ``/`` separators."""
    path = os.path.abspath(path)
    r = os.path.relpath(path)
    return (path if r.startswith("..") else r).replace(os.sep, "/")


def find_results(paths) -> tuple[list[str], list[str]]:
    """``(files, folders)``: each path that is a folder stands for every ``results.json`` under it, sorted."""
    files, folders = [], []
    for p in paths:
        if os.path.isdir(p):
            folders.append(rel(p))
            for top, dirs, names in os.walk(p):
                dirs.sort()
                files += [os.path.join(top, n) for n in sorted(names) if n == RESULTS_FILE]
        else:
            files.append(p)
    return [rel(f) for f in files], folders


def machine_slug(machine) -> str:
    """A short name for a machine record: the CPU's maker and family, its logical cores, its GPU (``amd-epyc-2c``);
    a record that carries a ``name`` (a cluster's machine, ``MLPBENCH_MACHINE_NAME``) goes by it."""
    if machine.get("name"):
        return str(machine["name"])
    cpu = re.sub(r"\((r|tm)\)|@.*$", " ", str(machine.get("cpu") or "unknown").lower())
    words = [w for w in re.findall(r"[a-z0-9]+", cpu) if w not in ("cpu", "processor")][:2] or ["unknown"]
    slug = "-".join(words) + (f"-{machine['cores_logical']}c" if machine.get("cores_logical") else "")
    gpus = [g for g in machine.get("gpus") or [] if g.get("name")]
    if gpus:
        slug += "-" + "-".join(re.findall(r"[a-z0-9]+", gpus[0]["name"].lower())[:2])
        slug += f"x{len(gpus)}" if len(gpus) > 1 else ""
    return slug


def run_command(doc) -> str:
    """The ``mlpbench bench`` command of a run: recorded (``config["command"]``), else read from ``argv``."""
    config = doc.get("config", {})
    if config.get("command"):
        return config["command"]
    argv = list((doc.get("machine") or {}).get("argv") or [])[1:]
    if argv[:1] == ["bench"]:
        keep, skip = [], False
        for a in argv:
            if skip or a in ("--out", "--quiet", "--no-plots") or a.startswith("--out="):
                skip = a == "--out"
                continue
            keep.append(a)
        return shlex.join(["mlpbench", *keep])
    return f"mlpbench bench --preset {config.get('preset', '?')}"


def machine_lines(m) -> list[tuple[str, str]]:
    """The machine and software of a run, as ``(what, text)`` pairs."""
    cores = (f"{m.get('cores_physical') or '?'} physical / {m.get('cores_logical') or '?'} logical cores, "
             f"{m.get('threads_available') or '?'} available to the run")
    blas = [" ".join(str(b[k]) for k in ("user_api", "internal_api", "version") if b.get(k))
            + f" ({b.get('num_threads')} threads" + (f", {b['architecture']}" if b.get("architecture") else "") + ")"
            for b in m.get("blas") or [] if "note" not in b]
    lines = [("CPU", f"{m.get('cpu', '?')} ({m.get('arch', '?')}), {cores}"), ("OS", str(m.get("os", "?"))),
             ("BLAS", "; ".join(blas) or "not recorded"),
             ("GPUs", "; ".join(", ".join(str(v) for v in g.values()) for g in m.get("gpus") or []) or "none"),
             ("software", ", ".join(f"{k} {v}" for k, v in (m.get("versions") or {}).items() if v) or "not recorded")]
    if m.get("env"):
        lines.append(("environment", ", ".join(f"{k}={v}" for k, v in m["env"].items())))
    return lines


def _columns(doc, baseline) -> list[str]:
    config = doc.get("config", {})
    order = [baseline, *config.get("backends", []), *config.get("references", {})]
    order += [p["backend"] for p in doc["points"]]
    present = {p["backend"] for p in doc["points"]}
    return [b for b in dict.fromkeys(order) if b in present]


def _rows(points) -> list[Row]:
    rows = {}
    for p in points:
        key = R.point_key(p)[1:]  # the point without its backend
        row = rows.setdefault(key, Row(p.get("case", ""), p["dtype"], p["op"], p["n_samples"], tuple(p["layer_sizes"]),
                                       p.get("batch_size"), p.get("epochs", 1)))
        ci = p.get("ratio_ci") if isinstance(p.get("ratio_ci"), (list, tuple)) else (None, None)
        row.cells[p["backend"]] = Cell(p["backend"], p.get("median_s"), p.get("ratio"), tuple(ci), p.get("verdict", ""),
                                       p.get("pct_peak"), bool(p.get("noisy")), (p.get("control") or {}).get("verdict"))
    return list(rows.values())


def read_run(path) -> Run:
    """One ``results.json`` as a ``Run`` (``results.load`` checks it: ``ValueError`` naming the file)."""
    doc = R.load(path)
    if doc["schema"] not in R.JUDGED_SCHEMAS:
        raise ValueError(f"{path}: a {doc['schema']} file; mlpbench report reads {R.SCHEMA} (what mlpbench bench "
                         f"writes today) and {R.SCHEMA_V2}")
    unnamed = [i for i, p in enumerate(doc["points"]) if not isinstance(p.get("case"), str)]
    if unnamed:
        raise ValueError(f"{path}: not an mlpbench results file: point {unnamed[0]} has no 'case'")
    report_input.check(doc, path)  # every value the pages read, of the kind they format
    base = summary.baseline_of(doc)
    columns = _columns(doc, base)
    folder = os.path.basename(os.path.dirname(os.path.abspath(path)))
    name = folder if os.path.basename(path) == RESULTS_FILE else os.path.splitext(os.path.basename(path))[0]
    config = doc.get("config", {})
    return Run(path=rel(path), name=name, machine_slug=machine_slug(doc["machine"]), command=run_command(doc),
               started=config.get("started"), status=doc.get("status", "not recorded"), error=doc.get("error"),
               wall_s=doc.get("wall_s"), machine=machine_lines(doc["machine"]), peaks=summary.peak_lines(doc["peak"]),
               baseline=base, backends=columns,
               references=[b for b in columns if any(p.get("reference") for p in doc["points"] if p["backend"] == b)],
               counts={b: summary.verdict_counts([p for p in doc["points"] if p["backend"] == b])
                       for b in columns if b != base},
               notes=[line.strip() for line in summary.closing_notes(doc)], rows=_rows(doc["points"]),
               skipped=list(doc.get("skipped", [])), errors=list(doc.get("errors", [])), doc=doc)


def collect(files, out=None, command="mlpbench report", folders=()) -> Page:
    """The page's data: every file read (sorted by machine, then path) and each consecutive pair of runs of the
    same command on the same machine compared (``stability.compare_runs``). A cluster run's merged file
    stands for its machines' files under ``--on each`` (``cluster_files.expand``)."""
    runs = sorted((read_run(f) for f in expand(files)), key=lambda r: (r.machine_slug, r.path))
    groups = {}
    for r in runs:
        groups.setdefault((r.machine_slug, r.command), []).append(r)
    pairs = [Pair(a, b, compare_runs(a.doc, b.doc)) for group in groups.values() for a, b in zip(group, group[1:])]
    return Page(runs, pairs, None if out is None else rel(out), command, list(folders))


# ---------------------------------------------------------------- Markdown
def link(page, path) -> str:
    """``path`` as a link from the page (relative to its folder)."""
    start = os.path.dirname(os.path.abspath(page.out)) if page.out else os.getcwd()
    return os.path.relpath(os.path.abspath(path), start).replace(os.sep, "/")


def md_link(page, path) -> str:
    return f"[{link(page, path)}]({link(page, path)})"


def seconds(s) -> str:
    return "not recorded" if s is None else f"{s:.0f} s" if s >= 100 else f"{s:.3g} s"


def status_text(run) -> str:
    if run.status == "failed":
        return f"failed ({run.error})"
    return run.status + (f" ({len(run.doc['points'])} points kept)" if run.status == "interrupted" else "")


def _cell(c: Cell | None) -> str:
    if c is None:
        return "-"
    parts = [R.fmt_time(c.median_s)]
    if c.verdict == "baseline":
        parts.append("baseline" + (f", A/A {c.control}" if c.control else "") + (" (noisy)" if c.noisy else ""))
    else:
        parts += [R.fmt_ratio({"ratio": c.ratio, "ratio_ci": list(c.ratio_ci), "verdict": c.verdict}), c.verdict]
    if c.pct_peak is not None:
        parts.append(f"{R.fmt_pct(c.pct_peak)}% of peak")
    return " · ".join(parts)


def op_text(row) -> str:
    """``step``; ``train x5000 (lab-and)`` for a named case of several epochs."""
    name = row.case.split()[0] if row.case else row.op
    epochs = f" x{row.epochs}" if row.epochs and row.epochs > 1 else ""
    return row.op + epochs + (f" ({name})" if name != row.op else "")


def md_table(header, rows) -> list[str]:
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"
    return [line(header), "|" + "---|" * len(header), *(line(r) for r in rows)]


def name(run, backend) -> str:
    return f"`{backend}`" + (" (reference)" if backend in run.references else "")


def title(run) -> str:
    return f"{run.machine_slug} / {run.name}"


def anchor(run) -> str:
    """GitHub's heading anchor of ``title(run)``."""
    return re.sub(r"[^a-z0-9 _-]", "", title(run).lower()).replace(" ", "-")


def counts_line(run, zeros=True) -> str:
    """``against numpy: numba faster 9, slower 0, same 0, unresolved 1 of 10`` (``zeros``: see ``counts_text``)."""
    counts = (f"{b} {summary.counts_text(c, zeros)}" for b, c in run.counts.items())
    return f"against {run.baseline}: " + "; ".join(counts)


def run_section(page, run) -> list[str]:
    out = [f"## {title(run)}", "", f"`{run.command}`", "",
           f"- file: {md_link(page, run.path)}",
           f"- started {run.started or 'not recorded'}; status {status_text(run)}; wall time {seconds(run.wall_s)}"]
    out += [f"- {what}: {text}" for what, text in run.machine]
    out += ["", "Peaks (the best is the basis of % of peak):", ""] + [f"- {line}" for line in run.peaks]
    out += ["", f"Verdicts against {run.baseline} (99% intervals):", ""]
    out += md_table(["backend", *stats.VERDICTS, "points"],
                    [[name(run, b), *c.values(), sum(c.values())] for b, c in run.counts.items()])
    out += ["", "The end of the command's output:", "", "```", *run.notes, "```", ""]
    header = ["dtype", "op", "N", "sizes", "batch", *(name(run, b) for b in run.backends)]
    out += md_table(header, [[r.dtype, op_text(r), r.n_samples, "-".join(map(str, r.layer_sizes)),
                              "full" if r.batch_size is None else r.batch_size,
                              *(_cell(r.cells.get(b)) for b in run.backends)] for r in run.rows])
    out += [""] + [f"- skipped {s.get('case', s.get('backend'))}: {s['reason']}" for s in run.skipped]
    out += [f"- error: {e['backend']} / {e['case']}: {e['error']}" for e in run.errors]
    return out + ([""] if run.skipped or run.errors else [])


def procedure(page) -> list[str]:
    out = ["Every number on this page is read from the `results.json` files below by `mlpbench report`; none is "
           "typed by hand. Do not edit this page: regenerate it.", "",
           "How it was made, with no script:", ""]
    if page.runs:
        out += ["1. The runs, each measured by the command shown with it, its files written with `--out` into "
                "its own folder:", ""]
        out += [f"   - `{r.command}` → {md_link(page, r.path)}" for r in page.runs]
    else:
        out += ["1. No runs are committed yet."]
    for folder in [f for f in page.folders if not os.path.isfile(os.path.join(f, RESULTS_FILE))]:
        out += ["", f"   To add a run: `mlpbench bench --preset PRESET --no-plots --out {folder}/MACHINE/RUN` on an "
                    "otherwise idle machine, RUN a name for the run and MACHINE the machine's slug: the first two "
                    "words of its CPU model, its logical cores and its first GPU's first two words, lowercase "
                    "(`amd-epyc-2c`, `intel-xeon-16c-nvidia-h100`; the test that checks this page names it). Then "
                    "regenerate, and commit the run's `results.json` and `results.csv` with the pages."]
    return out + ["", f"2. The page (and the README's summary, where it is given): `{page.command}`", ""]


def markdown(page) -> str:
    """The whole results page."""
    out = ["# Benchmark results", "", f"<!-- generated by `{page.command}`: do not edit -->", ""] + procedure(page)
    if not page.runs:
        return "\n".join(out + ["No benchmark run is committed yet: there are no results to show.", ""])
    out += ["## Runs", ""]
    out += md_table(["machine", "run", "command", "started", "status", "wall", "verdicts"],
                    [[r.machine_slug, f"[{r.name}](#{anchor(r)})", f"`{r.command}`", r.started or "-", status_text(r),
                      seconds(r.wall_s), counts_line(r)] for r in page.runs]) + [""]
    if page.pairs:
        out += ["## Two runs of the same command", ""]
        for pair in page.pairs:
            out += [f"[{pair.a.name}](#{anchor(pair.a)}) and [{pair.b.name}](#{anchor(pair.b)}) on "
                    f"{pair.a.machine_slug}: `{pair.a.command}`", ""]
            out += [f"- {line}" for line in stability_lines(pair.stability, pair.a.name, pair.b.name)] + [""]
    for run in page.runs:
        out += run_section(page, run)
    return "\n".join(out).rstrip("\n") + "\n"


def readme_block(page, readme) -> str:
    """The README's short summary, between ``BEGIN`` and ``END`` (the markers included)."""
    here = Page(page.runs, page.pairs, readme, page.command, page.folders)  # links relative to the README

    def named(run):
        return f"[{run.name}]({link(here, page.out)}#{anchor(run)})" if page.out else run.name

    out = [BEGIN, f"<!-- generated by `{page.command}`: do not edit -->"]
    full = md_link(here, page.out) if page.out else "`mlpbench report`"
    if not page.runs:
        return "\n".join(out + [f"No benchmark run is committed yet; {full} says how to add one.", END])
    out += [f"Every number here is read from a committed `results.json`; the full tables: {full}.", ""]
    for r in page.runs:
        wall = f" in {seconds(r.wall_s)}" if r.wall_s is not None else ""
        out.append(f"- {named(r)} on {r.machine_slug}, {(r.started or '-')[:10]}, {status_text(r)}{wall}: "
                   f"`{r.command}`: {counts_line(r, zeros=False)}")
    for pair in page.pairs:
        s = pair.stability
        out.append(f"- {named(pair.a)} and {named(pair.b)} (the same command): contradictory verdicts "
                   f"{s.contradictory} of {s.matched}; a run's 99% interval holds the other run's ratio "
                   f"{coverage_text(s.intervals)}")
    return "\n".join(out + [END])


def replace_block(text, block, path) -> str:
    """``text`` with its one ``BEGIN`` ... ``END`` block replaced; ``ValueError`` naming ``path`` without one."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"{path}: needs one {BEGIN} line and one {END} line after it, around the results summary")
    head, rest = text.split(BEGIN, 1)
    return head + block + rest.split(END, 1)[1]
