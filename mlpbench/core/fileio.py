"""Writing files: the ONE atomic write, and cheap checks of output paths made before any work.

``atomic_write`` goes through a temp file in the target's folder, ``fsync`` and
``os.replace``: a reader (or a process killed at any moment) sees the old complete
file or the new complete one, never a half-written one. A new file gets the mode
the umask gives an ordinary ``open``; an overwritten file keeps its mode. Errors
name the user's path, never the temp file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat

_TMP_PREFIX = ".mlpbench-"
#: a new file only (O_EXCL), written in binary, not inherited by child processes
_TMP_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)


def _user_error(exc: OSError, path: str) -> OSError:
    """The same kind of ``OSError``, naming ``path`` instead of whatever file the system call saw."""
    return OSError(exc.errno, exc.strerror or str(exc), path)


def _new_temp(directory: str) -> tuple[int, str]:
    """``(fd, path)`` of a new empty temp file in ``directory``, created with mode 0o666 so that the kernel
    applies the umask, as to an ordinary ``open`` (``tempfile.mkstemp`` would give 0o600)."""
    for _ in range(100):  # a clash of 64 random bits is all but impossible; try again rather than fail
        tmp = os.path.join(directory, f"{_TMP_PREFIX}{secrets.token_hex(8)}.tmp")
        try:
            return os.open(tmp, _TMP_FLAGS, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, "no unused temp file name", directory)


def atomic_write(path, data) -> None:
    """Write ``data`` (``str``, ``bytes``, or a callable given a binary file object) to ``path`` atomically."""
    path = os.fspath(path)
    if not path:
        raise ValueError("output path must not be empty")
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", path)
        mode = stat.S_IMODE(st.st_mode)  # an overwritten file keeps its mode
    except FileNotFoundError:
        mode = None  # a new file: the umask applied when the temp file was created
    except OSError as exc:
        raise _user_error(exc, path) from None
    try:
        fd, tmp = _new_temp(directory)
    except OSError as exc:
        raise _user_error(exc, path) from None
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:  # before the data: the temp file is never more open than the file it replaces
                os.chmod(f.fileno() if os.chmod in os.supports_fd else tmp, mode)
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else bytes(data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and exc.filename in (tmp, None, path):
            raise _user_error(exc, path) from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ---------------------------------------------------------------- output path checks
def _pre(name):
    return f"{name}: " if name else ""


def _nearest_existing(folder: str) -> str:
    while folder and not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder or "."


def _check_folder_writable(folder: str, name: str, path: str, create=False) -> None:
    folder = folder or "."
    if not os.path.isdir(folder):
        if create:
            base = _nearest_existing(os.path.abspath(folder))
            if not os.path.isdir(base):
                raise ValueError(f"{_pre(name)}cannot create {path!r}: {base!r} is not a folder")
            folder = base
        elif os.path.lexists(folder):
            raise ValueError(f"{_pre(name)}cannot write {path!r}: {folder!r} is not a folder")
        else:
            raise ValueError(f"{_pre(name)}cannot write {path!r}: folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{_pre(name)}cannot write {path!r}: no permission to write in folder {folder!r}")


def check_output_file(path, name="path", suffixes=None) -> str:
    """``path`` if a file can be written there (its folder exists and is writable; it is not a folder).

    ``suffixes``: the extensions accepted (e.g. ``(".png", ".pdf")``); a path without
    one of them is refused rather than silently given one. Raises ``ValueError``
    naming ``name`` and the path.
    """
    path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{_pre(name)}the path must not be empty")
    if path.endswith((os.sep, "/")) or os.path.isdir(path):
        raise ValueError(f"{_pre(name)}{path!r} is a folder; expected a file path")
    if suffixes is not None and os.path.splitext(path)[1].lower() not in suffixes:
        raise ValueError(f"{_pre(name)}{path!r} must end in one of {', '.join(suffixes)}")
    _check_folder_writable(os.path.dirname(path), name, path)
    if os.path.lexists(path) and not os.path.isfile(path):
        raise ValueError(f"{_pre(name)}{path!r} exists and is not a regular file")
    return path


def check_output_dir(path, name="folder", files=()) -> str:
    """``path`` if it is (or can be created as) a writable folder, and ``files`` in it can be replaced."""
    path = os.fspath(path)
    if not isinstance(path, str) or not path.strip():
        raise ValueError(f"{_pre(name)}the folder must not be empty")
    if os.path.lexists(path) and not os.path.isdir(path):
        raise ValueError(f"{_pre(name)}{path!r} exists and is not a folder")
    _check_folder_writable(path, name, path, create=True)
    for fname in files:
        full = os.path.join(path, fname)
        if os.path.lexists(full) and not os.path.isfile(full):
            raise ValueError(f"{_pre(name)}{full!r} exists and is not a regular file")
    return path


__all__ = ["atomic_write", "check_output_dir", "check_output_file"]
