"""Benchmark results: the JSON schema, atomic JSON/CSV writing, tables and ``--compare``.

``results.json``::

    {"schema": "mlpbench.bench/3", "status": "running" | "complete" | "interrupted" | "failed",
     "machine": {...}, "config": {..., "baseline": "numpy"},
     "peak": {device: {"gflops": {dtype: PEAK}, "memcpy_GBps" | "h2d_GBps" | "d2h_GBps": PEAK}},
         PEAK = {"unit", "best", "spread", "flagged", "samples"} (``measure.Peak.to_dict``)
     "noise": {"points", "same", "noisy", "noisy_points", "per_point", "between", "follow_ups"} (the A/A
         control, the run's between-pass variance, the follow-up passes; once complete),
     "points": [{backend, op, dtype, n_samples, layer_sizes, batch_size, output, case, device, min_s, median_s,
                 iqr_s, ratio, ratio_ci: [lo, hi], verdict, samples_s, passes, variance, first_s, warmup_s, number,
                 rounds, noisy, margin, gflops, pct_peak, ...; the baseline's point adds "control" (its A/A copy); an external
                 reference row's (``references.py``) adds "reference": true}, ...],
     "skipped": [{"backend", "reason"} or {"backend": "*", "case", "reason"}], "errors": [{"backend", "case", "error"}],
     "error": "..." (only when status is "failed"), "wall_s": seconds from the start to the end of the sweep
     (peaks included, plots not; once it ended)}

``ratio`` is time / the baseline's time (< 1: faster), from the paired
rounds; ``verdict`` is ``faster | slower | same | unresolved`` (``baseline``
for the baseline itself). ``batch_size`` (None: full batch) and ``output``
(the head) were added within ``/2``: a point without them is a full-batch
sigmoid one, which is how ``point_key`` reads older files; ``wall_s`` and
``config["command"]`` (the ``mlpbench bench`` command that measures the run
again) too: ``report.py`` reads a file without them. ``load`` also reads
``mlpbench.bench/1`` files (``times_s``, ``speedup_vs_numpy``) for ``--compare``.

``/3`` changed the meaning of two fields: ``margin`` is the A/A control's
systematic difference (the equivalence band, ``stats.bias_margin``), no longer
its noise width, and ``ratio_ci`` carries the between-pass variance
(``measure/levels.py``); it added ``passes`` (rounds per pass, adding up to
``rounds``), ``variance`` (the log ratio's ``within`` and ``between``
components, its ``passes`` and ``rounds``; not on the baseline's own row),
``noise["between"]`` and ``noise["follow_ups"]``, and ``config["budget_s"]``.
``/2`` files are read alike (their points have the same required fields).
Within ``/3``, an ``unresolved`` point added ``to_decide``: ``{"passes": n}``,
the further passes its forecast says would decide it (``levels.passes_to_decide``),
``None`` for a ratio within noise of a band edge; older files have none.

Both files are rewritten after every point (``fileio.atomic_write``), so an
interrupted sweep leaves valid files holding the points it finished; the file is
written when the run starts, so it never shows an older run's points.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import time

from ..measure import stats
from ..core.fileio import atomic_write, read_json

SCHEMA = "mlpbench.bench/3"
SCHEMA_V2 = "mlpbench.bench/2"
SCHEMA_V1 = "mlpbench.bench/1"
#: the schemas whose points carry ratios, intervals and verdicts (read by ``report`` and ``--compare`` alike)
JUDGED_SCHEMAS = (SCHEMA, SCHEMA_V2)
#: fields every point has (the CSV's columns, in order; the raw samples stay in the JSON)
POINT_FIELDS = ("backend", "op", "dtype", "n_samples", "layer_sizes", "activation", "epochs", "batch_size", "output",
                "case", "device",
                "min_s", "median_s", "iqr_s", "ratio", "ratio_lo", "ratio_hi", "verdict", "noisy", "margin",
                "first_s", "warmup_s", "rounds", "number", "flops", "gflops", "pct_peak", "bytes", "intensity")
REQUIRED_POINT_FIELDS = ("backend", "op", "dtype", "n_samples", "layer_sizes", "min_s", "median_s", "iqr_s",
                         "ratio", "ratio_ci", "verdict", "samples_s", "noisy", "first_s", "rounds", "gflops",
                         "pct_peak")
#: a ``/1`` point's fields (read by ``--compare``)
REQUIRED_POINT_FIELDS_V1 = ("backend", "op", "dtype", "n_samples", "layer_sizes", "median_s", "iqr_s", "noisy",
                            "warmup_s", "gflops", "pct_peak", "speedup_vs_numpy", "repeats")
TOP_LEVEL = ("schema", "machine", "peak", "config", "points")
#: a results file larger than this is not one (a full suite writes well under 1 MiB)
MAX_FILE_BYTES = 1 << 28


def _clean(x):
    """JSON-safe: non-finite floats become ``None``."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def to_json(doc) -> str:
    return json.dumps(_clean(doc), indent=1, default=str) + "\n"


def to_csv(points) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(POINT_FIELDS)
    for p in points:
        row = []
        ci = p.get("ratio_ci")
        ci = ci if isinstance(ci, (list, tuple)) and len(ci) == 2 else [None, None]
        for k in POINT_FIELDS:
            v = ci[0] if k == "ratio_lo" else ci[1] if k == "ratio_hi" else p.get(k)
            row.append("-".join(map(str, v)) if k == "layer_sizes" else ("" if v is None else v))
        w.writerow(row)
    return buf.getvalue()


class ResultsWriter:
    """Keeps the results document and rewrites ``results.json`` and ``results.csv`` on every change."""

    def __init__(self, out_dir, machine, peak, config, skipped=()):
        self.out_dir = os.fspath(out_dir)
        os.makedirs(self.out_dir, exist_ok=True)
        self.json_path = os.path.join(self.out_dir, "results.json")
        self.csv_path = os.path.join(self.out_dir, "results.csv")
        self._t0 = time.perf_counter()
        self.doc = {"schema": SCHEMA, "status": "running", "machine": machine, "peak": peak, "config": config,
                    "points": [], "skipped": list(skipped), "errors": []}
        self.write()

    def add_point(self, point) -> None:
        self.doc["points"].append(point)
        self.write()

    def add_error(self, backend, case, error) -> None:
        self.doc["errors"].append({"backend": backend, "case": case, "error": error})
        self.write()

    def add_skipped_case(self, case, reason) -> None:
        """A point not measured, with the reason (e.g. it cannot fit in memory)."""
        self.doc["skipped"].append({"backend": "*", "case": case, "reason": reason})
        self.write()

    def finish(self, status, error=None) -> None:
        """``status``: ``complete``, ``interrupted`` or ``failed`` (then ``error`` says why)."""
        self.doc["status"] = status
        self.doc["wall_s"] = round(time.perf_counter() - self._t0, 2)
        if error is not None:
            self.doc["error"] = error
        try:
            self.write()
        except OSError:  # a full disk: no room for the new file, but the status in the old one can change
            _mark_failed(self.json_path)
            raise

    def write(self) -> None:
        atomic_write(self.json_path, to_json(self.doc))
        atomic_write(self.csv_path, to_csv(self.doc["points"]))


def _mark_failed(path) -> None:
    """Overwrite ``"status": "running"`` with ``"failed"`` in place in ``path`` (the same bytes, padded: no new
    disk block), so that a run the disk ended is never left "running"; nothing if the file does not hold it."""
    old, new = b'"status": "running"', b'"status": "failed" '
    with contextlib.suppress(OSError), open(path, "r+b") as f:
        at = f.read(1 << 16).find(old)  # near the top: the document's first keys
        if at >= 0:
            f.seek(at)
            f.write(new)
            f.flush()
            os.fsync(f.fileno())


def validate(doc) -> list[str]:
    """Problems with a results document (``[]`` when it follows the schema)."""
    problems = [f"missing top-level key {k!r}" for k in TOP_LEVEL if k not in doc]
    if doc.get("schema") not in (*JUDGED_SCHEMAS, SCHEMA_V1):
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r} (or {SCHEMA_V2!r}, {SCHEMA_V1!r})")
    for key, kind in (("points", list), ("machine", dict), ("peak", dict), ("config", dict)):
        if key in doc and not isinstance(doc[key], kind):
            problems.append(f"{key!r} must be a JSON {'array' if kind is list else 'object'}")
    if problems:
        return problems
    for i, p in enumerate(doc.get("points", [])):
        if not isinstance(p, dict):
            problems.append(f"point {i} is not a JSON object")
            continue
        required = REQUIRED_POINT_FIELDS if doc["schema"] in JUDGED_SCHEMAS else REQUIRED_POINT_FIELDS_V1
        missing = [k for k in required if k not in p]
        if missing:
            problems.append(f"point {i} lacks {missing}")
    return problems


def load(path) -> dict:
    """Read and check a ``results.json``; ``ValueError`` naming the file when it is not one."""
    try:
        doc = read_json(path, MAX_FILE_BYTES, "results file")
    except IsADirectoryError:
        raise ValueError(f"{path}: is a folder; expected a results file") from None
    problems = validate(doc) if isinstance(doc, dict) else ["not a JSON object"]
    if problems:
        raise ValueError(f"{path}: not an mlpbench results file: {'; '.join(problems[:3])}")
    return doc


def point_key(p) -> tuple:
    """What matches a point across files; fields a point lacks (older files) take their defaults."""
    return (p["backend"], p["op"], p["dtype"], p["n_samples"], tuple(p["layer_sizes"]), p.get("activation", "relu"),
            p.get("epochs", 1), p.get("batch_size"), p.get("output", "sigmoid"), p.get("case", ""))


# ---------------------------------------------------------------- text output
def fmt_time(s) -> str:
    if s is None:
        return "-"
    for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6)):
        if s >= scale:
            return f"{s / scale:.3g} {unit}"
    return f"{s / 1e-9:.3g} ns"


def fmt_num(x, digits=3) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def fmt_pct(x) -> str:
    """A percentage to 2 significant figures, whole from 100 on (``0.27``, ``97``, ``210``; never ``2.1e+02``)."""
    return "-" if x is None else f"{x:.0f}" if x >= 100 else f"{x:.2g}"


def format_table(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return "\n".join(lines)


#: ANSI styles of the table (torch.utils.benchmark's Compare: the best of a row bold green, slower red)
BEST, SLOWER, RESET = "\033[1m\033[32m", "\033[31m", "\033[0m"


def fmt_ratio(p) -> str:
    """``0.61x [0.57, 0.66]``: time / the baseline's, with its interval; ``1`` for the baseline itself."""
    if p.get("verdict") == "baseline":
        return "1 (baseline)"
    r, ci = p.get("ratio"), p.get("ratio_ci") or [None, None]
    if r is None:
        return "-"
    if ci[0] is None and ci[1] is None or ci[0] != ci[0]:
        return f"{r:.3g}x [too few rounds]"
    hi = "inf" if ci[1] is None else f"{ci[1]:.3g}"
    lo = "-" if ci[0] is None else f"{ci[0]:.3g}"
    return f"{r:.3g}x [{lo}, {hi}]"


def points_table(points, color=False) -> str:
    """The bench table: min and median time, IQR, first call, GFLOP/s, % of peak, ratio [interval], verdict.

    ``color``: ANSI colours for a terminal, as torch's ``Compare``: the fastest
    backend of each case bold green, backends judged ``slower`` red.
    """
    header = ["backend", "case", "min", "median", "IQR", "first call", "GFLOP/s", "% peak", "time ratio [99% CI]",
              "verdict"]
    rows, styles = [], []
    best = {}
    for p in points:
        if p.get("median_s") and (p["case"] not in best or p["median_s"] < best[p["case"]]):
            best[p["case"]] = p["median_s"]
    for p in points:
        iqr = f"{100 * p['iqr_s'] / p['median_s']:.0f}%" if p.get("median_s") else "-"
        verdict = p.get("verdict", "")
        if p.get("noisy") and verdict == "baseline":
            verdict += " (noisy)"
        name = p["backend"] + (" (reference)" if p.get("reference") else "")
        rows.append([name, p.get("case", ""), fmt_time(p.get("min_s")), fmt_time(p.get("median_s")), iqr,
                     fmt_time(p.get("first_s")), fmt_num(p.get("gflops")), fmt_pct(p.get("pct_peak")),
                     fmt_ratio(p), verdict])
        fastest = len(best) and p.get("median_s") == best.get(p.get("case")) and len(
            [q for q in points if q.get("case") == p.get("case")]) > 1
        styles.append(BEST if fastest else SLOWER if p.get("verdict") == "slower" else "")
    text = format_table(header, rows)
    if not color:
        return text
    lines = text.split("\n")
    return "\n".join(lines[:2] + [f"{st}{line}{RESET}" if st else line for st, line in zip(styles, lines[2:])])


def use_color(stream) -> bool:
    """Colour only on a terminal, and never with ``NO_COLOR`` set (https://no-color.org)."""
    return bool(getattr(stream, "isatty", lambda: False)()) and not os.environ.get("NO_COLOR")


def point_samples(p):
    """A point's raw samples for ``--compare``: ``samples_s`` (``/2``), ``times_s`` (``/1``), else its median."""
    for key in ("samples_s", "times_s"):
        if p.get(key):
            return p[key]
    return None


def compare(old, new, threshold=0.10) -> list[dict]:
    """Points present in both documents, each judged by ``stats.compare`` on its raw samples (new / old time).

    ``stats.CompareError`` (exit 2 on the CLI) for a bad threshold, or a point
    whose median is NaN or missing, or whose samples are not positive times.
    """
    threshold = stats.check_threshold(threshold)
    before = {point_key(p): p for p in old["points"]}
    rows = []
    for p in new["points"]:
        q = before.get(point_key(p))
        if q is None:
            continue
        name = f"{p['backend']} / {p.get('case', '')}"
        for side, point in (("old", q), ("new", p)):
            med = point.get("median_s")
            if not isinstance(med, (int, float)) or isinstance(med, bool) or not math.isfinite(med):
                raise stats.CompareError(f"{side} point {name}: median_s is NaN or missing ({med!r})")
        try:
            c = stats.compare(point_samples(q) or [q["median_s"]], point_samples(p) or [p["median_s"]], threshold)
        except stats.CompareError as exc:
            raise stats.CompareError(f"point {name}: {exc}") from None
        noisy = bool(p.get("noisy") or q.get("noisy"))
        rows.append({"backend": p["backend"], "case": p.get("case", ""), "old_s": q["median_s"],
                     "new_s": p["median_s"], **c.to_dict(), "regression": c.regression, "noisy": noisy})
    return rows


def compare_table(rows) -> str:
    header = ["backend", "case", "old", "new", "new/old [99% CI]", "p (U test)", "flag"]
    body = [[r["backend"], r["case"], fmt_time(r["old_s"]), fmt_time(r["new_s"]),
             f"{r['ratio']:.3f} [{r['ratio_ci'][0]:.3g}, {r['ratio_ci'][1]:.3g}]", f"{r['p']:.2g}",
             (r["flag"].upper() if r["flag"] == "regression" else r["flag"])
             + ("" if r["decidable"] else " (too few samples to decide)") + (" (noisy)" if r["noisy"] else "")]
            for r in rows]
    return format_table(header, body)
