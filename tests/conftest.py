"""Shared fixtures. Backends are skipped in ONE place: the ``backend_name`` fixture.

A backend that is unavailable here is skipped with its reason; a GPU backend
(``gpu = True`` in its class) fails instead of skipping when ``MLPBENCH_REQUIRE_GPU=1``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

# Numba's threaded kernels on any runner: where fewer than 2 CPUs are ours, Numba still gets 2 threads
# (oversubscribed: the same numbers, a little slower), so the tests of the 2-thread paths run everywhere.
# Set before anything imports numba (its config reads the variable once); a value the user set is kept.
_CPUS = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
if _CPUS < 2:
    os.environ.setdefault("NUMBA_NUM_THREADS", "2")

# What mlpbench learns about the machine (the auto cache, the tuned kernel thresholds: ``core/tuned.py``) goes to
# a folder of this session's, never the user's: a ``mlpbench tune`` run on this machine must not change which
# kernels the tests exercise. Tests that need their own folder set it again (``isolated_cache``).
_CACHE = tempfile.mkdtemp(prefix="mlpbench-tests-")
os.environ["MLPBENCH_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mlpbench.backends import availability, backend_names, gpu_backends  # noqa: E402

from children import Children  # noqa: E402

REQUIRE_GPU = os.environ.get("MLPBENCH_REQUIRE_GPU") == "1"
CHILDREN = Children()


#: The modules whose Numba compilations cost the most CPU (each shape of the fixed kernel is one of ~7 s; the
#: child's whole build ~120 s of CPU). test_numba_backend first: it builds what the ``LATE_KEYWORDS`` tests use
#: (the lab's kernel in both dtypes, ``train_step``).
#: When the session runs other tests before them, a child runs their numba tests first (``Children.warm``),
#: so their kernels are in Numba's on-disk cache by the time this process reaches them: a build cache on the
#: second core. This process runs them last, in this order (``pytest_collection_modifyitems``), so the child
#: has the whole session's head start (in file order this process reached them half-way and compiled the
#: same kernels as the child, at the same time). It still runs and asserts every one of those tests.
WARMED = ("test_numba_backend.py", "test_numba_fixed.py", "test_numba_batches_parallel.py", "test_minibatch.py")
IN_WARMER = "MLPBENCH_TEST_WARMER"
#: Other tests that build the same kernels (a ``numba`` row, or ``auto``, which probes numba) run just before
#: the ``WARMED`` modules, so they too find them in the cache: measured, a cold session compiled 24-36 s of
#: kernels in this process that the child had built or was building (``train_step``, the lab's fixed kernel).
LATE_KEYWORDS = ("numba", "auto")


def pytest_collection_modifyitems(session, config, items):
    """The tests of ``LATE_KEYWORDS``, then the ``WARMED`` modules, last, in that order (a stable sort: every
    other test keeps its place)."""
    if os.environ.get(IN_WARMER):
        return
    rank = {name: i + 1 for i, name in enumerate(WARMED)}

    def key(item):
        late = any(word in item.nodeid for word in LATE_KEYWORDS)
        return rank.get(os.path.basename(str(item.path)), 0 if late else -1)

    items.sort(key=key)


def pytest_collection_finish(session):
    """The child processes the selected tests read start now, beside this process's tests (children.py)."""
    if session.config.option.collectonly or os.environ.get(IN_WARMER):
        return
    CHILDREN.start_for(session.items)
    if availability("numba")[0] and os.environ.get("NUMBA_DISABLE_JIT", "0") in ("", "0"):
        CHILDREN.warm(session.items, WARMED, keyword="numba", env={IN_WARMER: "1"})


def pytest_sessionfinish(session):
    CHILDREN.stop_all()


@pytest.fixture(scope="session")
def children():
    """``children.result(__name__, key)``: ``(exit code, stdout, stderr)`` of this module's child ``key``."""
    return CHILDREN


def require_backend(name):
    """Skip (or fail, for a required GPU) when backend ``name`` cannot run here."""
    ok, reason = availability(name)
    if not ok:
        if REQUIRE_GPU and name in gpu_backends():
            pytest.fail(f"MLPBENCH_REQUIRE_GPU=1 but backend {name!r} is unavailable: {reason}")
        pytest.skip(f"backend {name!r} unavailable: {reason}")


@pytest.fixture(params=backend_names())
def backend_name(request):
    """Every registered backend, skipped with its reason where it cannot run."""
    require_backend(request.param)
    return request.param


@pytest.fixture
def gpu():
    """Use in GPU tests: skips without a usable GPU, fails under MLPBENCH_REQUIRE_GPU=1."""
    names = gpu_backends()
    if not names:
        pytest.skip("no GPU backend is registered")
    for name in names:
        require_backend(name)


@pytest.fixture
def rng():
    return np.random.RandomState(1234)


@pytest.fixture(autouse=True)
def _bench_report_where_it_is_tested(request, monkeypatch):
    """``mlpbench bench`` writes ``report.html`` (its charts: ~0.5 s of matplotlib per run on a busy machine).
    Dozens of tests run bench in-process for other reasons, most with ``--no-plots`` for the same cost; there
    bench behaves as with ``--no-report``. Tests marked ``bench_report`` (``test_html_report.py``, the browser
    test) get the report as a user does."""
    import sys

    bench = sys.modules.get("mlpbench.cli.bench")
    if bench is not None and request.node.get_closest_marker("bench_report") is None:
        monkeypatch.setattr(bench, "write_report", lambda out: None)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    """``$MLPBENCH_CACHE_DIR`` in ``tmp_path`` and a fresh shared cache; the path of its ``auto.json``
    (``pytestmark = pytest.mark.usefixtures("isolated_cache")`` makes it every test's)."""
    from mlpbench.auto import choose as auto

    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    auto.shared_cache.cache_clear()
    yield tmp_path / "cache" / "auto.json"
    auto.shared_cache.cache_clear()
