"""``mlpbench bench`` and ``mlpbench parity``: sweeps over the backends the registry has.

No backend is special-cased: backends come from the registry by name, with
optional constructor options in brackets (``numba[loop]`` is
``NumbaBackend(strategy="loop")`` for a backend class with ``strategies``;
``numba[threads=1,strategy=step]`` spells options out; ``numba[*]`` is one
variant per strategy). An unavailable backend is skipped with its reason; a
backend that raises is reported, never crashes the sweep.
"""

from __future__ import annotations

import datetime
import inspect
import re
import shutil
import sys
import time

from . import cases as C
from . import cliargs as A
from . import results as R

# ---------------------------------------------------------------- backend specs
_SPEC = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*(?:\[(.*)\])?\s*$")


def _split_specs(text):
    """Split ``"numpy,numba[threads=1,strategy=loop]"`` at the commas outside brackets."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "["
        depth -= ch == "]"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [s.strip() for s in out if s.strip()]


def _value(text):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False, "none": None}.get(text.lower(), text)


def parse_backends(text) -> list[tuple[str, str, dict]]:
    """``(label, registry name, options)`` per backend spec; ``name[*]`` expands to every strategy."""
    from .backends import backend_class, backend_names

    specs = []
    for item in _split_specs(text):
        m = _SPEC.match(item)
        if not m:
            raise ValueError(f"--backends: cannot read {item!r}; expected name or name[option=value,...]")
        name, inner = m.group(1), m.group(2)
        if name not in backend_names():
            raise ValueError(f"--backends: unknown backend {name!r}; known backends: {', '.join(backend_names())}")
        if inner is None:
            specs.append((name, name, {}))
            continue
        strategies = tuple(getattr(backend_class(name), "strategies", ()) or ())
        if inner.strip() == "*":
            if not strategies:
                raise ValueError(f"--backends: {name!r} has no strategies to expand with [*]")
            specs += [(f"{name}[{s}]", name, {"strategy": s}) for s in strategies]
            continue
        options = {}
        for part in (p.strip() for p in inner.split(",") if p.strip()):
            key, eq, val = part.partition("=")
            if not eq:
                if part not in strategies:
                    raise ValueError(f"--backends: {name}[{part}]: {part!r} is not a strategy of {name!r} "
                                     f"({list(strategies)}); write option=value")
                key, val = "strategy", part
            options[key.strip()] = _value(val.strip())
        specs.append((item.replace(" ", ""), name, options))
    return specs


def default_specs(preset) -> list[tuple[str, str, dict]]:
    from .backends import backend_names

    names = preset.backends if preset.backends is not None else backend_names()
    return [(n, n, {}) for n in names]


def make_backends(specs):
    """``([(label, backend)], [{"backend", "reason"}])``: ready backends and the skipped ones."""
    from .backends import Backend, backend_class, get_backend

    ready, skipped = [], []
    for label, name, options in specs:
        try:
            cls = backend_class(name)
            ok, reason = cls.availability()
        except Exception as exc:  # a broken backend module: unavailable here, report and go on
            ok, reason = False, f"{type(exc).__name__}: {exc}"
        if not ok:
            try:  # option names are checked even where the backend cannot run
                if cls.__init__ is Backend.__init__ and options:
                    raise TypeError(f"backend {name!r} takes no options; got {sorted(options)}")
                inspect.signature(cls).bind(**options)
            except TypeError as exc:
                raise ValueError(f"--backends {label}: invalid options: {exc}") from None
            skipped.append({"backend": label, "reason": reason})
            continue
        try:
            ready.append((label, get_backend(name, **options)))
        except (TypeError, ValueError) as exc:  # invalid options are the user's error, not "unavailable"
            raise ValueError(f"--backends {label}: invalid options: {exc}") from None
    return ready, skipped


# ---------------------------------------------------------------- progress
class Progress:
    """A one-line text progress bar on stderr; silent when disabled (not a TTY, or --quiet)."""

    def __init__(self, total, enabled=None, stream=None):
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total, self.done, self.t0 = max(total, 1), 0, time.perf_counter()
        self.width = max(40, shutil.get_terminal_size((100, 20)).columns - 1)

    def update(self, text=""):
        if not self.enabled:
            return
        frac = self.done / self.total
        elapsed = time.perf_counter() - self.t0
        eta = f" eta {elapsed / frac * (1 - frac):4.0f}s" if self.done else ""
        bar = "#" * int(24 * frac) + "." * (24 - int(24 * frac))
        line = f"\r[{bar}] {self.done}/{self.total} {elapsed:4.0f}s{eta}  {text}"
        self.stream.write(line[: self.width + 1].ljust(self.width + 1))
        self.stream.flush()

    def advance(self, text=""):
        self.done += 1
        self.update(text)

    def close(self):
        if self.enabled:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()


# ---------------------------------------------------------------- the sweep
def measure_peaks(backends, dtypes) -> dict:
    """The machine's peaks, once per run: the CPU's matmul GFLOP/s and copy GB/s; each other device's too."""
    from . import perf

    peak = {"cpu": {"gflops": {dt: perf.measure_peak(dt) for dt in dtypes}, "memcpy_GBps": perf.measure_memcpy()}}
    for label, be in backends:
        dev = be.device
        if dev == "cpu" or dev in peak:
            continue
        try:
            entry = {"gflops": {dt: perf.measure_device_peak(be, dt) for dt in dtypes}, "via": label}
            entry.update(perf.measure_transfer(be))
        except Exception as exc:
            entry = {"error": f"{type(exc).__name__}: {exc}"}
        peak[dev] = entry
    return peak


def _point(label, backend, case, timing, peak, baseline):
    from . import perf

    work = perf.flops(case.op, case.n_samples, case.layer_sizes, case.epochs)
    moved = perf.bytes_moved(case.op, case.n_samples, case.layer_sizes, case.dtype, case.epochs)
    gflops = work / timing.median / 1e9 if timing.median > 0 else None
    dev_peak = peak.get(backend.device, peak["cpu"]).get("gflops", {}).get(case.dtype)
    base = baseline.get(case.key())
    return {
        "backend": label, "op": case.op, "dtype": case.dtype, "n_samples": case.n_samples,
        "layer_sizes": list(case.layer_sizes), "activation": case.activation, "epochs": case.epochs,
        "case": case.label, "device": backend.device, **timing.to_dict(),
        "flops": work, "gflops": gflops,
        "pct_peak": 100 * gflops / dev_peak if gflops and dev_peak else None,
        "speedup_vs_numpy": base / timing.median if base and timing.median > 0 else None,
        "bytes": moved, "intensity": work / moved,
    }


#: pause between two timed points: a BLAS thread pool keeps its threads spinning for a while after
#: a call (OpenBLAS: about 0.1 s), which on a 2-core machine starved the next backend's threads
#: (measured: Numba's parallel step at N=1024, [32, 512, 1] took 1.4 ms alone and 5.8 ms right
#: after one 300x300 NumPy matmul; 1.4 ms with OPENBLAS_THREAD_TIMEOUT=4)
SETTLE_S = 0.2


def run_sweep(case_list, backends, out_dir, *, repeat, min_time, max_time, config, progress=None, peak=None,
              skipped=(), settle_s=SETTLE_S):
    """Time every case on every backend (NumPy first, as the speedup baseline); return the document.

    The document is written after every point. On ``KeyboardInterrupt`` its
    status becomes ``"interrupted"`` and the exception propagates.
    """
    from . import perf
    from .machine import machine_info

    from .memory import NotEnoughMemory, check_fits, fit_bytes

    backends = sorted(backends, key=lambda lb: lb[0] != "numpy")
    dtypes = sorted({c.dtype for c in case_list})
    # the file describes this run from its first moment (never an older run's points), and ends as
    # complete, interrupted (Ctrl-C, SIGTERM) or failed (an error outside a point)
    writer = R.ResultsWriter(out_dir, machine_info(backends), peak or {}, config, skipped)
    progress = progress or Progress(0, enabled=False)
    baseline, warm = {}, set()
    try:
        if peak is None:
            writer.doc["peak"] = peak = measure_peaks(backends, dtypes)
            writer.write()
        for case in case_list:
            try:  # a point that cannot fit in memory is skipped with the reason, before allocating
                check_fits(fit_bytes(case.n_samples, case.layer_sizes, case.dtype), "this point")
            except NotEnoughMemory as exc:
                writer.add_skipped_case(case.label, str(exc))
                progress.done += len(backends)
                continue
            X, y = C.case_data(case)
            for label, be in backends:
                progress.update(f"{label} {case.label}")
                time.sleep(settle_s)
                shape = (label, case.layer_sizes, case.n_samples, case.dtype, case.activation)
                try:
                    timing = perf.time_step(be, case.layer_sizes, case.n_samples, case.dtype, case.activation, case.op,
                                            repeat=repeat if case.dataset is None else min(repeat, 3),
                                            min_time=min_time, max_time=max_time, epochs=case.epochs, lr=case.lr,
                                            grad_reduction=case.grad_reduction, X=X, y=y, seed=case.seed,
                                            backend_warmup=shape not in warm)
                except Exception as exc:  # report and go on
                    writer.add_error(label, case.label, f"{type(exc).__name__}: {exc}")
                    progress.advance()
                    continue
                warm.add(shape)
                if label == "numpy":
                    baseline[case.key()] = timing.median
                writer.add_point(_point(label, be, case, timing, peak, baseline))
                progress.advance(f"{label} {case.label}")
    except KeyboardInterrupt as exc:
        writer.finish("interrupted")
        exc.results_doc = writer.doc
        raise
    except BaseException as exc:
        writer.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    finally:
        progress.close()
    writer.finish("complete")
    return writer.doc


# ---------------------------------------------------------------- CLI: bench
def _list(text, cast=str):
    return [cast(t) for t in str(text).replace(",", " ").split()]


def add_bench(sub):
    p = sub.add_parser("bench", help="time the backends over a preset's grid; JSON, CSV, PNG plots",
                       description="Time every available backend against NumPy over a sweep from mlpbench/cases.py.")
    p.add_argument("--preset", default="quick", help=f"{' | '.join(C.PRESETS)} (default quick)")
    p.add_argument("--backends", type=A.nonempty, help="comma list, e.g. numpy,numba[loop],cupy (default: the preset's)")
    p.add_argument("--batch", type=A.int_list(), help="batch sizes N, e.g. 1,64,1024")
    p.add_argument("--hidden", type=A.int_list(), help="hidden widths H, e.g. 4,64,512")
    p.add_argument("--features", type=A.int_list(), help="input features D, e.g. 32")
    p.add_argument("--dtype", type=A.choice_list(C.DTYPES), help="float32,float64")
    p.add_argument("--op", type=A.choice_list(C.OPS), help="forward | backward | step | train (comma list)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--no-lab", action="store_true", help="leave out the lab's 5000-epoch train case")
    p.add_argument("--repeat", type=A.int_range(1), help="timed repeats per point (default: the preset's)")
    p.add_argument("--min-time", type=A.real(0), help="seconds per repeat at least (calls are batched)")
    p.add_argument("--max-time", type=A.real(0, lo_open=True), help="seconds per point at most once 3 repeats are done")
    p.add_argument("--out", default=None, type=A.output_dir(("results.json", "results.csv")),
                   help="output folder (default results/)")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--dry-run", action="store_true", help="list the points and exit")
    p.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="compare two results.json and exit")
    p.add_argument("--threshold", type=A.real(0), default=None, help="regression threshold for --compare (default 0.10 = 10%%)")
    p.add_argument("--fail-on-regression", action="store_true", help="exit 1 when --compare finds a regression")
    p.set_defaults(func=cmd_bench)


def cmd_compare(args) -> int:
    old, new = R.load(args.compare[0]), R.load(args.compare[1])
    threshold = 0.10 if args.threshold is None else args.threshold
    if threshold < 0:
        raise ValueError(f"--threshold must be >= 0; got {threshold}")
    rows = R.compare(old, new, threshold)
    if not rows:
        print("no points in common")
        return 0
    print(R.compare_table(rows))
    if old["machine"].get("cpu") != new["machine"].get("cpu"):
        print(f"note: different machines ({old['machine'].get('cpu')} vs {new['machine'].get('cpu')})")
    bad = [r for r in rows if r["flag"] == "regression"]
    print(f"\n{len(rows)} points compared; {len(bad)} slower by more than {100 * threshold:.0f}%")
    return 1 if bad and args.fail_on_regression else 0


def bench_cases(args):
    from .validation import check_activation

    preset = C.get_preset(args.preset)
    check_activation(args.activation)
    ints = lambda v: None if v is None else _list(v, int)  # noqa: E731
    case_list = C.sweep(preset, batch=ints(args.batch), hidden=ints(args.hidden), features=ints(args.features),
                        dtypes=None if args.dtype is None else _list(args.dtype),
                        ops=None if args.op is None else _list(args.op), activation=args.activation,
                        labs=() if args.no_lab else None)
    return preset, case_list


def cmd_bench(args) -> int:
    if args.compare:
        A.reject_unused(args, ("backends", "batch", "hidden", "features", "dtype", "op", "repeat", "min_time",
                               "max_time", "no_lab", "dry_run"), "with --compare")
        return cmd_compare(args)
    A.reject_unused(args, ("fail_on_regression", "threshold"), "without --compare OLD NEW")
    if args.out is None:  # the default, checked here (a given --out is checked when the command line is read)
        from .fileio import check_output_dir

        args.out = check_output_dir("results", "--out", ("results.json", "results.csv"))
    preset, case_list = bench_cases(args)
    specs = parse_backends(args.backends) if args.backends else default_specs(preset)
    if not any(label == "numpy" for label, _, _ in specs):
        specs.insert(0, ("numpy", "numpy", {}))  # the speedup baseline, always measured in the same run
    repeat = preset.repeat if args.repeat is None else args.repeat
    min_time = preset.min_time if args.min_time is None else args.min_time
    max_time = preset.max_time if args.max_time is None else args.max_time
    if not (repeat >= 1 and 0 <= min_time < float("inf") and 0 < max_time < float("inf")):
        raise ValueError("--repeat must be >= 1, --min-time >= 0 and --max-time > 0")
    if args.dry_run:
        for c in case_list:
            print(c.label)
        print(f"{len(case_list)} cases x {len(specs)} backends ({', '.join(s[0] for s in specs)})")
        return 0
    backends, skipped = make_backends(specs)
    for s in skipped:
        print(f"skipping {s['backend']}: {s['reason']}", file=sys.stderr)
    config = {"preset": preset.name, "preset_definition": preset.describe(), "backends": [lb for lb, _ in backends], "cases": len(case_list),
              "repeat": repeat, "min_time": min_time, "max_time": max_time,
              "grid": {"batch": args.batch, "hidden": args.hidden, "features": args.features, "dtype": args.dtype,
                       "op": args.op, "activation": args.activation},
              "timing": {"lr": C.TIMING_LR, "grad_reduction": C.TIMING_REDUCTION, "statistic": "median, IQR",
                         "noisy": "IQR / median > 10%"},
              "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    if not args.quiet:
        print(f"measuring the machine's peak ({', '.join(sorted({c.dtype for c in case_list}))}) ...", file=sys.stderr)
    progress = Progress(len(case_list) * len(backends), enabled=None if not args.quiet else False)
    try:
        doc = run_sweep(case_list, backends, args.out, repeat=repeat, min_time=min_time, max_time=max_time,
                        config=config, progress=progress, skipped=skipped)
    except KeyboardInterrupt as exc:
        doc = getattr(exc, "results_doc", None)  # this run's document, never what an older run left on disk
        if doc is None or not doc["points"]:
            print("interrupted before the first point", file=sys.stderr)
            raise
        print(R.points_table(doc["points"]))
        print(f"\ninterrupted: {len(doc['points'])} finished points kept in {args.out}/results.json", file=sys.stderr)
        raise
    print(R.points_table(doc["points"]))
    for s in doc["skipped"]:
        if "case" in s:
            print(f"skipped {s['case']}: {s['reason']}", file=sys.stderr)
    for e in doc["errors"]:
        print(f"error: {e['backend']} / {e['case']}: {e['error']}", file=sys.stderr)
    _print_peak(doc["peak"])
    print(f"wrote {args.out}/results.json, {args.out}/results.csv")
    if not args.no_plots and doc["points"]:
        try:
            from .plots import plot_bench

            for path in plot_bench(doc, args.out):
                print(f"wrote {path}")
        except ImportError as exc:
            print(f"no plots: {exc}", file=sys.stderr)
    return 1 if doc["errors"] else 0


def _print_peak(peak):
    for dev, entry in peak.items():
        rates = ", ".join(f"{dt} {v:.1f} GFLOP/s" for dt, v in entry.get("gflops", {}).items())
        extra = "".join(f", {k} {v:.1f}" for k, v in entry.items() if k.endswith("GBps"))
        print(f"peak {dev}: {rates}{extra}" + (f" ({entry['error']})" if "error" in entry else ""))


# ---------------------------------------------------------------- CLI: parity
def add_parity(sub):
    p = sub.add_parser("parity", help="compare every available backend with the NumPy reference",
                       description="Forward, gradients, params after K steps and the labs' loss trajectories, "
                                   "against the NumPy reference; tolerances in mlpbench/parity.py.")
    p.add_argument("--backends", type=A.nonempty, help="comma list (default: every available backend)")
    p.add_argument("--preset", default="quick", help=f"{' | '.join(C.PRESETS)}: which parity cases (default quick)")
    p.add_argument("--dtype", default="float64,float32", type=A.choice_list(C.DTYPES), help="float64,float32 (default both)")
    p.add_argument("--no-lab", action="store_true", help="skip the AND / XOR lab trajectories")
    p.add_argument("--json", metavar="PATH", type=A.output_file(), help="write every compared tensor to this JSON file")
    p.add_argument("--all", action="store_true", help="print every tensor, not the worst per case")
    p.add_argument("--strict", action="store_true", help="a requested backend that is unavailable is a failure")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_parity)


def _parity_rows(results, show_all):
    if show_all:
        chosen = results
    else:  # the worst tensor of each (backend, case), and every failure
        worst = {}
        for r in results:
            key = (r.backend, r.case)
            ratio = r.error / r.tolerance
            if key not in worst or ratio > worst[key][0]:
                worst[key] = (ratio, r)
        keep = {id(r) for _, r in worst.values()}
        chosen = [r for r in results if id(r) in keep or not r.passed]
    return [[r.backend, r.case, r.tensor, R.fmt_num(r.error), R.fmt_num(r.ulps, 3), f"{r.tolerance:g}",
             "pass" if r.passed else "FAIL"] for r in chosen]


def cmd_parity(args) -> int:
    from . import parity
    from .backends import backend_names

    if args.strict and not args.backends:
        raise ValueError("--strict applies to the backends named with --backends; give them")
    preset = C.get_preset(args.preset)
    dtypes = _list(args.dtype)
    for dt in dtypes:
        if dt not in C.DTYPES:
            raise ValueError(f"--dtype must be among {list(C.DTYPES)}; got {dt!r}")
    specs = parse_backends(args.backends) if args.backends else [(n, n, {}) for n in backend_names()]
    backends, skipped = make_backends(specs)
    for s in skipped:
        print(f"skipping {s['backend']}: {s['reason']}", file=sys.stderr)
    labs = () if args.no_lab else tuple(C.LABS)
    cases = C.parity_cases(preset)
    progress = Progress(len(dtypes) * len(backends) * (len(cases) + len(labs)),
                        enabled=None if not args.quiet else False)
    try:
        results = parity.run_suite(backends, cases, dtypes, labs, on_result=lambda rows: progress.advance(
            f"{rows[0].backend} {rows[0].case}" if rows else ""))
    finally:
        progress.close()
    print(R.format_table(["backend", "case", "tensor", "error", "ulps", "tolerance", "result"],
                         _parity_rows(results, args.all)))
    bad = parity.first_failure(results)
    strict_fail = args.strict and skipped
    if args.json:
        from .machine import machine_info

        doc = {"schema": "mlpbench.parity/1", "passed": bad is None and not strict_fail,
               "first_failure": None if bad is None else bad.describe(), "tolerances": parity.TOLERANCES,
               "preset": preset.name, "dtypes": dtypes, "machine": machine_info(backends),
               "skipped": skipped, "results": [r.to_dict() for r in results]}
        R.atomic_write(args.json, R.to_json(doc))
        print(f"wrote {args.json}")
    n_fail = sum(not r.passed for r in results)
    tested = ", ".join(lb for lb, _ in backends) or "none"
    if bad is not None:
        print(f"\nFAIL: {n_fail} of {len(results)} tensors out of tolerance; first failing tensor: {bad.describe()}")
        print(f"parity FAILED: first failing tensor: {bad.describe()}", file=sys.stderr)
        return 1
    if strict_fail:
        print(f"\nFAIL (--strict): unavailable: {', '.join(s['backend'] for s in skipped)}")
        return 1
    if not results:
        print("\nno backend to check")
        return 0
    print(f"\nparity OK: {len(results)} tensors within tolerance ({tested}; {', '.join(dtypes)})")
    return 0


__all__ = ["Progress", "add_bench", "add_parity", "cmd_bench", "cmd_parity", "make_backends", "measure_peaks",
           "parse_backends", "run_sweep"]
