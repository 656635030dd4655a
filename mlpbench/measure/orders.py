"""The orders of the engine's rounds: a Williams design over the subjects, the A/A copy one of them
(``round_orders``). A pure function of the subject count; ``engine.measure`` walks a cycle of them, one row a
round."""

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


__all__ = ["round_orders"]
