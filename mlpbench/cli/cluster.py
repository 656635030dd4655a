"""``mlpbench bench --scheduler ADDRESS [--on each|split]``: the sweep on a Dask cluster (``suite/cluster.py``).

Imported by ``cli/bench.py`` only when ``--scheduler`` is given, so that plain ``bench`` never loads Dask.
Prints, per machine, where its file is and how it ended; the points' tables are ``mlpbench report``'s job.
"""

from __future__ import annotations

import os
import sys

from ..suite import cluster
from ..suite.progress import Progress
from ..suite.cases import get_preset
from ..suite.sweep import SWEEP_MARGIN_FLOOR, SWEEP_SETTLE_S


def bench_on_cluster(args, case_list, specs, ref_names, config) -> int:
    """Run the sweep on the cluster; 1 when a point had an error (as locally) or a machine was lost under
    ``each`` (the merged file ``interrupted``), else 0."""
    passes = get_preset(args.preset).passes if args.passes is None else args.passes
    baseline = config["baseline"]
    mode = args.on or "each"
    job = {"backends": list(specs), "references": list(ref_names), "baseline": baseline,
           "dtypes": sorted({c.dtype for c in case_list}),
           "timing": {"min_time": config["min_time"], "max_time": config["max_time"], "min_rounds": config["min_rounds"],
                      "baseline": baseline, "passes": passes}}
    config = dict(config, margin_floor=SWEEP_MARGIN_FLOOR, settle_s=SWEEP_SETTLE_S, passes=passes)
    progress = Progress(0, enabled=None if not args.quiet else False)
    try:
        files = cluster.run(args.scheduler, mode, case_list, job, config, args.out, progress=progress)
    except KeyboardInterrupt as exc:
        doc = getattr(exc, "results_doc", None)
        if doc is not None:
            print(f"interrupted: {len(doc['points'])} finished points kept in {args.out}/results.json and its "
                  "machine folders", file=sys.stderr)
        raise
    doc = files.merged.doc
    for entry in doc["machines"]:
        skipped = [s["backend"] for s in files.writers[entry["name"]].doc["skipped"] if "case" not in s]
        print(f"{entry['name']} (host {entry['host']}, worker {entry['worker']}): {entry['status']}, "
              f"{entry['points']} points -> {os.path.join(args.out, entry['file'])}"
              + (f"; skipped {', '.join(skipped)}" if skipped else ""))
    for name, w in files.writers.items():
        for s in w.doc["skipped"]:
            print(f"skipped on {name}: {s['backend']}" + (f" / {s['case']}" if "case" in s else "")
                  + f": {s['reason']}", file=sys.stderr)
    for e in doc["errors"]:
        print(f"error: {e.get('machine', '*')}: {e['backend']} / {e['case']}: {e['error']}", file=sys.stderr)
    print(f"wrote {args.out}/results.json ({doc['status']}, {len(doc['points'])} points from "
          f"{len(doc['machines'])} machines, --on {mode}); mlpbench report {args.out} compares them")
    return 1 if doc["errors"] or doc["status"] != "complete" else 0


__all__ = ["bench_on_cluster"]
