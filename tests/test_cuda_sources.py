"""The CUDA sources of ``kernels/cuda.py``, checked without a GPU.

* ``nvcc -arch=sm_90`` compiles every source with every instantiation CuPy
  retrieves (skipped with a reason when nvcc is absent); a deliberately broken
  copy fails, and an error only an instantiation can reveal fails too, so the
  check is genuine.
* The same sources, compiled for the CPU by g++ with one OS thread per CUDA
  thread and a real barrier for ``__syncthreads``, run against the NumPy
  reference: every kernel of the layer module, and the one-launch trainer
  against ``NumpyBackend.train`` (``CudaEmulator``, also used by
  ``test_cupy_backend.py`` to run the whole backend on the CPU).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np
import pytest

from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.kernels import cuda as kc
from mlpbench.kernels import reference as ref
from mlpbench.params import init_params

NVCC = shutil.which("nvcc")
GXX = shutil.which("g++")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc (CUDA toolkit) is not installed")
needs_gxx = pytest.mark.skipif(GXX is None, reason="g++ is not installed (needed to emulate the kernels on the CPU)")


# ---------------------------------------------------------------- nvcc
def instantiation_hooks(name_expressions) -> str:
    """Host code taking every kernel's address: nvcc must instantiate (and check) each template."""
    body = ",\n".join(f"    (void*)&{e}" for e in name_expressions)
    return f"\nvoid* mlpbench_instantiate[] = {{\n{body}\n}};\n"


def nvcc_compile(code, tmp_path, name="src"):
    path = tmp_path / f"{name}.cu"
    path.write_text(code)
    cmd = [NVCC, "-arch=sm_90", "-std=c++17", "-c", str(path), "-o", str(tmp_path / f"{name}.o"),
           "-Werror", "all-warnings"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_sources_lists_every_module_and_instantiation():
    srcs = {s.name: s for s in kc.sources()}
    assert set(srcs) == {"layers", "persistent"}
    layer = srcs["layers"].name_expressions
    for k in kc.LAYER_KERNELS:
        assert any(e == k or e.startswith(k + "<") for e in layer), k
    assert "bias_act<double, 2>" in layer and "sgd_multi<float>" in layer and "loss_finish" in layer
    assert len(srcs["persistent"].name_expressions) == 6
    # every listed expression names a __global__ function of its source
    for s in srcs.values():
        sigs = kc.kernel_signatures(s.code)
        assert {e.split("<")[0] for e in s.name_expressions} == set(sigs)


@needs_nvcc
@pytest.mark.parametrize("src", kc.sources(), ids=lambda s: s.name)
def test_every_source_compiles_with_nvcc_for_sm90(src, tmp_path):
    r = nvcc_compile(src.code + instantiation_hooks(src.name_expressions), tmp_path, src.name)
    assert r.returncode == 0, r.stderr[-4000:]


@needs_nvcc
def test_a_broken_source_fails_to_compile(tmp_path):
    src = kc.source("layers")
    broken = src.code.replace("p[k] -= lr * g[k];", "p[k] -= lr * g[k]", 1)
    assert broken != src.code
    r = nvcc_compile(broken + instantiation_hooks(src.name_expressions), tmp_path, "broken")
    assert r.returncode != 0 and "error" in r.stderr


@needs_nvcc
def test_template_errors_surface_only_through_the_instantiation_hooks(tmp_path):
    """An error that depends on T: invisible without instantiation, so the hooks are what make the check real."""
    src = kc.source("persistent")
    broken = src.code.replace("T acc = T(0);", "T acc = T::zero();", 1)
    assert broken != src.code
    assert nvcc_compile(broken, tmp_path, "uninstantiated").returncode == 0
    r = nvcc_compile(broken + instantiation_hooks(src.name_expressions), tmp_path, "instantiated")
    assert r.returncode != 0 and "zero" in r.stderr


# ---------------------------------------------------------------- CPU emulation
#: ``-ffp-contract=off``: the emulator computes each ``a - b * c`` as written, two roundings, as NumPy
#: does; without it, whether GCC fuses it into one FMA depends on -O level and target (-march, aarch64),
#: and exact comparisons with NumPy held at one optimisation level only.
_CXX_FLAGS = ("-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-shared", "-fPIC", "-Wall", "-Werror",
              "-Wno-unused-function")
_PRELUDE = r"""
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
static thread_local dim3 threadIdx, blockIdx, blockDim, gridDim;
static thread_local std::barrier<>* emu_barrier = nullptr;
static inline void __syncthreads() { emu_barrier->arrive_and_wait(); }
using std::isfinite;
using std::max;
using std::min;
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__
#define EMU_SHARED_BYTES (1 << 19)
alignas(16) double mlp_smem[EMU_SHARED_BYTES / 8];

// Blocks run one after another; the threads of a block run concurrently (one std::thread each)
// when the kernel synchronises, else one after another. Shared memory starts as NaN bytes.
static void emu_launch(const unsigned* d, unsigned long long shared, int threaded, const std::function<void()>& body) {
    const dim3 grid{d[0], d[1], d[2]}, block{d[3], d[4], d[5]};
    const unsigned nt = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::memset(mlp_smem, 0xff, shared);
                const dim3 bi{bx, by, bz};
                std::barrier<> bar(nt);
                auto run = [&](unsigned t) {
                    threadIdx = dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
                    blockIdx = bi; blockDim = block; gridDim = grid; emu_barrier = &bar;
                    body();
                };
                if (!threaded) {
                    for (unsigned t = 0; t < nt; ++t) run(t);
                    continue;
                }
                std::vector<std::thread> ts;
                for (unsigned t = 0; t < nt; ++t) ts.emplace_back(run, t);
                for (auto& th : ts) th.join();
            }
}
"""

SCALARS = {"int": np.int32, "long long": np.int64, "unsigned long long": np.uint64, "float": np.float32,
           "double": np.float64}
_CT = {np.int32: ctypes.c_int32, np.int64: ctypes.c_int64, np.uint64: ctypes.c_uint64, np.float32: ctypes.c_float,
       np.float64: ctypes.c_double}


def _concrete(ptype, tnames, targs):
    for n, a in zip(tnames, targs):
        ptype = re.sub(rf"\b{n}\b", a, ptype)
    return ptype


class EmulatedKernel:
    """One instantiation, called like a CuPy ``RawKernel``: ``k(grid, block, args, shared_mem=0)``.

    Stricter than CuPy: scalars must be numpy scalars of the parameter's exact
    type, pointers arrays of the pointee's dtype, C-contiguous; shared memory at
    most 48 KiB, blocks at most 1024 threads.
    """

    def __init__(self, fn, expr, params, threaded, as_pointer):
        self.fn, self.expr, self.params, self.threaded, self.as_pointer = fn, expr, params, threaded, as_pointer

    def convert(self, args):
        if len(args) != len(self.params):
            raise TypeError(f"{self.expr} takes {len(self.params)} arguments; got {len(args)}")
        out = []
        for (ptype, pname), a in zip(self.params, args):
            if ptype.endswith("*"):
                want = np.dtype(SCALARS[ptype[:-1].replace("const", "").strip()])
                arr = self.as_pointer(a)
                if arr.dtype != want:
                    raise TypeError(f"{self.expr}: {pname} needs {want} data; got {arr.dtype}")
                if not arr.flags.c_contiguous:
                    raise ValueError(f"{self.expr}: {pname} is not C-contiguous")
                out.append(ctypes.c_void_p(arr.ctypes.data))
            else:
                st = SCALARS[ptype]
                if type(a) is not st:
                    raise TypeError(f"{self.expr}: {pname} must be numpy.{st.__name__}; got {type(a).__name__}")
                out.append(_CT[st](a))
        return out

    def launch(self, grid, block, args, shared_mem=0):
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        if int(np.prod(block)) > 1024 or min(grid + block) < 1:
            raise ValueError(f"{self.expr}: bad launch geometry grid {grid} block {block}")
        if shared_mem > kc.MAX_SHARED_BYTES:
            raise ValueError(f"{self.expr}: {shared_mem} B of dynamic shared memory > {kc.MAX_SHARED_BYTES}")
        values = self.convert(args)
        ptrs = (ctypes.c_void_p * len(values))(*[ctypes.cast(ctypes.pointer(x), ctypes.c_void_p) for x in values])
        dims = (ctypes.c_uint * 6)(*grid, *block)

        def run():
            self.fn(dims, ctypes.c_ulonglong(shared_mem), ctypes.c_int(self.threaded), ptrs)

        run.keep = values  # the argument values live as long as the launch
        return run


class CudaEmulator:
    """Every ``kernels/cuda.py`` source compiled by g++ for the CPU: ``kernel(expr)`` -> ``EmulatedKernel``."""

    def __init__(self, build_dir, as_pointer=None):
        self.as_pointer = as_pointer or (lambda a: a)
        self.kernels = {}
        self.codes = {}
        for src in kc.sources():
            self.codes[src.name] = src.code
            sigs = kc.kernel_signatures(src.code)
            lib = ctypes.CDLL(str(self._build(src, sigs, build_dir)))
            for i, expr in enumerate(src.name_expressions):
                name = expr.split("<")[0]
                tnames, params = sigs[name]
                targs = [t.strip() for t in expr[len(name) + 1:-1].split(",")] if "<" in expr else []
                fn = getattr(lib, f"emu_k{i}")
                fn.restype = None
                body = src.code[src.code.index(f"void {name}("):]
                body = body[: body.find("\n}\n") + 3]
                self.kernels[expr] = (fn, [(_concrete(t, tnames, targs), n) for t, n in params],
                                      "__syncthreads" in body)

    @staticmethod
    def _build(src, sigs, build_dir):
        wrappers = []
        for i, expr in enumerate(src.name_expressions):
            name = expr.split("<")[0]
            tnames, params = sigs[name]
            targs = [t.strip() for t in expr[len(name) + 1:-1].split(",")] if "<" in expr else []
            call = ", ".join(f"*({_concrete(t, tnames, targs)}*)args[{j}]" for j, (t, _) in enumerate(params))
            wrappers.append(
                f'extern "C" void emu_k{i}(const unsigned* d, unsigned long long shared, int threaded, void** args) '
                f"{{ emu_launch(d, shared, threaded, [&] {{ {expr}({call}); }}); }}"
            )
        code = _PRELUDE + src.code + "\n" + "\n".join(wrappers) + "\n"
        digest = hashlib.sha256((code + " ".join(_CXX_FLAGS)).encode()).hexdigest()[:16]
        lib = os.path.join(build_dir, f"mlpbench_emu_{src.name}_{digest}.so")
        if not os.path.exists(lib):
            cpp = lib[:-3] + ".cpp"
            with open(cpp, "w") as f:
                f.write(code)
            tmp = lib + f".{os.getpid()}.tmp"
            subprocess.run([GXX, *_CXX_FLAGS, cpp, "-o", tmp], check=True, capture_output=True, text=True)
            os.replace(tmp, lib)
        return lib

    def kernel(self, expr) -> EmulatedKernel:
        fn, params, threaded = self.kernels[expr]
        return EmulatedKernel(fn, expr, params, threaded, self.as_pointer)

    def __call__(self, expr, grid, block, args, shared_mem=0):
        """Launch ``expr`` now."""
        self.kernel(expr).launch(grid, block, args, shared_mem)()


@functools.lru_cache(maxsize=None)
def build_emulator(as_pointer=None) -> CudaEmulator:
    """The emulator (compiled once per source version into a cache folder under the temp dir)."""
    build_dir = os.path.join(tempfile.gettempdir(), f"mlpbench-cuda-emu-{os.getuid()}")
    os.makedirs(build_dir, exist_ok=True)
    return CudaEmulator(build_dir, as_pointer)


@pytest.fixture(scope="module")
def emu():
    if GXX is None:
        pytest.skip("g++ is not installed (needed to emulate the kernels on the CPU)")
    return build_emulator()


def _e(kernel, dtype, act=None):
    return kc.name_expression(kernel, dtype, act)


def err(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


TOL = {"float64": 1e-12, "float32": 1e-5}
DTYPES = ("float64", "float32")


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
def test_bias_act_matches_the_reference(emu, dtype, act, rng):
    z = (rng.randn(37, 5) * 4).astype(dtype)
    z[0, 0], z[1, 1] = -1e6, np.nan  # the sigmoid clamp; NaN propagates like numpy's maximum
    b = rng.randn(1, 5).astype(dtype)
    out = z.copy()
    T = np.dtype(dtype).type
    # a small grid: every thread loops (the column index wraps across rows)
    emu(_e("bias_act", dtype, act), (3,), (7,), (out, b, np.int64(out.size), np.int32(5), T(ref.sigmoid_floor(dtype))))
    with np.errstate(invalid="ignore", over="ignore"):
        want = ref.ACTIVATIONS[act](np, z + b)
    assert np.array_equal(np.isnan(out), np.isnan(want))
    assert err(np.nan_to_num(out), np.nan_to_num(want)) <= TOL[dtype]


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act", ["relu", "tanh", "sigmoid"])
@pytest.mark.parametrize("n_rows,n_cols", [(5, 3), (300, 40)])
def test_act_backward_colsum_fuses_derivative_and_bias_gradient(emu, dtype, act, n_rows, n_cols, rng):
    a = ref.ACTIVATIONS[act](np, rng.randn(n_rows, n_cols)).astype(dtype)
    g = rng.randn(n_rows, n_cols).astype(dtype)
    chunks, rows = kc.colsum_chunks(n_rows)
    partial = np.full(chunks * n_cols, np.nan)
    db = np.full((1, n_cols), np.nan, dtype=dtype)
    out = g.copy()
    emu(_e("act_backward_colsum", dtype, act), (kc.col_tiles(n_cols), chunks), (kc.COLSUM_TX, kc.COLSUM_TY),
        (out, a, partial, np.int32(n_rows), np.int32(n_cols), np.int32(rows)), kc.COLSUM_SHARED_BYTES)
    emu(_e("colsum_finish", dtype), (1,), (64,), (partial, db, np.int32(chunks), np.int32(n_cols)))
    dz = ref.DERIVATIVES[act](np, g, a)
    assert err(out, dz) <= TOL[dtype]
    assert err(db, dz.astype(np.float64).sum(axis=0, keepdims=True)) <= TOL[dtype]


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("n_rows,n_cols", [(4, 1), (200, 3), (70, 40)])
def test_output_error_loss_and_bias_gradient(emu, dtype, reduction, n_rows, n_cols, rng):
    T = np.dtype(dtype).type
    y_hat = rng.rand(n_rows, n_cols).astype(dtype)
    y_hat[0, 0] = 1.0  # the clip matters here
    y = (rng.rand(n_rows, n_cols) > 0.5).astype(dtype)
    y[0, 0] = 0.0
    chunks, rows = kc.colsum_chunks(n_rows)
    tiles = kc.col_tiles(n_cols)
    dz = np.full_like(y, np.nan)
    partial, loss_partial = np.full(chunks * n_cols, np.nan), np.full(chunks * tiles, np.nan)
    history, counter = np.full(3, np.nan), np.array([1], dtype=np.int32)
    eps = ref.bce_eps(dtype)
    divisor = T(n_rows) if reduction == "mean" else T(1)
    emu(_e("output_error_colsum", dtype), (tiles, chunks), (kc.COLSUM_TX, kc.COLSUM_TY),
        (y_hat, y, dz, partial, loss_partial, np.int32(n_rows), np.int32(n_cols), np.int32(rows), divisor,
         T(eps), T(1 - eps)), kc.OUTPUT_SHARED_BYTES)
    emu("loss_finish", (1,), (1,), (loss_partial, np.int32(loss_partial.size), np.float64(y.size), history, counter,
                                    np.int32(3)))
    db = np.full((1, n_cols), np.nan, dtype=dtype)
    emu(_e("colsum_finish", dtype), (kc.col_tiles(n_cols),), (32,), (partial, db, np.int32(chunks), np.int32(n_cols)))
    want_dz = ref.output_error(y_hat, y, reduction)
    assert np.array_equal(dz, want_dz)  # elementwise, same formula: exact
    assert err(db, want_dz.astype(np.float64).sum(axis=0, keepdims=True)) <= TOL[dtype]
    assert counter[0] == 2 and np.isnan(history[0]) and np.isnan(history[2])  # wrote slot 1, advanced the counter
    assert abs(history[1] - ref.bce_loss(np, y, y_hat)) <= TOL[dtype] * abs(history[1])


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
def test_sgd_multi_updates_every_tensor_once(emu, dtype, rng):
    params = [rng.randn(*s).astype(dtype) for s in [(3, 70), (1, 70), (70, 1), (1, 1)]]
    grads = [rng.randn(*p.shape).astype(dtype) for p in params]
    want = [p - dtype_lr(dtype) * g for p, g in zip(params, grads)]
    ptrs = np.array([p.ctypes.data for p in params], dtype=np.uint64)
    gptrs = np.array([g.ctypes.data for g in grads], dtype=np.uint64)
    offsets = np.concatenate([[0], np.cumsum([p.size for p in params])]).astype(np.int64)
    emu(_e("sgd_multi", dtype), (2,), (32,), (ptrs, gptrs, offsets, np.int32(4), dtype_lr(dtype)))
    for p, w in zip(params, want):
        assert np.array_equal(p, w)
    flag = np.array([1], dtype=np.int32)
    emu(_e("all_finite_multi", dtype), (2,), (32,), (ptrs, offsets, np.int32(4), flag))
    assert flag[0] == 1
    params[2][5, 0] = np.inf
    emu(_e("all_finite_multi", dtype), (2,), (32,), (ptrs, offsets, np.int32(4), flag))
    assert flag[0] == 0


def dtype_lr(dtype):
    return np.dtype(dtype).type(0.1)


def run_persistent(emu, params, X, y, lr, epochs, act, reduction):
    """The one-launch trainer on the emulator: ``(params, history)`` as NumPy."""
    dtype = X.dtype
    T = dtype.type
    sizes = [X.shape[1]] + [W.shape[1] for W, _ in params]
    plan = kc.persistent_plan(X.shape[0], sizes, dtype)
    assert plan.fits, plan.reason
    flat = np.concatenate([a.ravel() for W, b in params for a in (W, b)])
    history = np.full(epochs, np.nan)
    eps = ref.bce_eps(dtype)
    emu(_e("train_persistent", dtype, act), (1,), (plan.threads,),
        (flat, X, y, np.array(sizes, dtype=np.int32), np.int32(len(params)), np.int32(X.shape[0]), np.int32(epochs),
         T(lr), T(X.shape[0]) if reduction == "mean" else T(1), T(ref.sigmoid_floor(dtype)), T(eps), T(1 - eps),
         history), plan.shared_bytes)
    out, o = [], 0
    for W, b in params:
        out.append((flat[o:o + W.size].reshape(W.shape), flat[o + W.size:o + W.size + b.size].reshape(b.shape)))
        o += W.size + b.size
    return out, history


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("act,reduction,sizes,n", [
    ("relu", "sum", [2, 4, 1], 4),
    ("tanh", "mean", [3, 5, 4, 2], 9),
    ("sigmoid", "sum", [4, 3, 1], 40),
])
def test_persistent_trainer_matches_the_numpy_backend(emu, dtype, act, reduction, sizes, n, rng):
    X = rng.randn(n, sizes[0]).astype(dtype)
    y = (rng.rand(n, sizes[-1]) > 0.5).astype(dtype)
    params = init_params(sizes, 3, dtype)
    p = [(W.copy(), b.copy()) for W, b in params]
    want_hist = NumpyBackend().train(p, X, y, lr=0.1, epochs=25, activation=act, grad_reduction=reduction)
    got, hist = run_persistent(emu, params, X, y, 0.1, 25, act, reduction)
    assert err(hist, want_hist) <= TOL[dtype]
    for (W, b), (W2, b2) in zip(got, p):
        assert err(W, W2) <= TOL[dtype] and err(b, b2) <= TOL[dtype]


@needs_gxx
def test_persistent_trainer_follows_the_lab(emu):
    """The lab's first 2000 epochs (the full runs are checked on a GPU: test_cupy_backend.py::test_gpu_labs)."""
    from mlpbench import datasets

    X, y = datasets.load("and")
    with np.load(os.path.join(os.path.dirname(__file__), "data", "lab_and.npz")) as f:
        lab_losses = f["losses"]
    epochs = 2000
    want = init_params([2, 4, 1], 42, "float64")
    NumpyBackend().train(want, X, y, lr=0.1, epochs=epochs)  # bit for bit the lab
    got, hist = run_persistent(emu, init_params([2, 4, 1], 42, "float64"), X, y, 0.1, epochs, "relu", "sum")
    assert err(hist, lab_losses[:epochs]) <= 1e-11
    for (W, b), (W2, b2) in zip(got, want):
        assert err(W, W2) <= 1e-11 and err(b, b2) <= 1e-11


@needs_gxx
def test_persistent_trainer_stops_at_the_first_non_finite_loss(emu):
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float64) * 1e3
    y = np.array([[0], [1], [1], [0]], dtype=np.float64)
    params = init_params([2, 4, 1], 0, "float64")
    params[0] = (params[0][0], params[0][1] + np.nan)
    _, hist = run_persistent(emu, params, X, y, 0.1, 10, "relu", "sum")
    assert np.isnan(hist).all()  # epoch 1 wrote NaN and the loop stopped; the rest stayed NaN


def test_persistent_plan_rule():
    lab = kc.persistent_plan(4, [2, 4, 1], "float64")
    assert lab.fits and lab.threads == 32 and lab.shared_bytes == 8 * 32 + 8 * (2 * 17 + 4 * 7)
    big = kc.persistent_plan(65536, [1024, 4096, 1], "float32")
    assert not big.fits and "shared memory" in big.reason
    wide = kc.persistent_plan(1024, [2, 3, 1], "float32")  # 1024 rows x 3 units: more work items than threads
    assert wide.fits and wide.threads == 1024
    heavy = kc.persistent_plan(64, [64, 32, 1], "float32")
    assert heavy.shared_bytes > kc.MAX_SHARED_BYTES and not heavy.fits
    many = kc.persistent_plan(1024, [60, 2, 1], "float32")
    assert many.shared_bytes > kc.MAX_SHARED_BYTES
    for plan in (lab, big, wide, heavy):
        assert plan.threads & (plan.threads - 1) == 0 and 32 <= plan.threads <= 1024


def test_launch_geometry_helpers():
    assert kc.colsum_chunks(4) == (1, 4)
    assert kc.colsum_chunks(65536) == (256, 256)
    n, rows = kc.colsum_chunks(1000)
    assert n * rows >= 1000 and (n - 1) * rows < 1000
    assert kc.col_tiles(1) == 1 and kc.col_tiles(33) == 2
    assert kc.grid_blocks(1) == 1 and kc.grid_blocks(10**9) == kc.MAX_BLOCKS
    assert kc.name_expression("bias_act", np.float32, "tanh") == "bias_act<float, 1>"
    assert kc.name_expression("loss_finish", "float64") == "loss_finish"
    with pytest.raises(ValueError):
        kc.source("nope")
