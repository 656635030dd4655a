"""The best plain code a user of JAX or PyTorch would write for the lab's MLP: the peers' yardstick.

Written apart from ``backends/`` on purpose (no shared code, only the same
math): ReLU hidden layers, a sigmoid output, the mean BCE with the lab's clip
(``max(1e-8, finfo.epsneg)``, see ``kernels/reference.bce_eps``), the gradient
of the summed loss (divided by N under ``grad_reduction="mean"``), plain SGD,
full batch. Each library's variants, so a comparison can take the fastest:

* ``"jax"``: one ``jax.jit`` step, the lab's backward pass written out, params
  buffers donated; ``train`` is one jitted ``lax.fori_loop`` over the epochs
  writing each loss into a preallocated history (donated too). float64 runs
  under ``jax.enable_x64(True)``, a per-call context, never process-wide.
* ``"torch"``: the same written-out step under ``torch.inference_mode()``,
  params updated in place; ``train`` a Python loop of it, the losses kept in
  one tensor and copied out once. ``"torch.compile"``: that step through
  ``torch.compile`` (compiled on the first call: the warm-up).
  ``"torch.autograd"``: the textbook loop, autograd and ``torch.optim.SGD`` on
  ``binary_cross_entropy_with_logits`` (its gradient is the lab's
  ``sigmoid(z) - y``; it has no clip, so its loss is the lab's wherever the
  clip is inactive).

``build(library, op, params, X, y, lr, epochs)`` returns a zero-argument
callable running one ``step`` (returns the loss, a float) or one ``train`` of
``epochs`` (returns the history, a float64 NumPy array), synchronized. It owns
copies of ``params`` (NumPy ``(W, b)`` pairs) and keeps training them from call
to call; nothing the caller passed is modified. ``case_builder(library)`` is
the same for a ``cases.Case`` (the bench's reference rows).
"""

from __future__ import annotations

import contextlib
import types

import numpy as np

LIBRARIES = ("jax", "torch", "torch.compile", "torch.autograd")
OPS = ("step", "train")


def _eps(dtype) -> float:
    """The lab's BCE clip, widened where ``1 - 1e-8`` rounds to 1 (float32)."""
    return max(1e-8, float(np.finfo(dtype).epsneg))


# ---------------------------------------------------------------- JAX
def _jax_build(op, params, X, y, lr, epochs, grad_reduction):
    import jax
    import jax.numpy as jnp

    dtype = np.dtype(X.dtype)
    eps, n = _eps(dtype), X.shape[0]
    if hasattr(jax, "enable_x64"):
        enable_x64 = jax.enable_x64
    else:  # older JAX
        from jax.experimental import enable_x64

    def x64():  # a fresh context per call (JAX's older one is single-use)
        return enable_x64(True) if dtype == np.float64 else contextlib.nullcontext()

    def step(params, X, y):
        acts = [X]
        for i, (W, b) in enumerate(params):
            z = jnp.matmul(acts[-1], W, precision="highest") + b
            acts.append(jax.nn.sigmoid(z) if i == len(params) - 1 else jax.nn.relu(z))
        p = jnp.clip(acts[-1], eps, 1 - eps)
        loss = -jnp.mean(y * jnp.log(p) + (1 - y) * jnp.log(1 - p))
        dz = acts[-1] - y
        if grad_reduction == "mean":
            dz = dz / n
        new = [None] * len(params)
        for i in range(len(params) - 1, -1, -1):
            W, b = params[i]
            dW = jnp.matmul(acts[i].T, dz, precision="highest")
            db = jnp.sum(dz, axis=0, keepdims=True)
            if i > 0:
                dz = jnp.matmul(dz, W.T, precision="highest") * (acts[i] > 0)
            new[i] = (W - lr * dW, b - lr * db)
        return new, loss

    def train(params, hist, X, y):
        def body(i, carry):
            params, hist = carry
            params, loss = step(params, X, y)
            return params, hist.at[i].set(loss)
        return jax.lax.fori_loop(0, epochs, body, (params, hist))

    with x64():
        state = [[(jnp.asarray(W), jnp.asarray(b)) for W, b in params]]
        Xj, yj = jnp.asarray(X), jnp.asarray(y)
        if op == "step":
            fn = jax.jit(step, donate_argnums=(0,))
        else:
            fn = jax.jit(train, donate_argnums=(0, 1))
            hist = [jnp.zeros(epochs, dtype)]

    def run_step():
        with x64():
            state[0], loss = fn(state[0], Xj, yj)
            return loss.item()

    def run_train():
        with x64():
            state[0], hist[0] = fn(state[0], hist[0], Xj, yj)
            return np.asarray(hist[0], dtype=np.float64)

    return run_step if op == "step" else run_train


# ---------------------------------------------------------------- PyTorch
def _torch_build(op, params, X, y, lr, epochs, grad_reduction, compiled=False):
    import torch

    eps, n = _eps(X.dtype), X.shape[0]
    with torch.inference_mode():
        state = [(torch.tensor(W), torch.tensor(b)) for W, b in params]
        Xt, yt = torch.tensor(X), torch.tensor(y)
        hist = torch.empty(epochs, dtype=Xt.dtype)

    def step():
        acts = [Xt]
        for i, (W, b) in enumerate(state):
            z = torch.addmm(b, acts[-1], W)
            acts.append(z.sigmoid_() if i == len(state) - 1 else z.relu_())
        p = acts[-1].clamp(eps, 1 - eps)
        loss = torch.nn.functional.binary_cross_entropy(p, yt)
        dz = acts[-1] - yt
        if grad_reduction == "mean":
            dz /= n
        for i in range(len(state) - 1, -1, -1):
            W, b = state[i]
            dW, db = acts[i].T @ dz, dz.sum(0, keepdim=True)
            if i > 0:
                dz = (dz @ W.T).mul_(acts[i] > 0)
            W.sub_(dW, alpha=lr)
            b.sub_(db, alpha=lr)
        return loss

    if compiled:  # a code object per build: torch.compile caches graphs per code object, and only a few
        step = types.FunctionType(step.__code__.replace(), step.__globals__, "step", None, step.__closure__)
        step = torch.compile(step, dynamic=False, fullgraph=True)

    return _torch_runner(op, step, hist, epochs, torch.inference_mode)


def _torch_runner(op, step, hist, epochs, context):
    """The timed callable of a torch build: one ``step()`` (its loss as a float), or ``epochs`` of them (the
    loss history, float64), each call inside ``context()``."""
    def run_step():
        with context():
            return step().item()

    def run_train():
        with context():
            for epoch in range(epochs):
                hist[epoch] = step()
            return hist.numpy().astype(np.float64)

    return run_step if op == "step" else run_train


def _torch_autograd_build(op, params, X, y, lr, epochs, grad_reduction):
    """Autograd and ``torch.optim.SGD``; the objective ``binary_cross_entropy_with_logits`` (summed, or the
    mean), whose gradient is the lab's ``sigmoid(z) - y``; its value (per sample) is the history."""
    import torch

    n = X.shape[0]
    state = [(torch.tensor(W, requires_grad=True), torch.tensor(b, requires_grad=True)) for W, b in params]
    Xt, yt = torch.tensor(X), torch.tensor(y)
    opt = torch.optim.SGD([t for pair in state for t in pair], lr=lr)
    hist = torch.empty(epochs, dtype=Xt.dtype)

    def step():
        opt.zero_grad()
        a = Xt
        for i, (W, b) in enumerate(state):
            a = torch.addmm(b, a, W)
            if i < len(state) - 1:
                a = torch.relu(a)
        objective = torch.nn.functional.binary_cross_entropy_with_logits(a, yt, reduction=grad_reduction)
        objective.backward()
        opt.step()
        return objective.detach() / n if grad_reduction == "sum" else objective.detach()

    return _torch_runner(op, step, hist, epochs, contextlib.nullcontext)


_BUILDERS = {"jax": _jax_build, "torch": _torch_build,
             "torch.compile": lambda *args: _torch_build(*args, compiled=True),
             "torch.autograd": _torch_autograd_build}


def build(library, op, params, X, y, lr, epochs=1, grad_reduction="sum"):
    """A zero-argument callable: one synchronized ``step`` (the loss) or ``train`` of ``epochs`` (the history)."""
    if library not in _BUILDERS:
        raise ValueError(f"library must be one of {list(LIBRARIES)}; got {library!r}")
    if op not in OPS:
        raise ValueError(f"op must be one of {list(OPS)}; got {op!r}")
    if grad_reduction not in ("sum", "mean"):
        raise ValueError(f"grad_reduction must be 'sum' or 'mean'; got {grad_reduction!r}")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ValueError(f"epochs must be a positive int; got {epochs!r}")
    X, y = np.asarray(X), np.asarray(y)
    if X.dtype not in (np.float32, np.float64) or y.dtype != X.dtype:
        raise TypeError(f"X and y must be float32 or float64 arrays of one dtype; got {X.dtype} and {y.dtype}")
    if X.ndim != 2 or y.ndim != 2 or len(X) != len(y):
        raise ValueError(f"X and y must be 2-D with the same number of rows; got shapes {X.shape} and {y.shape}")
    params = [(np.array(W, dtype=X.dtype, order="C"), np.array(b, dtype=X.dtype, order="C")) for W, b in params]
    return _BUILDERS[library](op, params, np.ascontiguousarray(X), np.ascontiguousarray(y), float(lr), epochs,
                              grad_reduction)


def case_builder(library):
    """``builder(case, X, y) -> callable`` for a ``cases.Case`` (ReLU, sigmoid head; op ``step`` or ``train``)."""
    def builder(case, X, y):
        from ..core.params import init_params

        if case.activation != "relu":
            raise ValueError(f"idiomatic {library} code is written for relu; got activation={case.activation!r}")
        params = init_params(case.layer_sizes, case.seed, case.dtype)
        return build(library, case.op, params, X, y, case.lr, case.epochs if case.op == "train" else 1,
                     case.grad_reduction)
    return builder


__all__ = ["LIBRARIES", "OPS", "build", "case_builder"]
