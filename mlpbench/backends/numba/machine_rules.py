"""The Numba kernels' block sizes and thread thresholds, derived from the CPU they run on.

Every parameter is a rule over the per-core caches and the SIMD width the OS
reports (``core/cpu``: sysfs, else ``os.sysconf``, else a documented fallback),
so nothing tuned on one CPU is carried to another unchanged. The constants below
are the rules' coefficients, each set so that the rule reproduces the value
measured on the CPU the kernels were first tuned on (a 2-core AMD EPYC Zen 4 VM:
32 KiB L1d, 1 MiB L2, 32 MiB L3 shared by both cores, AVX-512), where the
measurement is quoted. Plain Python, no Numba import.

* ``step_block_rows``: rows per block of the step kernel. Bigger blocks make the
  two GEMMs per layer more efficient (``dW += A.T @ D`` reads and writes the
  whole weight gradient once per block: more rows amortize it); smaller blocks
  keep the block's activations and errors in cache between the GEMM that writes
  them and the passes that read them. Rule: the block's workspace, counted in
  float64 bytes, takes a quarter of a core's L2 plus its share of the L3
  (``BLOCK_CACHE_FRACTION``). On the Zen 4 VM: 4.25 MiB, 2**19 float64 elements,
  the measured best (N=16384, [32, 2048, 1], float64, one thread, idle: 2**18
  elements 144 ms, 2**19 133 ms, 2**20 135 ms). float32 takes the same rows, not
  the same bytes: twice the rows measured slower (same point, one thread, CPU time
  under load, three alternating rounds, p50: 85 rows 76-80 ms, 170 rows 83-84 ms);
  the rows set the weight-gradient GEMM's depth, and a float32 block half the
  bytes still leaves the L2 at this width.
* ``l1_tile``: the column tile of the one-output layer's backward pass
  (``kernels/numba/layers.single_output_backward``): its three weight-sized
  vectors (the weights, their gradient, the bias gradient) take
  ``3 / L1_TILE_PARTS`` of the L1d, the rest left to the rows streaming through;
  a whole multiple of the SIMD lanes. On the Zen 4 VM (32 KiB L1d) 512 float64 /
  1024 float32 columns, the measured best of 128-2048 in both dtypes.
* ``step_parallel_min_macs`` / ``pin_min_macs``: the step kernel runs on several
  threads (``prange``) from a serial step of ``STEP_PARALLEL_CYCLES`` core cycles,
  and pins BLAS to one thread from ``PIN_CYCLES``, both at the core's peak float64
  multiply-add rate (``macs_per_cycle``: two FMA pipes of one SIMD register). A
  fork/join, and the ~16 us of thread pinning, cost the same time whatever the
  CPU; the work they must amortize runs faster on wider vectors, so the threshold
  in MACs scales with the vector width. On the Zen 4 VM (AVX-512, 16 float64 MACs
  per cycle) this gives the measured 2**26 and 2**20 MACs of the forward pass
  (``steps`` has the measurement). The same MACs in either dtype: a float32 step
  takes about half the time, so the float32 rate would double the bar, but the
  point that would then turn serial, N=1024, [32, 2048, 1] (6.9e7 MACs), ran in
  4.7 / 3.9 ms (medians) on two threads there against torch's 6.0 / 5.8 ms (the
  committed ``docs/results/amd-epyc-2c`` standard runs): one thread would lose it.
* ``batch_threads``: the threaded mini-batch kernel splits each batch's rows over
  the threads. Each thread's GEMMs must have enough rows to fill the BLAS
  micro-kernel's register tiles, whose edge grows with the SIMD register: at least
  ``ROWS_PER_THREAD_VECTORS`` float64 vectors' worth of rows per thread, whatever
  the dtype (AVX-512: 32 rows; AVX2: 16; SSE / NEON: 8); and a batch's forward
  pass must cover two fork/joins (``BATCH_PARALLEL_CYCLES`` at the peak MAC rate:
  on AVX-512 2**18 float64, 2**19 float32 MACs). Measured on the Zen 4 VM
  (``minibatch``): 16 rows per thread lose at every size and dtype, 32 win at
  H=512 in both dtypes; at H=64 float32 (2.4e5 MACs per batch of 64, under the
  float32 bar) two threads gained 8% (6.1 / 5.6 ms), which an Intel AVX-512 run
  (issue 25: batch 64 threaded slower than batch 16 on one thread) did not show.
  Hence the rule is only the fallback: ``mlpbench tune`` measures both kernels
  on this machine (``auto/kernel_tuning.py``) and stores the two thresholds that
  lose the least time over its grid (``fit_batch_thresholds``) in ``tuned.json``
  (``core/tuned.py``), keyed by the CPU, its CPU count and the Numba, NumPy and
  SciPy versions; ``batch_thresholds`` takes them from there when they exist.
"""

from __future__ import annotations

import contextlib
import functools
import math

from ...core import tuned
from ...core.cpu import cache_sizes, vector_bytes
from ...core.params import macs

#: the step block's workspace: this fraction of (L2 + the core's L3 share), in bytes
BLOCK_CACHE_FRACTION = 0.25
#: a block has at least this many rows (GEMMs on fewer rows run far below peak)
MIN_BLOCK_ROWS = 8
#: the L1d divided by this many vectors of a column tile (three of them live there)
L1_TILE_PARTS = 8
#: serial-step cycles (at the peak MAC rate) from which ``prange`` shares the step: 2**22
STEP_PARALLEL_CYCLES = 2**22
#: serial-step cycles from which the step pins BLAS to one thread: 2**16
PIN_CYCLES = 2**16
#: cycles of a batch's forward pass (at the peak MAC rate) from which the batch kernel threads: 2**14
BATCH_PARALLEL_CYCLES = 2**14
#: SIMD vectors of rows each thread of the batch kernel gets at least
ROWS_PER_THREAD_VECTORS = 4
#: FMA pipes per core assumed by ``macs_per_cycle`` (two on every x86 and Arm server core since Haswell)
FMA_PIPES = 2
#: the gain the threaded mini-batch kernel must show before the tuning lets it run: at the margin a busy second
#: core costs it far more than it gains (2-core AMD EPYC VM, ratios threaded / one core at N=16384, a neighbour
#: active: float64 [64, 512, 10] batch 16 1.02 in one run, 2.58 in the next; float32 [64, 64, 10] batch 64 0.95, 1.70)
THREAD_MIN_GAIN = 0.05
#: the section of ``tuned.json`` that holds the measured batch thresholds, per dtype
TUNED_SECTION = "numba.batch_threads"
#: what the batch kernels' speed depends on besides the CPU: the key of their tuned thresholds
TUNED_PACKAGES = ("numba", "numpy", "scipy")
_DTYPE_OF = {8: "float64", 4: "float32"}
_forced = None  # (rows per thread, MACs) set by ``forced_batch_thresholds``
_warned = set()


def lanes(itemsize: int, vbytes: int | None = None) -> int:
    """Elements of ``itemsize`` bytes per SIMD register (``core.cpu.vector_bytes``)."""
    return max(1, (vbytes or vector_bytes()) // itemsize)


def macs_per_cycle(itemsize: int, vbytes: int | None = None) -> int:
    """A core's peak multiply-adds per cycle in this dtype: ``FMA_PIPES`` vector FMAs."""
    return FMA_PIPES * lanes(itemsize, vbytes)


def step_block_bytes(caches=None) -> int:
    """Bytes of one step block's workspace: ``BLOCK_CACHE_FRACTION`` of L2 + the L3 share, at least the L2."""
    c = caches or cache_sizes()
    return max(c.l2, int(BLOCK_CACHE_FRACTION * (c.l2 + c.l3)))


def step_block_rows(row_elems: int, itemsize: int, n_samples: int, n_threads: int = 1, caches=None) -> int:
    """Rows per block of the step kernel for a workspace of ``row_elems`` elements per row (all rows when they
    fit; at least one block per thread)."""
    nb = max(MIN_BLOCK_ROWS, step_block_bytes(caches) // max(1, row_elems * itemsize))
    if n_threads > 1:
        nb = min(nb, -(-n_samples // n_threads))
    return max(1, min(nb, n_samples))


def l1_tile(itemsize: int, caches=None, vbytes: int | None = None) -> int:
    """Columns per tile of ``single_output_backward``: ``L1 / L1_TILE_PARTS`` bytes per vector, a multiple of
    the SIMD lanes (at least one vector)."""
    c = caches or cache_sizes()
    v = lanes(itemsize, vbytes)
    return max(v, c.l1 // (L1_TILE_PARTS * itemsize) // v * v)


def step_parallel_min_macs(vbytes: int | None = None) -> int:
    """Forward-pass MACs from which the step kernel runs on several threads (either dtype)."""
    return STEP_PARALLEL_CYCLES * macs_per_cycle(8, vbytes)


def pin_min_macs(vbytes: int | None = None) -> int:
    """Forward-pass MACs from which a serial step pins BLAS to one thread (either dtype)."""
    return PIN_CYCLES * macs_per_cycle(8, vbytes)


def batch_min_rows(vbytes: int | None = None) -> int:
    """Rows per thread the threaded mini-batch kernel needs at least (float64 vectors' worth, any dtype)."""
    return ROWS_PER_THREAD_VECTORS * lanes(8, vbytes)


def batch_min_macs(itemsize: int, vbytes: int | None = None) -> int:
    """Forward-pass MACs per batch from which the mini-batch kernel threads."""
    return BATCH_PARALLEL_CYCLES * macs_per_cycle(itemsize, vbytes)


@functools.lru_cache(maxsize=None)
def tuned_key() -> str:
    """This machine's key in ``tuned.json`` for the batch thresholds (``core.tuned.machine_key``)."""
    return tuned.machine_key(*TUNED_PACKAGES)


def tuned_batch_thresholds(itemsize: int):
    """``(rows per thread, MACs per batch)`` that ``mlpbench tune`` measured here for this dtype, or None
    (never tuned on this machine and these versions; a malformed value is warned about once and ignored)."""
    value = tuned.load(TUNED_SECTION, tuned_key())
    if value is None:
        return None
    if isinstance(value, dict) and _DTYPE_OF.get(itemsize) not in value:
        return None  # this dtype was not tuned (``mlpbench tune --dtype``)
    try:
        entry = value[_DTYPE_OF[itemsize]]
        rows, macs = entry["min_rows"], entry["min_macs"]
        if not (type(rows) is int and type(macs) is int and rows >= 1 and macs >= 0):
            raise TypeError("min_rows must be an int >= 1 and min_macs an int >= 0")
    except (KeyError, TypeError) as exc:
        what = _DTYPE_OF.get(itemsize, itemsize)
        tuned.warn_once(_warned, itemsize, f"mlpbench: the tuned {TUNED_SECTION} of {what} in {tuned.path()} is not "
                        f"usable ({type(exc).__name__}: {exc}); the rule decides (mlpbench tune measures again)",
                        stacklevel=3)
        return None
    return rows, macs


def batch_thresholds(itemsize: int, vbytes: int | None = None) -> tuple[int, int, str]:
    """``(rows per thread, forward MACs per batch, source)`` from which the mini-batch kernel threads: forced
    (``forced_batch_thresholds``), else measured here (``"tuned"``), else the rule (``"rule"``; always the rule
    for an explicit ``vbytes``)."""
    if _forced is not None:
        return (*_forced, "forced")
    if vbytes is None:
        measured = tuned_batch_thresholds(itemsize)
        if measured is not None:
            return (*measured, "tuned")
    return batch_min_rows(vbytes), batch_min_macs(itemsize, vbytes), "rule"


@contextlib.contextmanager
def forced_batch_thresholds(min_rows: int, min_macs: int):
    """Within the block, ``batch_thresholds`` is ``(min_rows, min_macs)`` (the tuning measures the threaded
    kernel where the rule would not run it)."""
    global _forced
    before, _forced = _forced, (int(min_rows), int(min_macs))
    try:
        yield
    finally:
        _forced = before


def batch_threads(sizes, nb, threads, itemsize, vbytes=None) -> int:
    """Threads for batches of ``nb`` rows of a net of layer ``sizes`` (1: the single-thread kernel)."""
    min_rows, min_macs, _ = batch_thresholds(itemsize, vbytes)
    forward_macs = macs(nb, sizes)
    if threads < 2 or forward_macs < min_macs:
        return 1
    return max(1, min(threads, nb // min_rows))


def fit_batch_thresholds(points) -> tuple[int, int, float]:
    """``(min_rows, min_macs, lost)``: the thresholds whose decisions lose the least over measured ``points``.

    ``points``: ``(rows per thread, forward MACs per batch, threaded / one-core time)`` of the same batches.
    The kernel threads where both thresholds are met; a point decided wrongly loses ``|log ratio|`` (the
    time the other kernel would have saved, as a log), the ratio taken ``THREAD_MIN_GAIN`` worse for the
    threads, so a point where they gain less than that counts against them. Candidates are the measured
    values, and "never" (twice the largest); among equal losses the larger thresholds win (fewer threads:
    less power for no measured gain). ``lost``: the summed loss.
    """
    pts = [(int(r), int(m), math.log(q / (1.0 - THREAD_MIN_GAIN))) for r, m, q in points]
    if not pts:
        raise ValueError("points must not be empty")
    rows = sorted({r for r, _, _ in pts} | {2 * max(r for r, _, _ in pts)})
    macs = sorted({m for _, m, _ in pts} | {2 * max(m for _, m, _ in pts)})
    best = None
    for m0 in macs:
        for r0 in rows:
            lost = sum(max(0.0, lq) if (r >= r0 and m >= m0) else max(0.0, -lq) for r, m, lq in pts)
            if best is None or lost <= best[2] + 1e-12:  # ties: the later (larger) candidate
                best = (r0, m0, lost)
    return best
