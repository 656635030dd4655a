"""pytest-benchmark suite: every backend on the quick preset's cases, grouped by case.

Excluded from the default run by the ``benchmark`` marker. Run it with::

    python -m pytest tests/benchmarks -m benchmark --benchmark-group-by=group --benchmark-sort=mean

or smoke-run each case once (CI) with ``--benchmark-disable``. Backends are
skipped in one place, the ``backend_name`` fixture of ``tests/conftest.py``.
"""

import numpy as np
import pytest

from mlpbench.suite import cases
from mlpbench.measure import engine as measure, peaks as perf
from mlpbench.backends import get_backend
from mlpbench.suite.subjects import op_subject, synced

pytestmark = pytest.mark.benchmark

CASES = cases.sweep("quick", ops=["forward", "backward", "step", "train"], dtypes=cases.DTYPES, labs=("and",))
# a synthetic ``train`` case is 100 epochs; the lab's is 5000: keep both, they are small in the quick grid
CASES = [c for c in CASES if c.op != "train" or c.dataset or (c.n_samples <= 64 and c.hidden <= 64)]
#: seconds one pytest-benchmark round lasts at least: its iterations come from ``measure.calibrate``
MIN_TIME = 0.005


@pytest.mark.parametrize("case", CASES, ids=[c.label.replace(" ", "-").replace("=", "") for c in CASES])
def test_op(benchmark, backend_name, case):
    subject = op_subject(backend_name, get_backend(backend_name), case)[0]
    fn = synced(subject)
    fn()  # the first call (JIT compilation, device context): outside the timings
    benchmark.group = case.label  # backends side by side per case (--benchmark-group-by=group)
    benchmark.extra_info.update(backend=backend_name, flops=perf.flops(case.op, case.n_samples, case.layer_sizes,
                                                                          case.epochs))
    # the engine's calibration (pyperf's loops) sets the calls per round; pytest-benchmark keeps the rounds
    iterations = 1 if benchmark.disabled else measure.calibrate(subject, MIN_TIME)
    # each call synchronized (a device's queue drained inside the timed region)
    out = benchmark.pedantic(fn, rounds=3 if case.dataset else 10, iterations=iterations, warmup_rounds=0)
    if case.op == "step":
        assert np.isfinite(out)
