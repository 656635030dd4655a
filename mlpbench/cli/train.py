"""``mlpbench train``: train the MLP on a dataset (the lab's, a generated one, digits or files) and print the lab's lines.

Full batch on the lab's datasets prints what the lab prints; mini-batches (``--batch-size``), a softmax head or
``--test-fraction`` hold rows out and print train and test accuracy. ``--save`` and ``--plot`` are checked when
the command line is read, and matplotlib before training, so a typo never costs a training run.
"""

from __future__ import annotations

import time

import numpy as np

from . import args as A
from . import options as O


def add_train(sub):
    p = sub.add_parser("train", help="train the MLP on a dataset and print the lab's lines", parents=[O.activation()])
    p.add_argument("--dataset", default="and",
                   help="and | or | xor | moons | circles | spirals | blobs | digits (needs mlpbench[data]) | a .npy/.csv path")
    p.add_argument("--y-file", help="labels file (.npy/.csv) when --dataset is a features file")
    p.add_argument("--n-samples", type=A.int_range(2), default=None, help="size of a generated dataset (default 200)")
    p.add_argument("--noise", type=A.real(0), default=None, help="noise of a generated dataset")
    p.add_argument("--n-features", type=A.int_range(1), default=None, help="features of the blobs dataset (default 2)")
    p.add_argument("--n-classes", type=A.int_range(2), default=None, help="classes of the blobs dataset (default 2)")
    p.add_argument("--data-seed", type=A.int_range(0, 2**32 - 1), default=None,
                   help="seed of a generated dataset (default 0)")
    p.add_argument("--hidden", type=A.int_range(1), nargs="+", default=[4], help="hidden layer sizes, e.g. --hidden 8 4")
    p.add_argument("--lr", type=A.real(0, lo_open=True), default=0.1)
    p.add_argument("--epochs", type=A.int_range(1), default=5000)
    p.add_argument("--seed", type=A.int_range(0, 2**32 - 1), default=42)
    p.add_argument("--backend", default=None, help="numpy | numba | cupy | torch | jax | auto (default $MLPBENCH_BACKEND or numpy)")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.add_argument("--grad-reduction", default="sum", help="sum (the lab) | mean (recommended with --batch-size)")
    p.add_argument("--output", default="sigmoid", help="sigmoid (the lab: binary cross-entropy) | softmax (classes)")
    p.add_argument("--batch-size", type=A.int_range(1), default=None,
                   help="mini-batch SGD with this many rows per update (default: full batch, the lab)")
    p.add_argument("--no-shuffle", dest="shuffle", action="store_false",
                   help="mini-batches in row order (default: a fresh permutation per epoch, seeded by --seed)")
    p.add_argument("--test-fraction", type=A.real(0), default=None,
                   help="fraction of rows held out (seeded by --data-seed) for test accuracy; default 0.2 with "
                        "--batch-size or --output softmax, else 0 (the lab's train-set accuracy)")
    p.add_argument("--print-every", type=A.int_range(1), default=None,
                   help="print the loss every this many epochs (default 1 with --batch-size or --output softmax, else 500)")
    p.add_argument("--plot", metavar="PNG", type=A.output_file(A.PLOT_SUFFIXES),
                   help="write the loss curve (and the decision boundary for 2-D data): .png, .pdf or .svg")
    p.add_argument("--save", metavar="NPZ", type=A.output_file(), help="save the trained model")
    return p


def _load_data(args):
    from ..core import data

    given = {opt: val for opt, val in (("--n-samples", args.n_samples), ("--noise", args.noise),
                                       ("--n-features", args.n_features), ("--n-classes", args.n_classes))
             if val is not None}
    if args.dataset.lower().endswith((".npy", ".csv")):
        if given:
            raise ValueError(f"{', '.join(given)} applies to generated datasets only, not to the file {args.dataset!r}")
        return data.load_files(args.dataset, args.y_file)
    if args.y_file is not None:
        raise ValueError(f"--y-file applies only when --dataset is a .npy/.csv features file; got --dataset {args.dataset}")
    if args.dataset.lower() in ("and", "or", "xor") and given:
        raise ValueError(f"{', '.join(given)} applies to generated datasets only; {args.dataset!r} is the lab's fixed 4 rows")
    if args.dataset.lower() == "digits" and given:
        raise ValueError(f"{', '.join(given)} applies to generated datasets only; 'digits' is a fixed 1797 x 64 set")
    for opt, val in (("--n-features", args.n_features), ("--n-classes", args.n_classes)):
        if val is not None and args.dataset.lower() != "blobs":
            raise ValueError(f"{opt} applies to --dataset blobs only; got --dataset {args.dataset}")
    return data.load(args.dataset, n_samples=200 if args.n_samples is None else args.n_samples, noise=args.noise,
                     seed=args.data_seed or 0, n_features=2 if args.n_features is None else args.n_features,
                     n_classes=2 if args.n_classes is None else args.n_classes)


def _class_labels(y):
    """Int labels ``(N,)`` for ``--output softmax``: given as such, one-hot rows, or a 0/1 column."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim == 1:
        if y.size and not (np.all(y == np.round(y)) and y.min() >= 0):
            raise ValueError(f"--output softmax needs integer class labels >= 0; got values in [{y.min()}, {y.max()}]")
        return y.astype(np.int64), max(2, int(y.max()) + 1 if y.size else 2)
    return y, y.shape[1]  # one-hot: checked by the model


def _split(X, y, fraction, seed):
    """``(X_train, y_train, X_test, y_test)``: a seeded random ``fraction`` of the rows held out."""
    if not 0 <= fraction < 1:
        raise ValueError(f"--test-fraction must be in [0, 1); got {fraction}")
    n_test = int(round(fraction * len(X)))
    if n_test and len(X) - n_test < 1:
        raise ValueError(f"--test-fraction {fraction} leaves no training rows out of {len(X)}")
    order = np.random.default_rng(seed).permutation(len(X))
    test, train = order[:n_test], order[n_test:]
    return X[train], y[train], X[test], y[test]


def cmd_train(args) -> int:
    from ..model import MLP

    if args.plot:  # before the work: a missing plotting library must not cost a training run
        from ..suite.plots import require_matplotlib

        try:
            require_matplotlib()
        except ImportError as exc:
            raise ValueError(f"--plot: {exc}") from None
    X, y = _load_data(args)
    if args.output == "softmax":
        y, n_out = _class_labels(y)
    else:
        n_out = y.shape[1] if y.ndim == 2 else 1
    model = MLP([X.shape[1], *args.hidden, n_out], activation=args.activation, dtype=args.dtype, seed=args.seed,
                output=args.output)
    workload = args.batch_size is not None or args.output == "softmax"
    fraction = (0.2 if workload else 0.0) if args.test_fraction is None else args.test_fraction
    print_every = args.print_every or (1 if workload else 500)
    if fraction or args.test_fraction is not None:
        return _train_and_test(args, model, *_split(X, y, fraction, args.data_seed or 0), print_every)
    history, _, wall = _fit(args, model, X, y)
    _print_losses(history, print_every)
    proba = model.predict_proba(X)
    pred = (proba >= 0.5).astype(int)
    targets = np.asarray(y).reshape(pred.shape)
    truth = (targets >= 0.5).astype(int)  # soft targets count as their nearer class, as predictions do
    soft = bool(np.any((targets != 0) & (targets != 1)))
    with np.printoptions(suppress=True, precision=4):
        if len(X) <= 16:
            print("\nFinal y_hat probabilities:\n", proba)
            print("\nPredicted labels:\n", pred)
            print("\nTrue labels:" + (" (soft targets, thresholded at 0.5)" if soft else "") + "\n", truth)
    print(f"\nAccuracy: {np.mean(pred == truth):.4f}" + (" (against targets thresholded at 0.5)" if soft else ""))
    return _close(args, model, X, y, history, f"wall time {wall:.3f} s ({wall / args.epochs * 1e6:.2f} us/epoch)")


def _fit(args, model, X, y, callback=None):
    """``model.fit`` with the command line's settings: ``(history, start time, wall seconds)``."""
    t0 = time.perf_counter()
    history = model.fit(X, y, lr=args.lr, epochs=args.epochs, backend=args.backend, grad_reduction=args.grad_reduction,
                        batch_size=args.batch_size, shuffle=args.shuffle, callback=callback)
    return history, t0, time.perf_counter() - t0


def _close(args, model, X, y, history, timing) -> int:
    """The backend line (``timing`` after the dtype), then ``--save`` and ``--plot``; exit code 0."""
    print(f"Backend: {model.backend_} ({model.backend_reason_}) | dtype {model.dtype.name} | {timing}")
    _save_and_plot(args, model, X, y, history)
    return 0


def _save_and_plot(args, model, X, y, history) -> None:
    """``--save`` and ``--plot`` after training (both paths were checked before it started)."""
    if args.save:
        model.save(args.save)
        print(f"Saved model to {args.save}")
    if args.plot:
        from ..suite.plots import plot_training

        plot_training(args.plot, model, X, y, history)
        print(f"Wrote {args.plot}")


def _print_losses(history, print_every):
    for epoch, loss in enumerate(history, start=1):
        if epoch % print_every == 0 or epoch == 1:
            print(f"Epoch {epoch:4d} | Loss: {loss:.4f}")


def _accuracy(model, X, y) -> float:
    if not len(X):
        return float("nan")
    pred = model.predict(X)
    if model.output == "softmax":
        truth = y if y.ndim == 1 else np.argmax(y, axis=1)
    else:
        truth = (np.asarray(y).reshape(pred.shape) >= 0.5).astype(int)
    return float(np.mean(pred == truth))


def _after_first(t0, ends) -> str:
    """``; first epoch Y s, then X ms/epoch`` from the epochs' end times (two or more): the first epoch
    carries a JIT compile or cache load, the rest is the speed of training."""
    if len(ends) < 2:
        return ""
    return f"; first epoch {ends[0] - t0:.3f} s, then {(ends[-1] - ends[0]) / (len(ends) - 1) * 1e3:.3f} ms/epoch"


def _train_and_test(args, model, X, y, X_test, y_test, print_every) -> int:
    """Train on the training rows; print the loss per epoch, train and test accuracy, backend, time per epoch
    (the whole fit's, and the epochs' after the first, which pays for a JIT compile or cache load)."""
    ends = []
    history, t0, wall = _fit(args, model, X, y, callback=lambda epoch, loss: ends.append(time.perf_counter()))
    _print_losses(history, print_every)
    print(f"\nTrain accuracy: {_accuracy(model, X, y):.4f} ({len(X)} rows) | "
          f"Test accuracy: {_accuracy(model, X_test, y_test):.4f} ({len(X_test)} rows)")
    batches = "full batch" if args.batch_size is None else f"batch size {args.batch_size}"
    return _close(args, model, X, y, history, f"output {model.output} | {batches} | wall time {wall:.3f} s "
                  f"({wall / args.epochs * 1e3:.3f} ms/epoch{_after_first(t0, ends)})")
