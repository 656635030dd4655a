"""Per-epoch time of a lab on the GPU: the CuPy strategies side by side with torch CUDA.

    PYTHONPATH=. python scripts/gpu_lab_timing.py [--lab and] [--epochs 5000] [--repeats 5] [--json OUT.json]

Each runner trains the lab's 2-4-1 net (float64, lr 0.1, seed 42) for the
whole run after a warm-up fit (kernel compilation and context creation are
not timed); every timed fit is synchronised, params are converted outside
the timed region, and the median of ``--repeats`` fits is reported per epoch.
The targets of the one-launch trainer: >= 20x faster per epoch than the
graph-less loop (cupy "step") and >= 50x faster than torch CUDA.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time


def _runners():
    """``{label: backend}`` for what can run here, and ``{label: reason}`` for what cannot."""
    from mlpbench.backends import get_backend

    runners, skipped = {}, {}
    for strategy in ("persistent", "graph", "step"):
        try:
            runners[f"cupy-{strategy}"] = get_backend("cupy", strategy=strategy)
        except Exception as exc:
            skipped[f"cupy-{strategy}"] = f"{type(exc).__name__}: {exc}"
    try:
        runners["torch-cuda"] = get_backend("torch", device="cuda")
    except Exception as exc:
        skipped["torch-cuda"] = f"{type(exc).__name__}: {exc}"
    return runners, skipped


def _time_fit(be, params, X, y, epochs):
    p = be.params_from_numpy(params)
    bX, by = be.asarray(X), be.asarray(y)
    be.synchronize()
    t0 = time.perf_counter()
    hist = be.train(p, bX, by, lr=0.1, epochs=epochs)
    be.synchronize()
    return time.perf_counter() - t0, float(hist[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lab", default="and", choices=["and", "xor"])
    ap.add_argument("--epochs", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", metavar="PATH", help="write the results as JSON")
    args = ap.parse_args(argv)

    from mlpbench import datasets
    from mlpbench.params import init_params

    X, y = datasets.load(args.lab)
    params = init_params([2, 4, 1], 42, "float64")
    runners, skipped = _runners()
    results = {}
    for label, be in runners.items():
        try:
            _time_fit(be, params, X, y, 20)  # warm-up: compile, create contexts and handles
            runs = [_time_fit(be, params, X, y, args.epochs) for _ in range(args.repeats)]
        except Exception as exc:
            skipped[label] = f"{type(exc).__name__}: {exc}"
            continue
        times = [t for t, _ in runs]
        results[label] = {
            "us_per_epoch": statistics.median(times) / args.epochs * 1e6,
            "us_per_epoch_min": min(times) / args.epochs * 1e6,
            "fit_s_median": statistics.median(times),
            "final_loss": runs[-1][1],
            "device": getattr(be, "device", ""),
        }

    print(f"lab {args.lab}: 2-4-1 float64, {args.epochs} epochs, median of {args.repeats} fits")
    print(f"{'runner':<16} {'us/epoch':>10} {'min':>10} {'final loss':>12}")
    for label, r in results.items():
        print(f"{label:<16} {r['us_per_epoch']:>10.3f} {r['us_per_epoch_min']:>10.3f} {r['final_loss']:>12.6f}")
    for label, reason in skipped.items():
        print(f"{label:<16} skipped: {reason}")

    ratios = {}
    one = results.get("cupy-persistent")
    if one:
        for other, target in (("cupy-step", 20.0), ("cupy-graph", None), ("torch-cuda", 50.0)):
            if other in results:
                r = results[other]["us_per_epoch"] / one["us_per_epoch"]
                ratios[f"persistent_vs_{other}"] = {"speedup": r, "target": target,
                                                    "met": None if target is None else r >= target}
                print(f"persistent is {r:.1f}x faster per epoch than {other}"
                      + ("" if target is None else f" (target >= {target:g}x: {'met' if r >= target else 'NOT met'})"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"lab": args.lab, "epochs": args.epochs, "repeats": args.repeats, "results": results,
                       "ratios": ratios, "skipped": skipped}, f, indent=2)
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
