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
from .plots import require_matplotlib, time_vs_figure

#: the peak keys that are copy rates to the host's memory or a device's, not a cache (the DRAM roof)
MEMORY_RATES = ("memcpy_GBps", "h2d_GBps", "d2h_GBps")


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade(v, _pos=None) -> str:
    """``10⁻⁵`` at a power of ten, else nothing: plain text (matplotlib's own log labels are mathtext, whose
    parsing was ~80% of a chart's time)."""
    if not v > 0:
        return ""
    e = math.log10(v)
    return "10" + str(round(e)).translate(SUPERSCRIPT) if abs(e - round(e)) < 1e-9 else ""


def plain_log_labels(fig) -> None:
    from matplotlib.ticker import FuncFormatter, NullFormatter

    for ax in fig.axes:
        for axis, scale in ((ax.xaxis, ax.get_xscale()), (ax.yaxis, ax.get_yscale())):
            if scale == "log":
                axis.set_major_formatter(FuncFormatter(_decade))
                axis.set_minor_formatter(NullFormatter())


def to_svg(plt, fig, salt) -> str:
    """``fig`` as SVG markup for inlining (no XML prolog), with ids salted by ``salt`` so that two charts on one
    page never share one; the figure is closed."""
    import matplotlib

    buf = io.StringIO()
    plain_log_labels(fig)
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


def _interval_bar(p) -> tuple[float, float]:
    """``(below, above)`` the median: its 99% interval, else half the IQR either way (too few rounds)."""
    med, half = p["median_s"], (p.get("iqr_s") or 0) / 2
    lo, hi = median_interval(p.get("samples_s")) or (med - half, med + half)
    return max(med - lo, 0.0), max(hi - med, 0.0)


def time_vs(doc, x="n_samples", salt="t") -> str | None:
    """Median time against rows per update (``x="n_samples"``) or hidden width, log-log, per backend, with the
    99% interval of each median as a bar (``plots.time_vs_figure``); ``None``: no grid point."""
    made = time_vs_figure(doc, x, _interval_bar, size=(5.4, 3.6))
    return None if made is None else to_svg(*made, salt)


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
