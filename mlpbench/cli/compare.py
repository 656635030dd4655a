"""``mlpbench compare OLD.json NEW.json``: two ``mlpbench bench`` results, point by point (``bench --compare`` too).

Per point shared by both files, a Mann-Whitney U test on the raw samples (``measure/stats.py``); a point is a
regression when it is significantly slower (p < 0.01) by more than the threshold. The exit code is 1 only with
``--fail-on-regression``, on such a regression or on what else the gate sees (``suite/gate.py``: a run not
complete, OLD's points missing from NEW, a slower point too few samples can decide); files that cannot be
compared honestly are exit 2.
"""

from __future__ import annotations

from . import options as O
from ..measure import stats
from ..suite import gate, results

DEFAULT_THRESHOLD = 0.10


def add_compare(sub):
    p = sub.add_parser("compare", parents=[O.regression_gate()],
                       help="compare two bench results.json point by point; exit 1 on a regression with "
                            "--fail-on-regression",
                       description=__doc__.splitlines()[0].replace("``", ""))
    p.add_argument("old", metavar="OLD.json", help="the earlier results.json")
    p.add_argument("new", metavar="NEW.json", help="the later results.json")
    return p


def cmd_compare(args) -> int:
    return compare_files(args.old, args.new, args.threshold, args.fail_on_regression)


def compare_files(old_path, new_path, threshold=None, fail_on_regression=False) -> int:
    """Print the comparison of two results files; 1 on a significant regression when asked to fail on one, else 0."""
    old, new = results.load(old_path), results.load(new_path)
    gate.check_points(old, old_path)
    gate.check_points(new, new_path)
    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    try:
        threshold = stats.check_threshold(threshold)
    except stats.CompareError:
        raise stats.CompareError(f"--threshold must be a finite number >= 0; got {threshold!r}") from None
    try:
        rows = results.compare(old, new, threshold)
    except stats.CompareError as exc:  # a point's median: name the files
        raise stats.CompareError(f"{old_path} vs {new_path}: {exc}") from None
    if not rows:
        raise stats.CompareError(f"{old_path} and {new_path} share no point: nothing compared")
    print(results.compare_table(rows))
    if old["machine"].get("cpu") != new["machine"].get("cpu"):
        print(f"note: different machines ({old['machine'].get('cpu')} vs {new['machine'].get('cpu')})")
    bad = [r for r in rows if r["regression"]]
    undecidable = sum(1 for r in rows if not r["decidable"])
    print(f"\n{len(rows)} points compared; {len(bad)} significantly slower (Mann-Whitney p < 0.01) by more than "
          f"{100 * threshold:.0f}%" + (f"; {undecidable} with too few samples to decide" if undecidable else ""))
    failed = gate.failures(old, new, old_path, new_path, rows, threshold)
    for line in failed:
        print(f"{'gate fails' if fail_on_regression else 'note'}: {line}")
    return 1 if (bad or failed) and fail_on_regression else 0


__all__ = ["add_compare", "cmd_compare", "compare_files"]
