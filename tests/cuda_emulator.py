"""The CUDA emulator: ``kernels/cuda/sources.py``'s sources compiled for the CPU by g++, each CUDA thread of
a kernel that synchronises a fiber on one OS thread, ``__syncthreads`` a switch to the next (``_PRELUDE``).
Used by ``test_cuda_sources.py`` (each kernel against the reference) and ``test_cupy_backend.py`` (the whole
backend on the CPU)."""

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

from mlpbench.kernels.cuda import sources as kc

GXX = shutil.which("g++")

#: ``-ffp-contract=off``: the emulator computes each ``a - b * c`` as written, two roundings, as NumPy
#: does; without it, whether GCC fuses it into one FMA depends on -O level and target (-march, aarch64),
#: and exact comparisons with NumPy held at one optimisation level only.
_CXX_FLAGS = ("-std=c++20", "-O1", "-ffp-contract=off", "-shared", "-fPIC", "-Wall", "-Werror",
              "-Wno-unused-function")
_PRELUDE = r"""
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <sys/mman.h>
#include <ucontext.h>
struct dim3 { unsigned x = 1, y = 1, z = 1; };
// the running CUDA thread's coordinates, set by the scheduler before it resumes a thread (globals with external
// linkage: the compiler reloads them after __syncthreads' opaque swapcontext)
dim3 threadIdx, blockIdx, blockDim, gridDim;
ucontext_t emu_scheduler;
ucontext_t emu_fibers[1024];
char* emu_stacks = nullptr;
const std::function<void()>* emu_body = nullptr;
unsigned emu_current = 0;
int emu_finished = 0;
unsigned long long emu_launches = 0;
int emu_divergent = 0;
bool emu_ended[1024];
const unsigned long long EMU_STACK = 256 << 10;
static void __syncthreads() { swapcontext(&emu_fibers[emu_current], &emu_scheduler); }
static void emu_fiber() { (*emu_body)(); emu_finished = 1; }  // returns to uc_link, the scheduler
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

// Blocks run one after another. A kernel that synchronises runs each of a block's threads as a fiber
// (ucontext) on this OS thread: every thread runs to its next __syncthreads, then the next thread, and a
// barrier is passed when all have reached it. Between barriers the threads run in ascending order or in
// descending order, alternating phase by phase and launch by launch, so that a missing barrier (a thread
// reading what another writes in the same phase) gives a wrong answer in one of the orders. A barrier that
// some threads of a block reach while others have ended sets ``emu_divergent``. Shared memory starts as
// NaN bytes. (One OS thread per CUDA thread, as before, cost ~4 ms a launch in thread creation.)
static void emu_launch(const unsigned* d, unsigned long long shared, int threaded, const std::function<void()>& body) {
    const dim3 grid{d[0], d[1], d[2]}, block{d[3], d[4], d[5]};
    const unsigned nt = block.x * block.y * block.z;
    blockDim = block; gridDim = grid;
    if (threaded && emu_stacks == nullptr) {
        void* m = mmap(nullptr, 1024 * EMU_STACK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) { std::perror("emulator stacks"); std::abort(); }
        emu_stacks = static_cast<char*>(m);
    }
    auto at = [&](unsigned t) { return dim3{t % block.x, (t / block.x) % block.y, t / (block.x * block.y)}; };
    ++emu_launches;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                std::memset(mlp_smem, 0xff, shared);
                blockIdx = dim3{bx, by, bz};
                if (!threaded) {
                    for (unsigned t = 0; t < nt; ++t) { threadIdx = at(t); body(); }
                    continue;
                }
                emu_body = &body;
                for (unsigned t = 0; t < nt; ++t) {
                    emu_ended[t] = false;
                    getcontext(&emu_fibers[t]);
                    emu_fibers[t].uc_stack.ss_sp = emu_stacks + t * EMU_STACK;
                    emu_fibers[t].uc_stack.ss_size = EMU_STACK;
                    emu_fibers[t].uc_link = &emu_scheduler;
                    makecontext(&emu_fibers[t], emu_fiber, 0);
                }
                unsigned running = nt;
                for (unsigned long long phase = emu_launches; running > 0; ++phase) {
                    unsigned ended = 0, waiting = 0;
                    for (unsigned i = 0; i < nt; ++i) {
                        const unsigned t = (phase & 1) ? nt - 1 - i : i;
                        if (emu_ended[t]) continue;
                        emu_current = t; threadIdx = at(t); emu_finished = 0;
                        swapcontext(&emu_scheduler, &emu_fibers[t]);
                        if (emu_finished) { emu_ended[t] = true; ++ended; --running; }
                        else ++waiting;
                    }
                    if (ended && waiting) emu_divergent = 1;
                }
            }
}
extern "C" int emu_divergent_barrier() { const int d = emu_divergent; emu_divergent = 0; return d; }
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

    def __init__(self, fn, expr, params, threaded, as_pointer, divergent):
        self.fn, self.expr, self.params, self.threaded, self.as_pointer = fn, expr, params, threaded, as_pointer
        self.divergent = divergent

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
            if self.divergent():
                raise RuntimeError(f"{self.expr}: a __syncthreads that some threads of a block never reached")

        run.keep = values  # the argument values live as long as the launch
        return run


class CudaEmulator:
    """Every ``kernels/cuda.py`` source (or the given ``KernelSource`` list) compiled by g++ for the CPU:
    ``kernel(expr)`` -> ``EmulatedKernel``."""

    def __init__(self, build_dir, as_pointer=None, sources=None):
        self.as_pointer = as_pointer or (lambda a: a)
        self.kernels = {}
        self.codes = {}
        for src in kc.sources() if sources is None else sources:
            self.codes[src.name] = src.code
            sigs = kc.kernel_signatures(src.code)
            lib = ctypes.CDLL(str(self._build(src, sigs, build_dir)))
            lib.emu_divergent_barrier.restype = ctypes.c_int
            for i, expr in enumerate(src.name_expressions):
                name = expr.split("<")[0]
                tnames, params = sigs[name]
                targs = [t.strip() for t in expr[len(name) + 1:-1].split(",")] if "<" in expr else []
                fn = getattr(lib, f"emu_k{i}")
                fn.restype = None
                body = src.code[src.code.index(f"void {name}("):]
                body = body[: body.find("\n}\n") + 3]
                self.kernels[expr] = (fn, [(_concrete(t, tnames, targs), n) for t, n in params],
                                      "__syncthreads" in body, lib.emu_divergent_barrier)

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
        fn, params, threaded, divergent = self.kernels[expr]
        return EmulatedKernel(fn, expr, params, threaded, self.as_pointer, divergent)

    def __call__(self, expr, grid, block, args, shared_mem=0):
        """Launch ``expr`` now."""
        self.kernel(expr).launch(grid, block, args, shared_mem)()


@functools.lru_cache(maxsize=None)
def build_emulator(as_pointer=None) -> CudaEmulator:
    """The emulator (compiled once per source version into a cache folder under the temp dir)."""
    build_dir = os.path.join(tempfile.gettempdir(), f"mlpbench-cuda-emu-{os.getuid()}")
    os.makedirs(build_dir, exist_ok=True)
    return CudaEmulator(build_dir, as_pointer)
