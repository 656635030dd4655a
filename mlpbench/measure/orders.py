"""The orders of the engine's rounds: a Williams design over the subjects (``round_orders``), with the baseline
and its A/A copy as one unit of it where there is a control (``paired_orders``). Pure functions of the subject
count; ``engine.measure`` walks a cycle of them, one row a round."""

from __future__ import annotations


def round_orders(k) -> list:
    """The orders of one cycle of rounds over ``k`` subjects: a Williams design.

    Every subject takes every position equally often (the rows rotate: A B C,
    B C A, C A B), and every subject follows every other equally often (odd
    ``k`` adds the reversed rows: C B A, A C B, B A C). Plain rotation would
    leave each subject always behind the same neighbour, whose thread pool may
    still be spinning: here a NumPy copy always timed after Numba's parallel
    step read 23 % slower than NumPy.
    """
    first, lo, hi = [0], 1, k - 1
    for j in range(1, k):
        if j % 2:
            first.append(lo)
            lo += 1
        else:
            first.append(hi)
            hi -= 1
    rows = [[(x + i) % k for x in first] for i in range(k)]
    return rows + [row[::-1] for row in rows] if k % 2 and k > 1 else rows


def paired_orders(k) -> list:
    """``round_orders`` over ``k`` subjects of which the first two (the baseline and its A/A copy) run back to
    back: one unit of a Williams design over ``k - 1`` units, each row once as ``0 1`` and once as ``1 0``.

    The copy runs the baseline's code on the baseline's thread pool, so nothing needs to settle between
    them (``measure``'s pause waits for another library's workers, which the baseline's own next call would
    find spinning anyway); kept apart, each of the two was followed by another subject and paid the wait
    for its pool (OpenBLAS's spin, ~0.1 s after NumPy's threaded matmuls): two of a round's pauses where
    one does. Every other subject still takes every unit position and follows every unit equally often.
    """
    if k < 2:
        return round_orders(k)
    rows = []
    for row in round_orders(k - 1):
        for pair in ([0, 1], [1, 0]):
            rows.append([i for u in row for i in (pair if u == 0 else [u + 1])])
    return rows


__all__ = ["paired_orders", "round_orders"]
