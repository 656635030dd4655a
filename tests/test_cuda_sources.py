"""The CUDA sources of ``kernels/cuda/sources.py``, checked without a GPU.

* ``nvcc -arch=sm_90`` compiles every source with every instantiation CuPy
  retrieves (skipped with a reason when nvcc is absent); a deliberately broken
  copy fails, and an error only an instantiation can reveal fails too, so the
  check is genuine.
* The same sources, compiled for the CPU by g++ with each CUDA thread a fiber
  and ``__syncthreads`` a switch to the next (``cuda_emulator.py``), run against the NumPy
  reference: every kernel of the layer module (the softmax head at extreme
  logits, the mini-batch gather and epoch mean too), and the one-launch trainer
  against ``NumpyBackend.train`` (``CudaEmulator``, also used by
  ``test_cupy_backend.py`` to run the whole backend on the CPU).
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess

import numpy as np
import pytest

from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.kernels.cuda import sources as kc
from mlpbench.kernels import reference as ref
from mlpbench.core.params import init_params
from cuda_emulator import GXX, build_emulator

NVCC = shutil.which("nvcc")
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
    assert {"softmax_error_colsum<float>", "softmax_error_colsum<double>", "bias_log_softmax<float>",
            "gather_batch<double>", "epoch_finish"} <= set(layer)
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


# ---------------------------------------------------------------- CPU emulation (tests/cuda_emulator.py)
@pytest.fixture(scope="module")
def emu():
    if GXX is None:
        pytest.skip("g++ is not installed (needed to emulate the kernels on the CPU)")
    return build_emulator()


#: a block's threads read their neighbour's value from shared memory, then overwrite their own slot
RACE = """
__global__ void rotate(const double* x, double* y) {
    extern __shared__ double mlp_smem[];
    const int t = threadIdx.x, n = blockDim.x;
    mlp_smem[t] = x[t];
    __syncthreads();
    const double v = mlp_smem[(t + 1) % n];
    BARRIER
    mlp_smem[t] = 2 * v;
    __syncthreads();
    y[t] = mlp_smem[t];
}
"""


@needs_gxx
@pytest.mark.parametrize("barrier, right", [("__syncthreads();", True), ("", False),
                                            ("if (t > 0) __syncthreads();", None)])
def test_the_emulator_runs_barriers_as_cuda_does_and_exposes_a_missing_or_divergent_one(barrier, right, tmp_path):
    """The emulator itself: with the barrier the block's answer is right launch after launch; without it the
    threads' order decides, and the answer is wrong; a barrier some threads skip raises."""
    from cuda_emulator import CudaEmulator

    src = kc.KernelSource("race", RACE.replace("BARRIER", barrier), ("rotate",))
    emu = CudaEmulator(str(tmp_path), sources=[src])
    x = np.arange(1.0, 65.0)
    for _ in range(2):  # the threads' order alternates launch by launch
        y = np.zeros_like(x)
        if right is None:
            with pytest.raises(RuntimeError, match="never reached"):
                emu("rotate", (1,), (64,), (x, y), shared_mem=8 * 64)
            continue
        emu("rotate", (1,), (64,), (x, y), shared_mem=8 * 64)
        assert np.array_equal(y, 2 * np.roll(x, -1)) is right


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


# ---------------------------------------------------------------- the softmax head and mini-batches (batches.cu)
def logits(rng, n, k, dtype, extreme):
    """Logits and a bias; ``extreme``: magnitudes up to 1e4 (rows spanning 2e4, a row of +-1e4 ties)."""
    z = rng.randn(n, k) * 3
    if extreme:
        z = rng.uniform(-1e4, 1e4, size=(n, k))
        z[0] = 1e4
        z[1, :] = -1e4
        z[2, 0] = 1e4
    return z.astype(dtype), (rng.randn(1, k) * (0 if extreme else 1)).astype(dtype)


def one_hot(rng, n, k, dtype):
    y = np.zeros((n, k), dtype=dtype)
    y[np.arange(n), rng.randint(0, k, n)] = 1
    return y


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("extreme", [False, True], ids=["normal", "extreme"])
def test_bias_log_softmax_matches_the_reference(emu, dtype, extreme, rng):
    z, b = logits(rng, 45, 7, dtype, extreme)
    out = z.copy()
    emu(_e("bias_log_softmax", dtype), (2,), (8,), (out, b, np.int32(45), np.int32(7)))  # every thread loops
    want = ref.log_softmax(np, z + b)  # the suite turns RuntimeWarnings into errors: none here either
    assert out.dtype == want.dtype and np.isfinite(out).all()
    assert err(out, want) <= TOL[dtype]
    assert err(np.exp(out).sum(axis=1), np.ones(45)) <= 10 * TOL[dtype]
    nan = z.copy()
    nan[3, 4] = np.nan
    emu(_e("bias_log_softmax", dtype), (1,), (64,), (nan, b, np.int32(45), np.int32(7)))
    assert np.isnan(nan[3]).all() and np.isfinite(np.delete(nan, 3, axis=0)).all()


def run_softmax_error(emu, z, b, y, reduction, forward, history=None):
    """softmax_error_colsum + loss_finish + colsum_finish as a training step launches them: ``(z, dz, db, loss)``."""
    dtype = z.dtype
    n, k = z.shape
    chunks, rows = kc.colsum_chunks(n)
    z, dz = z.copy(), np.full_like(z, np.nan)
    partial, loss_partial = np.full(chunks * k, np.nan), np.full(chunks, np.nan)
    divisor = dtype.type(n) if reduction == "mean" else dtype.type(1)
    emu(_e("softmax_error_colsum", dtype), (1, chunks), (kc.SOFTMAX_THREADS,),
        (z, b, y, dz, partial, loss_partial, np.int32(n), np.int32(k), np.int32(rows), np.int32(forward), divisor),
        kc.SOFTMAX_SHARED_BYTES)
    history, counter = np.full(2, np.nan), np.array([0], dtype=np.int32)
    emu("loss_finish", (1,), (1,), (loss_partial, np.int32(chunks), np.float64(n), history, counter, np.int32(2)))
    db = np.full((1, k), np.nan, dtype=dtype)
    emu(_e("colsum_finish", dtype), (kc.col_tiles(k),), (32,), (partial, db, np.int32(chunks), np.int32(k)))
    assert counter[0] == 1 and np.isnan(history[1])
    return z, dz, db, history[0]


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("n,k,extreme", [(4, 3, False), (300, 10, False), (70, 40, True), (9, 2, True)])
def test_softmax_head_fuses_log_softmax_loss_error_and_bias_gradient(emu, dtype, reduction, n, k, extreme, rng):
    """One launch of a training step's head (300 rows: 5 row chunks) against the reference, extreme logits too."""
    z, b = logits(rng, n, k, dtype, extreme)
    y = one_hot(rng, n, k, dtype)
    logp, dz, db, loss = run_softmax_error(emu, z, b, y, reduction, forward=1)
    want_logp = ref.log_softmax(np, z + b)
    want_dz = ref.output_error(want_logp, y, reduction, np, "softmax")
    assert np.isfinite(logp).all() and np.isfinite(dz).all() and math.isfinite(loss)
    assert err(logp, want_logp) <= TOL[dtype]
    assert err(dz, want_dz) <= TOL[dtype]
    assert err(db, want_dz.astype(np.float64).sum(axis=0, keepdims=True)) <= TOL[dtype]
    want_loss = float(ref.cross_entropy(np, y.astype(np.float64), want_logp.astype(np.float64)))
    assert abs(loss - want_loss) <= TOL[dtype] * max(abs(want_loss), 1.0)
    # from log-probabilities already made (the backward of a separate forward): the same error
    same, dz2, db2, loss2 = run_softmax_error(emu, logp, b, y, reduction, forward=0)
    assert np.array_equal(same, logp) and np.array_equal(dz2, dz) and np.array_equal(db2, db) and loss2 == loss


@needs_gxx
@pytest.mark.parametrize("dtype", DTYPES)
def test_gather_batch_takes_the_rows_of_the_epochs_order(emu, dtype, rng):
    n, n_in, n_out, order_epochs = 23, 5, 3, 3
    X, Y = rng.randn(n, n_in).astype(dtype), rng.randn(n, n_out).astype(dtype)
    orders = np.array([rng.permutation(n) for _ in range(order_epochs)], dtype=np.int32)
    for epoch, start, m in [(0, 0, 10), (4, 10, 10), (5, 20, 3)]:  # epoch 4 -> orders[1]; a partial batch
        A, T = np.full((m, n_in), np.nan, dtype=dtype), np.full((m, n_out), np.nan, dtype=dtype)
        emu(_e("gather_batch", dtype), (2,), (16,),
            (X, Y, A, T, orders, np.array([epoch], dtype=np.int32), np.int32(order_epochs), np.int32(n),
             np.int32(start), np.int32(m), np.int32(n_in), np.int32(n_out)))
        rows = orders[epoch % order_epochs, start:start + m]
        assert np.array_equal(A, X[rows]) and np.array_equal(T, Y[rows])


@needs_gxx
def test_epoch_finish_records_the_mean_of_the_batch_losses_and_advances(emu):
    losses = np.array([0.5, 0.25, 2.0, 1.0 / 3])
    history, epoch, batch = np.full(3, np.nan), np.array([1], dtype=np.int32), np.array([4], dtype=np.int32)
    emu("epoch_finish", (1,), (1,), (losses, np.int32(4), history, epoch, batch, np.int32(3)))
    assert history[1] == sum(losses.tolist()) / 4 and np.isnan(history[[0, 2]]).all()  # Python's order of adding
    assert epoch[0] == 2 and batch[0] == 0
    epoch[0] = 3  # past the capacity: nothing written, the counter still moves
    emu("epoch_finish", (1,), (1,), (losses, np.int32(4), history, epoch, batch, np.int32(3)))
    assert epoch[0] == 4 and np.isnan(history[2])


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
