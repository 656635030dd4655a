"""PyTorch peer: the reference math with manual gradients (no autograd), on CPU or CUDA.

Autograd is not used on purpose: it differs from the lab at ReLU's kink (z == 0)
and through the BCE clip. Every op writes into a preallocated buffer and is one
ATen op where one exists (per-op dispatch is most of a small net's step);
``train`` keeps the per-epoch losses on the device and copies them back once.

``compile=True`` runs the same epoch function through ``torch.compile``
(Inductor, one graph per shape: lr and 1/N are inputs). Off by default: on the
2-core CPU this was measured on (PyTorch 2.13) it is slower than this eager
code, about 1.4x at the lab's size (the compiled call's own overhead) and 2x at
N=16384, ``[32, 2048, 1]`` (its generated kernels and an extra copy around the
bias GEMM), though it beats a plain eager step that multiplies by a ``(a > 0)``
mask. Each (shape, dtype, threads, head) is compiled once per process, on copies
of the params, when the runner is made (``prepare``, the start of ``train``), so
the compile is never part of a timed step; a failure (no C++ compiler, an
unsupported Python) warns once for that shape and runs it eager.
"""

from __future__ import annotations

import contextlib
import functools
import types
import warnings

import numpy as np

from ..kernels.reference import bce_eps
from .base import Backend, BackendUnavailable, Prepared, parse_device

#: compiled epoch functions by (shape, dtype, device, threads, settings); None where compiling failed
_COMPILED: dict = {}


@functools.lru_cache(maxsize=None)
def _torch():
    import torch

    return torch


def _dtype_name(t) -> str:
    return str(t.dtype).rpartition(".")[2]  # torch.float64 -> "float64"


# In-place activations and their derivatives from the activation's output ``a``
# (the reference's formulas; ``t`` is a scratch buffer). One ATen op each where one exists:
# the per-op dispatch cost is most of a small net's step.
def _relu_(torch, z):
    z.relu_()


def _tanh_(torch, z):
    z.tanh_()


def _sigmoid_(torch, z):
    z.sigmoid_()  # 1 / (1 + exp(-z)), overflow-free: exp(-z) = inf gives 0 with no warning


def _drelu_(torch, dz, a, t):
    # da * (a > 0), 0 at the kink as in the lab: ReLU's own backward op, one pass, no mask tensor
    torch.ops.aten.threshold_backward.grad_input(dz, a, 0, grad_input=dz)


def _dtanh_(torch, dz, a, t):
    dz.mul_(torch.mul(a, a, out=t).neg_().add_(1))  # da * (1 - a*a)


def _dsigmoid_(torch, dz, a, t):
    dz.mul_(torch.neg(a, out=t).add_(1).mul_(a))  # da * (a * (1 - a))


def _log_softmax_(torch, z):
    # s = z - max(z); s - log(sum(exp(s))): the reference's stable log-softmax, per row
    z.sub_(z.amax(dim=1, keepdim=True))
    z.sub_(torch.exp(z).sum(dim=1, keepdim=True).log_())


_ACT = {"relu": _relu_, "tanh": _tanh_, "sigmoid": _sigmoid_}
_HEAD = {"sigmoid": _sigmoid_, "softmax": _log_softmax_}
_DERIV = {"relu": _drelu_, "tanh": _dtanh_, "sigmoid": _dsigmoid_}


def _divisor(grad_reduction, n):
    """What the output error is divided by: N under ``"mean"``, nothing under ``"sum"``."""
    return n if grad_reduction == "mean" else None


def _sgd_(torch, params, grads, lr):
    """``p -= lr * g`` for every tensor: one ``_foreach`` call (as ``torch.optim.SGD`` does), else a loop.

    ``lr`` a 0-d tensor (the compiled step's input, so one graph serves every lr): ``g *= lr`` first.
    """
    flat_p = [t for pair in params for t in pair]
    flat_g = [t for pair in grads for t in pair]
    if isinstance(lr, torch.Tensor):
        torch._foreach_mul_(flat_g, lr)
        torch._foreach_sub_(flat_p, flat_g)
    elif hasattr(torch, "_foreach_sub_"):
        torch._foreach_sub_(flat_p, flat_g, alpha=lr)
    else:  # pragma: no cover - older PyTorch
        for p, g in zip(flat_p, flat_g):
            p.sub_(g, alpha=lr)


class _Buffers:
    """Every intermediate of one epoch for fixed (params shapes, N, dtype, device); ``tmp`` (scratch for
    the tanh / sigmoid derivatives) only where ``activation`` needs it."""

    def __init__(self, torch, params, X, acts=None, activation="relu"):
        n, like = X.shape[0], dict(dtype=X.dtype, device=X.device)
        self.acts = list(acts) if acts is not None else [X] + [torch.empty(n, W.shape[1], **like) for W, _ in params]
        self.acts_T = [a.T for a in self.acts]
        self.dz = [torch.empty(n, W.shape[1], **like) for W, _ in params]
        self.grads = [(torch.empty_like(W), torch.empty_like(b)) for W, b in params]
        self.tmp = [None if activation == "relu" else torch.empty(n, W.shape[1], **like) for W, _ in params[:-1]]
        self.scratch = (torch.empty_like(self.acts[-1]), torch.empty_like(self.acts[-1]))
        self.targets = None  # the loss's target terms, made on first use (``_targets``)


class TorchBackend(Backend):
    """PyTorch tensors on ``device`` ("cpu", "cuda", "cuda:N"; default CUDA when present).

    ``threads`` sets ``torch.set_num_threads`` around this backend's calls.
    On CUDA, float32 matmuls use full IEEE precision (no TF32) unless
    ``allow_tf32=True``; this is PyTorch's process-wide matmul setting.
    ``compile=True``: the step through ``torch.compile`` (see the module docstring).
    """

    name = "torch"
    requires = ("torch",)
    prior_rank = 2
    install_hint = 'pip install "mlpbench[peers]"'
    outputs = ("sigmoid", "softmax")

    def __init__(self, device=None, threads=None, allow_tf32=False, compile=False):
        torch = _torch()
        if not isinstance(compile, bool):
            raise ValueError(f"compile must be True or False; got {compile!r}")
        self.compile = compile
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        parse_device(device)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
            raise ValueError(f"threads must be a positive int or None; got {threads!r}")
        self._dev = torch.device(device)
        if self._dev.type == "cuda":
            if not torch.cuda.is_available():
                raise BackendUnavailable(f"device={device!r} but torch.cuda.is_available() is False")
            index = self._dev.index if self._dev.index is not None else torch.cuda.current_device()
            if index >= torch.cuda.device_count():
                raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
            self._dev = torch.device("cuda", index)
            self.device = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
            matmul = torch.backends.cuda.matmul
            if hasattr(matmul, "fp32_precision"):
                matmul.fp32_precision = "tf32" if allow_tf32 else "ieee"
            else:  # pragma: no cover - older PyTorch
                matmul.allow_tf32 = bool(allow_tf32)
        self.threads = threads

    def describe(self) -> dict:
        return {"device": self.device, "threads": self.threads or _torch().get_num_threads(),
                "compile": self.compile}

    def _threads(self):
        """``torch`` with this backend's thread count set for the block (a no-op context without ``threads``)."""
        if self.threads is None:
            return contextlib.nullcontext(_torch())
        return self._scoped_threads()

    @contextlib.contextmanager
    def _scoped_threads(self):
        torch = _torch()
        before = torch.get_num_threads()
        if self.threads != before:
            torch.set_num_threads(self.threads)
        try:
            yield torch
        finally:
            if self.threads != before:
                torch.set_num_threads(before)

    # ------------------------------------------------------------ plumbing
    def asarray(self, a):
        torch = _torch()
        if isinstance(a, torch.Tensor):
            return a.to(self._dev).contiguous()
        return torch.from_numpy(np.array(a, copy=True, order="C")).to(self._dev)

    def to_numpy(self, a) -> np.ndarray:
        return a.detach().cpu().numpy()

    def synchronize(self) -> None:
        if self._dev.type == "cuda":
            _torch().cuda.synchronize(self._dev)

    # ------------------------------------------------------------ the math
    def _forward_into(self, torch, params, buf, activation, output="sigmoid"):
        act, head, last = _ACT[activation], _HEAD[output], len(params) - 1
        for i, (W, b) in enumerate(params):
            z = torch.addmm(b, buf.acts[i], W, out=buf.acts[i + 1])
            (head if i == last else act)(torch, z)
        return buf.acts[-1]

    def _backward_into(self, torch, params, buf, y, activation, divisor, output="sigmoid"):
        deriv, acts, dz = _DERIV[activation], buf.acts, buf.dz
        if output == "sigmoid":
            torch.sub(acts[-1], y, out=dz[-1])
        else:  # softmax - onehot, from the log-probabilities
            torch.exp(acts[-1], out=dz[-1]).sub_(y)
        if divisor is not None:  # "mean": N (a 0-d tensor holding 1 or N in the compiled step)
            dz[-1].div_(divisor)
        for i in range(len(params) - 1, -1, -1):
            dW, db = buf.grads[i]
            torch.mm(buf.acts_T[i], dz[i], out=dW)
            torch.sum(dz[i], dim=0, keepdim=True, out=db)
            if i > 0:
                torch.mm(dz[i], params[i][0].T, out=dz[i - 1])
                deriv(torch, dz[i - 1], acts[i], buf.tmp[i - 1])
        return buf.grads

    @staticmethod
    def _targets(torch, y, output):
        """What ``_head_loss`` needs of ``y``: ``(-y, y - 1)`` for BCE, ``y`` for the softmax head."""
        return (torch.neg(y), torch.sub(y, 1)) if output == "sigmoid" else y

    @staticmethod
    def _head_loss(torch, targets, y_hat, scratch, output):
        """The head's loss, a 0-d tensor, in six ATen ops: mean BCE of ``p = clip(y_hat, eps, 1 - eps)``,
        ``mean(-y log p + (y - 1) log(1 - p))`` (``log1p(-p)`` for ``log(1 - p)``: equal to within an
        ulp), or ``-sum(y * log p) / N`` from the log-probabilities."""
        if output == "sigmoid":
            neg_y, y_minus_1 = targets
            eps = bce_eps(_dtype_name(y_hat))
            p = torch.clamp(y_hat, eps, 1 - eps, out=scratch[0])
            terms = torch.xlogy(neg_y, p, out=scratch[1])
            return torch.mean(terms.addcmul_(y_minus_1, torch.log1p(p.neg_(), out=p)))
        return torch.sum(torch.mul(targets, y_hat, out=scratch[0])).neg_().div_(targets.shape[0])

    def _forward(self, params, X, activation, output="sigmoid"):
        with self._threads() as torch:
            buf = _Buffers(torch, params, X)
            self._forward_into(torch, params, buf, activation, output)
            return buf.acts[-1], buf.acts

    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        with self._threads() as torch:
            buf = _Buffers(torch, params, X, acts=cache, activation=activation)
            return self._backward_into(torch, params, buf, y, activation, _divisor(grad_reduction, y.shape[0]),
                                       output)

    def _sgd_update(self, params, grads, lr) -> None:
        with self._threads() as torch:
            _sgd_(torch, params, grads, lr)

    def _loss(self, y, y_hat, output="sigmoid") -> float:
        with self._threads() as torch:
            scratch = (torch.empty_like(y_hat), torch.empty_like(y_hat))
            return float(self._head_loss(torch, self._targets(torch, y, output), y_hat, scratch, output))

    def _epoch(self, torch, params, buf, y, lr, activation, divisor, output="sigmoid"):
        """One epoch into ``buf``: the loss before the update (a 0-d tensor); params updated in place."""
        self._forward_into(torch, params, buf, activation, output)
        if buf.targets is None:
            buf.targets = self._targets(torch, y, output)
        loss = self._head_loss(torch, buf.targets, buf.acts[-1], buf.scratch, output)
        _sgd_(torch, params, self._backward_into(torch, params, buf, y, activation, divisor, output), lr)
        return loss

    def _runner(self, torch, params, X, y, lr, activation, grad_reduction, output="sigmoid"):
        """``run()`` -> the loss tensor of one epoch: compiled (see ``compile``) or eager on preallocated buffers."""
        divisor = _divisor(grad_reduction, X.shape[0])
        fn = self._compiled(torch, params, X, y, activation, output)
        if fn is not None:  # lr and the divisor as 0-d tensors: inputs of the one graph, not constants
            lr_t = torch.tensor(lr, dtype=X.dtype, device=X.device)
            div_t = torch.tensor(divisor or 1, dtype=X.dtype, device=X.device)
            return functools.partial(fn, params, X, y, lr_t, div_t)
        buf = _Buffers(torch, params, X, activation=activation)
        return functools.partial(self._epoch, torch, params, buf, y, lr, activation, divisor, output)

    def _compiled(self, torch, params, X, y, activation, output):
        """The compiled epoch ``fn(params, X, y, lr, divisor) -> loss`` for this shape, or None (eager)."""
        if not self.compile:
            return None
        sizes = [X.shape[1]] + [W.shape[1] for W, _ in params]
        key = (tuple(sizes), X.shape[0], X.dtype, str(X.device), torch.get_num_threads(), activation, output)
        if key not in _COMPILED:
            _COMPILED[key] = self._compile(torch, params, X, y, activation, output)
        return _COMPILED[key]

    def _compile(self, torch, params, X, y, activation, output):
        """``torch.compile`` of ``_epoch`` (buffers allocated inside: Inductor plans its own), run once on
        copies of the params so the compile happens here; None, with one warning, where it fails."""
        def epoch(params, X, y, lr, divisor):
            return self._epoch(torch, params, _Buffers(torch, params, X, activation=activation), y, lr, activation,
                               divisor, output)

        # a code object of its own: torch.compile caches graphs per code object and stops at a few
        epoch = types.FunctionType(epoch.__code__.replace(), epoch.__globals__, "epoch", None, epoch.__closure__)
        try:
            fn = torch.compile(epoch, dynamic=False, fullgraph=True)
            with torch.inference_mode(params[0][0].is_inference()):  # copies of the params' kind (guards check it)
                probe = [(W.clone(), b.clone()) for W, b in params]
            lr, divisor = (torch.ones((), dtype=X.dtype, device=X.device) for _ in range(2))  # distinct: no alias guard
            fn(probe, X, y, lr, divisor)
            return fn
        except Exception as exc:  # noqa: BLE001 - any compiler failure means: run eager
            warnings.warn(f"torch backend: torch.compile failed ({type(exc).__name__}: {str(exc)[:200]}); "
                          "running eager", RuntimeWarning, stacklevel=2)
            return None

    def _step(self, params, X, y, lr, activation, grad_reduction, output="sigmoid") -> float:
        with self._threads() as torch, torch.inference_mode():
            return float(self._runner(torch, params, X, y, lr, activation, grad_reduction, output)())

    def _prepare(self, params, X, y, lr, activation, grad_reduction):
        """Buffers (or the compiled step) made once: ``step()`` is the epoch's ops alone."""
        return _TorchPrepared(self, params, X, y, lr, activation, grad_reduction)

    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output="sigmoid"):
        """Fused loop: one epoch's runner made once, losses kept on the device and copied back once.

        Divergence is detected after the loop (first non-finite loss), or per
        epoch when a ``callback`` needs each loss anyway.
        """
        with self._threads() as torch, torch.inference_mode():  # buffers never leave train
            run = self._runner(torch, params, X, y, lr, activation, grad_reduction, output)
            hist = torch.empty(epochs, dtype=X.dtype, device=X.device)

            def chunk(done, out):  # len(out) epochs, their losses copied back together
                for slot in hist[done : done + len(out)].unbind(0):
                    slot.copy_(run())
                out[:] = self.to_numpy(hist[done : done + len(out)])
                return len(out)

            history = self._epoch_loop(epochs, chunk, callback, 1 if callback is not None else epochs)
        return self.finish(history, params, lr)


class _TorchPrepared(Prepared):
    """A fit's runner made once (in inference mode: no autograd bookkeeping); ``step()`` runs one epoch."""

    def __init__(self, backend, params, X, y, lr, activation, grad_reduction):
        super().__init__(backend, params, X, y, lr, activation, grad_reduction)
        with backend._threads() as torch, torch.inference_mode():
            self._run = backend._runner(torch, params, X, y, lr, activation, grad_reduction)
        self._torch = torch

    def step(self) -> float:
        with self.backend._threads(), self._torch.inference_mode():
            return float(self._run())
