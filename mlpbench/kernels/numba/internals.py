"""Every use of Numba internals, each behind a public fallback: a Numba upgrade costs speed, never correctness.

* ``numba_xxgemm``, the private C entry of Numba's BLAS (a GEMM with ``beta``,
  so weight gradients accumulate block after block without a temporary):
  ``HAVE_XXGEMM`` says whether it can be linked; otherwise ``kernels/numba/layers``
  computes its matmuls with ``np.dot`` inside ``njit`` (public, allocates).
* ``literally`` and ``Dispatcher.overloads[sig].entry_point``, for the kernel
  compiled per tiny shape: ``fixed_shape_entry`` returns None when either is
  missing or fails, and the backend runs the generic loop kernel;
* the same ``entry_point``, for a prepared step (``compiled_entry``): the
  compiled function for one argument signature, called without the
  dispatcher's per-call typing of every argument (about 0.8 us of a 2-3 us
  step at N=1); the public fallback is the dispatcher itself.

``MLPBENCH_NUMBA_PUBLIC=1`` takes every fallback (and turns off the kernels'
on-disk cache, which does not know about this switch); a test runs parity so.

The on-disk cache's dependency salt (``cache_for``): Numba invalidates a
cached function when ITS source file changes, not when a kernel it calls from
another file does (the caller's cached machine code keeps the old callee). So a
kernel module that imports from a sibling declares the siblings' source digests,
``_DEPENDS_ON = {"scalar": "<12 hex digits>", "..reference": ...}`` (keys: the import's
relative module name, a sibling's without its dot), and takes
``CACHE = cache_for(__name__, _DEPENDS_ON)`` as its ``cache=``. Changing a
sibling makes the constant stale: ``tests/test_kernel_salts.py`` fails naming
the new value, and updating it edits the dependent's file, which invalidates
its cache (Numba's documented rule). Until then ``cache_for`` warns and turns
the dependent's cache off, so a stale constant costs compile time, never a
wrong result; a module's flag is also off when any sibling's is.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings

import numba
from numba import types

PUBLIC_ONLY = os.environ.get("MLPBENCH_NUMBA_PUBLIC") == "1"
#: ``cache=`` of every kernel: off when the fallbacks are forced, so no cached internal build is loaded
CACHE = not PUBLIC_ONLY
literally = None if PUBLIC_ONLY else getattr(numba, "literally", None)


def _have_xxgemm() -> bool:
    if PUBLIC_ONLY:
        return False
    try:
        from numba import _helperlib

        return "xxgemm" in _helperlib.c_helpers
    except Exception:  # moved or renamed: the public np.dot path
        return False


HAVE_XXGEMM = _have_xxgemm()


def xxgemm_type(dt):
    """The external-function type of ``numba_xxgemm`` for arrays of Numba dtype ``dt``, and its kind code."""
    ptr = types.CPointer(dt)
    fn = types.ExternalFunction("numba_xxgemm", types.intc(
        types.char, types.char, types.char, types.intp, types.intp, types.intp,
        ptr, ptr, types.intp, ptr, types.intp, ptr, ptr, types.intp))
    return fn, ord("d") if dt == types.float64 else ord("s")


def fixed_shape_entry(fn, args, literals):
    """The compiled entry point of ``fn`` for ``args`` (typed by value) plus compile-time ``literals``,
    called without re-running type inference; None when Numba's internals for it are not there."""
    entry = fn if literally is None else compiled_entry(fn, args, literals)
    return None if entry is fn else entry


def compiled_entry(fn, args, literals=()):
    """``fn`` compiled for ``args``' types (and ``literals`` as literal ints), as a callable that skips the
    dispatcher's typing; ``fn`` itself when Numba's internals for it are not there (or under
    ``NUMBA_DISABLE_JIT``)."""
    if PUBLIC_ONLY or not hasattr(fn, "compile"):
        return fn
    try:
        sig = tuple(numba.typeof(a) for a in args) + tuple(types.literal(int(x)) for x in literals)
        fn.compile(sig)
        return fn.overloads[sig].entry_point
    except Exception:  # Numba internals moved: the public dispatcher (the generic kernel, for literals)
        return fn


# ---------------------------------------------------------------- the on-disk cache's dependency salt
DIGEST_CHARS = 12


def source_digest(path) -> str:
    """The first ``DIGEST_CHARS`` hex digits of the SHA-256 of a source file (line endings as ``\\n``)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read().replace(b"\r\n", b"\n")).hexdigest()[:DIGEST_CHARS]


def cache_for(module_name: str, depends_on: dict) -> bool:
    """``cache=`` for the kernels of ``module_name``, whose ``depends_on`` maps each sibling module it imports
    to that sibling's ``source_digest``: ``CACHE``, unless an entry is stale (then a warning naming the
    value to set) or a sibling's own flag is off."""
    if not CACHE:
        return False
    package = module_name.rpartition(".")[0]
    stale, flags = [], []
    for name, digest in depends_on.items():  # "layers": a sibling; "..reference": kernels/reference.py
        module = importlib.import_module(name if name.startswith(".") else f".{name}", package)
        try:
            actual = source_digest(module.__file__)
        except (OSError, TypeError):  # no source file to check against: do not trust the cache
            actual = "(unreadable)"
        if actual != digest:
            stale.append(f"_DEPENDS_ON[{name!r}] is {digest!r}, {name}.py's digest is {actual!r}")
        flags.append(getattr(module, "CACHE", True))
    if stale:
        warnings.warn(f"{module_name}: {'; '.join(stale)}: its kernels compile without the on-disk cache "
                      "until the constant is updated (python tests/test_kernel_salts.py --write)", stacklevel=2)
        return False
    return all(flags)
