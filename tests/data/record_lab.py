"""Run the lab's code once and store what it computes: `python tests/data/record_lab.py`.

The stored files are what `tests/test_lab.py` compares against with ==.
"""

import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from lab_code import run_lab  # noqa: E402

for name in ("and", "xor"):
    r = run_lab(name)
    np.savez(os.path.join(HERE, f"lab_{name}.npz"), lines=np.array(r.pop("lines")), **r)
    print(name, "final loss", r["losses"][-1])
