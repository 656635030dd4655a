"""NumPy's prepared step with and without freed memory kept (``mlpbench/measure/heap.py``), among torch's and jax's.

    python bench/heap_check.py [keep|system] [N] [H]

Prints the median, min and max of 20 NumPy steps and their page faults (getrusage). Run it once per mode: the
setting holds for the whole process. (A script, not an asv benchmark: nothing runs on import.)
"""
import resource
import sys
import time


def main(argv):
    import numpy as np

    from mlpbench.backends import availability, get_backend
    from mlpbench.measure import heap, quiet
    from mlpbench.suite.cases import Case
    from mlpbench.suite.subjects import op_subject

    mode = argv[0] if argv else "keep"
    n, h = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (16384, 512)
    print("heap:", heap.keep_freed() if mode == "keep" else "system")
    case = Case(op="step", n_samples=n, layer_sizes=(32, h, 1), dtype="float64")
    subjects = [op_subject("numpy", get_backend("numpy"), case)[0] for _ in range(2)]
    subjects += [op_subject(p, get_backend(p), case)[0] for p in ("torch", "jax") if availability(p)[0]]
    for s in subjects:
        s.fn()
    times, faults = [], []
    for i in range(20 * len(subjects) // 2):
        s = subjects[i % len(subjects)]
        quiet.wait(0.25)
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        s.fn()
        t, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        if i % len(subjects) < 2:
            times.append(t * 1e3)
            faults.append(r1 - r0)
    t = np.array(times)
    print(f"numpy step N={n} [32, {h}, 1] float64, {t.size} calls: median {np.median(t):.1f} ms, min {t.min():.1f}, "
          f"max {t.max():.1f}; page faults per call (median) {np.median(faults):.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
