"""PNG plots (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

import os

import numpy as np

from ..core.fileio import atomic_write
from ..measure.peaks import peak_best


def require_matplotlib():
    """Import matplotlib with a headless backend, or raise a clear ``ImportError``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "mlpbench[bench]"') from None
    return plt


def _save(plt, fig, path):
    """Write ``fig`` to ``path`` through the one atomic writer (the format from the suffix: the temp file has
    none), close it, return ``path``."""
    fmt = os.path.splitext(os.fspath(path))[1].lstrip(".").lower() or "png"
    try:
        atomic_write(path, lambda f: fig.savefig(f, dpi=110, format=fmt))
    finally:
        plt.close(fig)
    return path


def plot_training(path, model, X, y, history):
    """Loss curve, and for 2-D inputs the decision boundary, in one PNG."""
    plt = require_matplotlib()
    two_d = X.shape[1] == 2
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(11 if two_d else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    ax.plot(np.arange(1, len(history) + 1), history)
    ylabel = "Cross-entropy" if getattr(model, "output", "sigmoid") == "softmax" else "Binary cross-entropy"
    ax.set(xlabel="Epoch", ylabel=ylabel, title="Training loss", yscale="log")
    ax.grid(True, alpha=0.3)
    if two_d:
        ax = axes[0, 1]
        pad = 0.25 * max(np.ptp(X[:, 0]), np.ptp(X[:, 1]), 1e-3)
        gx, gy = np.meshgrid(np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 200),
                             np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 200))
        proba = model.predict_proba(np.c_[gx.ravel(), gy.ravel()])[:, 0].reshape(gx.shape)
        cs = ax.contourf(gx, gy, proba, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, proba, levels=[0.5], colors="k", linewidths=1.2)
        ax.scatter(X[:, 0], X[:, 1], c=np.ravel(y)[: len(X)], cmap="RdBu_r", edgecolors="k", s=40)
        fig.colorbar(cs, ax=ax, label="P(y = 1)")
        ax.set(xlabel="x1", ylabel="x2", title="Decision boundary (0.5 contour)")
    fig.tight_layout()
    _save(plt, fig, path)


# ---------------------------------------------------------------- benchmark plots
def _grid_points(doc):
    """The sweep's grid points (not the labs) of its main op and most common feature count."""
    pts = [p for p in doc["points"] if "lab-" not in p.get("case", "") and p.get("median_s")]
    if not pts:
        return [], None
    ops = [p["op"] for p in pts]
    op = "step" if "step" in ops else max(set(ops), key=ops.count)
    pts = [p for p in pts if p["op"] == op]
    feats = [p["layer_sizes"][0] for p in pts]
    d = max(set(feats), key=feats.count)
    return [p for p in pts if p["layer_sizes"][0] == d and len(p["layer_sizes"]) == 3], f"{op}, D={d}"


def _hidden(p):
    return p["layer_sizes"][1]


def _rows(p):
    """Rows per update: the mini-batch size, else N (a full-batch point)."""
    return min(p.get("batch_size") or p["n_samples"], p["n_samples"])


def _by(points, *keys):
    groups = {}
    for p in points:
        groups.setdefault(tuple(k(p) for k in keys), []).append(p)
    return groups


def time_vs_figure(doc, x="n_samples", yerr=None, size=(6.2, 4.6)):
    """``(plt, fig)``: median time against batch (``x="n_samples"``: rows per update, the mini-batch size of a
    mini-batch point) or hidden width (``x="hidden"``), log-log, per backend; ``yerr(point) -> (below, above)``
    (default half the IQR either way); ``None`` without a grid point."""
    pts, title = _grid_points(doc)
    if not pts:
        return None
    plt = require_matplotlib()
    xkey, other = (_rows, _hidden) if x == "n_samples" else (_hidden, _rows)
    other_name = "H" if x == "n_samples" else "N"
    yerr = yerr or (lambda p: (p["iqr_s"] / 2, p["iqr_s"] / 2))
    dtypes = sorted({p["dtype"] for p in pts})
    backends = sorted({p["backend"] for p in pts})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    fig, axes = plt.subplots(1, len(dtypes), figsize=(size[0] * len(dtypes), size[1]), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        sub = [p for p in pts if p["dtype"] == dt]
        levels = sorted({other(p) for p in sub})
        styles = dict(zip(levels, ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3))] * 4))
        for (b, o), grp in sorted(_by(sub, lambda p: p["backend"], other).items()):
            grp.sort(key=xkey)
            below, above = zip(*(yerr(p) for p in grp))
            ax.errorbar([xkey(p) for p in grp], [p["median_s"] for p in grp], yerr=[below, above],
                        color=colors[b], linestyle=styles[o], marker="o", ms=3, label=f"{b} {other_name}={o}")
        ax.set(xscale="log", yscale="log",
               xlabel="rows per update (N, or the mini-batch size)" if x == "n_samples" else "hidden width H",
               ylabel="median time per call (s)", title=f"{dt} ({title})")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return plt, fig


def plot_time_vs(doc, path, x="n_samples"):
    """``time_vs_figure`` as a file (an empty figure without a grid point)."""
    made = time_vs_figure(doc, x)
    plt, fig = made if made is not None else (require_matplotlib(), None)
    fig = require_matplotlib().figure(figsize=(6.2, 4.6)) if fig is None else fig
    fig.tight_layout()
    return _save(plt, fig, path)


def _speedup(p):
    """Baseline time / time (> 1: faster): ``1 / ratio`` in a ``/2`` point, ``speedup_vs_numpy`` in a ``/1`` one."""
    if p.get("verdict") == "baseline":
        return None
    if p.get("ratio"):
        return 1.0 / p["ratio"]
    return p.get("speedup_vs_numpy")


def plot_speedup_heatmap(doc, path):
    """Speedup against the baseline (> 1: faster) on the batch x hidden grid, one panel per backend and dtype."""
    plt = require_matplotlib()
    from matplotlib.colors import LogNorm

    pts, title = _grid_points(doc)
    base = doc.get("config", {}).get("baseline", "numpy")
    pts = [dict(p, speedup=_speedup(p)) for p in pts if p["backend"] != base]
    pts = [p for p in pts if p["speedup"]]
    if not pts:
        fig, ax = plt.subplots(figsize=(5, 2))
        ax.text(0.5, 0.5, f"no backend besides {base} in this run", ha="center", va="center")
        ax.set_axis_off()
        return _save(plt, fig, path)
    backends = sorted({p["backend"] for p in pts})
    dtypes = sorted({p["dtype"] for p in pts}) or ["-"]
    fig, axes = plt.subplots(len(backends), len(dtypes), figsize=(5.2 * len(dtypes), 4.0 * len(backends)),
                             squeeze=False)
    vals = [p["speedup"] for p in pts] or [1.0]
    lim = max(max(vals), 1 / min(vals), 2.0)
    norm = LogNorm(vmin=1 / lim, vmax=lim)
    for i, b in enumerate(backends):
        for j, dt in enumerate(dtypes):
            ax = axes[i, j]
            sub = [p for p in pts if p["backend"] == b and p["dtype"] == dt]
            ns = sorted({_rows(p) for p in sub})
            hs = sorted({_hidden(p) for p in sub})
            grid = np.full((len(hs), len(ns)), np.nan)
            for p in sub:
                grid[hs.index(_hidden(p)), ns.index(_rows(p))] = p["speedup"]
            im = ax.imshow(grid, cmap="RdBu", norm=norm, origin="lower", aspect="auto")
            for (r, c), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(c, r, f"{v:.2g}x", ha="center", va="center", fontsize=8)
            ax.set_xticks(range(len(ns)), [str(n) for n in ns])
            ax.set_yticks(range(len(hs)), [str(h) for h in hs])
            ax.set(xlabel="rows per update (N or mini-batch)", ylabel="hidden H",
                   title=f"{b} vs {base}, {dt} ({title})")
            fig.colorbar(im, ax=ax, label=f"speedup ({base} time / time)")
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_roofline(doc, path):
    """Roofline: GFLOP/s against arithmetic intensity under each device's measured peaks; and % of peak."""
    plt = require_matplotlib()
    pts = [p for p in doc["points"] if p.get("gflops") and p.get("intensity")]
    backends = sorted({p["backend"] for p in pts})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    markers = {"float64": "o", "float32": "^"}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 4.8))
    xs = np.logspace(-2, 3, 100)
    for dev, entry in doc.get("peak", {}).items():
        bw = peak_best(entry.get("memcpy_GBps")) or peak_best(entry.get("h2d_GBps"))
        for dt, peak in entry.get("gflops", {}).items():
            peak = peak_best(peak)
            if not peak:
                continue
            roof = np.minimum(peak, xs * bw) if bw else np.full_like(xs, peak)
            ax.plot(xs, roof, color="k", linestyle="-" if dt == "float64" else "--", lw=1,
                    label=f"{dev} {dt} peak {peak:.0f} GFLOP/s" + (f", {bw:.0f} GB/s" if bw else ""))
    for p in pts:
        kw = dict(color=colors[p["backend"]], marker=markers.get(p["dtype"], "s"), s=14, alpha=0.8)
        ax.scatter(p["intensity"], p["gflops"], **kw)
        if p.get("pct_peak") is not None:
            ax2.scatter(p["flops"], p["pct_peak"], **kw)
    for b in backends:
        ax2.scatter([], [], color=colors[b], label=b)
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte, compulsory traffic)",
           ylabel="GFLOP/s", title="Roofline")
    ax2.set(xscale="log", yscale="log", xlabel="FLOPs per call", ylabel="% of the device's matmul peak",
            title="Fraction of peak (o float64, ^ float32)")
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    fig.tight_layout()
    return _save(plt, fig, path)


def plot_bench(doc, out_dir) -> list:
    """Every benchmark plot of a results document into ``out_dir``; returns the paths written."""
    import os

    out = [plot_time_vs(doc, os.path.join(out_dir, "time_vs_batch.png"), "n_samples"),
           plot_time_vs(doc, os.path.join(out_dir, "time_vs_hidden.png"), "hidden"),
           plot_speedup_heatmap(doc, os.path.join(out_dir, "speedup_heatmap.png")),
           plot_roofline(doc, os.path.join(out_dir, "roofline.png"))]
    return out
