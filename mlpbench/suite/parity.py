"""Parity: any backend against the NumPy reference, on the same params and the same inputs.

Compared tensors (each by its normwise relative error, ``normwise_error``):
the forward output ``y_hat``, the ``loss``, every gradient ``dW1, db1, ...``,
the per-step losses and the params after K ``step`` calls, and the loss history
and params after ``train`` for K epochs (a backend may fuse ``train``). The
labs' full trajectories (AND 5000 epochs, XOR 8000) are compared by ``check_lab``.
A case may use the softmax head (one-hot targets, seeded) and mini-batches: then
``train`` follows the mini-batch trajectory (rows shuffled by the case's seed);
a backend that does not declare the head (``Backend.outputs``) is not run on it.

Tolerances (``TOLERANCES``, normwise relative, per dtype) are the one place
where "equal enough" is decided. A correct backend differs from the reference
only by the order of its sums (BLAS blocking, FMA, parallel or GPU tree
reductions); measured with a deliberately reordered implementation
(sequential, and 16-wide chunks in reverse, over the parity cases of every
preset, up to ``[1024, 4096, 1]``):

* ``float64: 1e-11``: the reordered sums reach 3.5e-14 (y_hat through a
  4096-wide layer), 2e-14 on the lab-sized cases; 1e-11 leaves a factor 300
  for GPU libraries and K steps of SGD, and a real bug (a missing term, a
  wrong derivative, a race) is > 1e-6.
* ``float32: 1e-4``: the reordered sums reach 1.6e-5 (y_hat through a
  4096-wide layer) and 1.9e-5 (``db2`` of the 4-sample case, a sum of four
  terms of about 0.5 that cancels), so 1e-5 would fail correct backends;
  1e-4 still catches a silently reduced precision (TF32 or bfloat16 matmuls
  give 1e-3 to 1e-2) and every real bug.

The cases keep float32 ReLU nets small: in a large ReLU layer an element of
``z`` within rounding of 0 flips the derivative between 0 and 1 under any
reordering, which moves a float32 ``dW1`` by ~1e-2 (it happened for
``[1024, 4096, 1]``, N = 2048); the large cases use ``tanh``.

``ulps`` reports the error in units of the dtype's epsilon, to read it at a glance.

Parity works on a backend object and NumPy params, never through ``MLP``;
``probe`` is the fast check ``backend="auto"`` runs before timing a backend.
"""

from __future__ import annotations

import functools
import math
from dataclasses import asdict, dataclass

import numpy as np

from ..backends.numpy_backend import NumpyBackend
from .cases import LABS, ParityCase, make_data
from ..core.params import init_params
from ..core.validation import (check_activation, check_batch_size, check_dtype, check_grad_reduction,
                               check_layer_sizes, check_output, check_positive_int)

#: normwise relative tolerance per dtype (see the module docstring for why)
TOLERANCES = {"float64": 1e-11, "float32": 1e-4}


@dataclass
class ParityResult:
    """One compared tensor. ``error`` is normwise relative; ``ulps`` is ``error / eps(dtype)``."""

    backend: str
    case: str
    tensor: str
    error: float
    ulps: float
    tolerance: float
    passed: bool
    note: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        for k in ("error", "ulps"):  # JSON has no inf / NaN
            if not math.isfinite(d[k]):
                d[k] = None
        return d

    def describe(self) -> str:
        what = self.note or f"error {self.error:.3g} > tolerance {self.tolerance:g}"
        return f"{self.backend} / {self.case} / {self.tensor}: {what}"


def normwise_error(a, ref) -> float:
    """``max|a - ref| / max(max|ref|, tiny)`` in float64; ``inf`` on a shape mismatch or a stray NaN/inf."""
    a, ref = np.asarray(a), np.asarray(ref)
    if a.shape != ref.shape:
        return math.inf
    if ref.size == 0:
        return 0.0
    a64, r64 = a.astype(np.float64), ref.astype(np.float64)
    finite_a, finite_r = np.isfinite(a64), np.isfinite(r64)
    if not (finite_a.all() and finite_r.all()):
        same = np.array_equal(finite_a, finite_r) and np.array_equal(a64[~finite_r], r64[~finite_r], equal_nan=True)
        if not same:
            return math.inf
        a64, r64 = a64[finite_r], r64[finite_r]
        if r64.size == 0:
            return 0.0
    scale = max(float(np.max(np.abs(r64))), float(np.finfo(ref.dtype if ref.dtype.kind == "f" else np.float64).tiny))
    return float(np.max(np.abs(a64 - r64))) / scale


def ulps(error, dtype) -> float:
    """A normwise error in units of ``dtype``'s machine epsilon."""
    return error / float(np.finfo(dtype).eps)


def _parity_lr(grad_reduction, n_samples):
    """A learning rate that keeps K steps well conditioned for any N: 0.1 per sample-mean gradient."""
    return 0.1 if grad_reduction == "mean" else 0.1 / n_samples


def _named_params(params, suffix):
    out = {}
    for i, (W, b) in enumerate(params, start=1):
        out[f"W{i} {suffix}"], out[f"b{i} {suffix}"] = W, b
    return out


def _targets(y, output, seed):
    """The case's targets: ``make_data``'s 0/1 matrix, or seeded one-hot rows for the softmax head."""
    if output == "sigmoid":
        return y
    n, k = y.shape
    return np.eye(k, dtype=y.dtype)[np.random.RandomState(seed + 1).randint(0, k, n)]


def _stages(backend, params, X, y, activation, grad_reduction, steps, lr, output="sigmoid", batch_size=None,
            seed=0):
    """Yield ``(stage, {tensor: numpy array})`` for one backend; an exception ends the run at its stage."""
    to_np = backend.to_numpy
    bX, by = backend.asarray(X), backend.asarray(y)
    bp = backend.params_from_numpy(params)
    y_hat, cache = backend.forward(bp, bX, activation=activation, output=output)
    yield "forward", {"y_hat": to_np(y_hat)}
    yield "loss", {"loss": np.asarray(float(backend.loss(by, y_hat, output=output)))}
    grads = backend.backward(bp, cache, bX, by, activation=activation, grad_reduction=grad_reduction, output=output)
    named = {}
    for i, (dW, db) in enumerate(grads, start=1):
        named[f"dW{i}"], named[f"db{i}"] = to_np(dW), to_np(db)
    yield "backward", named
    losses = [float(backend.step(bp, bX, by, lr=lr, activation=activation, grad_reduction=grad_reduction,
                                 output=output)) for _ in range(steps)]
    after = {f"losses of {steps} steps": np.asarray(losses)}
    after.update(_named_params(backend.params_to_numpy(bp), f"after {steps} steps"))
    yield "step", after
    tp = backend.params_from_numpy(params)
    batching = {} if batch_size is None else {"batch_size": batch_size, "shuffle_seed": seed}
    history = backend.train(tp, bX, by, lr=lr, epochs=steps, activation=activation, grad_reduction=grad_reduction,
                            output=output, **batching)
    kind = "" if batch_size is None else f" of batches of {batch_size}"
    out = {f"train loss history ({steps} epochs{kind})": np.asarray(history, dtype=np.float64)}
    out.update(_named_params(backend.params_to_numpy(tp), "after train"))
    yield "train", out


def _collect(backend, *args, **kw):
    """All tensors a backend produced, and ``(stage, exception)`` if it raised."""
    tensors, stage = {}, "setup"
    try:
        for stage, named in _stages(backend, *args, **kw):
            tensors.update(named)
    except Exception as exc:  # a broken backend is reported, never crashes the suite
        following = {"setup": "forward", "forward": "loss", "loss": "backward", "backward": "step", "step": "train"}
        return tensors, (following.get(stage, stage), exc)
    return tensors, None


@functools.lru_cache(maxsize=64)
def _reference(layer_sizes, n_samples, dtype, activation, grad_reduction, steps, seed, lr, output="sigmoid",
               batch_size=None):
    params = init_params(layer_sizes, seed, dtype)
    X, y = make_data(n_samples, layer_sizes, dtype, seed)
    tensors, failure = _collect(NumpyBackend(), params, X, _targets(y, output, seed), activation, grad_reduction,
                                steps, lr, output=output, batch_size=batch_size, seed=seed)
    if failure is not None:
        raise RuntimeError(f"the NumPy reference failed at {failure[0]}: {failure[1]}") from failure[1]
    return tensors


def _compare(name, case, ref, got, failure, dtype):
    tol = TOLERANCES[dtype]
    results = []
    for tensor, r in ref.items():
        if tensor not in got:
            break
        g = np.asarray(got[tensor])
        err = normwise_error(g, r)
        note = "" if g.dtype == r.dtype else f"dtype {g.dtype}, expected {r.dtype}"
        results.append(ParityResult(name, case, tensor, err, ulps(err, dtype), tol, err <= tol and not note, note))
    if failure is not None:
        stage, exc = failure
        results.append(ParityResult(name, case, f"{stage} (raised)", math.inf, math.inf, tol, False,
                                    f"{stage} raised {type(exc).__name__}: {exc}"))
    return results


def check_backend(backend, layer_sizes, n_samples, dtype, activation="relu", grad_reduction="sum", steps=3, seed=0,
                  lr=None, case=None, output="sigmoid", batch_size=None) -> list[ParityResult]:
    """Compare ``backend`` with the reference on one configuration; one ``ParityResult`` per tensor.

    Params are ``init_params(layer_sizes, seed, dtype)``, data ``cases.make_data``.
    ``lr`` defaults to 0.1 for ``"mean"`` and 0.1 / N (or / ``batch_size``) for ``"sum"``. A backend
    that raises yields a failed ``"<stage> (raised)"`` row instead of an exception.
    """
    layer_sizes = tuple(check_layer_sizes(layer_sizes))
    n_samples = check_positive_int("n_samples", n_samples)
    dtype = check_dtype(dtype).name
    check_activation(activation)
    check_grad_reduction(grad_reduction)
    steps = check_positive_int("steps", steps)
    output, batch_size = check_output(output), check_batch_size(batch_size)
    lr = _parity_lr(grad_reduction, n_samples if batch_size is None else min(batch_size, n_samples)) \
        if lr is None else float(lr)
    case = case or ParityCase(layer_sizes, n_samples, activation, grad_reduction, steps, output, batch_size).label
    case = f"{case} {np.dtype(dtype).name}"
    ref = _reference(layer_sizes, n_samples, dtype, activation, grad_reduction, steps, seed, lr, output, batch_size)
    params = init_params(layer_sizes, seed, dtype)
    X, y = make_data(n_samples, layer_sizes, dtype, seed)
    got, failure = _collect(backend, params, X, _targets(y, output, seed), activation, grad_reduction, steps, lr,
                            output=output, batch_size=batch_size, seed=seed)
    return _compare(backend.name, case, ref, got, failure, dtype)


def _lab_tensors(backend, name, dtype):
    run = LABS[name]
    params = init_params(run.layer_sizes, run.seed, dtype)
    X, y = make_data(4, run.layer_sizes, dtype, dataset=run.dataset)
    bp = backend.params_from_numpy(params)
    bX = backend.asarray(X)
    history = backend.train(bp, bX, backend.asarray(y), lr=run.lr, epochs=run.epochs)
    out = {f"loss history ({run.epochs} epochs)": np.asarray(history, dtype=np.float64)}
    out.update(_named_params(backend.params_to_numpy(bp), "after train"))
    out["y_hat after train"] = backend.to_numpy(backend.forward(bp, bX)[0])
    return out


@functools.lru_cache(maxsize=8)
def _lab_reference(name, dtype):
    return _lab_tensors(NumpyBackend(), name, dtype)


def check_lab(backend, name="and", dtype="float64") -> list[ParityResult]:
    """The lab's whole training run (``cases.LABS[name]``): loss trajectory, final params and outputs."""
    if name not in LABS:
        raise ValueError(f"lab must be one of {list(LABS)}; got {name!r}")
    dtype = check_dtype(dtype).name
    ref = _lab_reference(name, dtype)
    try:
        got, failure = _lab_tensors(backend, name, dtype), None
    except Exception as exc:
        got, failure = {}, ("train", exc)
    return _compare(backend.name, f"lab-{name} {dtype}", ref, got, failure, dtype)


def probe(backend, layer_sizes, n_samples, dtype, activation="relu", output="sigmoid",
          batch_size=None) -> tuple[bool, str | None]:
    """Fast parity check before trusting ``backend`` on a shape: N = min(n_samples, 64), K = 2.

    ``output`` is the head checked; with a ``batch_size``, ``train`` runs mini-batches of
    ``min(batch_size, N // 3)`` rows (at least 1), so several batches are compared whatever
    the fit's batch size. Returns ``(True, None)`` or
    ``(False, description of the first failing tensor)``.
    """
    n = min(int(n_samples), 64)
    if batch_size is not None:
        batch_size = max(1, min(int(batch_size), n // 3))
    results = check_backend(backend, layer_sizes, n, dtype, activation, steps=2, output=output,
                            batch_size=batch_size)
    bad = first_failure(results)
    return (True, None) if bad is None else (False, bad.describe())


def _run_tensors(backend, layer_sizes, n_samples, dtype, activation, epochs, lr) -> dict:
    """The loss history and final params of ``epochs`` epochs through ``backend.prepare(...).run``."""
    X, y = make_data(n_samples, layer_sizes, dtype, 0)
    bp = backend.params_from_numpy(init_params(layer_sizes, 0, dtype))
    history = backend.prepare(bp, backend.asarray(X), backend.asarray(y), lr=lr, activation=activation).run(epochs)
    backend.synchronize()
    out = {f"loss history of the prepared run ({epochs} epochs)": np.asarray(history)}
    out.update(_named_params(backend.params_to_numpy(bp), "after the prepared run"))
    return out


@functools.lru_cache(maxsize=64)
def _run_reference(layer_sizes, n_samples, dtype, activation, epochs, lr):
    return _run_tensors(NumpyBackend(), layer_sizes, n_samples, dtype, activation, epochs, lr)


def probe_run(backend, layer_sizes, n_samples, dtype, activation="relu", epochs=3) -> tuple[bool, str | None]:
    """Parity of the path a fit runs: ``epochs`` epochs of the prepared ``run`` (full batch, sigmoid head).

    The trajectory (loss per epoch) and the params after it are compared with
    the reference's under ``TOLERANCES``; nothing else of the backend is
    called, so a candidate compiles only the kernels its fits use (``auto``:
    a strategy candidate such as ``numba[loop]``). ``n_samples`` rows are used
    as given (a per-shape kernel is not compiled twice). Returns what ``probe`` does.
    """
    sizes = tuple(check_layer_sizes(layer_sizes))
    n, dtype = check_positive_int("n_samples", n_samples), check_dtype(dtype).name
    epochs, lr = check_positive_int("epochs", epochs), _parity_lr("sum", n)
    ref = _run_reference(sizes, n, dtype, check_activation(activation), epochs, lr)
    try:
        got, failure = _run_tensors(backend, sizes, n, dtype, activation, epochs, lr), None
    except Exception as exc:  # a broken backend is a failed probe, not a crash
        got, failure = {}, ("run", exc)
    case = f"prepared run N={n} {list(sizes)} {activation} {dtype}"
    bad = first_failure(_compare(backend.name, case, ref, got, failure, dtype))
    return (True, None) if bad is None else (False, bad.describe())


def first_failure(results) -> ParityResult | None:
    return next((r for r in results if not r.passed), None)


def run_suite(backends, cases, dtypes=("float64", "float32"), labs=("and", "xor"), on_result=None):
    """Every backend on every ``ParityCase`` and lab, in every dtype; ``backends`` is ``[(label, backend)]``.

    ``on_result(list_of_results)`` is called after each (backend, case, dtype). A case whose
    output head a backend does not declare (``backend.outputs``) is not run on it (see ``unsupported``).
    """
    results = []
    for dtype in dtypes:
        for label, backend in backends:
            jobs = [functools.partial(check_backend, backend, c.layer_sizes, c.n_samples, dtype, c.activation,
                                      c.grad_reduction, c.steps, case=c.label, output=c.output,
                                      batch_size=c.batch_size)
                    for c in cases if c.output in backend.outputs]
            jobs += [functools.partial(check_lab, backend, lab, dtype) for lab in labs]
            for job in jobs:
                rows = job()
                for r in rows:
                    r.backend = label
                results.extend(rows)
                if on_result is not None:
                    on_result(rows)
    return results

def unsupported(backends, cases) -> list[tuple[str, str]]:
    """``(backend label, output)`` for each head some case uses that a backend does not declare."""
    heads = sorted({c.output for c in cases})
    return [(label, h) for label, be in backends for h in heads if h not in be.outputs]


__all__ = ["ParityResult", "TOLERANCES", "check_backend", "check_lab", "first_failure", "normwise_error", "probe",
           "probe_run", "run_suite", "ulps", "unsupported"]
