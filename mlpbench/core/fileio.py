"""Files: the ONE reader of user files, the ONE atomic write, and cheap checks of output paths made before any work.

``read_user_file`` opens without blocking (``O_NONBLOCK``: a FIFO never hangs), refuses anything but a regular
file (FIFOs, devices, sockets, folders) naming the path, and refuses a file over its size cap before reading a
byte; ``read_json`` adds JSON's own hostile cases (nesting too deep, integers of thousands of digits).

``atomic_write`` goes through a temp file in the target's folder, ``fsync`` and
``os.replace``: a reader (or a process killed at any moment) sees the old complete
file or the new complete one, never a half-written one. A new file gets the mode
the umask gives an ordinary ``open``; an overwritten file keeps its mode. Errors
name the user's path, never the temp file.
"""

from __future__ import annotations

import contextlib
import errno
import json
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
    """Write ``data`` (``str``, ``bytes``, or a callable given a binary file object) to ``path`` atomically.

    A symlink is written through: its target is replaced (atomically, in the target's folder), the link kept
    (``check_output_file`` refuses a link to anything but a regular file, before any work)."""
    path = os.fspath(path)
    if not path:
        raise ValueError("output path must not be empty")
    shown = path  # errors name the user's path
    if os.path.islink(path):  # written through to the link's target; the link stays a link
        path = os.path.realpath(path)
    directory = os.path.dirname(os.path.abspath(path))
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "Is a directory", shown)
        mode = stat.S_IMODE(st.st_mode)  # an overwritten file keeps its mode
    except FileNotFoundError:
        mode = None  # a new file: the umask applied when the temp file was created
    except OSError as exc:
        raise _user_error(exc, shown) from None
    try:
        fd, tmp = _new_temp(directory)
    except OSError as exc:
        raise _user_error(exc, shown) from None
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
        if isinstance(exc, OSError) and exc.filename in (tmp, None, path, shown):
            raise _user_error(exc, shown) from None
        raise
    with contextlib.suppress(OSError):  # make the rename itself durable
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


# ---------------------------------------------------------------- reading user files
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
#: the most digits a JSON integer may have (an int64 has 19; Python's own limit, 4300, is far past any field)
JSON_MAX_DIGITS = 40


class NotRegularFile(ValueError):
    """A FIFO, device or socket where a regular file was expected (its message names the path)."""


def read_user_file(path, max_bytes, what="file") -> bytes:
    """The bytes of the regular file ``path`` (a link is followed), at most ``max_bytes`` of them.

    ``max_bytes``: an int, or a callable given the file's size that raises when it is too big (e.g. a memory
    check). Raises ``FileNotFoundError``/``PermissionError`` (naming ``path``), ``IsADirectoryError``, or
    ``ValueError`` naming ``path`` for a FIFO, device or socket, or a file over the cap; never blocks.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as exc:
        raise _user_error(exc, path) from None
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, f"is a folder; expected a {what}", path)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
            raise NotRegularFile(f"{path!r} is {kind}; expected a regular {what}")
        limit = st.st_size
        if callable(max_bytes):
            max_bytes(st.st_size)
        elif st.st_size > max_bytes:
            raise ValueError(f"{path!r} is {st.st_size} bytes; a {what} of at most {max_bytes} bytes expected")
        else:
            limit = max_bytes
        chunks, got = [], 0
        while got <= limit:  # one byte past the cap tells a file that grew while read
            chunk = os.read(fd, min(1 << 24, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise ValueError(f"{path!r} grew past {limit} bytes while read")
        return b"".join(chunks)
    except OSError as exc:
        raise _user_error(exc, path) from None
    finally:
        os.close(fd)


def _int_of_at_most(digits):
    def parse(text):
        if len(text.lstrip("-")) > digits:
            raise ValueError(f"an integer of {len(text.lstrip('-'))} digits (at most {digits})")
        return int(text)
    return parse


def read_json(path, max_bytes, what="JSON file", max_digits=JSON_MAX_DIGITS):
    """The JSON document in ``path`` (through ``read_user_file``); ``ValueError`` naming ``path`` for text that
    is not UTF-8 JSON, nested too deep, or holding an integer of more than ``max_digits`` digits (a reader
    that checks each value itself may allow more, up to Python's own limit)."""
    path = os.fspath(path)
    data = read_user_file(path, max_bytes, what)
    try:
        return json.loads(data.decode("utf-8-sig"), parse_int=_int_of_at_most(max_digits))
    except RecursionError:
        raise ValueError(f"{path}: not a usable {what}: JSON nested too deep") from None
    except (ValueError, UnicodeDecodeError) as exc:  # json.JSONDecodeError is a ValueError
        raise ValueError(f"{path}: not valid JSON ({exc})") from None


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
    try:  # what access() cannot tell (root, /proc, a read-only mount): a file made there and removed
        fd, tmp = _new_temp(folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise ValueError(f"{_pre(name)}cannot write {path!r}: {exc.strerror or exc} in folder {folder!r}") from None


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


__all__ = ["JSON_MAX_DIGITS", "NotRegularFile", "atomic_write", "check_output_dir", "check_output_file", "read_json", "read_user_file"]
