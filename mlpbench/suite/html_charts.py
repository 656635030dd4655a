"""The HTML report's charts: matplotlib figures as inline SVG text (no image file, no script, no request).

Why matplotlib SVG: it is already the project's plotting library (the ``bench``
and ``dev`` extras), it needs no JavaScript at all (a chart library's script
inlined would cost 1-3 MB per report: plotly.js is ~3.5 MB, Vega ~0.8 MB), and
with ``svg.fonttype = "none"`` its text stays text, so a chart is a few tens
of kB. Hover details live in the HTML grid and table, not in the charts.

Every chart reads the points defensively (``.get``): a field a future schema
adds is ignored, one an older file lacks leaves its mark out.
"""

from __future__ import annotations

import io
import math
import re

import numpy as np

from ..measure import stats
from ..measure.peaks import peak_best
from .plots import _by, _grid_points, _hidden, _rows, require_matplotlib

#: the peak keys that are copy rates to the host's memory or a device's, not a cache (the DRAM roof)
MEMORY_RATES = ("memcpy_GBps", "h2d_GBps", "d2h_GBps")


def to_svg(plt, fig, salt) -> str:
    """``fig`` as SVG markup for inlining (no XML prolog), with ids salted by ``salt`` so that two charts on one
    page never share one; the figure is closed."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 9}):
        fig.tight_layout()
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    plt.close(fig)
    text = buf.getvalue()
    text = re.sub(r"<metadata>.*?</metadata>", "", text[text.index("<svg"):], flags=re.DOTALL)  # RDF: who made it
    text = re.sub(r"(\d\.\d)\d+", r"\1", text)  # coordinates to 0.1 pt: a third of the bytes, nothing seen lost
    return re.sub(r"\n\s*", "\n", text)


def median_interval(samples) -> tuple[float, float] | None:
    """The 99% interval of the median of ``samples`` (sign test), or ``None`` with too few of them."""
    xs = sorted(x for x in samples or () if isinstance(x, (int, float)) and math.isfinite(x))
    k, _ = stats.sign_test_rank(len(xs), stats.CONFIDENCE) if xs else (0, 0)
    return (xs[k - 1], xs[len(xs) - k]) if k else None


def time_vs(doc, x="n_samples", salt="t") -> str | None:
    """Median time against rows per update (``x="n_samples"``) or hidden width, log-log, per backend, with the
    99% interval of each median as a bar (the IQR where the rounds are too few for one); ``None``: no grid."""
    pts, what = _grid_points(doc)
    pts = [p for p in pts if isinstance(p.get("layer_sizes"), list)]
    if not pts:
        return None
    plt = require_matplotlib()
    xkey, other = (_rows, _hidden) if x == "n_samples" else (_hidden, _rows)
    other_name = "H" if x == "n_samples" else "N"
    dtypes = sorted({p["dtype"] for p in pts})
    backends = sorted({p["backend"] for p in pts})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    fig, axes = plt.subplots(1, len(dtypes), figsize=(5.4 * len(dtypes), 3.6), squeeze=False)
    for ax, dt in zip(axes[0], dtypes):
        sub = [p for p in pts if p["dtype"] == dt]
        styles = dict(zip(sorted({other(p) for p in sub}), ["-", "--", ":", "-.", (0, (5, 1)), (0, (1, 3))] * 4))
        for (b, o), grp in sorted(_by(sub, lambda p: p["backend"], other).items()):
            grp.sort(key=xkey)
            lo, hi = [], []
            for p in grp:
                iv = median_interval(p.get("samples_s")) or (p["median_s"] - (p.get("iqr_s") or 0) / 2,
                                                            p["median_s"] + (p.get("iqr_s") or 0) / 2)
                lo.append(max(p["median_s"] - iv[0], 0.0))
                hi.append(max(iv[1] - p["median_s"], 0.0))
            ax.errorbar([xkey(p) for p in grp], [p["median_s"] for p in grp], yerr=[lo, hi], capsize=0,
                        color=colors[b], linestyle=styles[o], marker="o", ms=3, lw=1, label=f"{b} {other_name}={o}")
        ax.set(xscale="log", yscale="log", title=f"{dt} ({what})", ylabel="median time per call (s)",
               xlabel="rows per update (N or mini-batch)" if x == "n_samples" else "hidden width H")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, ncol=2)
    return to_svg(plt, fig, salt)


def roofs(doc) -> list[dict]:
    """Each device's roofs as measured in this run: ``{device, dtype, gflops, dram, caches: [(name, GB/s)]}``."""
    out = []
    for dev, entry in (doc.get("peak") or {}).items():
        if not isinstance(entry, dict):
            continue
        dram = next((peak_best(entry.get(k)) for k in MEMORY_RATES if peak_best(entry.get(k))), None)
        caches = [(k[: -len("_GBps")], peak_best(v)) for k, v in entry.items()
                  if k.endswith("_GBps") and k not in MEMORY_RATES and peak_best(v)]
        for dt, peak in (entry.get("gflops") or {}).items():
            if isinstance(peak_best(peak), (int, float)) and peak_best(peak) > 0:
                out.append({"device": dev, "dtype": dt, "gflops": peak_best(peak), "dram": dram, "caches": caches})
    return out


def roofline(doc, salt="r") -> str | None:
    """GFLOP/s against arithmetic intensity under the run's measured peaks: the matmul peak per dtype, the
    memory roof (its measured copy rate), and a cache roof per cache rate the run measured; ``None``: no point."""
    pts = [p for p in doc.get("points") or [] if isinstance(p, dict) and p.get("gflops") and p.get("intensity")]
    if not pts:
        return None
    plt = require_matplotlib()
    backends = sorted({p["backend"] for p in pts})
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(backends)}
    markers = {"float64": "o", "float32": "^"}
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    lo = min(p["intensity"] for p in pts) / 3
    xs = np.logspace(math.log10(lo), math.log10(max(p["intensity"] for p in pts) * 3), 80)
    for r in roofs(doc):
        dashed = "-" if r["dtype"] == "float64" else "--"
        roof = np.minimum(r["gflops"], xs * r["dram"]) if r["dram"] else np.full_like(xs, r["gflops"])
        ax.plot(xs, roof, color="k", linestyle=dashed, lw=1, label=f"{r['device']} {r['dtype']} peak "
                f"{r['gflops']:.0f} GFLOP/s" + (f", memory {r['dram']:.0f} GB/s" if r["dram"] else ""))
        for name, bw in r["caches"]:
            ax.plot(xs, np.minimum(r["gflops"], xs * bw), color="tab:gray", linestyle=dashed, lw=0.8,
                    label=f"{r['device']} {name} {bw:.0f} GB/s (cache roof)")
    for b in backends:
        for dt in sorted({p["dtype"] for p in pts if p["backend"] == b}):
            sub = [p for p in pts if p["backend"] == b and p["dtype"] == dt]
            ax.scatter([p["intensity"] for p in sub], [p["gflops"] for p in sub], color=colors[b], s=14,
                       marker=markers.get(dt, "s"), alpha=0.8, label=f"{b} {dt}")
    ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte of compulsory traffic)",
           ylabel="GFLOP/s", title="Roofline (o float64, ^ float32)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    return to_svg(plt, fig, salt)
