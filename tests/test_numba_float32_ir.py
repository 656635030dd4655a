"""float32 stays float32: the elementwise step kernels compiled for float32 do no float64 arithmetic.

Slow (a fresh compile of four kernels in a subprocess, whose empty on-disk cache lets Numba show the
LLVM IR); the default run checks the same kernels' float32 results against NumPy (``test_numba_backend``).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import re
    import numpy as np
    from mlpbench.kernels.numba import layers as L
    from mlpbench.kernels.numba.scalar import RELU, TANH

    dt = np.dtype("float32"); m, h = 4, 16
    Z, dA = np.ones((m, h), dt), np.empty((m, h), dt)
    W, g, D, T, y = (np.ones((h, 1), dt), np.zeros((h, 1), dt), np.ones((m, 1), dt), np.ones((m, 1), dt),
                     np.empty((m, 1), dt))
    b, db, b2 = np.zeros(h, dt), np.zeros(h, dt), np.zeros(1, dt)
    floor = dt.type(-30)
    calls = [(L.single_output_backward, (Z, W, D, g, dA, TANH, db, 8)), (L.bias_act, (Z, b, RELU, floor)),
             (L.act_backward, (dA, Z, RELU, db)), (L.output_error, (y, T, True, 100, D, b2))]
    for fn, args in calls:
        fn(*args)
        ir = fn.inspect_llvm(fn.signatures[0])
        body = ir.split("define ")[1]  # the kernel itself (its callees inlined or linked after it)
        arith = re.findall(r"= (?:fadd|fsub|fmul|fdiv|fpext)[^\\n]*double", body)
        vec = re.findall(r"<\\d+ x float>", body)
        print(fn.__name__, len(arith), len(vec))
""")


@pytest.mark.slow
def test_float32_kernels_do_no_float64_arithmetic(tmp_path):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path))
    env.pop("MLPBENCH_NUMBA_PUBLIC", None)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr
    rows = {name: (int(a), int(v)) for name, a, v in (line.split() for line in out.stdout.split("\n") if line)}
    assert set(rows) == {"single_output_backward", "bias_act", "act_backward", "output_error"}
    for name, (double_ops, float_vectors) in rows.items():
        assert double_ops == 0, f"{name}: {double_ops} float64 operations in its float32 build"
    for name in ("single_output_backward", "bias_act", "act_backward"):
        assert rows[name][1] > 0, f"{name}: no float32 vector operation (the loop did not vectorize)"
