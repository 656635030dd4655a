"""The MLP's math, written once against an array namespace ``xp`` (NumPy or CuPy).

This module is the living specification every backend is checked against.
In float64 with NumPy it performs exactly the operations of the lab
(``shared/seed/mlp_numpy_lab.txt``) in the same order, so it reproduces the
lab's numbers bit for bit. Two departures, both invisible wherever the lab's
formulas are finite:

* ``sigmoid`` clamps ``z`` from below at ``-log(finfo.max)`` so ``exp(-z)``
  never overflows (the lab's formula warns and returns 0 there);
* the BCE clip uses ``max(1e-8, finfo.epsneg)``: the lab's ``1 - 1e-8`` is
  ``1.0`` in float32, which lets ``log(1 - p)`` reach ``-inf``.

The output head is ``"sigmoid"`` (the lab: one sigmoid per output, mean BCE)
or ``"softmax"`` (categorical cross-entropy over one-hot targets). The softmax
head's forward output is the *log*-probabilities: a stable log-softmax
(``z - max(z)`` before ``exp``), so neither the loss nor its gradient overflows
for any finite logits; probabilities are ``exp`` of it.

Params are a list of ``(W, b)`` pairs, ``W`` of shape ``(fan_in, fan_out)`` and
``b`` of shape ``(1, fan_out)``; grads have the same structure.
"""

from __future__ import annotations

import functools
import math

import numpy as np

LAB_EPS = 1e-8  # the lab's BCE clip


@functools.lru_cache(maxsize=None)
def sigmoid_floor(dtype) -> float:
    """The most negative ``z`` (representable in ``dtype``) for which ``exp(-z)`` is finite."""
    dt = np.dtype(dtype)
    f = dt.type(-math.log(float(np.finfo(dt).max)))
    with np.errstate(over="ignore"):
        while not np.isfinite(np.exp(-f)):
            f = np.nextafter(f, dt.type(0))
    return float(f)


def bce_eps(dtype) -> float:
    """The BCE clip for ``dtype``: the lab's 1e-8, widened where ``1 - 1e-8 == 1``."""
    return max(LAB_EPS, float(np.finfo(dtype).epsneg))


# ---------------------------------------------------------------- activations
def relu(xp, z):
    return xp.maximum(0, z)


def tanh(xp, z):
    return xp.tanh(z)


def sigmoid(xp, z):
    """``1 / (1 + exp(-z))`` as in the lab, without overflow for very negative z."""
    return 1 / (1 + xp.exp(-xp.maximum(z, sigmoid_floor(z.dtype))))


ACTIVATIONS = {"relu": relu, "tanh": tanh, "sigmoid": sigmoid}
#: the activation codes compiled kernels (Numba, CUDA) switch on
ACT_CODES = {"relu": 0, "tanh": 1, "sigmoid": 2}


# Derivatives from the activation's *output* ``a`` (no saved pre-activation):
# relu: a > 0 is exactly the lab's z > 0; tanh: 1 - a^2; sigmoid: a (1 - a).
def relu_backward(xp, da, a):
    return da * (a > 0)


def tanh_backward(xp, da, a):
    return da * (1 - a * a)


def sigmoid_backward(xp, da, a):
    return da * (a * (1 - a))


DERIVATIVES = {"relu": relu_backward, "tanh": tanh_backward, "sigmoid": sigmoid_backward}


# ---------------------------------------------------------------- the output heads (``core.validation.OUTPUTS``)


def log_softmax(xp, z):
    """``log(softmax(z))`` per row, stable: the row max is subtracted before ``exp``."""
    s = z - xp.max(z, axis=1, keepdims=True)
    return s - xp.log(xp.sum(xp.exp(s), axis=1, keepdims=True))


def cross_entropy(xp, y, logp):
    """Mean over samples of ``-sum_k y_k log p_k`` (one-hot ``y``), as a 0-d array of ``xp``."""
    return -xp.sum(y * logp) / y.shape[0]


# ---------------------------------------------------------------- the network
def forward(xp, params, X, activation="relu", output="sigmoid"):
    """Return ``(y_hat, activations)`` where ``activations[0] is X`` and ``activations[-1] is y_hat``.

    ``y_hat`` is the sigmoid output, or the log-probabilities for ``output="softmax"``.
    """
    act = ACTIVATIONS[activation]
    head = sigmoid if output == "sigmoid" else log_softmax
    acts = [X]
    a = X
    last = len(params) - 1
    for i, (W, b) in enumerate(params):
        z = a @ W + b
        a = head(xp, z) if i == last else act(xp, z)
        acts.append(a)
    return a, acts


def probabilities(xp, y_hat, output="sigmoid"):
    """The head's output as probabilities (``exp`` of the softmax head's log-probabilities)."""
    return y_hat if output == "sigmoid" else xp.exp(y_hat)


def bce(xp, y, y_hat):
    """Mean binary cross-entropy with the lab's clip (see ``bce_eps``), as a 0-d array of ``xp``."""
    eps = bce_eps(y_hat.dtype)
    p = xp.clip(y_hat, eps, 1 - eps)
    return -xp.mean(y * xp.log(p) + (1 - y) * xp.log(1 - p))


def bce_loss(xp, y, y_hat) -> float:
    """``bce`` as a Python float."""
    return float(bce(xp, y, y_hat))


def loss(xp, y, y_hat, output="sigmoid"):
    """The head's loss (mean BCE, or mean categorical cross-entropy) as a 0-d array of ``xp``."""
    return bce(xp, y, y_hat) if output == "sigmoid" else cross_entropy(xp, y, y_hat)


def output_error(y_hat, y, grad_reduction="sum", xp=None, output="sigmoid"):
    """dL/dz of the output layer for the summed loss: ``y_hat - y`` (the lab's, and
    ``softmax - onehot`` for the softmax head, whose ``y_hat`` is log-probabilities),
    divided by N under ``"mean"``."""
    dz = (y_hat if output == "sigmoid" else xp.exp(y_hat)) - y
    if grad_reduction == "mean":
        dz = dz / y.shape[0]
    return dz


def backward(xp, params, acts, y, activation="relu", grad_reduction="sum", output="sigmoid"):
    """Gradients ``[(dW, db), ...]`` of the loss (summed or averaged over samples)."""
    deriv = DERIVATIVES[activation]
    dz = output_error(acts[-1], y, grad_reduction, xp, output)
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        dW = acts[i].T @ dz
        db = xp.sum(dz, axis=0, keepdims=True)
        grads[i] = (dW, db)
        if i > 0:
            dz = deriv(xp, dz @ params[i][0].T, acts[i])
    return grads


def sgd_update(params, grads, lr) -> None:
    """``p -= lr * g`` for every array, in place (the lab's update)."""
    for (W, b), (dW, db) in zip(params, grads):
        W -= lr * dW
        b -= lr * db
