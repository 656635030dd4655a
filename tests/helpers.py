"""Assertions shared by the backend parity tests (normwise error as in ``mlpbench.suite.parity``)."""

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
