"""Does the previous subject's thread pool slow the next one? Each backend right after another, three ways.

    python bench/settle_check.py N H [dtype]

For the step at N x [32, H, 1]: how long ``measure.quiet.wait`` waits after each backend (its pool's spin), then
each backend right after another with no pause, a 3 ms pause and the wait, as a multiple of its time alone
(``mlpbench/measure/quiet.py``). Needs torch and jax besides numpy and numba. (A script, not an asv benchmark:
nothing runs on import.)
"""
import sys
import time

NAMES = ("numpy", "numba", "torch", "jax")


def main(argv):
    import numpy as np

    from mlpbench.backends import get_backend
    from mlpbench.measure import engine as M
    from mlpbench.measure import quiet
    from mlpbench.suite.cases import Case
    from mlpbench.suite.subjects import op_subject

    n, h = int(argv[0]), int(argv[1])
    dtype = argv[2] if len(argv) > 2 else "float64"
    case = Case(op="step", n_samples=n, layer_sizes=(32, h, 1), dtype=dtype)
    subjects = {}
    for name in NAMES:
        s, _ = op_subject(name, get_backend(name), case)
        for _ in range(3):
            s.fn()
        subjects[name] = s

    def rest():
        return quiet.wait(0.25)[0]

    def one(s, k):
        t0 = time.perf_counter()
        for _ in range(k):
            out = s.fn()
        M.settle(s, out)
        return (time.perf_counter() - t0) / k

    calls = {name: max(1, int(0.005 / one(s, 1))) for name, s in subjects.items()}
    print("calls per sample", calls)
    alone = {}
    for name, s in subjects.items():
        runs = []
        for _ in range(9):
            rest()
            runs.append(one(s, calls[name]))
        alone[name] = float(np.median(runs))
    print("alone (after the wait), ms", {name: round(v * 1e3, 3) for name, v in alone.items()})
    for prev, s in subjects.items():
        waits = []
        for _ in range(5):
            one(s, calls[prev])
            waits.append(rest())
        print(f"wait after {prev}: {np.median(waits) * 1e3:.1f} ms")
    for prev in NAMES:
        for target in NAMES:
            if target == prev:
                continue
            got = {}
            for mode in ("none", "3ms", "quiet"):
                runs = []
                for _ in range(7):
                    rest()
                    one(subjects[prev], calls[prev])
                    if mode == "3ms":
                        time.sleep(0.003)
                    elif mode == "quiet":
                        rest()
                    runs.append(one(subjects[target], calls[target]))
                got[mode] = np.median(runs) / alone[target]
            print(f"{target:6} after {prev:6}: " + "  ".join(f"{m} {x:.2f}x" for m, x in got.items()))


if __name__ == "__main__":
    main(sys.argv[1:])
