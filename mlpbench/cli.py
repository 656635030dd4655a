"""``mlpbench train | backends | parity | bench | tune``: the command line.

Each command is a pair ``add_<name>(subparsers)`` / ``cmd_<name>(args) -> exit code``;
``bench``, ``parity`` and ``tune`` live in their own modules (``cli_bench``, ``cli_parity``, ``tune``).
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from .cli_bench import add_bench
from .cli_parity import add_parity
from .results import format_table
from .tune import add_tune


# ---------------------------------------------------------------- train
def add_train(sub):
    p = sub.add_parser("train", help="train the MLP on a dataset and print the lab's lines")
    p.add_argument("--dataset", default="and", help="and | or | xor | moons | circles | spirals | blobs | a .npy/.csv path")
    p.add_argument("--y-file", help="labels file (.npy/.csv) when --dataset is a features file")
    p.add_argument("--n-samples", type=int, default=200, help="size of a generated dataset")
    p.add_argument("--noise", type=float, default=None, help="noise of a generated dataset")
    p.add_argument("--n-features", type=int, default=2, help="features of the blobs dataset")
    p.add_argument("--data-seed", type=int, default=0, help="seed of a generated dataset")
    p.add_argument("--hidden", type=int, nargs="+", default=[4], help="hidden layer sizes, e.g. --hidden 8 4")
    p.add_argument("--activation", default="relu", help="relu | tanh | sigmoid")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=5000)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--backend", default=None, help="numpy | numba | cupy | torch | jax | auto (default $MLPBENCH_BACKEND or numpy)")
    p.add_argument("--dtype", default="float64", help="float64 | float32")
    p.add_argument("--grad-reduction", default="sum", help="sum (the lab) | mean")
    p.add_argument("--print-every", type=int, default=500)
    p.add_argument("--plot", metavar="PNG", help="write the loss curve (and the decision boundary for 2-D data)")
    p.add_argument("--save", metavar="NPZ", help="save the trained model")
    p.set_defaults(func=cmd_train)


def _load_data(args):
    from . import data

    if args.dataset.lower().endswith((".npy", ".csv")):
        return data.load_files(args.dataset, args.y_file)
    return data.load(args.dataset, n_samples=args.n_samples, noise=args.noise, seed=args.data_seed,
                     n_features=args.n_features)


def cmd_train(args) -> int:
    from .model import MLP

    X, y = _load_data(args)
    if args.print_every < 1:
        raise ValueError(f"--print-every must be >= 1; got {args.print_every}")
    model = MLP([X.shape[1], *args.hidden, y.shape[1] if y.ndim == 2 else 1], activation=args.activation,
                dtype=args.dtype, seed=args.seed)
    t0 = time.perf_counter()
    history = model.fit(X, y, lr=args.lr, epochs=args.epochs, backend=args.backend, grad_reduction=args.grad_reduction)
    wall = time.perf_counter() - t0
    for epoch, loss in enumerate(history, start=1):
        if epoch % args.print_every == 0 or epoch == 1:
            print(f"Epoch {epoch:4d} | Loss: {loss:.4f}")
    proba = model.predict_proba(X)
    pred = (proba >= 0.5).astype(int)
    truth = np.asarray(y).reshape(pred.shape).astype(int)
    with np.printoptions(suppress=True, precision=4):
        if len(X) <= 16:
            print("\nFinal y_hat probabilities:\n", proba)
            print("\nPredicted labels:\n", pred)
            print("\nTrue labels:\n", truth)
    print(f"\nAccuracy: {np.mean(pred == truth):.4f}")
    print(f"Backend: {model.backend_} ({model.backend_reason_}) | dtype {model.dtype.name} | "
          f"wall time {wall:.3f} s ({wall / args.epochs * 1e6:.2f} us/epoch)")
    if args.save:
        model.save(args.save)
        print(f"Saved model to {args.save}")
    if args.plot:
        from .plots import plot_training

        plot_training(args.plot, model, X, y, history)
        print(f"Wrote {args.plot}")
    return 0


# ---------------------------------------------------------------- backends
def add_backends(sub):
    p = sub.add_parser("backends", help="list the backends: available, why not, version, device, threads")
    p.add_argument("--warmup", action="store_true",
                   help="also time each available backend's first call (JIT compile or cache load, GPU context) "
                        "on the lab's [2, 4, 1], float64 and float32")
    p.set_defaults(func=cmd_backends)


def cmd_backends(args) -> int:
    from .backends import available_backends, get_backend

    rows = available_backends()
    if args.warmup:
        for r in rows:
            if not r["available"]:
                continue
            try:
                be = get_backend(r["name"])
                secs = [be.warmup([2, 4, 1], 4, dt) for dt in ("float64", "float32")]
                r["notes"] = f"first call {secs[0]:.3g} s (float64), {secs[1]:.3g} s (float32)"
            except Exception as exc:  # report, never crash the listing
                r["notes"] = f"warm-up failed: {type(exc).__name__}: {exc}"
    header = ["name", "available", "version", "device", "threads", "reason / notes"]
    table = [[r["name"], "yes" if r["available"] else "no", r["version"] or "-", r["device"] or "-",
              "-" if r["threads"] is None else str(r["threads"]), r["reason"] or r.get("notes", "")] for r in rows]
    print(format_table(header, table))
    return 0


# ---------------------------------------------------------------- main
COMMANDS = [add_train, add_backends, add_parity, add_bench, add_tune]


def build_parser():
    parser = argparse.ArgumentParser(prog="mlpbench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .backends import BackendUnavailable, TrainingDiverged

    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, BackendUnavailable, TrainingDiverged, FileNotFoundError) as exc:
        print(f"mlpbench {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mlpbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
