"""PyTorch peer: the reference math with manual gradients (no autograd), on CPU or CUDA.

Autograd is not used on purpose: it differs from the lab at ReLU's kink (z == 0)
and through the BCE clip. Every op writes into a preallocated buffer; ``train``
keeps the per-epoch losses on the device and copies them back once.
"""

from __future__ import annotations

import contextlib
import functools

import numpy as np

from ..kernels.reference import bce_eps, sigmoid_floor
from .base import Backend, BackendUnavailable, Prepared, TrainingDiverged, parse_device


@functools.lru_cache(maxsize=None)
def _torch():
    import torch

    return torch


def _dtype_name(t) -> str:
    return str(t.dtype).rpartition(".")[2]  # torch.float64 -> "float64"


# In-place activations and their derivatives from the activation's output ``a``
# (the reference's formulas and rounding order; ``t`` and ``mask`` are scratch buffers).
def _relu_(torch, z):
    z.relu_()


def _tanh_(torch, z):
    z.tanh_()


def _sigmoid_(torch, z):
    # 1 / (1 + exp(-max(z, floor))): the reference's overflow-free sigmoid
    z.clamp_(min=sigmoid_floor(_dtype_name(z))).neg_().exp_().add_(1).reciprocal_()


def _drelu_(torch, dz, a, t, mask):
    dz.mul_(torch.gt(a, 0, out=mask))  # da * (a > 0): 0 at the kink, as in the lab


def _dtanh_(torch, dz, a, t, mask):
    dz.mul_(torch.mul(a, a, out=t).neg_().add_(1))  # da * (1 - a*a)


def _dsigmoid_(torch, dz, a, t, mask):
    dz.mul_(torch.neg(a, out=t).add_(1).mul_(a))  # da * (a * (1 - a))


def _log_softmax_(torch, z):
    # s = z - max(z); s - log(sum(exp(s))): the reference's stable log-softmax, per row
    z.sub_(z.amax(dim=1, keepdim=True))
    z.sub_(torch.exp(z).sum(dim=1, keepdim=True).log_())


_ACT = {"relu": _relu_, "tanh": _tanh_, "sigmoid": _sigmoid_}
_HEAD = {"sigmoid": _sigmoid_, "softmax": _log_softmax_}
_DERIV = {"relu": _drelu_, "tanh": _dtanh_, "sigmoid": _dsigmoid_}


class _Buffers:
    """Every intermediate of one epoch for fixed (params shapes, N, dtype, device)."""

    def __init__(self, torch, params, X, acts=None):
        n, like = X.shape[0], dict(dtype=X.dtype, device=X.device)
        self.acts = list(acts) if acts is not None else [X] + [torch.empty(n, W.shape[1], **like) for W, _ in params]
        self.acts_T = [a.T for a in self.acts]
        self.dz = [torch.empty(n, W.shape[1], **like) for W, _ in params]
        self.grads = [(torch.empty_like(W), torch.empty_like(b)) for W, b in params]
        self.tmp = [torch.empty(n, W.shape[1], **like) for W, _ in params]
        self.mask = [torch.empty(t.shape, dtype=torch.bool, device=X.device) for t in self.tmp]
        self.loss_scratch = tuple(torch.empty_like(self.acts[-1]) for _ in range(3))


class TorchBackend(Backend):
    """PyTorch tensors on ``device`` ("cpu", "cuda", "cuda:N"; default CUDA when present).

    ``threads`` sets ``torch.set_num_threads`` around this backend's calls.
    On CUDA, float32 matmuls use full IEEE precision (no TF32) unless
    ``allow_tf32=True``; this is PyTorch's process-wide matmul setting.
    """

    name = "torch"
    requires = ("torch",)
    prior_rank = 2
    install_hint = 'pip install "mlpbench[peers]"'
    outputs = ("sigmoid", "softmax")

    def __init__(self, device=None, threads=None, allow_tf32=False):
        torch = _torch()
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
        return {"device": self.device, "threads": self.threads or _torch().get_num_threads()}

    @contextlib.contextmanager
    def _threads(self):
        torch = _torch()
        before = torch.get_num_threads()
        if self.threads is None or self.threads == before:
            yield torch
            return
        torch.set_num_threads(self.threads)
        try:
            yield torch
        finally:
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

    def _backward_into(self, torch, params, buf, y, activation, grad_reduction, output="sigmoid"):
        deriv, acts, dz = _DERIV[activation], buf.acts, buf.dz
        if output == "sigmoid":
            torch.sub(acts[-1], y, out=dz[-1])
        else:  # softmax - onehot, from the log-probabilities
            torch.exp(acts[-1], out=dz[-1]).sub_(y)
        if grad_reduction == "mean":
            dz[-1].div_(y.shape[0])
        for i in range(len(params) - 1, -1, -1):
            dW, db = buf.grads[i]
            torch.mm(buf.acts_T[i], dz[i], out=dW)
            torch.sum(dz[i], dim=0, keepdim=True, out=db)
            if i > 0:
                torch.mm(dz[i], params[i][0].T, out=dz[i - 1])
                deriv(torch, dz[i - 1], acts[i], buf.tmp[i - 1], buf.mask[i - 1])
        return buf.grads

    def _loss_into(self, torch, y, one_minus_y, y_hat, scratch, out):
        """-mean(y log p + (1 - y) log(1 - p)), p = clip(y_hat, eps, 1 - eps), written to ``out``."""
        eps = bce_eps(_dtype_name(y_hat))
        p = torch.clamp(y_hat, eps, 1 - eps, out=scratch[0])
        l1 = torch.log(p, out=scratch[1]).mul_(y)
        l2 = torch.neg(p, out=scratch[2]).add_(1).log_().mul_(one_minus_y)
        torch.mean(l1.add_(l2), out=out)
        return out.neg_()

    def _head_loss_into(self, torch, y, one_minus_y, y_hat, scratch, out, output):
        """The head's loss into ``out``: BCE, or -sum(y * log p) / N from the log-probabilities."""
        if output == "sigmoid":
            return self._loss_into(torch, y, one_minus_y, y_hat, scratch, out)
        torch.sum(torch.mul(y, y_hat, out=scratch[0]), dim=(0, 1), out=out)
        return out.neg_().div_(y.shape[0])

    def _forward(self, params, X, activation, output="sigmoid"):
        with self._threads() as torch:
            buf = _Buffers(torch, params, X)
            self._forward_into(torch, params, buf, activation, output)
            return buf.acts[-1], buf.acts

    def _backward(self, params, cache, X, y, activation, grad_reduction, output="sigmoid"):
        with self._threads() as torch:
            buf = _Buffers(torch, params, X, acts=cache)
            return self._backward_into(torch, params, buf, y, activation, grad_reduction, output)

    def _sgd_update(self, params, grads, lr) -> None:
        with self._threads():
            for (W, b), (dW, db) in zip(params, grads):
                W.sub_(dW, alpha=lr)
                b.sub_(db, alpha=lr)

    def _loss(self, y, y_hat, output="sigmoid") -> float:
        with self._threads() as torch:
            scratch = tuple(torch.empty_like(y_hat) for _ in range(3))
            out = torch.empty((), dtype=y_hat.dtype, device=y_hat.device)
            return float(self._head_loss_into(torch, y, 1 - y, y_hat, scratch, out, output))

    def _epoch(self, torch, params, buf, y, one_minus_y, lr, activation, grad_reduction, out, output="sigmoid"):
        """One epoch into ``buf``: the loss (before the update) written to ``out``, params updated in place."""
        self._forward_into(torch, params, buf, activation, output)
        loss = self._head_loss_into(torch, y, one_minus_y, buf.acts[-1], buf.loss_scratch, out, output)
        grads = self._backward_into(torch, params, buf, y, activation, grad_reduction, output)
        for (W, b), (dW, db) in zip(params, grads):
            W.sub_(dW, alpha=lr)
            b.sub_(db, alpha=lr)
        return loss

    def _prepare(self, params, X, y, lr, activation, grad_reduction):
        """Buffers, ``1 - y`` and the loss slot allocated once: ``step()`` is the epoch's ops alone."""
        return _TorchPrepared(self, params, X, y, lr, activation, grad_reduction)

    def _train(self, params, X, y, lr, epochs, activation, grad_reduction, callback, output="sigmoid"):
        """Fused loop: preallocated buffers, losses kept on the device and copied back once.

        Divergence is detected after the loop (first non-finite loss), or per
        epoch when a ``callback`` needs each loss anyway.
        """
        with self._threads() as torch, torch.inference_mode():  # buffers never leave train
            buf = _Buffers(torch, params, X)
            one_minus_y = 1 - y
            hist = torch.empty(epochs, dtype=X.dtype, device=X.device)
            for epoch in range(epochs):
                loss = self._epoch(torch, params, buf, y, one_minus_y, lr, activation, grad_reduction, hist[epoch],
                                   output)
                if callback is not None:
                    value = float(loss)
                    if not np.isfinite(value):
                        history = self.to_numpy(hist[: epoch + 1]).astype(np.float64)
                        raise TrainingDiverged(epoch + 1, history, lr)
                    callback(epoch + 1, value)
            history = self.to_numpy(hist)
        return self.finish(history, params, lr)


class _TorchPrepared(Prepared):
    """A fit's buffers made once (in inference mode: no autograd bookkeeping); ``step()`` runs one epoch."""

    def __init__(self, backend, params, X, y, lr, activation, grad_reduction):
        super().__init__(backend, params, X, y, lr, activation, grad_reduction)
        with backend._threads() as torch, torch.inference_mode():
            self._buf = _Buffers(torch, params, X)
            self._one_minus_y = 1 - y
            self._out = torch.empty((), dtype=X.dtype, device=X.device)
        self._torch = torch

    def step(self) -> float:
        be, torch = self.backend, self._torch
        with be._threads(), torch.inference_mode():
            return float(be._epoch(torch, self.params, self._buf, self.y, self._one_minus_y, self.lr,
                                   self.activation, self.grad_reduction, self._out))
