"""``mlpbench parity``: every available backend against the NumPy reference (the checks are ``suite/parity.py``)."""

from __future__ import annotations

import sys

from . import options as O
from ..suite import parity
from ..core.fileio import atomic_write
from ..suite.results import fmt_num, format_table, to_json
from ..backends import BackendSpec, backend_names, parse_specs, ready
from ..core.validation import DTYPES
from ..suite.cases import LABS, get_preset, parity_cases
from ..suite.machine import machine_info
from ..suite.progress import Progress
from ..core.validation import parse_list


def add_parity(sub):
    p = sub.add_parser("parity", help="compare every available backend with the NumPy reference",
                       description="Forward, gradients, params after K steps and the labs' loss trajectories, "
                                   "against the NumPy reference; tolerances in mlpbench/suite/parity.py.",
                       parents=[O.preset("quick", ": which parity cases"), O.backends("every available backend"),
                                O.dtypes("float64,float32", "both"),
                                O.no_lab("skip the AND / XOR lab trajectories"), O.quiet(),
                                O.json_file("write every compared tensor to this JSON file")])
    p.add_argument("--all", action="store_true", help="print every tensor, not the worst per case")
    p.add_argument("--strict", action="store_true", help="a requested backend that is unavailable is a failure")
    return p


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
    return [[r.backend, r.case, r.tensor, fmt_num(r.error), fmt_num(r.ulps, 3), f"{r.tolerance:g}",
             "pass" if r.passed else "FAIL"] for r in chosen]


def cmd_parity(args) -> int:
    if args.strict and not args.backends:
        raise ValueError("--strict applies to the backends named with --backends; give them")
    preset = get_preset(args.preset)
    dtypes = parse_list(args.dtype)
    for dt in dtypes:
        if dt not in DTYPES:
            raise ValueError(f"--dtype must be among {list(DTYPES)}; got {dt!r}")
    specs = parse_specs(args.backends) if args.backends else [BackendSpec(n) for n in backend_names()]
    backends, skipped = ready(specs)
    for s in skipped:
        print(f"skipping {s['backend']}: {s['reason']}", file=sys.stderr)
    labs = () if args.no_lab else tuple(LABS)
    cases = parity_cases(preset)
    for label, head in parity.unsupported(backends, cases):
        print(f"not checking output={head!r} cases on {label}: it does not declare that head", file=sys.stderr)
    jobs = sum(len(labs) + sum(c.output in be.outputs for c in cases) for _, be in backends)
    progress = Progress(len(dtypes) * jobs,
                        enabled=None if not args.quiet else False)
    try:
        results = parity.run_suite(backends, cases, dtypes, labs, on_result=lambda rows: progress.advance(
            f"{rows[0].backend} {rows[0].case}" if rows else ""))
    finally:
        progress.close()
    print(format_table(["backend", "case", "tensor", "error", "ulps", "tolerance", "result"],
                       _parity_rows(results, args.all)))
    bad = parity.first_failure(results)
    strict_fail = args.strict and skipped
    if args.json:
        doc = {"schema": "mlpbench.parity/1", "passed": bad is None and not strict_fail,
               "first_failure": None if bad is None else bad.describe(), "tolerances": parity.TOLERANCES,
               "preset": preset.name, "dtypes": dtypes, "machine": machine_info(backends),
               "skipped": skipped, "results": [r.to_dict() for r in results]}
        atomic_write(args.json, to_json(doc))
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
