"""Epochs: each epoch's row order (``epoch_orders``) and the loop every training path runs (``epoch_loop``).

``Backend._epoch_loop`` is ``epoch_loop``: the contract's default ``_train`` /
``_train_batches`` and every fused path of a backend (one kernel call per
epoch, per chunk of epochs, or for all of them) record their losses through
it, so the divergence check and the callback's schedule are written once;
``Backend.finish`` then raises ``TrainingDiverged`` at the first non-finite loss.
"""

from __future__ import annotations

import math

import numpy as np

from ..core import interrupt


def epoch_orders(n_samples, shuffle=True, seed=None):
    """Each epoch's row order, epoch after epoch: ``np.random.default_rng(seed).permutation(n)``
    drawn again every epoch from one generator, or ``arange(n)`` without ``shuffle``.

    Made in NumPy for every backend, so their mini-batch trajectories are comparable.
    """
    if not shuffle:
        order = np.arange(n_samples)
        while True:
            yield order
    rng = np.random.default_rng(seed)
    while True:
        yield rng.permutation(n_samples)


def epoch_loop(epochs, run, callback, chunk=1) -> np.ndarray:
    """The epoch loop of every training path; returns the float64 history recorded, for ``finish``.

    ``run(done, out)`` trains the next ``len(out)`` epochs (at most ``chunk``; ``done`` have run),
    writes their losses to ``out`` and returns how many it recorded: fewer when it stopped at a
    non-finite loss. The loop stops at the first non-finite loss recorded (``finish`` raises
    ``TrainingDiverged`` for it) and otherwise calls ``callback(epoch, loss)`` after each call of
    ``run`` (1-based epoch, the loss as a float).
    """
    history = np.empty(epochs, dtype=np.float64)
    done = 0
    while done < epochs:
        interrupt.check()  # a Ctrl-C that native code swallowed is raised here, before the next call
        k = min(chunk, epochs - done)
        got = run(done, history[done : done + k])
        done += got
        if got < k or not math.isfinite(history[done - 1]):
            break
        if callback is not None:
            callback(done, float(history[done - 1]))
    return history[:done]
