"""The model file (``.npz``): written atomically, read defensively.

Reading trusts nothing in the file: the zip directory, every member's ``.npy``
header (dtype, shape) and the sizes it implies are checked before a byte of array
data is allocated; only the members the model needs are read, each no further
than its declared size. Anything wrong is a ``ValueError`` naming the file.
"""

from __future__ import annotations

import io
import os
import zipfile
import zlib

import numpy as np

from . import validation as v
from .fileio import atomic_write, read_user_file
from .memory import check_fits, params_bytes

#: metadata members are tiny; anything larger is not a model file
_META_MAX_BYTES = 1 << 16
#: slack for a .npy header beyond the array data
_HEADER_MAX_BYTES = 1 << 16
_META = ("layer_sizes", "activation", "dtype", "seed", "output")


def write(path, meta, params) -> None:
    """Save ``meta`` (layer_sizes, activation, dtype, seed, output) and ``params`` to ``path`` atomically."""
    arrays = {k: np.asarray(meta[k]) for k in _META}
    for i, (W, b) in enumerate(params):
        arrays[f"W{i}"], arrays[f"b{i}"] = W, b
    atomic_write(path, lambda f: np.savez(f, **arrays))


class _Bad(Exception):
    pass


def _header(member):
    """``(shape, fortran_order, dtype)`` of an open ``.npy`` member, from its header only."""
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(member, max_header_size=_HEADER_MAX_BYTES)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(member, max_header_size=_HEADER_MAX_BYTES)
    raise _Bad(f"unsupported .npy format version {version}")


def _read_member(zf, name, shape=None, dtype=None, max_bytes=_META_MAX_BYTES, what=None):
    """One array, checked against the expected ``shape``/``dtype`` from its header before its data is read."""
    try:
        info = zf.getinfo(name + ".npy")
    except KeyError:
        raise _Bad(f"no {name!r} member") from None
    if info.file_size > max_bytes + _HEADER_MAX_BYTES:
        raise _Bad(f"member {name!r} is {info.file_size} bytes; at most {max_bytes} expected")
    with zf.open(info) as m:
        got_shape, fortran, got_dtype = _header(m)
        if got_dtype.hasobject:
            raise _Bad(f"member {name!r} holds Python objects")
        what = what or f"member {name!r}"
        if dtype is not None and got_dtype != dtype:
            raise _Bad(f"{what}: expected dtype {np.dtype(dtype).name}; got {got_dtype.str}")
        if shape is not None and tuple(got_shape) != tuple(shape):
            raise _Bad(f"{what}: expected {name.rstrip('0123456789')} {tuple(shape)}; got {tuple(got_shape)}")
        nbytes = v.npy_nbytes(got_shape, got_dtype)
        count = nbytes // got_dtype.itemsize if got_dtype.itemsize else 0
        if nbytes > max_bytes:
            raise _Bad(f"member {name!r} declares {nbytes} bytes; at most {max_bytes} expected")
        data = m.read(nbytes)
    if len(data) != nbytes:
        raise _Bad(f"member {name!r} is truncated ({len(data)} of {nbytes} bytes)")
    arr = np.frombuffer(data, dtype=got_dtype, count=count)
    return arr.reshape(got_shape, order="F" if fortran else "C").copy(order="C")


def _scalar(arr, name, kinds):
    if arr.shape != () or arr.dtype.kind not in kinds:
        raise _Bad(f"member {name!r} must be a scalar of kind {kinds!r}; got dtype {arr.dtype}, shape {arr.shape}")
    return arr[()]


def read(path):
    """``(meta, params)`` from a model file; ``ValueError`` naming ``path`` for anything wrong with it."""
    path = os.fspath(path)
    try:
        data = read_user_file(path, lambda size: check_fits(2 * size, f"reading {path!r}"), "model file")
    except IsADirectoryError:
        raise ValueError(f"{path!r} is a folder, not a model file") from None
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            return _read(zf)
    except _Bad as exc:
        raise ValueError(f"{path!r} is not an mlpbench model file: {exc}") from None
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, zlib.error, NotImplementedError, RuntimeError) as exc:
        # RuntimeError: zipfile's "encrypted, password required"
        raise ValueError(f"could not read model file {path!r}: not an mlpbench model file (a zip archive written "
                         f"by MLP.save): {type(exc).__name__}: {exc}") from None
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path!r} is not an mlpbench model file: {exc}") from None


def _read(zf):
    sizes = _read_member(zf, "layer_sizes")
    if sizes.ndim != 1 or sizes.dtype.kind not in "iu":
        raise _Bad(f"layer_sizes must be a 1-D int array; got dtype {sizes.dtype}, shape {sizes.shape}")
    layer_sizes = v.check_layer_sizes(sizes.tolist())
    activation = v.check_activation(str(_scalar(_read_member(zf, "activation"), "activation", "U")))
    dtype = v.check_dtype(str(_scalar(_read_member(zf, "dtype"), "dtype", "U")))
    seed = int(_scalar(_read_member(zf, "seed"), "seed", "iu"))
    # files written before the softmax head have no "output" member: they are sigmoid models
    has_output = "output.npy" in zf.namelist()
    output = v.check_output(str(_scalar(_read_member(zf, "output"), "output", "U"))) if has_output else "sigmoid"
    if output == "softmax" and layer_sizes[-1] < 2:
        raise _Bad(f"output 'softmax' needs at least 2 output units; layer sizes {layer_sizes}")
    if seed >= 0:
        v.check_seed(seed)
    shapes = [(f"{k}{i}", shape) for i, (fi, fo) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:]))
              for k, shape in (("W", (fi, fo)), ("b", (1, fo)))]
    for name, shape in shapes:  # the zip directory must hold members of the sizes the layers imply
        nbytes = int(np.prod(shape)) * dtype.itemsize
        try:
            size = zf.getinfo(name + ".npy").file_size
        except KeyError:
            raise _Bad(f"no {name!r} member (layer sizes {layer_sizes})") from None
        if not nbytes <= size <= nbytes + _HEADER_MAX_BYTES:
            raise _Bad(f"member {name!r} is {size} bytes; layer sizes {layer_sizes} in {dtype.name} imply "
                       f"{nbytes} bytes of data")
    check_fits(2 * params_bytes(layer_sizes, dtype), f"the model in the file (layer sizes {layer_sizes})")
    params = []
    for i, (fi, fo) in enumerate(zip(layer_sizes[:-1], layer_sizes[1:])):
        W = _read_member(zf, f"W{i}", (fi, fo), dtype, fi * fo * dtype.itemsize, what=f"layer {i}")
        b = _read_member(zf, f"b{i}", (1, fo), dtype, fo * dtype.itemsize, what=f"layer {i}")
        params.append((W, b))
    meta = {"layer_sizes": layer_sizes, "activation": activation, "dtype": dtype, "seed": None if seed < 0 else seed,
            "output": output}
    return meta, params


__all__ = ["read", "write"]
