"""The Numba kernels under the two environments that change how they are built, ONE child process each.

* ``NUMBA_DISABLE_JIT=1``: the kernels run as plain Python (coverage of their source);
* ``MLPBENCH_NUMBA_PUBLIC=1``: every Numba internal behind its public fallback, and no on-disk cache, so the
  child compiles each kernel it runs: once, for all the checks of that environment (at ``NUMBA_OPT=0``).

A check is a function of the test module it belongs to (next to the tests of the same kernels); the child
runs every check of its environment, each to the end, and reports each failure with its traceback.
"""

from __future__ import annotations

import json
import os
import sys

import pytest
from conftest import require_backend

from mlpbench.backends import availability

TESTS = os.path.dirname(os.path.abspath(__file__))

CHECKS = {  # variable set to "1" -> the checks run in its one child, in order
    "NUMBA_DISABLE_JIT": [
        "test_numba_backend:plain_python_strategies_match_numpy",
        "test_numba_batches:fused_minibatch_parity",
        "test_numba_batches_parallel:threaded_kernel_is_the_single_thread_kernel",
    ],
    "MLPBENCH_NUMBA_PUBLIC": [
        "test_numba_backend:public_fallbacks_keep_parity",
        "test_numba_batches:fused_minibatch_parity",
        "test_numba_batches_parallel:threaded_kernel_is_the_single_thread_kernel",
    ],
}

CHILD = r"""
import importlib, json, sys, traceback
sys.path.insert(0, sys.argv[1])
failures = {}
for check in json.loads(sys.argv[2]):
    module, name = check.split(":")
    try:
        getattr(importlib.import_module(module), name)()
    except Exception:
        failures[check] = traceback.format_exc()
print(json.dumps(failures))
"""


def _child(variable):
    def make(folder):  # its own NUMBA_CACHE_DIR: nothing cached is loaded
        env = dict(os.environ, **{variable: "1"}, NUMBA_CACHE_DIR=folder)
        if variable == "MLPBENCH_NUMBA_PUBLIC":
            # LLVM at -O0: the same IEEE arithmetic (no kernel uses fastmath, so no level reassociates or
            # contracts), in 25 s of compiling instead of 42; the checks are of numbers, not speed
            env["NUMBA_OPT"] = "0"
        return dict(argv=[sys.executable, "-c", CHILD, TESTS, json.dumps(CHECKS[variable])], env=env, cwd=TESTS)
    return make


CHILDREN = {variable: _child(variable) for variable in CHECKS}  # started when collection ends (children.py)


def child_keys(item):
    return [item.callspec.params["variable"]] if availability("numba")[0] else []


@pytest.mark.parametrize("variable", sorted(CHECKS))
def test_every_check_of_the_environment_passes_in_one_child(variable, children):
    require_backend("numba")
    rc, out, err = children.result(__name__, variable)
    assert rc == 0, out[-2000:] + err[-3000:]
    failures = json.loads(out.strip().splitlines()[-1])
    assert not failures, "\n".join(f"{check} under {variable}=1:\n{tb}" for check, tb in failures.items())
