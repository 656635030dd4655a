"""The CuPy backend's mini-batch SGD, ``CupyBackend._train_batches``: no Python per batch.

Per fit, allocated once: a workspace of ``batch_size`` rows (views of its first
``m`` rows serve the last, partial batch), the gathered batch, the SGD kernel's
pointer tables, the device counters (epoch; batch within the epoch), one loss
slot per batch, and the epochs' row orders. The orders come from the
contract's ``orders`` (made in NumPy, ``base.epoch_orders``), stacked as int32
``ORDER_ELEMS`` indices at a time and uploaded once per chunk of epochs.

One epoch is enqueued as, per batch: ``gather_batch`` (the rows of this
epoch's order, picked on the device by the epoch counter), the forward pass,
the head's fused error kernel and the backward pass, ``loss_finish`` into the
batch's loss slot, the SGD update; then ``epoch_finish`` (the history entry:
the mean of the batch losses, in batch order). That epoch is captured ONCE as
a CUDA graph and replayed every epoch; with ``strategy="step"``, or where the
capture fails under ``"auto"``, it is enqueued kernel by kernel each epoch,
still with no host synchronisation per batch. The history stays on the device
and is read once at the end (once per epoch with a callback).
"""

from __future__ import annotations

import numpy as np

from ...kernels.cuda import sources as kc
from .support import capture, read_loss, short_error, sizes_of

#: int32 row indices on the device per upload (8 MiB): this many rows of orders are uploaded together
ORDER_ELEMS = 2**21


def epoch_batches(n_rows, batch_size) -> list:
    """``[(start, rows), ...]`` of one epoch: the full batches, then the partial one."""
    return [(s, min(batch_size, n_rows - s)) for s in range(0, n_rows, batch_size)]


def train_batches(be, params, X, y, lr, epochs, activation, grad_reduction, callback, batch_size, orders,
                  output="sigmoid"):
    """Mini-batch SGD on the device (see the module docstring); returns the float64 history."""
    cp = be._cp
    dtype = X.dtype
    (n, n_in), n_out = X.shape, y.shape[1]
    if n >= 2**31:
        raise ValueError(f"X has {n} rows; the cupy backend's mini-batches take fewer than 2**31")
    nb = min(batch_size, n)
    batches = epoch_batches(n, nb)
    be._preload(dtype, activation)
    ws = be._workspace(params, sizes_of(params, X), nb, dtype, epochs)
    A, Tb = cp.empty((nb, n_in), dtype=dtype), cp.empty((nb, n_out), dtype=dtype)
    batch_loss = cp.full(len(batches), np.nan, dtype=np.float64)
    batch_counter = cp.zeros(1, dtype=np.int32)
    per_upload = max(1, min(epochs, ORDER_ELEMS // n))
    order_dev = cp.empty((per_upload, n), dtype=np.int32)
    views = [(s, m, ws.rows(m, batch_loss, batch_counter), A[:m], Tb[:m]) for s, m in batches]
    gather, finish = be._fn("gather_batch", dtype), be._fn("epoch_finish", dtype)

    def run():
        for start, m, view, Am, Tm in views:
            gather((kc.grid_blocks(m * (n_in + n_out)),), (kc.THREADS,),
                   (X, y, Am, Tm, order_dev, ws.counter, np.int32(per_upload), np.int32(n), np.int32(start),
                    np.int32(m), np.int32(n_in), np.int32(n_out)))
            be._enqueue_step(view, params, Am, Tm, activation, grad_reduction, lr, output)
        finish((1,), (1,), (batch_loss, np.int32(len(batches)), ws.history, ws.counter, batch_counter,
                            np.int32(epochs)))

    graph, strategy, why = None, "step", "requested"
    if be.strategy != "step":
        try:
            graph = capture(cp, run)
            strategy, why = "graph", "mini-batches: one epoch of batches captured once, replayed per epoch"
            if be.strategy == "persistent":
                why += " (the one-block trainer is full-batch only)"
        except Exception as exc:  # nothing ran: "auto" falls back to launching kernel by kernel
            if be.strategy != "auto":
                raise
            why = f"the CUDA graph capture failed ({short_error(exc)})"
    be.last_run = {"strategy": strategy, "why": why, "batch_rows": nb, "batches": len(batches)}
    launch = run if graph is None else graph.launch

    def epoch(done, out):  # epoch ``done``; the orders of ``per_upload`` epochs go up at the first of them
        if done % per_upload == 0:
            k = min(per_upload, epochs - done)
            order_dev[:k].set(np.array([next(orders) for _ in range(k)], dtype=np.int32))  # after the last replay
        launch()
        return 1 if out is None else read_loss(ws, done, out)

    if callback is None:
        for e in range(epochs):
            epoch(e, None)
        history = cp.asnumpy(ws.history)
    else:  # each epoch's loss on the host, through the contract's loop
        history = be._epoch_loop(epochs, epoch, callback)
    return be.finish(history, params, lr, be._params_finite(params, dtype))
