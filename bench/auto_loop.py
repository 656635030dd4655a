"""backend="auto" over a loop of fits (issue 20): the figures, each from fresh processes, printed.

    python bench/auto_loop.py [--fits 40 200] [--repeat 3] [--epochs 2000]

Per repeat, side by side (fresh interpreters, an empty ``MLPBENCH_CACHE_DIR``
per repeat; Numba's own disk cache is whatever it is: warm it first with one
``backend="numba"`` fit):

- loop: process A fits the lab once with ``backend="auto"``; process B, same
  cache, fits it ``--fits`` times (seeds 0..n-1) with ``backend="auto"``; the
  same fits on ``numpy`` and on ``numba`` in their own processes (first call
  included). Ratio: B / the faster of the two.
- short: one 200-epoch lab fit in a fresh process with an empty cache, on
  ``auto`` and on ``numpy``; the bound is max(3x numpy, numpy + 0.25 s).
- overhead: per-call median of a decided ``auto`` fit against the chosen
  backend's own fit, interleaved in one process.

Times are of the ``fit`` calls only (interpreter start and ``import mlpbench`` apart). Prints medians over repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
from mlpbench import MLP, datasets
X, y = datasets.load("and")
backend, n, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
times, chosen = [], []
for seed in range(n):
    model = MLP([2, 4, 1], seed=seed)
    t0 = time.perf_counter()
    model.fit(X, y, lr=0.05, epochs=epochs, backend=backend)
    times.append(time.perf_counter() - t0)
    chosen.append(model.backend_)
print(json.dumps({"total": sum(times), "first": times[0], "chosen": chosen, "reason": model.backend_reason_}))
"""

OVERHEAD = r"""
import json, statistics, sys, time
from mlpbench import MLP, datasets
X, y = datasets.load("and")
epochs, rounds = int(sys.argv[1]), int(sys.argv[2])
model = MLP([2, 4, 1])
model.fit(X, y, lr=0.05, epochs=epochs, backend="auto")  # decides (pays what the rule says)
for _ in range(200):  # the rule settles; every first call it wants is paid
    model.fit(X, y, lr=0.05, epochs=epochs, backend="auto")
label = model.backend_
name = label.split("[")[0]
auto_t, own_t = [], []
for _ in range(rounds):
    for backend, out in (("auto", auto_t), (name, own_t)):
        t0 = time.perf_counter()
        model.fit(X, y, lr=0.05, epochs=epochs, backend=backend)
        out.append(time.perf_counter() - t0)
print(json.dumps({"chosen": label, "own": name, "auto_us": statistics.median(auto_t) * 1e6,
                  "own_us": statistics.median(own_t) * 1e6}))
"""


def run(code, *args, cache):
    env = dict(os.environ, MLPBENCH_CACHE_DIR=cache)
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def one_repeat(fits, epochs):
    row = {}
    for n in fits:
        with tempfile.TemporaryDirectory() as cache:
            run(CHILD, "auto", 1, epochs, cache=cache)  # process A
            b = run(CHILD, "auto", n, epochs, cache=cache)  # process B
        with tempfile.TemporaryDirectory() as cache:
            np_ = run(CHILD, "numpy", n, epochs, cache=cache)
            nb = run(CHILD, "numba", n, epochs, cache=cache)
        best = min(np_["total"], nb["total"])
        row[f"loop{n}"] = {"auto": b["total"], "numpy": np_["total"], "numba": nb["total"], "ratio": b["total"] / best,
                           "picks": {k: b["chosen"].count(k) for k in sorted(set(b["chosen"]))}, "reason": b["reason"]}
    with tempfile.TemporaryDirectory() as cache:
        a = run(CHILD, "auto", 1, 200, cache=cache)
    with tempfile.TemporaryDirectory() as cache:
        p = run(CHILD, "numpy", 1, 200, cache=cache)
    row["short"] = {"auto": a["total"], "numpy": p["total"], "bound": max(3 * p["total"], p["total"] + 0.25)}
    with tempfile.TemporaryDirectory() as cache:
        long_ = run(CHILD, "auto", 1, 20000, cache=cache)
    row["long"] = {"chosen": long_["chosen"][0], "seconds": long_["total"]}
    with tempfile.TemporaryDirectory() as cache:
        row["overhead"] = run(OVERHEAD, epochs, 300, cache=cache)
    return row


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fits", type=int, nargs="+", default=[40, 200])
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--epochs", type=int, default=2000)
    args = p.parse_args(argv)
    rows = []
    for i in range(args.repeat):
        rows.append(one_repeat(args.fits, args.epochs))
        print(f"repeat {i + 1}: " + json.dumps(rows[-1]), flush=True)

    def med(path):
        vals = []
        for r in rows:
            v = r
            for k in path:
                v = v[k]
            vals.append(v)
        return statistics.median(vals)

    print(f"\nmedians of {len(rows)} repeats (fit calls only, seconds):")
    for n in args.fits:
        k = f"loop{n}"
        print(f"  {n} fits: auto {med((k, 'auto')):.3f}  numpy {med((k, 'numpy')):.3f}  numba {med((k, 'numba')):.3f}"
              f"  auto / best {med((k, 'ratio')):.2f}x  (bound {'2' if n <= 40 else '1.3'}x)")
    print(f"  one 200-epoch fit, empty cache: auto {med(('short', 'auto')):.3f}  numpy {med(('short', 'numpy')):.3f}"
          f"  bound {med(('short', 'bound')):.3f}")
    print(f"  decided auto per call: {med(('overhead', 'auto_us')):.1f} us  vs  its backend "
          f"{med(('overhead', 'own_us')):.1f} us  (+{med(('overhead', 'auto_us')) - med(('overhead', 'own_us')):.1f} us)")
    print("  a 20000-epoch fit in a fresh process picks: " + ", ".join(r["long"]["chosen"] for r in rows))


if __name__ == "__main__":
    main()
