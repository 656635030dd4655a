"""``mlpbench tune``: fill, show or clear the ``auto`` cache, and check the choice against a full measurement."""

from __future__ import annotations

import json
import os
import tempfile
import time
import warnings

import numpy as np

from ..auto import choose as auto, kernel_tuning
from ..backends import availability
from ..measure import engine as measure, stats
from . import args as A
from . import options as O
from ..auto.cache import key_fields
from ..suite.cases import get_preset, sweep
from ..core.fileio import atomic_write
from ..core import tuned
from ..core.validation import DTYPES, check_activation, parse_list

#: seconds of timing rounds per candidate and shape when tuning ahead of time (first calls not counted)
TUNE_BUDGET_S = 1.0
#: pause before each sample when tuning or checking, fixed (not scaled to the sample): a spinning thread pool
#: goes idle. Twice the sweep's ``SWEEP_SETTLE_S``: tuning runs once, ahead of any fit, and its measurements are
#: cached, so it pays the pause that removed all of the previous subject's cost in the sweep's measurement
#: (0.2 s: 64 ms, alone 65 ms; 0.1 s: 70 ms)
TUNE_SETTLE_S = 0.2


def add_tune(sub):
    p = sub.add_parser("tune", help="measure numba's mini-batch threading thresholds here and fill the backend='auto' cache for a preset's shapes, or show / clear / check them",
                       parents=[O.preset("standard"), O.dtypes(), O.activation(),
                                O.json_file("with --check: write the per-point results here")])
    p.add_argument("--budget", type=A.real(0, lo_open=True), default=None, help=f"seconds of timing per candidate and shape, > 0 (default {TUNE_BUDGET_S:g}; first calls apart)")
    p.add_argument("--show", action="store_true", help="print the cached decisions")
    p.add_argument("--clear", action="store_true", help="delete the cache")
    p.add_argument("--check", action="store_true",
                   help="measure every candidate and the auto choice at each point, in one run; report agreement")
    return p


def _shapes(args):
    """``(N, layer sizes, dtype, output, batch size)`` of the preset's fits: its ``step`` points, or its
    ``epoch`` points (mini-batch fits) for a preset of epochs; the lab's first."""
    dtypes = None if args.dtype is None else parse_list(args.dtype)
    op = "epoch" if "epoch" in get_preset(args.preset).ops else "step"
    seen, out = set(), []
    for case in sweep(args.preset, dtypes=dtypes, ops=[op], activation=args.activation):
        key = (case.n_samples, tuple(case.layer_sizes), case.dtype, case.output, case.batch_size)
        if key not in seen:
            seen.add(key)
            out.append(key)
    lab = (4, (2, 4, 1), "float64", "sigmoid", None)
    return [lab] + [s for s in out if s != lab]


def _fit(n, sizes, dtype, output, batch) -> str:
    return f"{dtype} N={n} {list(sizes)}" + ("" if batch is None else f" B={batch}") + \
        ("" if output == "sigmoid" else f" {output}")


def cmd_tune(args) -> int:
    if args.json and not args.check:
        raise ValueError("--json applies only with --check")
    if args.show + args.clear + args.check > 1:
        raise ValueError("--show, --clear and --check are exclusive: give one")
    if args.show or args.clear:
        A.reject_unused(args, ("dtype", "budget"), "with --show or --clear")
    if args.check:
        A.reject_unused(args, ("budget",), "with --check (it times every candidate in full)")
    budget = TUNE_BUDGET_S if args.budget is None else args.budget
    check_activation(args.activation)
    cache = auto.Cache()
    if args.clear:
        return _clear(cache)
    if args.show:
        return _show(cache)
    if args.check:
        return _check(args)
    shapes = _shapes(args)
    cache.check_usable()  # before timing anything: a tune that cannot store what it times is pointless
    _tune_kernels(args)
    for i, (n, sizes, dtype, output, batch) in enumerate(shapes, 1):
        d = auto.choose(n, sizes, dtype, args.activation, budget_s=budget, refresh=True, settle_s=TUNE_SETTLE_S,
                        output=output, batch_size=batch)
        print(f"[{i}/{len(shapes)}] {_fit(n, sizes, dtype, output, batch)}: {d.reason}  ({d.cost_s:.2f} s)",
              flush=True)
    print(f"cache: {cache.path}")
    return 0


def _tune_kernels(args) -> None:
    """numba's mini-batch threading thresholds, measured here and stored in ``tuned.json`` (``auto.kernel_tuning``)."""
    t0 = time.perf_counter()
    dtypes = DTYPES if args.dtype is None else parse_list(args.dtype)
    value, why = kernel_tuning.calibrate_batches(dtypes=dtypes)
    if value is None:
        print(f"numba mini-batch threading: not measured: {why}", flush=True)
        return
    if why:
        print(f"warning: numba mini-batch threading: {why}", flush=True)
    where = kernel_tuning.store(value)
    for dt in dtypes:
        print(f"numba mini-batch threading, {dt}: {kernel_tuning.describe(np.dtype(dt).itemsize)}", flush=True)
    print(f"    measured in {time.perf_counter() - t0:.1f} s on {value['threads']} threads; stored in {where}",
          flush=True)


def _clear(cache) -> int:
    try:
        cache.clear()
    except OSError as exc:
        raise OSError(f"cannot clear the auto cache {cache.path}: {exc.strerror or exc}") from None
    print(f"cleared {cache.path}")
    try:
        if tuned.clear():
            print(f"cleared {tuned.path()}")
    except OSError as exc:
        raise OSError(f"cannot clear the tuned kernel parameters {tuned.path()}: {exc.strerror or exc}") from None
    return 0


def _show(cache) -> int:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        entries = cache.entries()
        problems = cache.problems()
        threading = [f"numba mini-batch threading, {dt}: {kernel_tuning.describe(np.dtype(dt).itemsize)}"
                     for dt in DTYPES] if availability("numba")[0] else []
    if cache.unusable is not None:
        raise ValueError(f"the auto cache {cache.path} cannot be read: {cache.unusable}")
    for w in caught:  # a corrupt file or one from another version: said in one line, then shown as empty
        print(f"warning: {w.message}")
    print(f"cache: {cache.path} ({len(entries)} entries)")
    for line in threading:
        print(line)
    for key, entry in sorted({**entries, **problems}.items()):
        if key in problems:
            print(f"invalid entry (dropped when read): {key}: {problems[key]}")
            continue
        d = auto.Decision.from_json(entry)
        f = key_fields(key)
        order = "  >  ".join(f"{c.label} {d.seconds_per_epoch[c.label] * 1e6:.3g} us/epoch "
                             f"(first call {d.first_call_s.get(c.label, 0.0):.2g} s)" for c in d.ranking)
        only = "" if f["only"] is None else f" (only {f['only']})"
        print(f"{f['dtype']} {f['activation']} {f['n']} {f['shape']} {f['output']} {f['batch']}{only}: {order}")
        for label, why in sorted({**d.rejected, **d.untimed}.items()):
            print(f"    not chosen: {label}: {why}")
    return 0


def _check(args) -> int:
    """Every candidate timed per epoch by the engine at every point, next to the auto choice from a cold cache."""
    shapes = _shapes(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = auto.Cache(os.path.join(tmp, "auto.json"))
        found, rejected = auto.candidates()
        backends = {c.label: (c, c.make()) for c in found}
        for name, why in rejected.items():
            print(f"skipped {name}: {why}")
        for i, (n, sizes, dtype, output, batch) in enumerate(shapes, 1):
            n_cal = auto.calibration_rows(n, batch)
            k = auto.epochs_per_call(n_cal, list(sizes))
            subjects = []
            for label, (cand, be) in backends.items():
                if auto.applies(cand, n, sizes, dtype) and output in be.outputs:
                    handle = auto._handle(be, list(sizes), n_cal, dtype, args.activation, output, batch)
                    subjects.append(auto._subject(cand, be, handle, k))
            m = measure.measure(subjects, control=False, min_time=0.01, confidence=stats.CONFIDENCE, max_time=2.0,
                                settle_s=TUNE_SETTLE_S, on_error="drop")
            times = {lab: r.median / k for lab, r in m.results.items()}
            t0 = time.perf_counter()
            d = auto.choose(n, list(sizes), dtype, args.activation, cache=cache, budget_s=auto.DEFAULT_BUDGET_S,
                            output=output, batch_size=batch)
            first = time.perf_counter() - t0
            fastest = min(times, key=times.get)
            chosen = d.ranking[0].label
            ratio = times.get(chosen, float("inf")) / times[fastest]
            same = ratio <= 1 + m.margin
            rows.append({"n_samples": n, "layer_sizes": list(sizes), "dtype": dtype, "output": output,
                         "batch_size": batch, "times_s": times,
                         "fastest": fastest, "auto": chosen, "ratio_to_fastest": ratio, "same": same,
                         "first_decision_s": first, "timing_budget_s": auto.DEFAULT_BUDGET_S * len(d.seconds_per_epoch),
                         "first_calls_s": dict(d.first_call_s)})
            print(f"[{i}/{len(shapes)}] {_fit(n, sizes, dtype, output, batch)}: fastest {fastest}, auto {chosen} "
                  f"({ratio:.2f}x{', same' if same else ''}); first decision {first:.2f} s", flush=True)
    ratios = np.array([r["ratio_to_fastest"] for r in rows])
    ok_points = np.array([r["same"] or r["ratio_to_fastest"] <= 1.10 for r in rows])
    within = float(np.mean(ok_points))
    summary = {"points": len(rows), "within_10pct": within, "worst_ratio": float(ratios.max()),
               "max_first_decision_s": max(r["first_decision_s"] for r in rows)}
    print(f"\nauto within 10% of the fastest (or same) on {within:.0%} of {len(rows)} points; worst "
          f"{ratios.max():.2f}x; first decision <= {summary['max_first_decision_s']:.3f} s (first calls included)")
    if args.json:
        atomic_write(args.json, json.dumps({"summary": summary, "machine": auto.fingerprint(), "points": rows}, indent=1))
    return 0 if within >= 0.95 and ratios.max() <= 1.25 else 1
