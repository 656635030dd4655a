"""The sweep: time every case on every ready backend, the reference first, into one results document.

Backends come in as ``(label, backend)`` pairs from ``backends.ready``; no
backend is special-cased except the registry's ``REFERENCE``, the speedup
baseline. A backend that raises is reported, never crashes the sweep.
"""

from __future__ import annotations

import time

from . import perf
from .backends import REFERENCE
from .cases import case_data
from .machine import machine_info
from .memory import NotEnoughMemory, check_fits, fit_bytes
from .progress import Progress
from .results import ResultsWriter


def measure_peaks(backends, dtypes) -> dict:
    """The machine's peaks, once per run: the CPU's matmul GFLOP/s and copy GB/s; each other device's too."""
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
    backends = sorted(backends, key=lambda lb: lb[0] != REFERENCE)
    dtypes = sorted({c.dtype for c in case_list})
    # the file describes this run from its first moment (never an older run's points), and ends as
    # complete, interrupted (Ctrl-C, SIGTERM) or failed (an error outside a point)
    writer = ResultsWriter(out_dir, machine_info(backends), peak or {}, config, skipped)
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
            X, y = case_data(case)
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
                if label == REFERENCE:
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
