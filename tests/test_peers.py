"""The peer backends (PyTorch, JAX) against the NumPy reference: same math, manual gradients."""

from __future__ import annotations

import importlib.util
import itertools
import os

import numpy as np
import pytest
from conftest import require_backend

from mlpbench import MLP, datasets
from mlpbench.backends import BackendUnavailable, TrainingDiverged, available_backends, backend_class, get_backend
from mlpbench.backends.numpy_backend import NumpyBackend
from mlpbench.core.params import init_params
from mlpbench.suite.parity import normwise_error

from helpers import TOL, assert_close, flat

PEERS = ("torch", "jax")
HERE = os.path.dirname(os.path.abspath(__file__))


def peer_backend(name):
    """The peer on the CPU (torch with one thread: tiny ops on a shared 2-core box), or a skip."""
    require_backend(name)
    return get_backend(name, device="cpu", **({"threads": 1} if name == "torch" else {}))


@pytest.fixture(params=PEERS)
def peer(request):
    """A peer backend on the CPU, skipped with its reason where its library is missing."""
    return peer_backend(request.param)


def problem(sizes, n, dtype, seed=0):
    """Params, inputs (the first row all zeros: ReLU's kink at z == 0) and 0/1 targets."""
    rng = np.random.RandomState(seed)
    X = rng.uniform(-1, 1, (n, sizes[0]))
    X[0] = 0
    y = (rng.rand(n, sizes[-1]) > 0.5).astype(float)
    return init_params(sizes, seed + 1, dtype), X.astype(dtype), y.astype(dtype)


# ------------------------------------------------------------------ parity grid
NS, SIZES = (1, 4, 64), ([2, 4, 1], [3, 1, 2], [5, 8, 8, 1])
ACTS, REDUCTIONS, DTYPES = ("relu", "tanh", "sigmoid"), ("sum", "mean"), ("float64", "float32")


def pairwise_cover(axes) -> set:
    """Indices (into ``itertools.product(*axes)``) of a subset in which every pair of levels of any two axes
    occurs at least once: greedy, in product order (deterministic)."""
    def pairs(combo):
        return {(a, combo[a], b, combo[b]) for a, b in itertools.combinations(range(len(combo)), 2)}

    combos = list(itertools.product(*[range(len(a)) for a in axes]))
    wanted = set().union(*map(pairs, combos))
    chosen = set()
    while wanted:
        best = max(range(len(combos)), key=lambda i: (len(pairs(combos[i]) & wanted), -i))
        chosen.add(best)
        wanted -= pairs(combos[best])
    return chosen


def parity_cases():
    """Torch: the full product. JAX compiles per (shape, dtype, activation, reduction), which costs
    about a second each on 2 cores: every (sizes, activation, reduction, dtype) once, with N
    rotating so that each N meets each sizes, activation, reduction and dtype; in the default run the
    combinations of a pairwise cover (every two levels of any two of those axes together at least once),
    the rest under ``-m slow`` (CI runs both)."""
    cases = []
    axes = (SIZES, ACTS, REDUCTIONS, DTYPES)
    cover = pairwise_cover(axes)
    for c, ((i, sizes), (j, act), (k, red), (m, dt)) in enumerate(itertools.product(*map(enumerate, axes))):
        for n in NS:
            cases.append(("torch", n, sizes, act, red, dt, ()))
        cases.append(("jax", NS[(i + j + k + m) % 3], sizes, act, red, dt, () if c in cover else (pytest.mark.slow,)))
    return [pytest.param(*c[:6], marks=c[6], id="-".join([c[0], f"N{c[1]}", "x".join(map(str, c[2])), *c[3:6]]))
            for c in cases]


def test_the_default_jax_rows_cover_every_pair_of_levels():
    """The pairwise cover of the default run: every two levels of any two axes together, in fewer rows."""
    axes = (SIZES, ACTS, REDUCTIONS, DTYPES)
    levels = list(itertools.product(*[range(len(a)) for a in axes]))
    rows = [levels[i] for i in sorted(pairwise_cover(axes))]
    for a, b in itertools.combinations(range(len(axes)), 2):
        assert len({(r[a], r[b]) for r in rows}) == len(axes[a]) * len(axes[b]), (a, b)
    assert len(rows) < len(levels) / 2


@pytest.mark.parametrize("name, n, sizes, activation, grad_reduction, dtype", parity_cases())
def test_parity_with_numpy(name, n, sizes, activation, grad_reduction, dtype):
    params0, X, y = problem(sizes, n, dtype)
    ref, be = NumpyBackend(), peer_backend(name)
    kw = dict(activation=activation)
    lr = 0.5 if grad_reduction == "mean" else 0.5 / n

    rp, bp = ref.params_from_numpy(params0), be.params_from_numpy(params0)
    bX, by = be.asarray(X), be.asarray(y)
    r_hat, r_cache = ref.forward(rp, X, **kw)
    b_hat, b_cache = be.forward(bp, bX, **kw)
    assert len(b_cache) == len(r_cache) == len(sizes)
    for i, (a, r) in enumerate(zip(b_cache, r_cache)):
        assert_close(be.to_numpy(a), r, dtype, f"activation {i}")
    assert be.to_numpy(b_hat).dtype == np.dtype(dtype)
    assert abs(be.loss(by, b_hat) - ref.loss(y, r_hat)) <= TOL[dtype] * abs(ref.loss(y, r_hat))

    r_grads = ref.backward(rp, r_cache, X, y, grad_reduction=grad_reduction, **kw)
    b_grads = be.backward(bp, b_cache, bX, by, grad_reduction=grad_reduction, **kw)
    for i, ((dW, db), (rW, rb)) in enumerate(zip(b_grads, r_grads)):
        assert_close(be.to_numpy(dW), rW, dtype, f"dW{i}")
        assert_close(be.to_numpy(db), rb, dtype, f"db{i}")

    r_losses = [ref.step(rp, X, y, lr=lr, grad_reduction=grad_reduction, **kw) for _ in range(10)]
    b_losses = [be.step(bp, bX, by, lr=lr, grad_reduction=grad_reduction, **kw) for _ in range(10)]
    assert_close(b_losses, r_losses, dtype, "step losses")
    assert_close(flat(be.params_to_numpy(bp)), flat(rp), dtype, "params after 10 steps")

    r_hist = ref.train(rp, X, y, lr=lr, epochs=30, grad_reduction=grad_reduction, **kw)
    b_hist = be.train(bp, bX, by, lr=lr, epochs=30, grad_reduction=grad_reduction, **kw)
    assert b_hist.dtype == np.float64 and b_hist.shape == (30,)
    assert_close(b_hist, r_hist, dtype, "train() loss trajectory")
    assert_close(flat(be.params_to_numpy(bp)), flat(rp), dtype, "params after train()")


@pytest.mark.parametrize("name", PEERS)
def test_lab_and_run_matches_the_lab(name):
    """The lab's AND run (2-4-1, ReLU, lr 0.1, 5000 epochs, float64) through MLP.fit."""
    require_backend(name)
    lab = np.load(os.path.join(HERE, "data", "lab_and.npz"))
    X, y = datasets.load("and")
    model = MLP([2, 4, 1], seed=42)
    history = model.fit(X, y, lr=0.1, epochs=5000, backend=name)
    assert model.backend_ == name
    assert abs(history[-1] - lab["losses"][-1]) <= 1e-12 * lab["losses"][-1]
    assert normwise_error(history, lab["losses"]) <= 1e-12
    assert_close(flat(model.params), flat([(lab["W1"], lab["b1"]), (lab["W2"], lab["b2"])]), "float64", "params")


def test_train_with_callback_matches_fused_train(peer):
    params0, X, y = problem([3, 5, 1], 16, "float64")
    seen = []
    p1, p2 = peer.params_from_numpy(params0), peer.params_from_numpy(params0)
    fused = peer.train(p1, peer.asarray(X), peer.asarray(y), lr=0.1, epochs=25, activation="tanh")
    looped = peer.train(p2, peer.asarray(X), peer.asarray(y), lr=0.1, epochs=25, activation="tanh",
                        callback=lambda e, loss: seen.append((e, loss)))
    assert [e for e, _ in seen] == list(range(1, 26))
    assert_close(looped, fused, "float64", "history")
    assert_close([loss for _, loss in seen], fused, "float64", "callback losses")


def test_jax_train_longer_than_one_compiled_chunk():
    be = peer_backend("jax")
    from mlpbench.backends.jax_backend import CHUNK

    params0, X, y = problem([2, 3, 1], 4, "float64")
    epochs = CHUNK + 5
    ref = NumpyBackend()
    rp, bp = ref.params_from_numpy(params0), be.params_from_numpy(params0)
    r_hist = ref.train(rp, X, y, lr=0.1, epochs=epochs)
    b_hist = be.train(bp, be.asarray(X), be.asarray(y), lr=0.1, epochs=epochs)
    assert b_hist.shape == (epochs,)
    assert_close(b_hist, r_hist, "float64", "history")
    assert_close(be.to_numpy(bp[0][0]), rp[0][0], "float64", "W0")


# ------------------------------------------------------------------ contract details
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_plumbing_keeps_dtype_and_copies(peer, dtype):
    a = np.arange(6, dtype=dtype).reshape(2, 3)
    arr = peer.asarray(a)
    a[0, 0] = 99  # the backend's array is a copy
    out = peer.to_numpy(arr)
    assert isinstance(out, np.ndarray) and out.dtype == np.dtype(dtype) and out[0, 0] == 0
    peer.synchronize()


def test_forward_results_are_not_overwritten_by_later_calls(peer):
    params0, X, _ = problem([2, 4, 1], 4, "float64")
    p = peer.params_from_numpy(params0)
    y1, cache1 = peer.forward(p, peer.asarray(X))
    first = peer.to_numpy(y1).copy()
    peer.forward(p, peer.asarray(X + 1))
    np.testing.assert_array_equal(peer.to_numpy(y1), first)
    np.testing.assert_array_equal(peer.to_numpy(cache1[0]), X)


def test_sgd_update_is_in_place_on_the_params_list(peer):
    params0, X, y = problem([2, 4, 1], 4, "float64")
    p = peer.params_from_numpy(params0)
    same_list = p
    _, cache = peer.forward(p, peer.asarray(X))
    grads = peer.backward(p, cache, peer.asarray(X), peer.asarray(y))
    peer.sgd_update(p, grads, 0.1)
    assert p is same_list
    expected = params0[0][0] - 0.1 * peer.to_numpy(grads[0][0])
    np.testing.assert_allclose(peer.to_numpy(p[0][0]), expected, rtol=0, atol=1e-15)


def test_divergence_raises(peer):
    """Inputs scaled by 1e100 overflow float64 by orders of magnitude in the second epoch, so the
    divergence epoch does not depend on rounding: any BLAS (OpenBLAS, MKL, Eigen) gives the same.
    (A moderate scale diverged after ~40 chaotic epochs, an epoch that moved with the last ulp.)"""
    X, y = datasets.load("blobs", n_samples=200, n_features=8, seed=3)
    X = X * 1e100
    params0 = init_params([8, 16, 1], 0)
    with np.errstate(over="ignore", invalid="ignore"):
        try:
            NumpyBackend().train(NumpyBackend().params_from_numpy(params0), X, y, lr=1e3, epochs=500)
            ref_epoch = None
        except TrainingDiverged as exc:
            ref_epoch = exc.epoch
    assert ref_epoch == 2, "the reference itself should diverge in the second epoch here"
    p = peer.params_from_numpy(params0)
    with pytest.raises(TrainingDiverged, match="diverged at epoch") as info:
        peer.train(p, peer.asarray(X), peer.asarray(y), lr=1e3, epochs=500)
    err = info.value
    assert err.epoch == ref_epoch and len(err.history) == err.epoch and err.lr == 1e3
    assert not np.isfinite(err.history[-1]) and np.isfinite(err.history[:-1]).all()


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "CPU", ""])
def test_bad_device_is_a_value_error(peer, device):
    with pytest.raises(ValueError, match="device"):
        type(peer)(device=device)


def test_device_must_be_a_string(peer):
    with pytest.raises(TypeError, match="device"):
        type(peer)(device=0)


def test_describe_and_warmup(peer):
    info = peer.describe()
    assert info["device"] == peer.device == "cpu"
    row = next(r for r in available_backends() if r["name"] == peer.name)
    assert row["device"]  # the default instance's row in available_backends()
    assert peer.warmup([2, 4, 1], dtype="float32") > 0


def test_torch_threads_option_applies_to_its_calls_only():
    require_backend("torch")
    import torch

    before = torch.get_num_threads()
    be = get_backend("torch", device="cpu", threads=1)
    assert be.describe()["threads"] == 1
    params0, X, y = problem([2, 4, 1], 4, "float64")
    be.train(be.params_from_numpy(params0), be.asarray(X), be.asarray(y), lr=0.1, epochs=3)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError, match="threads"):
        get_backend("torch", threads=0)


# ------------------------------------------------------------------ optional imports
@pytest.mark.parametrize("name, missing", [("torch", "torch"), ("jax", "jax"), ("jax", "jaxlib")])
def test_missing_library_is_reported_with_the_install_hint(monkeypatch, name, missing):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda mod, *a: None if mod == missing else real(mod, *a))
    ok, reason = backend_class(name).availability()
    assert not ok and missing in reason
    with pytest.raises(BackendUnavailable, match=r"mlpbench\[peers\]"):
        get_backend(name)
    row = next(r for r in available_backends() if r["name"] == name)
    assert row["available"] is False and missing in row["reason"]


# ------------------------------------------------------------------ CUDA (where present)
def cuda_backend(name):
    """The peer on CUDA, or a skip saying why not (no GPU, or a CPU-only build of the library)."""
    require_backend(name)
    try:
        return get_backend(name, device="cuda")
    except BackendUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", PEERS)
def test_cuda_parity_with_numpy(name, dtype):
    be = cuda_backend(name)
    assert be.device.startswith("cuda:")
    params0, X, y = problem([5, 64, 32, 1], 256, dtype)
    ref = NumpyBackend()
    rp, bp = ref.params_from_numpy(params0), be.params_from_numpy(params0)
    r_hist = ref.train(rp, X, y, lr=0.01, epochs=50, activation="tanh", grad_reduction="mean")
    b_hist = be.train(bp, be.asarray(X), be.asarray(y), lr=0.01, epochs=50, activation="tanh", grad_reduction="mean")
    be.synchronize()
    tol = 1e-10 if dtype == "float64" else 1e-5  # GPU libm and reduction order differ from the CPU's
    assert normwise_error(b_hist, r_hist) <= tol
    assert normwise_error(flat(be.params_to_numpy(bp)), flat(rp)) <= tol
