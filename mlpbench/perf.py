"""FLOP counts, machine peak measurement and timing helpers."""

from __future__ import annotations


def flops_forward(n_samples, layer_sizes) -> int:
    """Matmul FLOPs of one forward pass: ``2 N sum(fan_in * fan_out)``."""
    return 2 * n_samples * sum(i * o for i, o in zip(layer_sizes[:-1], layer_sizes[1:]))


def flops_backward(n_samples, layer_sizes) -> int:
    """Backward matmul FLOPs: weight gradients of every layer, input gradients of all but the first."""
    pairs = list(zip(layer_sizes[:-1], layer_sizes[1:]))
    return 2 * n_samples * (sum(i * o for i, o in pairs) + sum(i * o for i, o in pairs[1:]))


def flops_step(n_samples, layer_sizes) -> int:
    """One training step: forward plus backward."""
    return flops_forward(n_samples, layer_sizes) + flops_backward(n_samples, layer_sizes)
