"""Where mlpbench keeps what it learns about a machine: the ``auto`` cache (``auto/cache.py``) and the tuned
kernel parameters (``core/tuned.py``), in one folder."""

from __future__ import annotations

import os
import sys

import platformdirs


def cache_dir() -> str:
    """``$MLPBENCH_CACHE_DIR``, else the platform's user cache folder for mlpbench (``platformdirs``: on Linux
    ``$XDG_CACHE_HOME/mlpbench``, else ``~/.cache/mlpbench``). A ``~`` in either variable is the user's home, as in
    a shell."""
    root = os.path.expanduser(os.environ.get("MLPBENCH_CACHE_DIR", ""))
    if root:
        return root
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if xdg.startswith("~"):
        # Kept by hand: platformdirs ignores a $XDG_CACHE_HOME that is not absolute, so '~/c' gave ~/.cache/mlpbench
        # (measured with platformdirs 4.14.9); mlpbench has always expanded it (tests/test_coercions.py).
        return os.path.join(os.path.expanduser(xdg), "mlpbench")
    if xdg and not os.path.isabs(xdg) and sys.platform.startswith("linux"):  # the XDG rule: a relative path is invalid and ignored (by hand: not
        return os.path.join(os.path.expanduser("~"), ".cache", "mlpbench")  # every platformdirs ignores it)
    return platformdirs.user_cache_dir("mlpbench", appauthor=False)
