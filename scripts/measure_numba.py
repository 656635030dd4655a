"""Measure the Numba backend side by side with NumPy, JAX and PyTorch, in one process.

    python scripts/measure_numba.py            # everything (a few minutes on 2 cores)
    python scripts/measure_numba.py --quick    # fewer repeats, no N=16384 rows

Prints:

1. this machine's matmul peak (large ``np.dot``, float64 and float32);
2. the lab workload (AND, [2, 4, 1], 5000 epochs, float64, lr 0.1), us per
   epoch: NumPy backend, Numba ``loop`` and ``step``, JAX (``jit`` +
   ``lax.fori_loop``, manual gradients) and PyTorch CPU (manual gradients);
3. the step grid: D=32, layer sizes [32, H, 1], N in {1, 64, 1024, 16384},
   H in {4, 64, 512, 2048}, float64 and float32: NumPy vs Numba (auto), time
   per epoch, GFLOP/s (``mlpbench.perf.flops_step``) and % of the measured peak;
4. the loop / step crossover that ``choose_strategy`` encodes;
5. first-call (compile or cache load) times, reported apart from steady state.

Every number is the median of repeats after a warm-up; all timings call
``train`` end to end (validation and buffer set-up included).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import numpy as np

from mlpbench.backends import get_backend
from mlpbench.data import load
from mlpbench.kernels.reference import bce_eps, sigmoid_floor
from mlpbench.machine import cpu_model
from mlpbench.params import init_params
from mlpbench.perf import flops_step


def median_time(fn, repeats):
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def matmul_peak(dtype, n=2048, repeats=5):
    rng = np.random.RandomState(0)
    a, b = rng.rand(n, n).astype(dtype), rng.rand(n, n).astype(dtype)
    c = np.empty((n, n), dtype=dtype)
    np.dot(a, b, out=c)
    return 2 * n**3 / min(median_time(lambda: np.dot(a, b, out=c), 1) for _ in range(repeats)) / 1e9


def time_train(be, sizes, X, y, dtype, epochs, repeats, lr=0.1, grad_reduction="sum"):
    """Median seconds per epoch of ``be.train`` (fresh params each repeat)."""
    X, y = be.asarray(X.astype(dtype)), be.asarray(y.astype(dtype))
    p0 = init_params(sizes, 42, dtype)
    be.train(be.params_from_numpy(p0), X, y, lr=lr, epochs=min(epochs, 3), grad_reduction=grad_reduction)  # warm-up
    ts = []
    for _ in range(repeats):
        p = be.params_from_numpy(p0)
        t0 = time.perf_counter()
        be.train(p, X, y, lr=lr, epochs=epochs, grad_reduction=grad_reduction)
        be.synchronize()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / epochs


# ---------------------------------------------------------------- peers, written inline (manual gradients)
def jax_lab(X, y, params, lr, epochs):
    """``train`` for JAX: all epochs in one ``jit`` + ``lax.fori_loop``; returns (seconds per epoch, final loss)."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    jax.config.update("jax_enable_x64", True)
    floor, eps = sigmoid_floor(np.float64), bce_eps(np.float64)
    Xj, yj = jnp.asarray(X), jnp.asarray(y)

    def epoch(i, carry):
        ps, hist = carry
        acts = [Xj]
        for li, (W, b) in enumerate(ps):
            z = acts[-1] @ W + b
            acts.append(1 / (1 + jnp.exp(-jnp.maximum(z, floor))) if li == len(ps) - 1 else jnp.maximum(0, z))
        yh = acts[-1]
        p = jnp.clip(yh, eps, 1 - eps)
        loss = -jnp.mean(yj * jnp.log(p) + (1 - yj) * jnp.log(1 - p))
        dz = yh - yj
        new = list(ps)
        for li in range(len(ps) - 1, -1, -1):
            W, b = ps[li]
            dW, db = acts[li].T @ dz, dz.sum(axis=0, keepdims=True)
            if li > 0:
                dz = (dz @ W.T) * (acts[li] > 0)
            new[li] = (W - lr * dW, b - lr * db)
        return tuple(new), hist.at[i].set(loss)

    @jax.jit
    def train(ps):
        return lax.fori_loop(0, epochs, epoch, (ps, jnp.zeros(epochs)))

    ps = tuple((jnp.asarray(W), jnp.asarray(b)) for W, b in params)
    jax.block_until_ready(train(ps))  # compile
    ts, hist = [], None
    for _ in range(5):
        t0 = time.perf_counter()
        _, hist = jax.block_until_ready(train(ps))
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / epochs, float(hist[-1])


def torch_lab(X, y, params, lr, epochs):
    """The lab's loop in PyTorch on the CPU (losses kept in a tensor); returns (seconds per epoch, final loss)."""
    import torch

    floor, eps = sigmoid_floor(np.float64), bce_eps(np.float64)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)

    def run():
        ps = [(torch.from_numpy(W.copy()), torch.from_numpy(b.copy())) for W, b in params]
        hist = torch.empty(epochs, dtype=torch.float64)
        with torch.no_grad():
            for e in range(epochs):
                acts = [Xt]
                for li, (W, b) in enumerate(ps):
                    z = acts[-1] @ W + b
                    acts.append(torch.sigmoid(z.clamp(min=floor)) if li == len(ps) - 1 else torch.relu(z))
                yh = acts[-1]
                p = yh.clamp(eps, 1 - eps)
                hist[e] = -(yt * torch.log(p) + (1 - yt) * torch.log(1 - p)).mean()
                dz = yh - yt
                for li in range(len(ps) - 1, -1, -1):
                    W, b = ps[li]
                    dW, db = acts[li].T @ dz, dz.sum(dim=0, keepdim=True)
                    if li > 0:
                        dz = (dz @ W.T) * (acts[li] > 0)
                    W.sub_(lr * dW)
                    b.sub_(lr * db)
        return float(hist[-1])

    run()
    ts, loss = [], None
    for _ in range(3):
        t0 = time.perf_counter()
        loss = run()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) / epochs, loss


# ---------------------------------------------------------------- sections
def section_lab(quick):
    print("\n== lab workload: AND, [2, 4, 1], 5000 epochs, float64 (us per epoch, median) ==")
    X, y = load("and")
    sizes, epochs = [2, 4, 1], 5000
    rows = {}
    npb = get_backend("numpy")
    rows["numpy backend"] = time_train(npb, sizes, X, y, "float64", epochs, 3 if quick else 5)
    rows["numba loop"] = time_train(get_backend("numba", strategy="loop"), sizes, X, y, "float64", epochs, 21)
    rows["numba step"] = time_train(get_backend("numba", strategy="step"), sizes, X, y, "float64", epochs, 5)
    ref_loss = npb.train(npb.params_from_numpy(init_params(sizes)), X, y, lr=0.1, epochs=epochs)[-1]
    for name, fn in (("jax jit+fori_loop", jax_lab), ("torch cpu", torch_lab)):
        try:
            t, loss = fn(X, y, init_params(sizes), 0.1, epochs)
            rows[name] = t
            print(f"  ({name}: final loss {loss:.10g}, numpy {ref_loss:.10g})")
        except ImportError as exc:
            print(f"  ({name}: skipped, {exc})")
    best = rows["numba loop"]
    for name, t in rows.items():
        print(f"  {name:<20} {t * 1e6:10.3f} us/epoch   numba loop is {t / best:7.1f}x faster")
    return rows


def section_grid(quick, peaks):
    print("\n== step grid: [32, H, 1], float64 / float32, numpy vs numba(auto) (ms per epoch, median;"
          " lr 0.01, grad_reduction mean) ==")
    print(f"  {'dtype':<8}{'N':>6}{'H':>6} {'numpy ms':>10} {'numba ms':>10} {'speedup':>8} "
          f"{'GFLOP/s':>9} {'% peak':>7}  strategy")
    rng = np.random.RandomState(0)
    nb = get_backend("numba")
    npb = get_backend("numpy")
    out = []
    for dtype in ("float64", "float32"):
        for N in (1, 64, 1024) + (() if quick else (16384,)):
            X = rng.randn(N, 32)
            y = (rng.rand(N, 1) > 0.5).astype(float)
            for H in (4, 64, 512, 2048):
                sizes = [32, H, 1]
                fl = flops_step(N, sizes)
                kw = dict(lr=0.01, grad_reduction="mean")
                # epochs per timed run: ~0.3 s of NumPy (so per-call set-up does not dominate)
                probe = time_train(npb, sizes, X, y, dtype, 2, 1, **kw)
                epochs = int(max(3, min(5000, 0.3 / probe)))
                reps = 3 if (quick or N * H >= 2**22) else 5
                t_np = time_train(npb, sizes, X, y, dtype, epochs, reps, **kw)
                t_nb = time_train(nb, sizes, X, y, dtype, epochs, reps, **kw)
                gf = fl / t_nb / 1e9
                strategy = nb.last_run.get("strategy")
                if strategy == "step":
                    strategy += f" T={nb.last_run['numba_threads']} rows={nb.last_run['block_rows']}"
                elif nb.last_run.get("fixed_shape"):
                    strategy += " fixed-shape"
                print(f"  {dtype:<8}{N:>6}{H:>6} {t_np * 1e3:10.4f} {t_nb * 1e3:10.4f} {t_np / t_nb:8.1f} "
                      f"{gf:9.2f} {100 * gf / peaks[dtype]:6.1f}%  {strategy}", flush=True)
                out.append((dtype, N, H, t_np, t_nb))
    return out


def section_crossover(quick):
    print("\n== loop vs step crossover (float64, [32, H, 1]; us per epoch, median) ==")
    rng = np.random.RandomState(1)
    loop, step = get_backend("numba", strategy="loop"), get_backend("numba", strategy="step")
    print(f"  {'N':>6}{'H':>6}{'MACs':>10} {'loop us':>10} {'step us':>10}  faster")
    for N in (1, 4, 16, 64, 256, 1024):
        for H in (4, 16, 64):
            sizes = [32, H, 1]
            X, y = rng.randn(N, 32), (rng.rand(N, 1) > 0.5).astype(float)
            macs = N * (32 * H + H)
            epochs = int(max(50, min(5000, 3e7 / (macs * 10 + 1e4))))
            kw = dict(lr=0.01, grad_reduction="mean")
            tl = time_train(loop, sizes, X, y, "float64", epochs, 3 if quick else 5, **kw)
            ts = time_train(step, sizes, X, y, "float64", epochs, 3 if quick else 5, **kw)
            print(f"  {N:>6}{H:>6}{macs:>10} {tl * 1e6:10.2f} {ts * 1e6:10.2f}  {'loop' if tl < ts else 'step'}",
                  flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--sections", default="lab,grid,crossover")
    args = ap.parse_args(argv)
    import numba
    import scipy

    from mlpbench.backends.numba_backend import JIT_SECONDS, blas_threads

    print(f"machine: {cpu_model()}, {os.cpu_count()} CPUs; "
          f"Python {sys.version.split()[0]}, NumPy {np.__version__}, Numba {numba.__version__}, SciPy {scipy.__version__}")
    print(f"threads: numba={numba.get_num_threads()} (layer {numba.config.THREADING_LAYER}), BLAS={blas_threads()}; "
          f"load average {os.getloadavg()[0]:.2f}")
    peaks = {dt: matmul_peak(dt) for dt in ("float64", "float32")}
    print(f"measured matmul peak (2048^2 np.dot): float64 {peaks['float64']:.1f} GFLOP/s, "
          f"float32 {peaks['float32']:.1f} GFLOP/s")
    sections = args.sections.split(",")
    if "lab" in sections:
        section_lab(args.quick)
    if "grid" in sections:
        section_grid(args.quick, peaks)
    if "crossover" in sections:
        section_crossover(args.quick)
    print("\n== first call (JIT compile or on-disk cache load), this process ==")
    for key, (sec, how) in sorted(JIT_SECONDS.items()):
        print(f"  {key:<45} {sec:8.3f} s  {how}")


if __name__ == "__main__":
    main()
