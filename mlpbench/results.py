"""Benchmark results: the JSON schema, atomic JSON/CSV writing, tables and ``--compare``.

``results.json``::

    {"schema": "mlpbench.bench/1", "status": "running" | "complete" | "interrupted" | "failed",
     "machine": {...}, "peak": {device: {"gflops": {dtype: x}, ...}}, "config": {...},
     "points": [{backend, op, dtype, n_samples, layer_sizes, median_s, iqr_s, noisy, warmup_s,
                 gflops, pct_peak, speedup_vs_numpy, repeats, ...}, ...],
     "skipped": [{"backend", "reason"} or {"backend": "*", "case", "reason"}], "errors": [{"backend", "case", "error"}],
     "error": "..." (only when status is "failed")}

Both files are rewritten after every point (``fileio.atomic_write``), so an
interrupted sweep leaves valid files holding the points it finished; the file is
written when the run starts, so it never shows an older run's points.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from .fileio import atomic_write

SCHEMA = "mlpbench.bench/1"
#: fields every point has (the CSV's columns, in order)
POINT_FIELDS = ("backend", "op", "dtype", "n_samples", "layer_sizes", "activation", "epochs", "case", "device",
                "median_s", "iqr_s", "noisy", "warmup_s", "repeats", "number", "flops", "gflops", "pct_peak",
                "speedup_vs_numpy", "bytes", "intensity")
REQUIRED_POINT_FIELDS = ("backend", "op", "dtype", "n_samples", "layer_sizes", "median_s", "iqr_s", "noisy",
                         "warmup_s", "gflops", "pct_peak", "speedup_vs_numpy", "repeats")
TOP_LEVEL = ("schema", "machine", "peak", "config", "points")


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
        for k in POINT_FIELDS:
            v = p.get(k)
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
        if error is not None:
            self.doc["error"] = error
        self.write()

    def write(self) -> None:
        atomic_write(self.json_path, to_json(self.doc))
        atomic_write(self.csv_path, to_csv(self.doc["points"]))


def validate(doc) -> list[str]:
    """Problems with a results document (``[]`` when it follows the schema)."""
    problems = [f"missing top-level key {k!r}" for k in TOP_LEVEL if k not in doc]
    if doc.get("schema") != SCHEMA:
        problems.append(f"schema is {doc.get('schema')!r}, expected {SCHEMA!r}")
    for key, kind in (("points", list), ("machine", dict), ("peak", dict), ("config", dict)):
        if key in doc and not isinstance(doc[key], kind):
            problems.append(f"{key!r} must be a JSON {'array' if kind is list else 'object'}")
    if problems:
        return problems
    for i, p in enumerate(doc.get("points", [])):
        if not isinstance(p, dict):
            problems.append(f"point {i} is not a JSON object")
            continue
        missing = [k for k in REQUIRED_POINT_FIELDS if k not in p]
        if missing:
            problems.append(f"point {i} lacks {missing}")
    return problems


def load(path) -> dict:
    """Read and check a ``results.json``; ``ValueError`` naming the file when it is not one."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    problems = validate(doc) if isinstance(doc, dict) else ["not a JSON object"]
    if problems:
        raise ValueError(f"{path}: not an mlpbench results file: {'; '.join(problems[:3])}")
    return doc


def point_key(p) -> tuple:
    return (p["backend"], p["op"], p["dtype"], p["n_samples"], tuple(p["layer_sizes"]), p.get("activation", "relu"),
            p.get("epochs", 1), p.get("case", ""))


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


def format_table(header, rows) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)] if rows else [len(h) for h in header]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header).rstrip(), "  ".join("-" * w for w in widths)]
    lines += [fmt.format(*map(str, r)).rstrip() for r in rows]
    return "\n".join(lines)


def points_table(points) -> str:
    """The bench table: time (median, IQR), warm-up, GFLOP/s, % of peak and speedup against NumPy."""
    header = ["backend", "case", "median", "IQR", "warm-up", "GFLOP/s", "% peak", "vs numpy", ""]
    rows = []
    for p in points:
        iqr = f"{100 * p['iqr_s'] / p['median_s']:.0f}%" if p.get("median_s") else "-"
        speed = "-" if p.get("speedup_vs_numpy") is None else f"{p['speedup_vs_numpy']:.2f}x"
        rows.append([p["backend"], p.get("case", ""), fmt_time(p["median_s"]), iqr, fmt_time(p.get("warmup_s")),
                     fmt_num(p.get("gflops")), fmt_num(p.get("pct_peak"), 2), speed, "noisy" if p.get("noisy") else ""])
    return format_table(header, rows)


def compare(old, new, threshold=0.10) -> list[dict]:
    """Points present in both documents: ``ratio = new / old`` median time; flagged beyond ``threshold``."""
    before = {point_key(p): p for p in old["points"]}
    rows = []
    for p in new["points"]:
        q = before.get(point_key(p))
        if q is None or not q.get("median_s") or not p.get("median_s"):
            continue
        ratio = p["median_s"] / q["median_s"]
        flag = "regression" if ratio > 1 + threshold else "faster" if ratio < 1 / (1 + threshold) else ""
        noisy = bool(p.get("noisy") or q.get("noisy"))
        rows.append({"backend": p["backend"], "case": p.get("case", ""), "old_s": q["median_s"], "new_s": p["median_s"],
                     "ratio": ratio, "flag": flag, "noisy": noisy})
    return rows


def compare_table(rows) -> str:
    header = ["backend", "case", "old", "new", "new/old", "flag"]
    body = [[r["backend"], r["case"], fmt_time(r["old_s"]), fmt_time(r["new_s"]), f"{r['ratio']:.3f}",
             (r["flag"].upper() if r["flag"] == "regression" else r["flag"]) + (" (noisy)" if r["noisy"] else "")]
            for r in rows]
    return format_table(header, body)
