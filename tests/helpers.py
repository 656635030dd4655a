"""Assertions shared by the backend parity tests (normwise error as in ``mlpbench.suite.parity``)."""

import dataclasses

import numpy as np

from mlpbench.suite.parity import normwise_error

#: the backend issues' own parity bars (tighter than ``parity.TOLERANCES``, which allows any summation order)
TOL = {"float64": 1e-12, "float32": 1e-5}


def assert_close(a, ref, dtype, what, tol=None):
    a, ref = np.asarray(a), np.asarray(ref)
    assert a.shape == ref.shape, f"{what}: shape {a.shape} != {ref.shape}"
    err = normwise_error(a, ref)
    limit = TOL[dtype] if tol is None else tol
    assert err <= limit, f"{what}: normwise error {err:.3g} > {limit:g}"


def flat(params):
    """All params as one vector: a bias that started at 0 can sit near 0 after a few updates,
    where a per-tensor relative error says little; params are compared as a whole."""
    return np.concatenate([np.ravel(np.asarray(a, dtype=np.float64)) for pair in params for a in pair])


def labelled(n, sizes, dtype, output, seed=0, p_one=0.5):
    """Seeded ``(X, y)``: normal inputs, one-hot rows for the softmax head, 0/1 targets (1 with ``p_one``) else."""
    rng = np.random.RandomState(seed)
    X = rng.randn(n, sizes[0]).astype(dtype)
    if output == "softmax":
        y = np.eye(sizes[-1], dtype=dtype)[rng.randint(0, sizes[-1], n)]
    else:
        y = (rng.rand(n, sizes[-1]) < p_one).astype(dtype)
    return X, y


def assert_verdicts_follow_from_samples(doc):
    """Every point's ratio, interval and verdict (and each A/A control's) are the ones ``measure.stats`` gives
    for the samples the results file holds, paired by round with its case's baseline, cut into its passes and
    widened by the run's between-pass variance (``measure.levels``): the one right verdict for what was
    measured, whatever the machine's noise made of it."""
    from mlpbench.measure import levels, stats
    from mlpbench.suite.sweep import CONFIDENCE

    floor = doc["config"]["margin_floor"]
    between = doc["noise"]["between"]
    cases = {}
    for p in doc["points"]:
        cases.setdefault(p["case"], []).append(p)
    for case, points in cases.items():
        (base,) = [p for p in points if p["verdict"] == "baseline"]
        assert base["ratio"] == 1.0 and sum(base["passes"]) == len(base["samples_s"]), case
        margin = floor
        if "control" in base:
            control = base["control"]
            cci, _ = levels.point_ci(control["samples_s"], base["samples_s"], base["passes"], CONFIDENCE,
                                     levels.for_label(between, f"{base['backend']} copy"))
            margin = stats.bias_margin(control["samples_s"], base["samples_s"], floor)
            assert control["verdict"] == stats.control_verdict(cci, floor), case
            assert control["ratio"] == cci.ratio, case
        for p in points:
            if p is base:
                continue
            ci, comp = levels.point_ci(p["samples_s"], base["samples_s"], base["passes"], CONFIDENCE,
                                       levels.for_label(between, p["backend"]))
            assert p["verdict"] == stats.verdict(ci, margin, floor), (case, p["backend"], p["verdict"])
            assert p["ratio"] == ci.ratio and p["ratio_ci"] == ([ci.lo, ci.hi] if ci.defined else [None, None])
            assert p["variance"] == comp.to_dict() and p["passes"] == base["passes"]


def short_lab(monkeypatch, epochs=500):
    """The lab's AND run at ``epochs`` (its label reads ``x{epochs}``): for tests of what a sweep writes, where
    the lab's 5000 epochs would be most of the test's time (~5 s of NumPy a sweep) and none of its point."""
    from mlpbench.suite import cases

    monkeypatch.setitem(cases.LABS, "and", dataclasses.replace(cases.LABS["and"], epochs=epochs))
