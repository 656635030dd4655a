"""CUDA C++ sources of the CuPy backend, as plain strings (no CuPy import here).

Two modules, each a complete source that ``cupy.RawModule`` compiles with NVRTC,
retrieving template instantiations through ``name_expressions``; the tests
compile every one of them with ``nvcc -arch=sm_90`` (``sources()`` lists them):

* ``layers``: the kernels around the cuBLAS matmuls of one epoch (strategies
  ``"step"`` and ``"graph"``): bias + activation fused after each matmul; the
  activation derivative fused on the upstream gradient together with the
  bias-gradient column sums; the sigmoid-BCE output error fused with its
  bias-gradient sums and the loss; one multi-tensor SGD kernel for all params.
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

import re
from dataclasses import dataclass

import numpy as np

from ..params import macs
from .reference import ACT_CODES

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

_COMMON = r"""
#define MLP_RELU 0
#define MLP_TANH 1
#define MLP_SIGMOID 2
#define MLP_TX 32
#define MLP_TY 8

__device__ __forceinline__ float mlp_exp(float x) { return expf(x); }
__device__ __forceinline__ double mlp_exp(double x) { return exp(x); }
__device__ __forceinline__ float mlp_log(float x) { return logf(x); }
__device__ __forceinline__ double mlp_log(double x) { return log(x); }
__device__ __forceinline__ float mlp_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double mlp_tanh(double x) { return tanh(x); }

// 1 / (1 + exp(-max(z, floor))): the reference's clamp keeps exp finite; NaN propagates.
template <typename T>
__device__ __forceinline__ T mlp_sigmoid(T z, T floor_) {
    const T zc = (z < floor_) ? floor_ : z;
    return T(1) / (T(1) + mlp_exp(-zc));
}

template <typename T, int ACT>
__device__ __forceinline__ T mlp_activate(T z, T floor_) {
    if (ACT == MLP_RELU) return (z < T(0)) ? T(0) : z;  // max(0, z), NaN propagates
    if (ACT == MLP_TANH) return mlp_tanh(z);
    return mlp_sigmoid(z, floor_);
}

// The derivative from the activation's output a: relu a > 0, tanh 1 - a^2, sigmoid a (1 - a).
template <typename T, int ACT>
__device__ __forceinline__ T mlp_derivative(T a) {
    if (ACT == MLP_RELU) return (a > T(0)) ? T(1) : T(0);
    if (ACT == MLP_TANH) return T(1) - a * a;
    return a * (T(1) - a);
}

// y log(p) + (1 - y) log(1 - p) with p clipped to [lo, hi] (numpy's clip: NaN stays NaN).
template <typename T>
__device__ __forceinline__ T mlp_bce_term(T p, T t, T lo, T hi) {
    T c = (p < lo) ? lo : p;
    c = (c > hi) ? hi : c;
    return t * mlp_log(c) + (T(1) - t) * mlp_log(T(1) - c);
}
"""

_LAYERS = r"""
// z = act(z + b) in place; z is (n / n_cols, n_cols) row-major, b has n_cols entries.
template <typename T, int ACT>
__global__ void bias_act(T* __restrict__ z, const T* __restrict__ b, long long n, int n_cols, T floor_) {
    const long long start = blockIdx.x * (long long)blockDim.x + threadIdx.x;
    const long long stride = (long long)gridDim.x * blockDim.x;
    int j = (int)(start % n_cols);
    const int dj = (int)(stride % n_cols);
    for (long long i = start; i < n; i += stride) {
        z[i] = mlp_activate<T, ACT>(z[i] + b[j], floor_);
        j += dj;
        if (j >= n_cols) j -= n_cols;
    }
}

// g = g * act'(a) in place (g: dL/da of a hidden layer -> dL/dz) and the column sums of the result:
// partial[r * n_cols + j] = sum of g[i, j] over the rows i of chunk r = blockIdx.y (fixed order).
// Block (MLP_TX, MLP_TY); grid (ceil(n_cols / MLP_TX), n_chunks); shared: MLP_TY * (MLP_TX + 1) doubles.
template <typename T, int ACT>
__global__ void act_backward_colsum(T* __restrict__ g, const T* __restrict__ a, double* __restrict__ partial,
                                    int n_rows, int n_cols, int rows_per_chunk) {
    extern __shared__ double mlp_smem[];
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int j = blockIdx.x * MLP_TX + tx;
    const long long row0 = (long long)blockIdx.y * rows_per_chunk;
    const long long row1 = min(row0 + (long long)rows_per_chunk, (long long)n_rows);
    double s = 0.0;
    if (j < n_cols) {
        for (long long i = row0 + ty; i < row1; i += MLP_TY) {
            const long long k = i * n_cols + j;
            const T d = g[k] * mlp_derivative<T, ACT>(a[k]);
            g[k] = d;
            s += (double)d;
        }
    }
    mlp_smem[ty * (MLP_TX + 1) + tx] = s;
    __syncthreads();
    if (ty == 0 && j < n_cols) {
        double c = 0.0;
        for (int r = 0; r < MLP_TY; ++r) c += mlp_smem[r * (MLP_TX + 1) + tx];
        partial[(long long)blockIdx.y * n_cols + j] = c;
    }
}

// The output layer: dz = (y_hat - y) / divisor (divisor 1 for "sum", N for "mean"), its column sums
// (as act_backward_colsum) and the BCE terms' sum per block in loss_partial[blockIdx.y * gridDim.x + blockIdx.x].
// Shared: MLP_TY * (MLP_TX + 1) + MLP_TX * MLP_TY doubles.
template <typename T>
__global__ void output_error_colsum(const T* __restrict__ yhat, const T* __restrict__ y, T* __restrict__ dz,
                                    double* __restrict__ partial, double* __restrict__ loss_partial,
                                    int n_rows, int n_cols, int rows_per_chunk, T divisor, T lo, T hi) {
    extern __shared__ double mlp_smem[];
    double* lsum = mlp_smem + MLP_TY * (MLP_TX + 1);
    const int tx = threadIdx.x, ty = threadIdx.y, t = ty * MLP_TX + tx;
    const int j = blockIdx.x * MLP_TX + tx;
    const long long row0 = (long long)blockIdx.y * rows_per_chunk;
    const long long row1 = min(row0 + (long long)rows_per_chunk, (long long)n_rows);
    double s = 0.0, l = 0.0;
    if (j < n_cols) {
        for (long long i = row0 + ty; i < row1; i += MLP_TY) {
            const long long k = i * n_cols + j;
            const T p = yhat[k], target = y[k];
            const T d = (p - target) / divisor;
            dz[k] = d;
            s += (double)d;
            l += (double)mlp_bce_term(p, target, lo, hi);
        }
    }
    mlp_smem[ty * (MLP_TX + 1) + tx] = s;
    lsum[t] = l;
    __syncthreads();
    for (int h = MLP_TX * MLP_TY / 2; h > 0; h >>= 1) {
        if (t < h) lsum[t] += lsum[t + h];
        __syncthreads();
    }
    if (ty == 0 && j < n_cols) {
        double c = 0.0;
        for (int r = 0; r < MLP_TY; ++r) c += mlp_smem[r * (MLP_TX + 1) + tx];
        partial[(long long)blockIdx.y * n_cols + j] = c;
    }
    if (t == 0) loss_partial[blockIdx.y * gridDim.x + blockIdx.x] = lsum[0];
}

// out[j] = sum over chunks r (in order) of partial[r * n_cols + j]: the bias gradient.
template <typename T>
__global__ void colsum_finish(const double* __restrict__ partial, T* __restrict__ out, int n_chunks, int n_cols) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_cols) return;
    double s = 0.0;
    for (int r = 0; r < n_chunks; ++r) s += partial[(long long)r * n_cols + j];
    out[j] = (T)s;
}

// history[*epoch] = -(sum of loss_partial) / count; ++*epoch. The epoch counter lives on the
// device, so one captured graph writes the next slot on every replay. One thread.
__global__ void loss_finish(const double* __restrict__ loss_partial, int n_parts, double count,
                            double* __restrict__ history, int* __restrict__ epoch, int capacity) {
    if (blockIdx.x != 0 || threadIdx.x != 0) return;
    double s = 0.0;
    for (int i = 0; i < n_parts; ++i) s += loss_partial[i];
    const int e = *epoch;
    if (e < capacity) history[e] = -s / count;
    *epoch = e + 1;
}

// p -= lr * g over every tensor in one launch: tensor t holds the flat indices
// [offsets[t], offsets[t + 1]); param_ptrs[t] and grad_ptrs[t] are its device addresses.
template <typename T>
__global__ void sgd_multi(const unsigned long long* __restrict__ param_ptrs,
                          const unsigned long long* __restrict__ grad_ptrs,
                          const long long* __restrict__ offsets, int n_tensors, T lr) {
    const long long total = offsets[n_tensors];
    const long long stride = (long long)gridDim.x * blockDim.x;
    int t = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += stride) {
        while (i >= offsets[t + 1]) ++t;  // i only grows, so t only moves forward
        T* p = reinterpret_cast<T*>(param_ptrs[t]);
        const T* g = reinterpret_cast<const T*>(grad_ptrs[t]);
        const long long k = i - offsets[t];
        p[k] -= lr * g[k];
    }
}

// *flag = 0 when any element of the tensors (laid out as for sgd_multi) is not finite.
template <typename T>
__global__ void all_finite_multi(const unsigned long long* __restrict__ ptrs, const long long* __restrict__ offsets,
                                 int n_tensors, int* __restrict__ flag) {
    const long long total = offsets[n_tensors];
    const long long stride = (long long)gridDim.x * blockDim.x;
    int t = 0;
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += stride) {
        while (i >= offsets[t + 1]) ++t;
        const T* p = reinterpret_cast<const T*>(ptrs[t]);
        if (!isfinite(p[i - offsets[t]])) *flag = 0;
    }
}
"""

_PERSISTENT = r"""
// One block trains the net for `epochs` epochs in one launch: the lab's loop, phase by phase with
// __syncthreads between phases. blockDim.x must be a power of two (the loss tree reduction).
// params: the flat params [W_0 | b_0 | W_1 | b_1 | ...] (row-major W), read at the start and written at the end.
// sizes: the L + 1 layer sizes. history[e] gets epoch e's loss (before its update); the loop stops
// after the first non-finite loss. Dynamic shared memory, in this order:
//   red [blockDim.x doubles] | P [n_params T] | G [n_params T] | A_0 = X | A_1 | ... | A_L  (A_l: N x sizes[l])
// In the backward pass dz of layer l overwrites A_{l+1} once nothing reads it any more.
template <typename T, int ACT>
__global__ void train_persistent(T* __restrict__ params, const T* __restrict__ X, const T* __restrict__ y,
                                 const int* __restrict__ sizes, int n_layers, int n_rows, int epochs,
                                 T lr, T divisor, T floor_, T lo, T hi, double* __restrict__ history) {
    extern __shared__ double mlp_smem[];
    const int tid = threadIdx.x, nt = blockDim.x, N = n_rows, L = n_layers;
    int n_params = 0, n_acts = 0;
    for (int l = 0; l < L; ++l) n_params += sizes[l] * sizes[l + 1] + sizes[l + 1];
    for (int l = 0; l <= L; ++l) n_acts += N * sizes[l];
    double* red = mlp_smem;
    T* P = reinterpret_cast<T*>(mlp_smem + nt);
    T* G = P + n_params;
    T* A = G + n_params;
    const int n_out = sizes[L];
    const double count = (double)N * (double)n_out;

    for (int i = tid; i < n_params; i += nt) P[i] = params[i];
    for (int i = tid; i < N * sizes[0]; i += nt) A[i] = X[i];
    __syncthreads();

    for (int epoch = 0; epoch < epochs; ++epoch) {
        // forward: A_{l+1} = act(A_l @ W_l + b_l), sigmoid on the last layer
        int p = 0, a = 0;
        for (int l = 0; l < L; ++l) {
            const int in = sizes[l], out = sizes[l + 1];
            const T* W = P + p;
            const T* b = W + in * out;
            const T* Ain = A + a;
            T* Aout = A + a + N * in;
            for (int idx = tid; idx < N * out; idx += nt) {
                const int i = idx / out, j = idx - i * out;
                T acc = T(0);
                for (int k = 0; k < in; ++k) acc += Ain[i * in + k] * W[k * out + j];
                Aout[idx] = (l == L - 1) ? mlp_sigmoid(acc + b[j], floor_) : mlp_activate<T, ACT>(acc + b[j], floor_);
            }
            p += in * out + out;
            a += N * in;
            __syncthreads();
        }
        // loss of y_hat = A_L, then dz = (y_hat - y) / divisor in its place
        T* Yh = A + a;
        double part = 0.0;
        for (int idx = tid; idx < N * n_out; idx += nt) {
            const T ph = Yh[idx], t = y[idx];
            part += (double)mlp_bce_term(ph, t, lo, hi);
            Yh[idx] = (ph - t) / divisor;
        }
        red[tid] = part;
        __syncthreads();
        for (int h = nt / 2; h > 0; h >>= 1) {
            if (tid < h) red[tid] += red[tid + h];
            __syncthreads();
        }
        const double loss = -red[0] / count;
        if (tid == 0) history[epoch] = loss;
        if (!isfinite(loss)) break;  // every thread read the same value: a uniform exit

        // backward, last layer first: dW_l = A_l^T dz_l, db_l = colsum(dz_l), dz_{l-1} = (dz_l W_l^T) * act'(A_l)
        int p_end = n_params, a_end = n_acts;
        for (int l = L - 1; l >= 0; --l) {
            const int in = sizes[l], out = sizes[l + 1];
            const int w0 = p_end - (in * out + out);
            const T* W = P + w0;
            T* gW = G + w0;
            T* gb = gW + in * out;
            const T* dZ = A + (a_end - N * out);
            T* Ain = A + (a_end - N * out - N * in);
            for (int idx = tid; idx < in * out + out; idx += nt) {
                T acc = T(0);
                if (idx < in * out) {
                    const int k = idx / out, j = idx - k * out;
                    for (int i = 0; i < N; ++i) acc += Ain[i * in + k] * dZ[i * out + j];
                    gW[idx] = acc;
                } else {
                    const int j = idx - in * out;
                    for (int i = 0; i < N; ++i) acc += dZ[i * out + j];
                    gb[j] = acc;
                }
            }
            __syncthreads();
            if (l > 0) {
                for (int idx = tid; idx < N * in; idx += nt) {
                    const int i = idx / in, k = idx - i * in;
                    T acc = T(0);
                    for (int j = 0; j < out; ++j) acc += dZ[i * out + j] * W[k * out + j];
                    Ain[idx] = acc * mlp_derivative<T, ACT>(Ain[idx]);
                }
                __syncthreads();
            }
            p_end = w0;
            a_end -= N * out;
        }
        // update every param with the gradients of this epoch
        for (int i = tid; i < n_params; i += nt) P[i] -= lr * G[i];
        __syncthreads();
    }
    for (int i = tid; i < n_params; i += nt) params[i] = P[i];
}
"""

LAYER_KERNELS = ("bias_act", "act_backward_colsum", "output_error_colsum", "colsum_finish", "loss_finish",
                 "sgd_multi", "all_finite_multi")
_WITH_ACT = {"bias_act", "act_backward_colsum", "train_persistent"}
_UNTEMPLATED = {"loss_finish"}


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
        return KernelSource(name, _COMMON + _LAYERS, _expressions(LAYER_KERNELS, dtypes))
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
        return PersistentPlan(False, threads, shared,
                              f"needs {shared} B of shared memory for params, grads and activations "
                              f"(one block has {MAX_SHARED_BYTES} B)")
    if work_macs > MAX_PERSISTENT_MACS:
        return PersistentPlan(False, threads, shared,
                              f"{work_macs} multiply-adds per forward pass is too much for one block "
                              f"(limit {MAX_PERSISTENT_MACS})")
    return PersistentPlan(True, threads, shared,
                          f"fits one block: {shared} B shared memory, {threads} threads")
