"""``mlpbench tune``: fill, show or clear the ``auto`` cache, and check the choice against a full measurement."""

from __future__ import annotations

import json
import os
import tempfile
import time

import numpy as np

from . import auto
from . import cliargs as A
from .cases import DTYPES, sweep
from .fileio import atomic_write
from .validation import check_activation, parse_list

#: budget per shape when tuning ahead of time (imports and JIT of every backend included)
TUNE_BUDGET_S = 10.0
#: pause before each measured candidate when tuning or checking (a spinning thread pool goes idle)
SETTLE_S = 0.2


def add_tune(sub):
    p = sub.add_parser("tune", help="fill the backend='auto' cache for a preset's shapes, or show / clear / check it")
    p.add_argument("--preset", default="standard", help="quick | standard | full | gpu (default standard)")
    p.add_argument("--dtype", default=None, type=A.choice_list(DTYPES), help="float64,float32 (default: the preset's)")
    p.add_argument("--activation", default="relu")
    p.add_argument("--budget", type=A.real(0, lo_open=True), default=None, help=f"seconds of calibration per shape (default {TUNE_BUDGET_S:g})")
    p.add_argument("--show", action="store_true", help="print the cached decisions")
    p.add_argument("--clear", action="store_true", help="delete the cache")
    p.add_argument("--check", action="store_true",
                   help="measure every candidate and the auto choice at each point, in one run; report agreement")
    p.add_argument("--json", metavar="PATH", type=A.output_file(), help="with --check: write the per-point results here")
    p.set_defaults(func=cmd_tune)


def _shapes(args):
    dtypes = None if args.dtype is None else parse_list(args.dtype)
    seen, out = set(), []
    for case in sweep(args.preset, dtypes=dtypes, ops=["step"], activation=args.activation):
        key = (case.n_samples, tuple(case.layer_sizes), case.dtype)
        if key not in seen:
            seen.add(key)
            out.append(key)
    lab = (4, (2, 4, 1), "float64")
    return [lab] + [s for s in out if s != lab]


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
        cache.clear()
        print(f"cleared {cache.path}")
        return 0
    if args.show:
        return _show(cache)
    if args.check:
        return _check(args)
    shapes = _shapes(args)
    for i, (n, sizes, dtype) in enumerate(shapes, 1):
        d = auto.choose(n, sizes, dtype, args.activation, budget_s=budget, refresh=True, settle_s=SETTLE_S)
        print(f"[{i}/{len(shapes)}] {dtype} N={n} {list(sizes)}: {d.reason}  ({d.cost_s:.2f} s)", flush=True)
    print(f"cache: {cache.path}")
    return 0


def _show(cache) -> int:
    entries = cache.entries()
    print(f"cache: {cache.path} ({len(entries)} decisions)")
    for key, entry in sorted(entries.items()):
        d = auto.Decision.from_json(entry)
        _, dtype, activation, nb, shape = key.rsplit("|", 4)
        order = "  >  ".join(f"{c.label} {d.seconds_per_epoch[c.label] * 1e6:.3g} us" for c in d.ranking)
        print(f"{dtype} {activation} {nb} {shape}: {order}")
        for label, why in sorted(d.rejected.items()):
            print(f"    not chosen: {label}: {why}")
    return 0


def _check(args) -> int:
    """Every candidate timed per epoch at every point, next to the auto choice made from a cold cache."""
    shapes = _shapes(args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cache = auto.Cache(os.path.join(tmp, "auto.json"))
        found, rejected = auto.candidates()
        backends = {c.label: (c, c.make()) for c in found}
        for name, why in rejected.items():
            print(f"skipped {name}: {why}")
        for i, (n, sizes, dtype) in enumerate(shapes, 1):
            times = {}
            for label, (cand, be) in backends.items():
                if not auto.applies(cand, n, sizes, dtype):
                    continue
                time.sleep(SETTLE_S)
                times[label] = auto._time_per_epoch(be, list(sizes), n, dtype, args.activation,
                                                    time.perf_counter() + 2.0, samples=5)
            time.sleep(SETTLE_S)
            t0 = time.perf_counter()
            d = auto.choose(n, list(sizes), dtype, args.activation, cache=cache, budget_s=auto.DEFAULT_BUDGET_S)
            first = time.perf_counter() - t0
            t0 = time.perf_counter()
            auto.choose(n, list(sizes), dtype, args.activation, cache=auto.Cache(cache.path))  # from disk
            disk = time.perf_counter() - t0
            reps = 200
            t0 = time.perf_counter()
            for _ in range(reps):
                auto.choose(n, list(sizes), dtype, args.activation, cache=cache)  # the cache's in-memory copy
            memo = (time.perf_counter() - t0) / reps
            fastest = min(times, key=times.get)
            chosen = d.ranking[0].label
            ratio = times.get(chosen, float("inf")) / times[fastest]
            rows.append({"n_samples": n, "layer_sizes": list(sizes), "dtype": dtype, "times_s": times,
                         "fastest": fastest, "auto": chosen, "ratio_to_fastest": ratio,
                         "first_decision_s": first, "cached_decision_disk_s": disk, "cached_decision_s": memo})
            print(f"[{i}/{len(shapes)}] {dtype} N={n} {list(sizes)}: fastest {fastest}, auto {chosen} "
                  f"({ratio:.2f}x); decision first {first * 1e3:.0f} ms, cached {disk * 1e3:.2f} ms disk / "
                  f"{memo * 1e6:.1f} us memo", flush=True)
    ratios = np.array([r["ratio_to_fastest"] for r in rows])
    within = float(np.mean(ratios <= 1.10))
    summary = {"points": len(rows), "within_10pct": within, "worst_ratio": float(ratios.max()),
               "max_first_decision_s": max(r["first_decision_s"] for r in rows),
               "max_cached_decision_disk_s": max(r["cached_decision_disk_s"] for r in rows),
               "max_cached_decision_s": max(r["cached_decision_s"] for r in rows)}
    print(f"\nauto within 10% of the fastest on {within:.0%} of {len(rows)} points; worst {ratios.max():.2f}x; "
          f"first decision <= {summary['max_first_decision_s']:.3f} s; cached <= "
          f"{summary['max_cached_decision_disk_s'] * 1e3:.2f} ms (disk), {summary['max_cached_decision_s'] * 1e6:.1f} us (memo)")
    if args.json:
        atomic_write(args.json, json.dumps({"summary": summary, "machine": auto.fingerprint(), "points": rows}, indent=1))
    ok = within >= 0.9 and ratios.max() <= 1.5
    return 0 if ok else 1
