"""External reference rows: code outside mlpbench, timed per case beside the backends by the same engine.

A reference is a name -> ``Reference``: the import names it needs (checked
without importing, as a backend's ``requires``), the distribution whose
version the results record, ``applies(case)`` (None, or why it cannot run
that case) and ``build(case, X, y) -> callable``: one call of the callable is
one timed unit of the case's op (for ``epoch``, one epoch) on the case's NumPy
data. ``build`` makes the first call itself (setup, weight init), reported as
the row's warm-up and never timed. ``reference_subject`` makes it a
``measure.Subject``; the sweep (``benchmark.run_sweep``) times it in the same
interleaved rounds as the backends and judges it against the baseline like
any of them; its points say ``"reference": true``. A reference whose package
is missing is skipped with the reason, never a crash.

To add one (another library): write its builder below and add it to
``REFERENCES``.

``idiomatic-jax``, ``idiomatic-torch``, ``idiomatic-torch.compile``: the best
plain code a user of each library would write for the lab's net
(``idiomatic.py``: ``jit`` + ``fori_loop`` with donated buffers; explicit
backprop under ``inference_mode``; the same through ``torch.compile``), ops
``step`` and ``train``, full batch, relu, sigmoid head: the yardstick the
``peers`` preset holds the jax and torch backends against.

``sklearn``: scikit-learn's ``MLPClassifier``, one ``partial_fit`` call per
epoch: ``solver="sgd"``, ``momentum=0``, ``nesterovs_momentum=False``,
``alpha=0``, ``learning_rate="constant"``, ``learning_rate_init=case.lr``, the
case's batch size, ``shuffle=True`` (``random_state=case.seed``: scikit-learn
reseeds its shuffle on every call, so each epoch draws the same order, as the
backends' ``epoch`` op does), the case's hidden sizes and activation (relu,
tanh, sigmoid as ``logistic``). Why ``partial_fit``: it runs ``_fit`` with
``incremental=True``, whose epoch loop stops after its first pass, so one call
is exactly one epoch of mini-batches (``n_iter_`` is 1 after it, ``t_`` grows
by N) and the optimizer and labels are kept between calls. ``fit`` with
``max_iter=1, warm_start=True`` also runs one epoch, but builds a new
optimizer and label binarizer every call and raises a ``ConvergenceWarning``
each time (the maximum of iterations reached): work and warnings inside the
timed region that a training loop does not have. Its gradient is always the
batch mean (``grad_reduction="mean"``, the timing default); its input
validation per call (finiteness of X, labels binarized) is part of what a user
of it pays. Heads: softmax with K >= 3 classes (int labels); sigmoid with one
output (binary) or K outputs (multilabel). Softmax with 2 classes is not the
same net there (scikit-learn uses one logistic unit), so it is not offered.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..measure import engine as M


@dataclass(frozen=True)
class Reference:
    """An external reference: what it needs, which cases it runs, and how to build one timed call."""

    name: str
    requires: tuple  # import names, checked without importing
    package: str  # the distribution whose version is recorded
    what: str  # one line: what is timed
    build: Callable  # build(case, X, y) -> callable, its first call already made
    applies: Callable  # applies(case) -> None, or why this case is not offered
    install_hint: str = ""
    device: str = "cpu"
    peer: str = ""  # the backend this row is the yardstick for (``yardsticks``), if any

    def availability(self) -> tuple[bool, str]:
        from ..backends.base import importable

        missing = [m for m in self.requires if not importable(m)]
        if missing:
            return False, f"{self.package} is not installed (no module {', '.join(missing)}){self.install_hint}"
        return True, ""

    def describe(self) -> dict:
        return {"reference": self.what}


# ---------------------------------------------------------------- scikit-learn's MLPClassifier
_SKLEARN_ACTIVATIONS = {"relu": "relu", "tanh": "tanh", "sigmoid": "logistic"}


def _sklearn_applies(case):
    if case.op != "epoch":
        return f"times op 'epoch' only (one partial_fit call); got op {case.op!r}"
    if case.output == "softmax" and case.layer_sizes[-1] < 3:
        return "softmax with 2 classes is one logistic unit in scikit-learn, not the same net"
    if case.activation not in _SKLEARN_ACTIVATIONS:
        return f"no scikit-learn activation for {case.activation!r}"
    return None


def sklearn_targets(case, y):
    """``(labels, classes)`` for ``partial_fit``: class indices for softmax, 0/1 ints (1-D when binary) else."""
    k = case.layer_sizes[-1]
    if case.output == "softmax":
        return np.argmax(y, axis=1), np.arange(k)
    labels = np.asarray(y).astype(np.int64)
    return (labels[:, 0], np.arange(2)) if k == 1 else (labels, np.arange(k))


def sklearn_estimator(case, n_samples):
    """The ``MLPClassifier`` the row times (its settings: the module docstring)."""
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(hidden_layer_sizes=tuple(case.layer_sizes[1:-1]),
                         activation=_SKLEARN_ACTIVATIONS[case.activation], solver="sgd", alpha=0.0,
                         batch_size=min(case.batch_size or n_samples, n_samples), learning_rate="constant",
                         learning_rate_init=case.lr, momentum=0.0, nesterovs_momentum=False, shuffle=True,
                         random_state=case.seed, early_stopping=False)


def _sklearn_build(case, X, y):
    labels, classes = sklearn_targets(case, y)
    clf = sklearn_estimator(case, X.shape[0])
    clf.partial_fit(X, labels, classes=classes)  # the first call: weights initialised, classes fixed

    def epoch():
        return clf.partial_fit(X, labels)

    epoch.estimator = clf
    return epoch


# ---------------------------------------------------------------- idiomatic jax / torch (idiomatic.py)
def _idiomatic_applies(case):
    if case.op not in ("step", "train"):
        return f"times ops 'step' and 'train' (full batch) only; got op {case.op!r}"
    if case.batch_size is not None or case.output != "sigmoid" or case.activation != "relu":
        return "written for the lab's net: full batch, relu, sigmoid head"
    return None


def _idiomatic(library):
    def build(case, X, y):
        from .idiomatic import case_builder

        fn = case_builder(library)(case, X, y)
        fn()  # the first call: tracing, compiling (torch.compile compiles here), first allocations
        return fn
    return build


def _idiomatic_reference(library, requires, package):
    return Reference(f"idiomatic-{library}", requires, package,
                     f"plain {library} code for the same net (mlpbench/idiomatic.py): the peer's yardstick",
                     _idiomatic(library), _idiomatic_applies, peer=library.split(".")[0])


REFERENCES = {
    "idiomatic-jax": _idiomatic_reference("jax", ("jax",), "jax"),
    "idiomatic-torch": _idiomatic_reference("torch", ("torch",), "torch"),
    "idiomatic-torch.compile": _idiomatic_reference("torch.compile", ("torch",), "torch"),
    "sklearn": Reference(
        "sklearn", ("sklearn",), "scikit-learn",
        "scikit-learn MLPClassifier.partial_fit: one epoch of plain SGD (momentum 0, alpha 0, constant lr)",
        _sklearn_build, _sklearn_applies, install_hint='; install it with: pip install "mlpbench[bench]"'),
}


# ---------------------------------------------------------------- the sweep's side
def get_reference(name) -> Reference:
    if name not in REFERENCES:
        raise ValueError(f"unknown reference {name!r}; choose among {list(REFERENCES)}")
    return REFERENCES[name]


def ready(names) -> tuple[list, list]:
    """``([(name, Reference)], [{"backend": name, "reason": ...}])``: the references that run here, and the rest."""
    made, skipped = [], []
    for name in names:
        ref = get_reference(name)
        ok, reason = ref.availability()
        if ok:
            made.append((name, ref))
        else:
            skipped.append({"backend": name, "reason": reason})
    return made, skipped


def reference_subject(label, ref, case, X, y) -> tuple:
    """``(Subject, warmup_s)``: ``ref`` built on copies of ``X`` / ``y`` (its first call is the warm-up)."""
    why = ref.applies(case)
    if why:
        raise ValueError(f"reference {label!r} does not apply to {case.label}: {why}")
    X = np.array(X, dtype=case.dtype, order="C", copy=True)
    t0 = time.perf_counter()
    fn = ref.build(case, X, np.array(y, copy=True))
    return M.Subject(label, fn), time.perf_counter() - t0


#: a peer backend within this fraction of its yardstick's time is "at its best"
YARDSTICK_SLACK = 0.10


def yardsticks(points) -> list[str]:
    """Lines comparing each peer backend with its yardstick rows, point by point, from the paired round samples.

    The ratio is backend time / yardstick time (the median of the per-round
    ratios, sign-test 99 % interval, ``stats.ratio_ci``): "within 10 %" when the
    whole interval lies under 1.10, "slower" when it lies above.
    """
    from ..measure import stats

    by_case = {}
    for p in points:
        by_case.setdefault(p["case"], {})[p["backend"]] = p
    lines = []
    for case, rows in by_case.items():
        for name, ref in REFERENCES.items():
            mine, theirs = rows.get(ref.peer), rows.get(name)
            if not ref.peer or mine is None or theirs is None:
                continue
            n = min(len(mine["samples_s"]), len(theirs["samples_s"]))
            ci = stats.ratio_ci(mine["samples_s"][:n], theirs["samples_s"][:n])
            lo, hi = ci.ci
            word = ("undecided (too few rounds)" if not ci.defined else
                    f"within {100 * YARDSTICK_SLACK:.0f}%" if hi <= 1 + YARDSTICK_SLACK else
                    f"slower by more than {100 * YARDSTICK_SLACK:.0f}%" if lo > 1 + YARDSTICK_SLACK else "undecided")
            interval = f" [{lo:.3g}, {hi:.3g}]" if ci.defined else ""
            lines.append(f"{ref.peer} / {name} at {case}: {ci.ratio:.3g}x{interval}: {word}")
    return lines


def packages() -> list[str]:
    """The import names every reference needs (the results record their versions)."""
    return list(dict.fromkeys(m for ref in REFERENCES.values() for m in ref.requires))


__all__ = ["REFERENCES", "Reference", "YARDSTICK_SLACK", "get_reference", "packages", "ready", "reference_subject", "sklearn_estimator",
           "sklearn_targets", "yardsticks"]
