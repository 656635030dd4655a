"""Does the previous subject's thread pool slow the next one? Each backend right after another, three ways.

    python bench/settle_check.py N H [dtype]

For the step at N x [32, H, 1]: how long ``measure.quiet.wait`` waits after each backend (its pool's spin), then
each backend right after another with no pause, a 3 ms pause and the wait, as a multiple of its time alone
(``mlpbench/measure/quiet.py``). Needs torch and jax besides numpy and numba.
"""
import sys, time
import numpy as np
from mlpbench.backends import get_backend
from mlpbench.suite.cases import Case
from mlpbench.suite.subjects import op_subject
from mlpbench.measure import engine as M
from mlpbench.measure import quiet


def cpu_quiet():
    return quiet.wait(0.25)[0]


N, H, dt = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "float64"
case = Case(op="step", n_samples=N, layer_sizes=(32, H, 1), dtype=dt)
subs = {}
for name in ("numpy", "numba", "torch", "jax"):
    s, _ = op_subject(name, get_backend(name), case)
    for _ in range(3): s.fn()
    subs[name] = s

def one(s, k):
    t0 = time.perf_counter()
    for _ in range(k): out = s.fn()
    M.settle(s, out)
    return (time.perf_counter() - t0) / k

k = {n: max(1, int(0.005 / one(s, 1))) for n, s in subs.items()}
print("calls/sample", k)
alone = {n: np.median([ (cpu_quiet(), one(s, k[n]))[1] for _ in range(9)]) for n, s in subs.items()}
print("alone (quiesced) ms", {n: round(v * 1e3, 3) for n, v in alone.items()})
for prev in subs:
    w = [ (one(subs[prev], k[prev]), cpu_quiet())[1] for _ in range(5)]
    print(f"quiesce after {prev}: {np.median(w)*1e3:.1f} ms")
for prev in ("numpy", "numba", "jax", "torch"):
    for tgt in ("torch", "numpy", "numba", "jax"):
        if tgt == prev: continue
        r = {}
        for mode in ("none", "3ms", "quiet"):
            v = []
            for _ in range(7):
                cpu_quiet(); one(subs[prev], k[prev])
                if mode == "3ms": time.sleep(0.003)
                elif mode == "quiet": cpu_quiet()
                v.append(one(subs[tgt], k[tgt]))
            r[mode] = np.median(v) / alone[tgt]
        print(f"{tgt:6} after {prev:6}: " + "  ".join(f"{m} {x:.2f}x" for m, x in r.items()))
