"""PNG plots (matplotlib, from the ``bench`` extra)."""

from __future__ import annotations

import numpy as np


def require_matplotlib():
    """Import matplotlib with a headless backend, or raise a clear ``ImportError``."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError('plotting needs matplotlib: pip install "mlpbench[bench]"') from None
    return plt


def plot_training(path, model, X, y, history):
    """Loss curve, and for 2-D inputs the decision boundary, in one PNG."""
    plt = require_matplotlib()
    two_d = X.shape[1] == 2
    fig, axes = plt.subplots(1, 2 if two_d else 1, figsize=(11 if two_d else 6, 4.2), squeeze=False)
    ax = axes[0, 0]
    ax.plot(np.arange(1, len(history) + 1), history)
    ax.set(xlabel="Epoch", ylabel="Binary cross-entropy", title="Training loss", yscale="log")
    ax.grid(True, alpha=0.3)
    if two_d:
        ax = axes[0, 1]
        pad = 0.25 * max(np.ptp(X[:, 0]), np.ptp(X[:, 1]), 1e-3)
        gx, gy = np.meshgrid(np.linspace(X[:, 0].min() - pad, X[:, 0].max() + pad, 200),
                             np.linspace(X[:, 1].min() - pad, X[:, 1].max() + pad, 200))
        proba = model.predict_proba(np.c_[gx.ravel(), gy.ravel()])[:, 0].reshape(gx.shape)
        cs = ax.contourf(gx, gy, proba, levels=np.linspace(0, 1, 11), cmap="RdBu_r", alpha=0.6)
        ax.contour(gx, gy, proba, levels=[0.5], colors="k", linewidths=1.2)
        ax.scatter(X[:, 0], X[:, 1], c=np.ravel(y)[: len(X)], cmap="RdBu_r", edgecolors="k", s=40)
        fig.colorbar(cs, ax=ax, label="P(y = 1)")
        ax.set(xlabel="x1", ylabel="x2", title="Decision boundary (0.5 contour)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
