"""CUDA C++ sources of the CuPy backend (``src/*.cu``, read as plain text; no CuPy import here).

Two modules, each a complete source that ``cupy.RawModule`` compiles with NVRTC,
retrieving template instantiations through ``name_expressions``; the tests
compile every one of them with ``nvcc -arch=sm_90`` (``sources()`` lists them):

* ``layers`` (``layers.cu`` + ``batches.cu``): the kernels around the cuBLAS
  matmuls of one epoch (strategies ``"step"`` and ``"graph"``): bias +
  activation fused after each matmul; the activation derivative fused on the
  upstream gradient together with the bias-gradient column sums; the
  sigmoid-BCE output error fused with its bias-gradient sums and the loss; the
  softmax head (``bias_log_softmax`` for a forward pass; in a training step
  ``softmax_error_colsum``: bias, stable log-softmax, cross-entropy terms,
  ``softmax - onehot`` and its bias-gradient sums in one launch); one
  multi-tensor SGD kernel for all params; and for mini-batches the row gather
  by the epoch's permutation (``gather_batch``) and the epoch's mean of the
  batch losses (``epoch_finish``), both steered by device counters so one
  captured epoch replays.
* ``persistent``: one thread block trains the whole net for every epoch in a
  single launch, params, grads and activations in shared memory.

Templates take the element type ``T`` (float / double) and the hidden
activation ``ACT`` (``ACT_CODES``). The numerics follow ``kernels/reference.py``
formula for formula: sigmoid clamped below at ``sigmoid_floor(dtype)``,
derivatives from the activation's output, ``y_hat - y`` (divided by N for
``grad_reduction="mean"``), BCE clipped at ``bce_eps(dtype)``, ``p -= lr * g``.
Sums run in a fixed order (deterministic); reductions accumulate in double.
All shared memory is dynamic (``extern __shared__ double mlp_smem[]``).
"""

from __future__ import annotations

import importlib.resources
import re
from dataclasses import dataclass

import numpy as np

from ...core.params import macs
from ..reference import ACT_CODES

CTYPES = {"float32": "float", "float64": "double"}

THREADS = 256  # block size of the elementwise kernels
MAX_BLOCKS = 8192  # grid cap of the grid-stride kernels
COLSUM_TX, COLSUM_TY = 32, 8  # column-sum tile: 32 columns x 8 row lanes
COLSUM_SHARED_BYTES = 8 * COLSUM_TY * (COLSUM_TX + 1)
OUTPUT_SHARED_BYTES = COLSUM_SHARED_BYTES + 8 * COLSUM_TX * COLSUM_TY
MAX_CHUNKS, MIN_CHUNK_ROWS = 256, 64  # row chunks of a column sum (second pass sums them in order)

MAX_SHARED_BYTES = 48 * 1024  # dynamic shared memory of one block without an opt-in
MAX_BLOCK_THREADS = 1024
MAX_PERSISTENT_MACS = 1 << 18  # forward multiply-adds per epoch one block still runs faster than a graph

def _read(name: str) -> str:
    """A CUDA source file shipped in ``kernels/cuda/src/`` (plain text: NVRTC compiles it at run time)."""
    return (importlib.resources.files(__package__) / "src" / name).read_text()


_COMMON = _read("common.cuh")
_LAYERS = _read("layers.cu")
_PERSISTENT = _read("persistent.cu")
_BATCHES = _read("batches.cu")

LAYER_KERNELS = ("bias_act", "act_backward_colsum", "output_error_colsum", "colsum_finish", "loss_finish",
                 "sgd_multi", "all_finite_multi", "bias_log_softmax", "softmax_error_colsum", "gather_batch",
                 "epoch_finish")
_WITH_ACT = {"bias_act", "act_backward_colsum", "train_persistent"}
_UNTEMPLATED = {"loss_finish", "epoch_finish"}

SOFTMAX_THREADS = 128  # block of softmax_error_colsum: one thread per row of its chunk
SOFTMAX_SHARED_BYTES = 8 * SOFTMAX_THREADS


@dataclass(frozen=True)
class KernelSource:
    """One complete CUDA source and the instantiations CuPy retrieves from it."""

    name: str  # "layers" | "persistent"
    code: str
    name_expressions: tuple


OPTIONS = ("-std=c++17",)


def name_expression(kernel: str, dtype, act=None) -> str:
    """The exact string CuPy gets the instantiation by: ``bias_act<float, 0>``, ``loss_finish``."""
    if kernel in _UNTEMPLATED:
        return kernel
    ctype = CTYPES[np.dtype(dtype).name]
    if kernel in _WITH_ACT:
        code = ACT_CODES[act] if isinstance(act, str) else int(act)
        return f"{kernel}<{ctype}, {code}>"
    return f"{kernel}<{ctype}>"


def _expressions(kernels, dtypes):
    out = []
    for k in kernels:
        if k in _UNTEMPLATED:
            out.append(name_expression(k, "float64"))
            continue
        for dt in dtypes:
            acts = ACT_CODES.values() if k in _WITH_ACT else (None,)
            out.extend(name_expression(k, dt, a) for a in acts)
    return tuple(out)


def source(name: str, dtypes=("float32", "float64")) -> KernelSource:
    """Module ``name`` (``"layers"`` or ``"persistent"``) instantiated for ``dtypes``."""
    dtypes = tuple(np.dtype(d).name for d in dtypes)
    if name == "layers":
        return KernelSource(name, _COMMON + _LAYERS + _BATCHES, _expressions(LAYER_KERNELS, dtypes))
    if name == "persistent":
        return KernelSource(name, _COMMON + _PERSISTENT, _expressions(("train_persistent",), dtypes))
    raise ValueError(f"unknown CUDA module {name!r}; known: layers, persistent")


def sources() -> list:
    """Every CUDA source of the package, with every instantiation (what the nvcc test compiles)."""
    return [source("layers"), source("persistent")]


def kernel_signatures(code: str) -> dict:
    """``{kernel: (template_params, [(param_type, param_name), ...])}`` read off a source's ``__global__`` functions."""
    pattern = re.compile(r"(?:template\s*<([^>]*)>\s*)?__global__\s+void\s+(\w+)\s*\(([^)]*)\)")
    out = {}
    for tmpl, name, params in pattern.findall(code):
        tnames = [t.split()[-1] for t in tmpl.split(",")] if tmpl.strip() else []
        plist = []
        for p in params.split(","):
            words = p.replace("__restrict__", " ").replace("*", " * ").split()
            plist.append((" ".join(words[:-1]).replace(" *", "*"), words[-1]))
        out[name] = (tnames, plist)
    return out


# ---------------------------------------------------------------- launch geometry
def _next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def grid_blocks(n: int, threads: int = THREADS) -> int:
    """Blocks of a grid-stride launch over ``n`` elements."""
    return max(1, min(MAX_BLOCKS, -(-int(n) // threads)))


def colsum_chunks(n_rows: int) -> tuple:
    """``(n_chunks, rows_per_chunk)`` of the two-pass column sums (first pass: one block row per chunk)."""
    n_chunks = max(1, min(MAX_CHUNKS, -(-int(n_rows) // MIN_CHUNK_ROWS)))
    return n_chunks, -(-int(n_rows) // n_chunks)


def col_tiles(n_cols: int) -> int:
    """Column tiles (blocks along x) of a column-sum launch."""
    return -(-int(n_cols) // COLSUM_TX)


@dataclass(frozen=True)
class PersistentPlan:
    """Whether the one-launch trainer can take this net, and its launch geometry."""

    fits: bool
    threads: int
    shared_bytes: int
    reason: str


def persistent_plan(n_samples, layer_sizes, dtype) -> PersistentPlan:
    """The rule for the one-block trainer.

    It fits when params, grads and every layer's activations for all samples
    (plus one double per thread) fit ``MAX_SHARED_BYTES`` of shared memory and a
    forward pass is at most ``MAX_PERSISTENT_MACS`` multiply-adds (beyond that
    one SM is slower than the whole GPU running a captured graph). Threads: the
    largest phase's work items, rounded up to a power of two in [32, 1024].
    """
    sizes = [int(s) for s in layer_sizes]
    n = int(n_samples)
    itemsize = np.dtype(dtype).itemsize
    pairs = list(zip(sizes[:-1], sizes[1:]))
    n_params = sum(i * o + o for i, o in pairs)
    work = max([n * o for _, o in pairs] + [i * o + o for i, o in pairs] + [n * i for i, _ in pairs[1:]] + [n_params])
    threads = min(MAX_BLOCK_THREADS, max(32, _next_pow2(work)))
    shared = 8 * threads + itemsize * (2 * n_params + n * sum(sizes))
    work_macs = macs(n, sizes)
    if shared > MAX_SHARED_BYTES:
        why = (f"needs {shared} B of shared memory for params, grads and activations "
               f"(one block has {MAX_SHARED_BYTES} B)")
    elif work_macs > MAX_PERSISTENT_MACS:
        why = f"{work_macs} multiply-adds per forward pass is too much for one block (limit {MAX_PERSISTENT_MACS})"
    else:
        return PersistentPlan(True, threads, shared, f"fits one block: {shared} B shared memory, {threads} threads")
    return PersistentPlan(False, threads, shared, why)
