"""pytest-benchmark suite: every backend on the quick preset's cases, grouped by case.

Excluded from the default run by the ``benchmark`` marker. Run it with::

    python -m pytest tests/benchmarks -m benchmark --benchmark-group-by=group --benchmark-sort=mean

or smoke-run each case once (CI) with ``--benchmark-disable``. Backends are
skipped in one place, the ``backend_name`` fixture of ``tests/conftest.py``.
"""

import numpy as np
import pytest

from mlpbench import cases, perf
from mlpbench.backends import get_backend
from mlpbench.params import init_params

pytestmark = pytest.mark.benchmark

CASES = cases.sweep("quick", ops=["forward", "backward", "step", "train"], dtypes=cases.DTYPES, labs=("and",))
# a synthetic ``train`` case is 100 epochs; the lab's is 5000: keep both, they are small in the quick grid
CASES = [c for c in CASES if c.op != "train" or c.dataset or (c.n_samples <= 64 and c.hidden <= 64)]


def _prepare(backend_name, case):
    be = get_backend(backend_name)
    X, y = cases.case_data(case)
    params = be.params_from_numpy(init_params(case.layer_sizes, case.seed, case.dtype))
    bX, by = be.asarray(X), be.asarray(y)
    kw = {"activation": case.activation}
    grad_kw = dict(kw, grad_reduction=case.grad_reduction)
    if case.op == "forward":
        def fn():
            return be.forward(params, bX, **kw)[0]
    elif case.op == "backward":
        cache = be.forward(params, bX, **kw)[1]

        def fn():
            return be.backward(params, cache, bX, by, **grad_kw)
    elif case.op == "step":
        def fn():
            return be.step(params, bX, by, lr=case.lr, **grad_kw)
    else:
        def fn():
            return be.train(params, bX, by, lr=case.lr, epochs=case.epochs, **grad_kw)

    def synced():
        out = fn()
        be.synchronize()
        return out

    synced()  # warm-up: JIT compilation and device context, outside the timings
    return synced


@pytest.mark.parametrize("case", CASES, ids=[c.label.replace(" ", "-").replace("=", "") for c in CASES])
def test_op(benchmark, backend_name, case):
    fn = _prepare(backend_name, case)
    benchmark.group = case.label  # backends side by side per case (--benchmark-group-by=group)
    benchmark.extra_info.update(backend=backend_name, flops=perf.flops(case.op, case.n_samples, case.layer_sizes,
                                                                          case.epochs))
    if case.dataset:  # the lab's 5000 epochs: a few rounds are enough
        out = benchmark.pedantic(fn, rounds=3, iterations=1)
    else:
        out = benchmark(fn)
    if case.op == "step":
        assert np.isfinite(out)
