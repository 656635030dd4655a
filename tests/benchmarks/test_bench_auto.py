"""pytest-benchmark: what a decided ``backend="auto"`` adds to a fit (issue 20: at most 50 us over its backend).

Every candidate for the lab is loaded and timed first (``choose`` with no
epochs, as ``mlpbench tune`` does, so no first call is left for the rule to
pay during the rounds), the lab (2000 epochs, lr 0.05) is fitted with
``auto`` a few times, then ``fit(backend="auto")`` and ``fit`` on the backend
auto chose run in one group; compare their medians (``bench/auto_loop.py``
interleaves the two in one process)::

    python -m pytest tests/benchmarks/test_bench_auto.py -m benchmark --benchmark-group-by=group
"""

import pytest

from mlpbench import MLP, datasets
from mlpbench.auto import choose as auto

pytestmark = pytest.mark.benchmark


@pytest.fixture(scope="module")
def decided(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("MLPBENCH_CACHE_DIR", str(tmp_path_factory.mktemp("auto-cache")))
    X, y = datasets.load("and")
    model = MLP()
    auto.choose(4, model.layer_sizes, model.dtype, model.activation)
    for _ in range(20):
        model.fit(X, y, lr=0.05, epochs=2000, backend="auto")
    yield model, X, y
    mp.undo()


@pytest.mark.parametrize("which", ["auto", "its backend"])
def test_decided_auto_fit(benchmark, decided, which):
    model, X, y = decided
    chosen = model.backend_
    backend = "auto" if which == "auto" else chosen.split("[")[0]
    benchmark.group = f"decided auto vs {chosen}: the lab, 2000 epochs"
    benchmark.extra_info.update(chosen=chosen, backend=backend)
    benchmark.pedantic(model.fit, args=(X, y), kwargs=dict(lr=0.05, epochs=2000, backend=backend),
                       rounds=1 if benchmark.disabled else 200, iterations=1, warmup_rounds=0 if benchmark.disabled else 5)
    assert model.backend_.split("[")[0] == chosen.split("[")[0]
