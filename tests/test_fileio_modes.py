"""``atomic_write``'s file modes: a new file gets what the umask gives an ordinary ``open`` (the kernel applies it
to the temp file, created with 0o666), an overwritten one keeps its mode, and neither reads nor changes the umask."""

from __future__ import annotations

import builtins
import os
import stat

import pytest

from mlpbench.core import fileio
from mlpbench.core.fileio import atomic_write


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield os.umask
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def temp_files(folder) -> list[str]:
    return [os.path.join(folder, n) for n in os.listdir(folder) if n.endswith(".tmp")]


@pytest.mark.parametrize("data", ["text", b"bytes", lambda f: f.write(b"callable")])
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o027, 0o640), (0o000, 0o666)])
def test_a_new_file_gets_the_mode_the_umask_gives(tmp_path, umask, data, mask, expected):
    umask(mask)
    path = tmp_path / "new.json"
    atomic_write(path, data)
    (tmp_path / "plain").write_text("x")
    assert mode(path) == expected == mode(tmp_path / "plain")  # as an ordinary open
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("mask", [0o022, 0o077])
@pytest.mark.parametrize("existing", [0o600, 0o640, 0o644, 0o664, 0o755, 0o444])
def test_an_overwritten_file_keeps_its_mode_whatever_the_umask(tmp_path, umask, mask, existing):
    umask(mask)
    path = tmp_path / "old.json"
    path.write_text("old")
    os.chmod(path, existing)
    atomic_write(path, "new")
    assert path.read_text() == "new" and mode(path) == existing
    assert not temp_files(tmp_path)


@pytest.mark.parametrize("mask, existing, expected", [
    (0o022, 0o600, 0o600),  # a private file is private from its first byte, not only once written
    (0o077, None, 0o600),  # a new file under a strict umask
    (0o022, None, 0o644),
])
def test_the_temp_file_is_never_more_open_than_the_result(tmp_path, umask, mask, existing, expected):
    umask(mask)
    path = tmp_path / "x.npz"
    if existing is not None:
        path.write_text("old")
        os.chmod(path, existing)
    seen = []

    def write(f):
        seen.extend(mode(t) for t in temp_files(tmp_path))
        f.write(b"data")

    atomic_write(path, write)
    assert seen == [expected] and mode(path) == expected


def test_the_umask_is_neither_changed_nor_read(tmp_path, umask, monkeypatch):
    """No ``os.umask`` round trip (another thread could create a file under the wrong mask) and no /proc."""
    umask(0o027)
    real_open = builtins.open

    def no_proc(file, *args, **kwargs):
        if str(file).startswith("/proc"):
            raise AssertionError(f"atomic_write read {file}")
        return real_open(file, *args, **kwargs)

    def no_umask(mask):
        raise AssertionError("atomic_write called os.umask")

    monkeypatch.setattr(builtins, "open", no_proc)
    monkeypatch.setattr(os, "umask", no_umask)
    atomic_write(tmp_path / "a.json", "x")
    monkeypatch.undo()
    assert mode(tmp_path / "a.json") == 0o640


def test_a_temp_name_in_use_is_skipped_not_overwritten(tmp_path, monkeypatch):
    names = iter(["taken", "taken", "free"])
    monkeypatch.setattr(fileio.secrets, "token_hex", lambda n: next(names))
    taken = tmp_path / f"{fileio._TMP_PREFIX}taken.tmp"
    taken.write_text("someone else's")
    atomic_write(tmp_path / "x.json", "mine")
    assert (tmp_path / "x.json").read_text() == "mine" and taken.read_text() == "someone else's"
    assert temp_files(tmp_path) == [str(taken)]
