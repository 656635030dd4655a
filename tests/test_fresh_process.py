"""What only a fresh interpreter can show, in ONE child process: what importing and listing pull in, what
``backend='auto'`` compiles for a Numba candidate, and that using every backend leaves no process-wide setting
changed.

The child runs the steps in order and reports after each: the import steps first (nothing has loaded a
library yet), then, with the peers imported and the settings noted, everything else, and the settings again.
Its Numba kernels come from the same on-disk cache as this process's (the environment is inherited). It
starts when collection ends and runs beside the tests before these (tests/children.py).
"""

from __future__ import annotations

import json
import os
import sys

import pytest

from mlpbench.backends import availability

#: libraries that importing mlpbench, making a backend object or asking its availability must not load
HEAVY = ("numba", "cupy", "torch", "jax", "jaxlib", "scipy", "matplotlib", "sklearn")

CHILD = r"""
import importlib.util, json, sys
HEAVY = %r
report = {}

def loaded():
    return sorted(m for m in HEAVY if m in sys.modules)

import mlpbench
mlpbench.MLP()
report["import mlpbench; MLP()"] = loaded()
from mlpbench.backends.numba.backend import NumbaBackend
report["numba availability"] = NumbaBackend.availability()
if report["numba availability"][0]:
    NumbaBackend().describe()
report["NumbaBackend: availability, describe"] = loaded()
from mlpbench.backends import backend_class
report["peers availability"] = [backend_class(n).availability() for n in ("torch", "jax")]
report["torch, jax: backend_class, availability"] = loaded()
backend_class("cupy").availability()
report["cupy: backend_class, availability"] = loaded()

def settings():
    out = {}
    if "jax" in sys.modules:
        import jax
        out["jax_x64"] = bool(jax.config.jax_enable_x64)
    if "torch" in sys.modules:
        import torch
        out["torch_threads"] = torch.get_num_threads()
    from threadpoolctl import threadpool_info
    out["blas"] = {p["filepath"]: p["num_threads"] for p in threadpool_info()}
    return out

for mod in ("jax", "torch"):  # the peers, where installed (the `peers` extra)
    if importlib.util.find_spec(mod) is not None:
        __import__(mod)
if "torch" in sys.modules:
    sys.modules["torch"].set_num_threads(1)
before = settings()

if importlib.util.find_spec("numba") is not None:
    from mlpbench.auto import choose as auto
    from mlpbench.backends.numba import jit as numba_jit
    d = auto.choose(4, [2, 4, 1], "float64", epochs=5000, names=["numba"])
    k = numba_jit._kernels()
    report["auto numba"] = {
        "chosen": d.ranking[0].label, "jit": sorted(numba_jit.JIT_SECONDS),
        "compiled": sorted(n for n in ("layer_forward", "layer_backward", "sgd", "bce_loss", "train_step")
                           if getattr(k, n).signatures)}
from mlpbench import MLP, datasets, available_backends
from mlpbench.backends import availability, get_backend
X, y = datasets.load("and")
available_backends()
for name in ("numpy", "numba", "torch", "jax"):
    if availability(name)[0]:
        get_backend(name).warmup([2, 4, 1], 4)
MLP().fit(X, y, epochs=50, backend="auto")
MLP([2, 8, 1], dtype="float32").fit(X, y, epochs=5, backend="auto")
after = settings()
after["blas"] = {k: v for k, v in after["blas"].items() if k in before["blas"]}
report["settings before, after"] = [before, after]
print(json.dumps(report))
""" % (HEAVY,)


CHILDREN = {"fresh": lambda folder: dict(argv=[sys.executable, "-c", CHILD],  # started early: children.py
                                          env=dict(os.environ, MLPBENCH_CACHE_DIR=folder))}


@pytest.fixture(scope="module")
def report(children):
    rc, out, err = children.result(__name__, "fresh")
    assert rc == 0, out[-2000:] + err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("step", ["import mlpbench; MLP()", "NumbaBackend: availability, describe",
                                  "torch, jax: backend_class, availability", "cupy: backend_class, availability"])
def test_importing_and_asking_availability_loads_no_heavy_library(report, step):
    """Each step, and every step before it: importing the package imports NumPy only; a backend module and
    its availability load nothing of the backend's library."""
    assert report[step] == [], f"after {step!r}: {report[step]} loaded"


def test_availability_in_the_fresh_process_is_this_process_s(report):
    assert report["numba availability"] == list(availability("numba"))
    assert report["peers availability"] == [list(availability("torch")), list(availability("jax"))]


def test_numba_loop_candidate_compiles_only_the_kernel_it_runs(report):
    pytest.importorskip("numba")
    auto = report["auto numba"]
    assert auto["chosen"] == "numba[loop]", auto
    assert [k.split("[")[0] for k in auto["jit"]] == ["train_loop_fixed"] and auto["compiled"] == [], auto  # no forward/backward/step kernel


def test_no_process_wide_side_effects(report):
    """Warming up every backend and fitting with ``auto`` leaves JAX's x64 flag, torch's threads and every
    BLAS library's threads as they were."""
    before, after = report["settings before, after"]
    assert before.get("jax_x64", False) is False and before.get("torch_threads", 1) == 1
    assert ("jax_x64" in before) == availability("jax")[0] and ("torch_threads" in before) == availability("torch")[0]
    assert after == before
