"""The lab's own code (shared/seed/mlp_numpy_lab.txt, sections 3-7), verbatim but for plotting.

It is the oracle the reference backend must match bit for bit; `tests/data/record_lab.py`
ran it once to produce `tests/data/lab_*.npz`.
"""

import numpy as np


def relu(z):
    return np.maximum(0, z)


def relu_derivative(z):
    return (z > 0).astype(float)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def binary_cross_entropy(y_true, y_pred, eps=1e-8):
    y_pred = np.clip(y_pred, eps, 1 - eps)
    return -np.mean(y_true * np.log(y_pred) + (1 - y_true) * np.log(1 - y_pred))


def forward_pass(X, W1, b1, W2, b2):
    z1 = X @ W1 + b1
    a1 = relu(z1)
    z2 = a1 @ W2 + b2
    y_hat = sigmoid(z2)
    cache = {"z1": z1, "a1": a1, "z2": z2, "y_hat": y_hat}
    return y_hat, cache


def backward_pass(X, y, cache, W2):
    z1, a1, y_hat = cache["z1"], cache["a1"], cache["y_hat"]
    dz2 = y_hat - y
    dW2 = a1.T @ dz2
    db2 = np.sum(dz2, axis=0, keepdims=True)
    da1 = dz2 @ W2.T
    dz1 = da1 * relu_derivative(z1)
    dW1 = X.T @ dz1
    db1 = np.sum(dz1, axis=0, keepdims=True)
    return {"dW1": dW1, "db1": db1, "dW2": dW2, "db2": db2}


def train_mlp(X, y, hidden_size=4, lr=0.1, epochs=5000, seed=42, print_every=500, out=print):
    np.random.seed(seed)
    W1 = np.random.randn(X.shape[1], hidden_size) * 0.5
    b1 = np.zeros((1, hidden_size))
    W2 = np.random.randn(hidden_size, 1) * 0.5
    b2 = np.zeros((1, 1))
    losses = []
    for epoch in range(1, epochs + 1):
        y_hat, cache = forward_pass(X, W1, b1, W2, b2)
        loss = binary_cross_entropy(y, y_hat)
        losses.append(loss)
        grads = backward_pass(X, y, cache, W2)
        W1 -= lr * grads["dW1"]
        b1 -= lr * grads["db1"]
        W2 -= lr * grads["dW2"]
        b2 -= lr * grads["db2"]
        if epoch % print_every == 0 or epoch == 1:
            out(f"Epoch {epoch:4d} | Loss: {loss:.4f}")
    params = {"W1": W1, "b1": b1, "W2": W2, "b2": b2}
    return params, losses


X_GRID = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=float)
Y_AND = np.array([[0], [0], [0], [1]], dtype=float)
Y_XOR = np.array([[0], [1], [1], [0]], dtype=float)

# (name, y, epochs, print_every): the lab's main run and its XOR challenge
LAB_RUNS = {"and": (Y_AND, 5000, 500), "xor": (Y_XOR, 8000, 800)}


def run_lab(name):
    """Run the lab's training and evaluation; return its printed loss lines and arrays."""
    y, epochs, print_every = LAB_RUNS[name]
    lines = []
    params, losses = train_mlp(X_GRID, y, hidden_size=4, lr=0.1, epochs=epochs, print_every=print_every, out=lines.append)
    y_hat, _ = forward_pass(X_GRID, params["W1"], params["b1"], params["W2"], params["b2"])
    return {"lines": lines, "losses": np.array(losses), "y_hat": y_hat, **params}
