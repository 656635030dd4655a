"""Row-major GEMMs through cuBLAS ``gemmEx`` (column-major): the argument mapping and the call.

No CuPy import here: the caller passes CuPy and its cuBLAS binding, so the
mapping is tested on the CPU (``tests/test_cupy_backend.py``).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

# cuBLAS / CUDA enums (cublas_api.h, library_types.h)
CUBLAS_OP = {False: 0, True: 1}  # CUBLAS_OP_N, CUBLAS_OP_T
CUDA_DATA_TYPE = {"float32": 0, "float64": 1}  # CUDA_R_32F, CUDA_R_64F
COMPUTE_32F, COMPUTE_64F, COMPUTE_32F_FAST_TF32 = 68, 70, 77
GEMM_DEFAULT = -1
DEFAULT_MATH = 0  # CUBLAS_DEFAULT_MATH: no TF32 unless the compute type asks for it
POINTER_MODE_HOST = 0
_ONE = {dt: np.ones(1, dtype=dt) for dt in CUDA_DATA_TYPE}  # host scalars (host pointer mode)
_ZERO = {dt: np.zeros(1, dtype=dt) for dt in CUDA_DATA_TYPE}


class GemmArgs(NamedTuple):
    transa: int
    transb: int
    m: int
    n: int
    k: int
    lda: int  # B's memory (cuBLAS's first operand)
    ldb: int  # A's memory
    ldc: int


def gemm_args(a_shape, b_shape, c_shape, trans_a=False, trans_b=False) -> GemmArgs:
    """cuBLAS (column-major) arguments for row-major ``C = op(A) @ op(B)``.

    A row-major matrix is its transpose in column-major order, so cuBLAS
    computes ``C^T = op(B)^T op(A)^T``: its first operand is B, its second A.
    """
    (ar, ac), (br, bc) = a_shape, b_shape
    m, k = (ac, ar) if trans_a else (ar, ac)
    k2, n = (bc, br) if trans_b else (br, bc)
    if k != k2 or tuple(c_shape) != (m, n):
        raise ValueError(f"gemm shapes do not match: op(A) {m}x{k}, op(B) {k2}x{n}, C {tuple(c_shape)}")
    return GemmArgs(CUBLAS_OP[bool(trans_b)], CUBLAS_OP[bool(trans_a)], n, m, k, bc, ac, n)


def gemm(cp, cublas, C, A, B, trans_a=False, trans_b=False, allow_tf32=False) -> None:
    """``C = op(A) @ op(B)`` by ``gemmEx`` on the current stream: no allocation, no TF32 unless allowed."""
    g = gemm_args(A.shape, B.shape, C.shape, trans_a, trans_b)
    dt = C.dtype.name
    code = CUDA_DATA_TYPE[dt]
    if dt == "float64":
        compute = COMPUTE_64F
    else:
        compute = COMPUTE_32F_FAST_TF32 if allow_tf32 else COMPUTE_32F
    handle = cp.cuda.device.get_cublas_handle()
    cublas.setStream(handle, cp.cuda.get_current_stream().ptr)
    cublas.setPointerMode(handle, POINTER_MODE_HOST)
    cublas.setMathMode(handle, DEFAULT_MATH)
    cublas.gemmEx(handle, g.transa, g.transb, g.m, g.n, g.k, _ONE[dt].ctypes.data, B.data.ptr, code, g.lda,
                  A.data.ptr, code, g.ldb, _ZERO[dt].ctypes.data, C.data.ptr, code, g.ldc, compute, GEMM_DEFAULT)
