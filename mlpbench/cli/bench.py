"""``mlpbench bench``: time the backends over a preset's grid (the sweep is ``suite/sweep.py``'s ``run_sweep``).

Backends are written as registry specs (``numba[loop]``,
``numba[threads=1,strategy=step]``, ``numba[*]``: see ``backends.parse_specs``);
an unavailable one is skipped with its reason. External reference rows
(``--references``, default the preset's: ``suite/references.py``) are timed beside
them where they apply, and skipped with the reason when their package is missing.
``bench --compare OLD NEW`` is the ``compare`` command (``cli/compare.py``) under its older name.
"""

from __future__ import annotations

import datetime
import sys

from . import args as A
from . import options as O
from .compare import compare_files
from ..suite import references as refs
from ..suite import results, runlock, summary
from ..backends import REFERENCE, BackendSpec, parse_specs, ready
from ..measure.heap import DEFAULT as HEAP_DEFAULT, MODES as HEAP_MODES
from ..suite.sweep import MAX_ROUNDS, run_sweep
from ..core.validation import OUTPUTS
from ..suite.cases import OPS, PASSES, TIMING_LR, TIMING_REDUCTION, default_backends, get_preset, sweep
from ..suite.progress import Progress
from ..core.validation import check_activation, parse_list


def default_specs(preset, output=None) -> list[BackendSpec]:
    """The preset's backends (``None``: every registered one whose ``outputs`` include the head)."""
    return parse_specs(",".join(default_backends(preset, output)))


def reference_names(args, preset) -> list[str]:
    """``--references`` (``none``: no reference row), else the preset's."""
    if args.references is None:
        return list(preset.references)
    names = parse_list(args.references)
    return [] if names == ["none"] else [n for n in names if n != "none"]


#: bench's own options, none of which applies to ``--compare`` (a comparison reads two finished runs)
SWEEP_ONLY = ("backends", "batch", "hidden", "features", "dtype", "op", "repeat", "min_time", "max_time", "no_lab",
              "dry_run", "baseline", "batch_size", "output", "references", "passes", "budget", "scheduler", "on",
              "heap")


def add_bench(sub):
    p = sub.add_parser("bench", help="time the backends over a preset's grid; JSON, CSV, PNG plots",
                       description="Time every available backend against NumPy over a sweep from "
                                   "mlpbench/suite/cases.py.",
                       parents=[O.preset("quick"), O.backends("the preset's"), O.dtypes(), O.activation(),
                                O.no_lab("leave out the lab's 5000-epoch train case"), O.quiet(),
                                O.regression_gate(" with --compare")])
    p.add_argument("--batch", type=A.int_list(), help="batch sizes N, e.g. 1,64,1024")
    p.add_argument("--hidden", type=A.int_list(), help="hidden widths H, e.g. 4,64,512")
    p.add_argument("--features", type=A.int_list(), help="input features D, e.g. 32")
    p.add_argument("--op", type=A.choice_list(OPS), help="forward | backward | step | train | epoch (comma list)")
    p.add_argument("--batch-size", type=A.int_list(),
                   help="mini-batch sizes of ops epoch and train, e.g. 16,64 (default: the preset's; full batch)")
    p.add_argument("--output", choices=OUTPUTS,
                   help="the head: sigmoid | softmax (default: the preset's)")
    p.add_argument("--references", type=A.choice_list(("none", *refs.REFERENCES)),
                   help=f"external reference rows: {' | '.join(refs.REFERENCES)} | none (default: the preset's)")
    p.add_argument("--baseline", default=None,
                   help=f"the backend every ratio and verdict is against (default {REFERENCE}); it also gets the A/A control")
    p.add_argument("--repeat", type=A.int_range(1, MAX_ROUNDS),
                   help="rounds per point at least (default: the fewest that give a 99%% interval, 8)")
    p.add_argument("--passes", type=A.int_range(1, 20), default=None,
                   help=f"sweeps over the grid, pooled per point (default: the preset's, {PASSES}; standard "
                        f"{get_preset('standard').passes}): the intervals then span how the machine changed between them")
    p.add_argument("--min-time", type=A.real(0), help="seconds per sample at least (calls are batched)")
    p.add_argument("--max-time", type=A.real(0, lo_open=True),
                   help="seconds of rounds per point at most, when the verdicts are not firm sooner")
    p.add_argument("--budget", type=A.real(0),
                   help="seconds of follow-up rounds for the whole sweep, given to the points still unresolved "
                        "after the passes, each within --max-time (default 25%% of --max-time per point; 0: none)")
    p.add_argument("--heap", choices=HEAP_MODES, default=None,
                   help="keep: this process keeps the memory it frees, so no backend pays the kernel's page faults "
                        "for temporaries it frees and asks again (default; measure/heap.py); system: glibc as is")
    p.add_argument("--out", default=None, type=A.output_dir(("results.json", "results.csv")),
                   help="output folder (default results/)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--no-report", action="store_true", help="no report.html beside results.json")
    p.add_argument("--dry-run", action="store_true", help="list the points and exit")
    p.add_argument("--scheduler", metavar="ADDRESS", type=A.scheduler_address,
                   help="run on the Dask cluster of this scheduler (tcp://HOST:PORT; needs mlpbench[cluster]): "
                        "OUT/<machine>/results.json per machine, OUT/results.json merged (docs/cluster.md)")
    p.add_argument("--on", choices=("each", "split"), default=None,
                   help="with --scheduler: each machine runs the whole grid (each, the default), or the points "
                        "are shared among identical machines (split)")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"),
                   help="compare two results.json and exit: the same as mlpbench compare OLD NEW")
    return p


#: options that change where the files go or what is shown, not what is measured: not part of the recorded command
UNRECORDED = ("out", "quiet", "no_plots", "no_report", "dry_run", "compare", "threshold", "fail_on_regression",
              "scheduler", "on")


def command_line(args) -> str:
    """The command that measures this run again (``config["command"]``): ``mlpbench bench --preset P`` and every
    option given a value other than its default, ``UNRECORDED`` left out."""
    import argparse
    import shlex

    sub = argparse.ArgumentParser().add_subparsers()
    add_bench(sub)
    defaults = vars(sub.choices["bench"].parse_args([]))
    parts = ["mlpbench", "bench", "--preset", args.preset]
    for dest, value in vars(args).items():
        if dest in defaults and dest not in (*UNRECORDED, "preset", "func") and value != defaults[dest]:
            parts += [f"--{dest.replace('_', '-')}"] + ([] if value is True else [str(value)])
    return shlex.join(parts)


def bench_cases(args):
    preset = get_preset(args.preset)
    check_activation(args.activation)

    def ints(text):
        return None if text is None else parse_list(text, int)

    try:
        case_list = sweep(preset, batch=ints(args.batch), hidden=ints(args.hidden), features=ints(args.features),
                          dtypes=None if args.dtype is None else parse_list(args.dtype),
                          ops=None if args.op is None else parse_list(args.op), activation=args.activation,
                          labs=() if args.no_lab else None, batch_sizes=ints(args.batch_size), output=args.output)
    except ValueError as exc:
        if args.batch_size is not None and "batch_size" in str(exc):
            raise ValueError(f"--batch-size: {exc}") from None
        raise
    return preset, case_list


def write_report(out) -> None:
    """``report.html`` beside ``results.json`` (already written): a report that cannot be made is one line on
    stderr, never a lost run."""
    import os

    from ..core.fileio import atomic_write
    from .report import render_html

    path = os.path.join(out, "report.html")
    try:
        atomic_write(path, render_html([os.path.join(out, "results.json")], path))
    except Exception as exc:  # noqa: BLE001 - the run's results are safe; the report is a view of them
        print(f"no report: {type(exc).__name__}: {exc}", file=sys.stderr)
    else:
        print(f"wrote {path}")


def run_config(args, preset, case_list, labels, references, repeat, min_time, max_time, baseline) -> dict:
    """The run's ``config`` (every results file carries it): the command, preset, grid, timing budget, rules."""
    return {"command": command_line(args), "preset": preset.name, "preset_definition": preset.describe(),
            "backends": labels, "cases": len(case_list),
            "min_rounds": repeat, "min_time": min_time, "max_time": max_time, "baseline": baseline,
            "grid": {"batch": args.batch, "hidden": args.hidden, "features": args.features, "dtype": args.dtype,
                     "op": args.op, "activation": args.activation, "batch_size": args.batch_size,
                     "output": args.output},
            "references": references, "heap": args.heap or HEAP_DEFAULT,
            "timing": {"lr": TIMING_LR, "grad_reduction": TIMING_REDUCTION, "engine": "mlpbench.measure.engine",
                       "rounds": "interleaved (Williams design), adaptive stop within max_time",
                       "settle": "before each sample, the A/A copy's too, until no other thread of the process "
                                 "runs (measure/quiet.py)",
                       "ratio": "median of paired per-round ratios, sign-test 99% interval widened by the "
                                "between-pass variance (measure/levels.py)",
                       "verdict": "interval wholly outside / inside the A/A bias band, else unresolved",
                       "noisy": "the A/A control (an independent copy of the baseline) is not 'same'"},
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}


def cmd_bench(args) -> int:
    with runlock.held() as lock_out:  # one run per --out: released when the command ends
        return _bench(args, lock_out)


def _bench(args, lock_out) -> int:
    if args.compare:
        A.reject_unused(args, SWEEP_ONLY, "with --compare")
        return compare_files(*args.compare, args.threshold, args.fail_on_regression)
    A.reject_unused(args, ("fail_on_regression", "threshold"), "without --compare OLD NEW")
    if args.scheduler is None:
        A.reject_unused(args, ("on",), "without --scheduler")
    else:  # a cluster's machines measure their cases apart: no sweep-wide follow-up budget to share
        A.reject_unused(args, ("budget",), "with --scheduler")
    if args.out is None:  # the default, checked here (a given --out is checked when the command line is read)
        from ..core.fileio import check_output_dir

        args.out = check_output_dir("results", "--out", ("results.json", "results.csv"))
    preset, case_list = bench_cases(args)
    specs = parse_specs(args.backends) if args.backends else default_specs(preset, args.output)
    twice = sorted({s.label for s in specs if [t.label for t in specs].count(s.label) > 1})
    if twice:
        raise ValueError(f"--backends {args.backends!r}: {', '.join(twice)} given twice; a backend is one row")
    baseline = REFERENCE if args.baseline is None else args.baseline.strip()
    if args.baseline is not None and baseline not in [s.label for s in specs]:
        raise ValueError(f"--baseline {args.baseline!r} must be one of the benchmarked backends "
                         f"{[s.label for s in specs]}")
    if not any(spec.label == baseline for spec in specs):
        specs.insert(0, BackendSpec(REFERENCE))  # the baseline, always measured in the same run
    repeat = args.repeat  # rounds at least; None: the engine's default
    min_time = preset.min_time if args.min_time is None else args.min_time
    max_time = preset.max_time if args.max_time is None else args.max_time
    if not ((repeat is None or repeat >= 1) and 0 <= min_time < float("inf") and 0 < max_time < float("inf")):
        raise ValueError("--repeat must be >= 1, --min-time >= 0 and --max-time > 0")
    ref_names = reference_names(args, preset)
    clash = sorted({s.label for s in specs} & set(ref_names))
    if clash:
        raise ValueError(f"--references {','.join(clash)}: also given as a backend; a row is one or the other")
    if args.dry_run:
        for c in case_list:
            print(c.label)
        extra = f" + references {', '.join(ref_names)} where they apply" if ref_names else ""
        print(f"{len(case_list)} cases x {len(specs)} backends ({', '.join(s.label for s in specs)}){extra}")
        return 0
    if args.scheduler is not None:  # Dask is imported there, and only there
        from .cluster import bench_on_cluster

        config = run_config(args, preset, case_list, [s.label for s in specs],
                            {n: refs.get_reference(n).what for n in ref_names}, repeat, min_time, max_time, baseline)
        lock_out(args.out, config["command"])  # one run per --out, on a cluster too
        return bench_on_cluster(args, case_list, specs, ref_names, config)
    backends, skipped = ready(specs)
    references, ref_skipped = refs.ready(ref_names)
    skipped += ref_skipped
    for s in skipped:
        print(f"skipping {s['backend']}: {s['reason']}", file=sys.stderr)
    if baseline not in [lb for lb, _ in backends]:
        raise ValueError(f"--baseline {baseline}: not available here, so nothing can be compared against it")
    config = run_config(args, preset, case_list, [lb for lb, _ in backends],
                        {name: ref.what for name, ref in references}, repeat, min_time, max_time, baseline)
    lock_out(args.out, config["command"])  # before any output: a second run on --out is one line
    if not args.quiet:
        print(f"measuring the machine's peak ({', '.join(sorted({c.dtype for c in case_list}))}) ...", file=sys.stderr)
    passes = preset.passes if args.passes is None else args.passes
    progress = Progress(len(case_list) * passes, enabled=None if not args.quiet else False)
    try:
        doc = run_sweep(case_list, backends, args.out, min_rounds=repeat, min_time=min_time, max_time=max_time,
                        baseline=baseline, config=config, progress=progress, skipped=skipped, passes=passes,
                        references=references, budget=args.budget, heap=args.heap or HEAP_DEFAULT)
    except KeyboardInterrupt as exc:
        doc = getattr(exc, "results_doc", None)  # this run's document, never what an older run left on disk
        if doc is None or not doc["points"]:
            print("interrupted before the first point", file=sys.stderr)
            raise
        print(results.points_table(doc["points"], color=results.use_color(sys.stdout)))
        print(f"\ninterrupted: {len(doc['points'])} finished points kept in {args.out}/results.json", file=sys.stderr)
        raise
    print(results.points_table(doc["points"], color=results.use_color(sys.stdout)))
    for s in doc["skipped"]:
        if "case" in s:
            print(f"skipped {s['case']}: {s['reason']}", file=sys.stderr)
    for e in doc["errors"]:
        print(f"error: {e['backend']} / {e['case']}: {e['error']}", file=sys.stderr)
    for line in summary.peak_lines(doc["peak"]) + summary.closing_notes(doc):
        print(line)
    print(f"wrote {args.out}/results.json, {args.out}/results.csv")
    if not args.no_report:
        write_report(args.out)
    if not args.no_plots and doc["points"]:
        try:
            from ..suite.plots import plot_bench

            for path in plot_bench(doc, args.out):
                print(f"wrote {path}")
        except ImportError as exc:
            print(f"no plots: {exc}", file=sys.stderr)
    return 1 if doc["errors"] else 0
