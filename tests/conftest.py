"""Shared fixtures. Backends are skipped in ONE place: the ``backend_name`` fixture.

A backend that is unavailable here is skipped with its reason; a GPU backend
(``cupy``) fails instead of skipping when ``MLPBENCH_REQUIRE_GPU=1``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from mlpbench.backends import backend_class, backend_names

GPU_BACKENDS = {"cupy"}
REQUIRE_GPU = os.environ.get("MLPBENCH_REQUIRE_GPU") == "1"


def require_backend(name):
    """Skip (or fail, for a required GPU) when backend ``name`` cannot run here."""
    try:
        ok, reason = backend_class(name).availability()
    except Exception as exc:  # pragma: no cover - a broken backend module
        ok, reason = False, f"{type(exc).__name__}: {exc}"
    if not ok:
        if name in GPU_BACKENDS and REQUIRE_GPU:
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
    require_backend("cupy")


@pytest.fixture
def rng():
    return np.random.RandomState(1234)
