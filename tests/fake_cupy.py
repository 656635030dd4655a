"""A fake CuPy for running ``CupyBackend`` on the CPU (used by ``test_cupy_backend.py`` and
``test_cupy_minibatch.py`` through ``install``).

Host arrays stand in for device arrays; the real CUDA sources run in the
emulator of ``cuda_emulator.py``; cuBLAS's ``gemmEx`` is a column-major GEMM
written out in NumPy (``colmajor_gemm``); stream capture records launches and
forbids allocations, host-to-device copies and host synchronisation, so a
captured graph is checked to be replayable; ``FakeCupy.allocations`` counts
device allocations (and uploads).
"""

from __future__ import annotations

import ctypes
from types import SimpleNamespace

import numpy as np
import pytest

from mlpbench.backends.cupy import backend as cupy_backend
from mlpbench.backends.cupy.backend import CupyBackend
from mlpbench.kernels.cuda import sources as kc
from cuda_emulator import GXX, build_emulator


def _colmajor(ptr, rows, cols, ld, dtype):
    """The column-major ``rows x cols`` matrix with leading dimension ``ld`` at address ``ptr``."""
    if ld < max(1, rows):
        raise ValueError(f"leading dimension {ld} < rows {rows}")
    dt = np.dtype(dtype)
    ctype = ctypes.c_float if dt == np.float32 else ctypes.c_double
    buf = np.ctypeslib.as_array((ctype * (ld * (cols - 1) + rows)).from_address(ptr))
    return np.lib.stride_tricks.as_strided(buf, shape=(rows, cols), strides=(dt.itemsize, ld * dt.itemsize))


def colmajor_gemm(transa, transb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc, dtype):
    """What ``cublasGemmEx`` computes: ``C = alpha op(A) op(B) + beta C``, all column-major, by address."""
    opA = _colmajor(A, *((m, k) if transa == 0 else (k, m)), lda, dtype)
    opB = _colmajor(B, *((k, n) if transb == 0 else (n, k)), ldb, dtype)
    opA, opB = (opA.T if transa else opA), (opB.T if transb else opB)
    Cv = _colmajor(C, m, n, ldc, dtype)
    with np.errstate(all="ignore"):  # a GPU does not warn: overflow shows as inf / NaN
        prod = np.asarray(opA) @ np.asarray(opB)
        Cv[...] = alpha * prod if beta == 0 else alpha * prod + beta * Cv


class _Mem:
    __slots__ = ("ptr",)

    def __init__(self, ptr):
        self.ptr = ptr


class FakeArray(np.ndarray):
    """A 'device' array in host memory with CuPy's ``.data.ptr`` and ``.get()``."""

    @property
    def data(self):
        return _Mem(self.ctypes.data)

    def get(self):
        GPU.sync("get()")
        return np.array(self)

    def item(self, *args):
        GPU.sync("item()")
        return np.ndarray.item(self, *args)

    def __setitem__(self, key, value):
        GPU.no_capture("an elementwise copy")
        np.ndarray.__setitem__(self, key, value)

    def set(self, arr, stream=None):
        """CuPy's host-to-device copy, with its checks (a NumPy array of this dtype and shape; contiguous)."""
        GPU.no_capture("a host-to-device copy")
        if type(arr) is not np.ndarray or arr.dtype != self.dtype or arr.shape != self.shape:
            raise TypeError(f"set() needs a numpy array of {self.dtype} {self.shape}")
        if not self.flags.c_contiguous:
            raise RuntimeError("Cannot set to non-contiguous array")
        np.copyto(self, arr)


def _as_pointer(a):
    if not isinstance(a, FakeArray):
        raise TypeError(f"a kernel pointer argument must be a device array; got {type(a).__name__}")
    return a


class FakeGPU:
    """Streams, capture and the log of what ran (kernel names, in order)."""

    def __init__(self):
        self.null = FakeStream(self, null=True)
        self.stack, self.capturing, self.recorded = [self.null], None, None
        self.launches, self.captures, self.replays = [], 0, 0

    def current(self):
        return self.stack[-1]

    def no_capture(self, what):
        if self.capturing is not None:
            raise RuntimeError(f"{what} during a stream capture")

    def sync(self, what):
        self.no_capture(f"{what} (a device-to-host synchronisation)")

    def submit(self, name, run):
        if self.capturing is not None:
            if self.current() is not self.capturing:
                raise RuntimeError(f"{name} launched on another stream during a capture")
            self.recorded.append((name, run))
            return
        self.launches.append(name)
        run()


class FakeStream:
    _next = 0x1000

    def __init__(self, gpu, null=False, non_blocking=False):
        self.gpu = gpu
        FakeStream._next += 16
        self.ptr = 0 if null else FakeStream._next

    def __enter__(self):
        self.gpu.stack.append(self)
        return self

    def __exit__(self, *exc):
        assert self.gpu.stack.pop() is self

    def begin_capture(self, mode=None):
        if self.ptr == 0 or self.gpu.capturing is not None:
            raise RuntimeError("cannot begin a capture here")
        self.gpu.capturing, self.gpu.recorded = self, []

    def end_capture(self):
        if self.gpu.capturing is not self:
            raise RuntimeError("this stream is not capturing")
        graph = FakeGraph(self.gpu, self.gpu.recorded)
        self.gpu.capturing, self.gpu.recorded = None, None
        self.gpu.captures += 1
        return graph

    def synchronize(self):
        self.gpu.sync("stream synchronize")


class FakeGraph:
    def __init__(self, gpu, ops):
        self.gpu, self.ops = gpu, ops

    def launch(self, stream=None):
        self.gpu.no_capture("a graph launch")
        self.gpu.replays += 1
        for name, run in self.ops:
            self.gpu.launches.append(name)
            run()


class FakeDevice:
    def __init__(self, gpu, device_id=0):
        self.gpu, self.id = gpu, device_id

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def synchronize(self):
        self.gpu.sync("device synchronize")


class FakeModule:
    def __init__(self, cp, code, options, name_expressions):
        assert code in cp.emu.codes.values(), "RawModule got a source kernels/cuda.py does not list"
        assert tuple(options) == kc.OPTIONS
        self.cp, self.exprs = cp, set(name_expressions)

    def get_function(self, expr):
        if expr not in self.exprs:
            raise KeyError(f"{expr!r} is not among the module's name_expressions")
        kernel = self.cp.emu.kernel(expr)
        gpu = self.cp.gpu

        def launch(grid, block, args, shared_mem=0):
            gpu.submit(expr, kernel.launch(grid, block, args, shared_mem))

        return launch


class FakeCupy:
    """The part of CuPy the backend uses, on host memory; anything else falls through to NumPy."""

    ndarray = FakeArray

    def __init__(self, gpu, emu):
        self.gpu, self.emu = gpu, emu
        self.allocations = []  # the shape of every device allocation, in order
        self.cuda = SimpleNamespace(
            Device=lambda i=0: FakeDevice(gpu, i),
            Stream=lambda null=False, non_blocking=False: FakeStream(gpu, null, non_blocking),
            get_current_stream=gpu.current,
            device=SimpleNamespace(get_cublas_handle=lambda: 7),
            runtime=SimpleNamespace(getDeviceCount=lambda: 1, getDeviceProperties=lambda i: {"name": b"CPU emulation"},
                                    driverGetVersion=lambda: 13000, runtimeGetVersion=lambda: 13000),
        )

    def _new(self, a):
        self.gpu.no_capture("an allocation")
        self.allocations.append(np.shape(a))
        return np.array(a, copy=True, order="C").view(FakeArray)

    def empty(self, shape, dtype=np.float64):  # poisoned: reading an unwritten element shows
        dt = np.dtype(dtype)
        return self._new(np.full(shape, np.nan if dt.kind == "f" else -7, dtype=dt))

    def zeros(self, shape, dtype=np.float64):
        return self._new(np.zeros(shape, dtype))

    def ones(self, shape, dtype=np.float64):
        return self._new(np.ones(shape, dtype))

    def full(self, shape, value, dtype=None):
        return self._new(np.full(shape, value, dtype))

    def asarray(self, a, dtype=None):
        if isinstance(a, FakeArray) and (dtype is None or a.dtype == dtype):
            return a
        return self._new(np.asarray(a, dtype=dtype))

    def ascontiguousarray(self, a):
        return a if isinstance(a, FakeArray) and a.flags.c_contiguous else self._new(np.ascontiguousarray(a))

    def asnumpy(self, a):
        self.gpu.sync("asnumpy")
        return np.array(a)

    def concatenate(self, arrays):
        return self._new(np.concatenate([np.asarray(a) for a in arrays]))

    def RawModule(self, code=None, options=(), name_expressions=None):
        return FakeModule(self, code, options, name_expressions)

    def __getattr__(self, name):
        return getattr(np, name)


class FakeCublas:
    """``gemmEx`` and the handle state, checked the way cuBLAS would (stream, pointer mode, types)."""

    def __init__(self, gpu):
        self.gpu, self.state, self.compute_types = gpu, {}, []

    def setStream(self, h, s):
        self.state.setdefault(h, {})["stream"] = s

    def setPointerMode(self, h, mode):
        self.state.setdefault(h, {})["pointer"] = mode

    def setMathMode(self, h, mode):
        self.state.setdefault(h, {})["math"] = mode

    def gemmEx(self, h, transa, transb, m, n, k, alpha, A, Atype, lda, B, Btype, ldb, beta, C, Ctype, ldc,
               compute, algo):
        st = self.state[h]
        assert st["stream"] == self.gpu.current().ptr, "the cuBLAS handle is not on the current stream"
        assert st["pointer"] == 0 and st["math"] == 0 and algo == -1
        assert Atype == Btype == Ctype and Atype in (0, 1)
        assert compute in ({68, 77} if Atype == 0 else {70})
        dtype = np.float32 if Atype == 0 else np.float64
        ct = ctypes.c_float if Atype == 0 else ctypes.c_double
        a, b = ct.from_address(alpha).value, ct.from_address(beta).value  # host pointer mode: read at the call
        size = np.dtype(dtype).itemsize
        shapes = ((A, *((m, k) if transa == 0 else (k, m)), lda), (B, *((k, n) if transb == 0 else (n, k)), ldb),
                  (C, m, n, ldc))
        spans = [(p, p + size * (ld * (cols - 1) + rows)) for p, rows, cols, ld in shapes]
        assert all(spans[2][1] <= lo or hi <= spans[2][0] for lo, hi in spans[:2]), "C overlaps an input"
        self.compute_types.append(compute)
        self.gpu.submit("gemm", lambda: colmajor_gemm(transa, transb, m, n, k, a, A, lda, B, ldb, b, C, ldc, dtype))


GPU = FakeGPU()  # the one in use (a fresh one per test, from the fixture)


def install(monkeypatch):
    """CupyBackend running on FakeCupy (for a test's ``emulated`` fixture): returns the fake GPU (its log of
    launches, captures, replays), the fake CuPy and cuBLAS. Skips without g++."""
    if GXX is None:
        pytest.skip("g++ is not installed (needed to emulate the kernels on the CPU)")
    global GPU
    GPU = FakeGPU()
    cp, cublas = FakeCupy(GPU, build_emulator(_as_pointer)), FakeCublas(GPU)
    monkeypatch.setattr(cupy_backend, "_runtime", lambda: (cp, cublas))
    monkeypatch.setattr(CupyBackend, "availability", classmethod(lambda cls: (True, "")))
    return SimpleNamespace(gpu=GPU, cp=cp, cublas=cublas, allocations=cp.allocations)
