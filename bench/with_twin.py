"""``mlpbench`` with ``twin`` registered: an identical copy of the numpy backend, under another name.

    python bench/with_twin.py bench --preset standard --backends numpy,numba,torch,jax,twin --out OUT

Any verdict but ``same`` or ``unresolved`` for ``twin`` is a false one (issue 27's control): the run's
results file says how often the engine calls an identical copy faster or slower.
"""

from __future__ import annotations

import sys

from mlpbench.backends import register_backend
from mlpbench.backends.numpy_backend import NumpyBackend


class TwinNumpy(NumpyBackend):
    """NumPy under another name."""

    name = "twin"


if __name__ == "__main__":
    from mlpbench.cli import main

    register_backend("twin", TwinNumpy)
    sys.exit(main(sys.argv[1:]))
