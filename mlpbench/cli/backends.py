"""``mlpbench backends``: the registered backends, whether each is available here (or why not), its version,
device and threads; ``--warmup`` times each one's first call."""

from __future__ import annotations

from ..suite.results import format_table


def add_backends(sub):
    p = sub.add_parser("backends", help="list the backends: available, why not, version, device, threads")
    p.add_argument("--warmup", action="store_true",
                   help="also time each available backend's first call (JIT compile or cache load, GPU context) "
                        "on the lab's [2, 4, 1], float64 and float32")
    return p


def cmd_backends(args) -> int:
    from ..backends import available_backends, get_backend

    rows = available_backends()
    if args.warmup:
        for r in rows:
            if not r["available"]:
                continue
            try:
                be = get_backend(r["name"])
                secs = [be.warmup([2, 4, 1], 4, dt) for dt in ("float64", "float32")]
                r["notes"] = f"first call {secs[0]:.3g} s (float64), {secs[1]:.3g} s (float32)"
            except Exception as exc:  # report, never crash the listing
                r["notes"] = f"warm-up failed: {type(exc).__name__}: {exc}"
    header = ["name", "available", "version", "device", "threads", "reason / notes"]
    table = [[r["name"], "yes" if r["available"] else "no", r["version"] or "-", r["device"] or "-",
              "-" if r["threads"] is None else str(r["threads"]), r["reason"] or r.get("notes", "")] for r in rows]
    print(format_table(header, table))
    return 0
