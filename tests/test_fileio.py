"""The one atomic write: file modes, errors naming the user's path, and nothing half-written under SIGKILL."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import stat
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from mlpbench import MLP
from mlpbench.suite import results as R
from mlpbench.auto.choose import Cache
from mlpbench.core.fileio import atomic_write, check_output_dir, check_output_file
from mlpbench.core.params import init_params

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def umask():
    def set_mask(mask):
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def _writers(tmp_path):
    """Every kind of file mlpbench writes atomically: model, results JSON/CSV, parity/tune JSON, cache."""
    def model(p):
        MLP([2, 3, 1]).save(p)

    def results(p):
        R.ResultsWriter(p.parent, {}, {}, {}).write()

    def cache(p):
        Cache(str(p)).put("k", _decision())

    return {"model.npz": model, "results.json": results, "auto.json": cache,
            "parity.json": lambda p: atomic_write(p, R.to_json({"x": 1}))}


def _decision():
    from mlpbench.auto.choose import Decision
    from mlpbench.backends import BackendSpec

    return Decision(ranking=[BackendSpec("numpy")], seconds_per_epoch={"numpy": 1e-6}, rejected={}, shape=(4, (2, 4, 1)), cost_s=0.1)


@pytest.mark.parametrize("kind", ["model.npz", "results.json", "auto.json", "parity.json"])
@pytest.mark.parametrize("mask, expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_new_files_follow_the_umask(tmp_path, umask, kind, mask, expected):
    umask(mask)
    path = tmp_path / kind
    _writers(tmp_path)[kind](path)
    assert mode(path) == expected


@pytest.mark.parametrize("kind", ["model.npz", "results.json", "auto.json", "parity.json"])
@pytest.mark.parametrize("existing", [0o644, 0o640, 0o666])
def test_overwriting_keeps_the_existing_mode(tmp_path, umask, kind, existing):
    umask(0o077)
    path = tmp_path / kind
    path.write_text("old")
    os.chmod(path, existing)
    _writers(tmp_path)[kind](path)
    assert mode(path) == existing
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


@pytest.mark.parametrize("target, exc", [
    ("{d}/no/such/folder/x.json", FileNotFoundError),
    ("{d}/file/x.json", NotADirectoryError),
    ("{d}/folder", IsADirectoryError),
])
def test_errors_name_the_users_path_not_the_temp_file(tmp_path, target, exc):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    path = target.replace("{d}", str(tmp_path))
    for write in (lambda: atomic_write(path, "x"), lambda: MLP().save(path)):
        with pytest.raises(exc) as info:
            write()
        assert info.value.filename == path and ".tmp" not in str(info.value)
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_a_failing_writer_leaves_the_old_file_and_no_temp_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write(path, "old")

    def boom(f):
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        atomic_write(path, boom)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["x.json"]


@pytest.mark.parametrize("bad, text", [
    ("", "empty"), ("{d}", "is a folder"), ("{d}/", "is a folder"), ("{d}/nope/x.npz", "does not exist"),
    ("{d}/file/x.npz", "not a folder"),
])
def test_check_output_file(tmp_path, bad, text):
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match=text):
        check_output_file(bad.replace("{d}", str(tmp_path)), "--save")
    assert check_output_file(str(tmp_path / "ok.npz"), "--save") == str(tmp_path / "ok.npz")
    with pytest.raises(ValueError, match=r"--plot: .*must end in one of \.png"):
        check_output_file(str(tmp_path / "out"), "--plot", (".png",))


def test_check_output_dir(tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "results.json").mkdir()
    assert check_output_dir(str(tmp_path / "new" / "deeper"), "--out")
    for bad, text in (("file", "not a folder"), ("file/sub", "not a folder"), ("out", "not a regular file")):
        with pytest.raises(ValueError, match=text):
            check_output_dir(str(tmp_path / bad), "--out", ("results.json",))


# ---------------------------------------------------------------- every writer: through the one atomic write
WRITES = {"model.npz": ["model.npz"], "results.json": ["results.json", "results.csv"], "auto.json": ["auto.json"],
          "parity.json": ["parity.json"]}


@pytest.mark.parametrize("kind", sorted(WRITES))
def test_every_writer_reaches_its_files_only_by_renaming_a_synced_temp_file(tmp_path, monkeypatch, kind):
    """What a kill can leave is settled by ``atomic_write`` (killed below): each kind of file reaches its
    path by ``os.replace`` of a temp file in the same folder, written in full and fsynced before."""
    synced, renames = set(), []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        real_fsync(fd)
        synced.add(os.fstat(fd).st_ino)

    def replace(src, dst, **kw):
        renames.append((os.fspath(src), os.fspath(dst), os.stat(src).st_ino in synced))
        real_replace(src, dst, **kw)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    for old in WRITES[kind]:  # over old versions: a rename replaces them, nothing writes into them
        (tmp_path / old).write_text("old")
    _writers(tmp_path)[kind](tmp_path / kind)
    assert {os.path.basename(dst) for _, dst, _ in renames} == set(WRITES[kind])
    for src, dst, was_synced in renames:
        name = os.path.basename(src)
        assert os.path.dirname(src) == os.path.dirname(os.path.abspath(dst)) == str(tmp_path)
        assert name.startswith(".mlpbench-") and name.endswith(".tmp") and was_synced, (src, dst)
    assert all((tmp_path / old).read_bytes() != b"old" for old in WRITES[kind])
    lock = {"auto.json.lock"} if kind == "auto.json" else set()  # the cache's lock file, never renamed
    assert set(os.listdir(tmp_path)) == set(WRITES[kind]) | lock


class Crash(Exception):
    pass


@pytest.mark.parametrize("syscall", ["write", "chmod", "fsync", "replace"])
@pytest.mark.parametrize("data", ["text", "callable"])
def test_a_fault_at_each_system_call_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch, syscall, data):
    path = tmp_path / "x.bin"
    atomic_write(path, b"old complete file")
    real_fdopen = os.fdopen

    class Writer:  # the temp file, failing at its write
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def crash(*a, **k):
        raise OSError(errno.EIO, "Input/output error")

    if syscall == "write":
        monkeypatch.setattr(os, "fdopen", lambda fd, mode: Writer(real_fdopen(fd, mode)))
    else:
        monkeypatch.setattr(os, syscall, crash)
    new = b"new" * 1000 if data == "text" else (lambda f: [f.write(b"new") for _ in range(1000)])
    with pytest.raises(OSError) as info:
        atomic_write(path, new)
    assert info.value.filename == str(path) and info.value.errno == (errno.ENOSPC if syscall == "write" else errno.EIO)
    assert path.read_bytes() == b"old complete file" and os.listdir(tmp_path) == ["x.bin"]


# ---------------------------------------------------------------- SIGKILL at random moments
KILLED = textwrap.dedent("""
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("fileio", sys.argv[1])  # the module alone: a fast start
    fileio = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fileio)
    path, v = sys.argv[2], int(sys.argv[3])

    def version(v):
        def write(f):  # one write(2) per 64 KiB: the temp file grows while the kill may come
            for _ in range(CHUNKS):
                f.write(v.to_bytes(4, "little") * (CHUNK // 4))
                f.flush()
        return write

    fileio.atomic_write(path, version(v))
    print("wrote", flush=True)
    while True:
        v += 1
        fileio.atomic_write(path, version(v))
""")
CHUNK, CHUNKS = 1 << 16, 32


def _sigkill(proc):
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL


def _remove_temp_files(folder) -> int:
    """Removes the temp files in ``folder`` (one is left where a kill came while a file was written); how many."""
    orphans = [p for p in os.listdir(folder) if p.endswith(".tmp")]
    for p in orphans:
        os.unlink(os.path.join(folder, p))
    return len(orphans)


def test_sigkill_at_random_moments_leaves_the_old_or_the_new_complete_file(tmp_path):
    """The guarantee, on a real process: ``atomic_write`` killed at any moment leaves one whole version (2 MiB
    of one 4-byte number, the version) that this process wrote, and at most a stray temp file. Random
    moments, at least 2 of them mid-write."""
    rng = random.Random(12)
    path = str(tmp_path / "file.bin")
    fileio = os.path.join(ROOT, "mlpbench", "core", "fileio.py")
    code = f"CHUNK, CHUNKS = {CHUNK}, {CHUNKS}\n" + KILLED
    kills = mid_write = 0
    while kills < 8 or (mid_write < 2 and kills < 150):
        first = (kills + 1) * 10**6  # each process numbers its versions from its own first
        proc = subprocess.Popen([sys.executable, "-c", code, fileio, path, str(first)], stdout=subprocess.PIPE,
                                env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        assert proc.stdout.readline() == b"wrote\n"  # its first version is complete
        time.sleep(rng.uniform(0.0, 0.05))
        _sigkill(proc)
        kills += 1
        with open(path, "rb") as f:
            data = f.read()
        assert len(data) == CHUNK * CHUNKS and data == data[:4] * (len(data) // 4), "a half-written file"
        assert first <= int.from_bytes(data[:4], "little") < first + 10**6  # this process's, not an older one
        assert set(os.listdir(tmp_path)) - {"file.bin"} <= {p for p in os.listdir(tmp_path) if p.endswith(".tmp")}
        orphans = _remove_temp_files(tmp_path)
        assert orphans <= 1
        mid_write += bool(orphans)
    assert mid_write >= 2, f"only {mid_write} of {kills} kills landed while a file was being written"


# ---------------------------------------------------------------- the same, through every writer (slow)
WRITER = textwrap.dedent("""
    import os, sys, time
    _fsync = os.fsync
    def slow_fsync(fd):  # widens the write window (temp file written, not yet renamed): kills land inside it
        time.sleep(0.01)
        _fsync(fd)
    os.fsync = slow_fsync
    from mlpbench import MLP
    from mlpbench.suite import results as R
    from mlpbench.auto.choose import Cache, Decision
    from mlpbench.backends import BackendSpec
    kind, path = sys.argv[1], sys.argv[2]
    print("ready", flush=True)
    for i in range(1, 10**9):
        version = i % 7 + 1
        if kind == "model":
            MLP([20, 400, 1], seed=version).save(path)
        elif kind == "results":
            w = R.ResultsWriter.__new__(R.ResultsWriter)
            w.json_path, w.csv_path = path + "/results.json", path + "/results.csv"
            w.doc = {"schema": R.SCHEMA, "status": "running", "machine": {}, "peak": {}, "config": {"v": version},
                     "points": [dict(POINT, n_samples=k) for k in range(200 * version)], "skipped": [], "errors": []}
            w.write()
        else:
            d = Decision(ranking=[BackendSpec("numpy")], seconds_per_epoch={"numpy": 1e-6}, rejected={}, shape=(4, (2, 4, 1)), cost_s=0.1)
            Cache(path).put(f"key-{i % 500}-" + "x" * 2000, d)  # bigger entries: a longer write window
""")
POINT = {k: 1 for k in R.REQUIRED_POINT_FIELDS} | {"backend": "numpy", "op": "step", "dtype": "float64",
                                                   "layer_sizes": [2, 4, 1], "noisy": False}


def _check_complete(kind, path):
    """The file at ``path`` is one whole version of what the writer writes."""
    if kind == "model":
        m = MLP.load(path)
        assert m.seed in range(1, 8)
        np.testing.assert_array_equal(m.params[0][0], init_params([20, 400, 1], m.seed)[0][0])
    elif kind == "results":
        doc = R.load(os.path.join(path, "results.json"))
        assert len(doc["points"]) == 200 * doc["config"]["v"]
        with open(os.path.join(path, "results.csv")) as f:
            rows = f.read().splitlines()
        assert rows[0].startswith("backend,") and (len(rows) - 1) % 200 == 0 and len(rows) > 1
    else:
        with open(path) as f:
            data = json.load(f)
        assert data["schema"] == "mlpbench.auto/2" and data["entries"]


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["model", "results", "cache"])
def test_sigkill_through_every_writer_leaves_old_or_new_complete_files(tmp_path, kind):
    """End to end (``-m slow``): each writer's own files, in a process killed at random moments."""
    rng = random.Random(12)
    path = str(tmp_path / ("m.npz" if kind == "model" else "out" if kind == "results" else "auto.json"))
    env = {**os.environ, "PYTHONPATH": ROOT, "PYTHONDONTWRITEBYTECODE": "1"}
    code = WRITER.replace("POINT", repr(POINT))
    if kind == "results":
        os.makedirs(path)
    kills = mid_write = 0
    folder = path if kind == "results" else str(tmp_path)
    # bounded: 8 to 150 kills, until 2 landed mid-write (the writer's fsync sleeps 10 ms, so under load too)
    while kills < 8 or (mid_write < 2 and kills < 150):
        proc = subprocess.Popen([sys.executable, "-c", code, kind, path], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline() == b"ready\n"
        deadline = time.monotonic() + 30
        target = os.path.join(path, "results.json") if kind == "results" else path
        while not os.path.exists(target) and time.monotonic() < deadline:  # at least one complete version first
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        _sigkill(proc)
        kills += 1
        _check_complete(kind, path)
        mid_write += bool(_remove_temp_files(folder))
    assert mid_write >= 2, f"only {mid_write} of {kills} kills landed while a file was being written"
