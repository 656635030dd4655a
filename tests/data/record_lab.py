"""Run the lab's code once and store what it computes: `python tests/data/record_lab.py`.

`tests/test_lab.py` compares the model with the lab's code run live (==); the stored files are a
cross-check within a few ulps, and record the BLAS kernel that computed them (another kernel moves
the last bits).
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lab_code import run_lab  # noqa: E402

from threadpoolctl import threadpool_info  # noqa: E402

blas = ", ".join(f"{p.get('internal_api')} {p.get('version')} {p.get('architecture')} kernel"
                 for p in threadpool_info() if p.get("user_api") == "blas")
for name in ("and", "xor"):
    r = run_lab(name)
    np.savez(os.path.join(HERE, f"lab_{name}.npz"), lines=np.array(r.pop("lines")), blas=np.array(blas), **r)
    print(name, "final loss", r["losses"][-1])
