"""The CuPy backend's support: the runtime probe behind ``availability()``, the strategy rule and the buffers of one fit."""

from __future__ import annotations

import copy
import functools

import numpy as np

from ...core import validation as v
from ...kernels.cuda import sources as kc
from ..base import importable

STRATEGIES = ("persistent", "graph", "step")


def short_error(exc) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def cuda_version(n) -> str:
    n = int(n)
    return f"{n // 1000}.{n % 1000 // 10}"


def device_name(cp, device_id) -> str:
    name = cp.cuda.runtime.getDeviceProperties(device_id)["name"]
    return name.decode() if isinstance(name, bytes) else str(name)


@functools.lru_cache(maxsize=None)
def probe():
    """``(ok, reason, info)``: can CuPy run kernels and cuBLAS here? Cached; never raises."""
    if not importable("cupy"):
        return False, "cupy is not installed", {}
    try:
        import cupy
    except Exception as exc:  # a broken install
        return False, f"cupy failed to import: {short_error(exc)}", {}
    try:
        count = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as exc:  # no driver, no device, driver too old
        return False, f"no usable CUDA GPU: {short_error(exc)}", {}
    if count < 1:
        return False, "no usable CUDA GPU: no CUDA device found", {}
    try:
        if not cupy.is_available():
            return False, "no usable CUDA GPU: cupy.is_available() is False", {}
        if int((cupy.arange(4) * 2).sum().item()) != 12:
            return False, "no usable CUDA GPU: a test kernel returned a wrong result", {}
    except Exception as exc:
        return False, f"no usable CUDA GPU: a test kernel failed ({short_error(exc)})", {}
    try:
        a = cupy.ones((2, 2), dtype=np.float32)
        if float((a @ a).sum().item()) != 8.0:
            return False, "cuBLAS returned a wrong result", {}
    except Exception as exc:
        return False, f"cuBLAS is unusable: {short_error(exc)}", {}
    info = {"count": count}
    try:
        info["device"] = f"cuda:0 ({device_name(cupy, 0)})"
        info["driver"] = cuda_version(cupy.cuda.runtime.driverGetVersion())
        info["runtime"] = cuda_version(cupy.cuda.runtime.runtimeGetVersion())
    except Exception:  # informative only
        pass
    return True, "", info


def choose_strategy(n_samples, layer_sizes, dtype, requested="auto", callback=False, output="sigmoid"):
    """``(strategy, why)``: the one rule (full batch).

    A callback needs each epoch's loss on the host, so it gets ``"step"``.
    ``"auto"`` takes ``"persistent"`` when the net fits one thread block
    (``kernels/cuda/sources.persistent_plan``: params, grads and all activations in
    shared memory), else ``"graph"``. An explicit ``"persistent"`` for a net
    that does not fit raises ``ValueError``. The one-block trainer has the
    sigmoid head only: a softmax fit takes ``"graph"`` instead of it (as
    Numba's softmax fits run one kernel whatever the strategy).
    """
    v.check_choice("strategy", requested, ("auto",) + STRATEGIES)
    if callback:
        return "step", "a callback needs each epoch's loss on the host"
    if requested in ("graph", "step"):
        return requested, "requested"
    if output != "sigmoid":
        return "graph", f"the one-block trainer has the sigmoid head only (output={output!r})"
    plan = kc.persistent_plan(n_samples, layer_sizes, dtype)
    if requested == "persistent":
        if not plan.fits:
            raise ValueError(f"strategy='persistent' needs a net that fits one thread block; this one {plan.reason}")
        return "persistent", "requested"
    if plan.fits:
        return "persistent", plan.reason
    return "graph", f"one block is not enough ({plan.reason})"


class Workspace:
    """Every buffer of one fit (or one direct call), allocated up front: a captured graph allocates nothing."""

    def __init__(self, cp, sizes, n_rows, dtype, epochs=1, with_acts=True):
        n, width = n_rows, max(sizes[1:])
        pairs = list(zip(sizes[:-1], sizes[1:]))
        self.acts = [None] + [cp.empty((n, s), dtype=dtype) for s in sizes[1:]] if with_acts else None
        flat = [cp.empty(n * width, dtype=dtype) for _ in range(min(2, len(pairs)))]
        # dz of layer l (N x sizes[l + 1]); layers alternate between two buffers
        self.dz = [flat[l % 2][: n * o].reshape(n, o) for l, (_, o) in enumerate(pairs)]
        self.chunks, self.rows_per_chunk = kc.colsum_chunks(n)
        self.partial = cp.empty(self.chunks * width, dtype=np.float64)
        self.loss_parts = self.chunks * kc.col_tiles(sizes[-1])
        self.loss_partial = cp.empty(self.loss_parts, dtype=np.float64)
        self.grads = [(cp.empty((i, o), dtype=dtype), cp.empty((1, o), dtype=dtype)) for i, o in pairs]
        self.history = cp.full(epochs, np.nan, dtype=np.float64)
        self.counter = cp.zeros(1, dtype=np.int32)
        self.sgd = None

    def rows(self, m, history, counter):
        """A batch of the first ``m`` rows: views of these buffers (nothing allocated) with the column-sum
        geometry of ``m`` rows; its loss goes to ``history[counter]`` (``loss_finish``)."""
        view = copy.copy(self)
        view.acts = [None] + [a[:m] for a in self.acts[1:]]
        view.dz = [d[:m] for d in self.dz]
        view.chunks, view.rows_per_chunk = kc.colsum_chunks(m)
        view.loss_parts = view.chunks * kc.col_tiles(self.dz[-1].shape[1])
        view.history, view.counter = history, counter
        return view


def capture(cp, run):
    """``run``'s launches captured as a CUDA graph on a private stream (launched later on the current one)."""
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        try:
            run()
        except BaseException:
            try:
                stream.end_capture()
            except Exception:  # the capture is broken anyway; report the first error
                pass
            raise
        return stream.end_capture()


def pointer_table(cp, arrays):
    """Device arrays ``(addresses, offsets)`` describing ``arrays`` for the multi-tensor kernels."""
    ptrs = np.array([a.data.ptr for a in arrays], dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum([a.size for a in arrays])]).astype(np.int64)
    return cp.asarray(ptrs), cp.asarray(offsets)


def flat(params):
    return [a for W, b in params for a in (W, b)]


def sizes_of(params, X):
    return [X.shape[1]] + [W.shape[1] for W, _ in params]


def read_loss(ws, epoch, out) -> int:
    """An epoch run on the device, recorded for the contract's ``_epoch_loop``: its loss, ``ws.history[epoch]``,
    copied to ``out`` (a host synchronisation)."""
    out[0] = ws.history[epoch].item()
    return 1
