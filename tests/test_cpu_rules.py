"""The CPU's caches as read from the OS (``core/cpu``) and the Numba kernels' parameters derived from them
(``backends/numba/machine_rules``): plain Python, no compile."""

from __future__ import annotations

import pytest

from mlpbench.backends.numba import machine_rules as rules
from mlpbench.core import cpu


def fake_sysfs(root, entries):
    """A sysfs cache directory: ``entries`` of (level, type, size text, shared_cpu_list)."""
    for i, (level, kind, size, shared) in enumerate(entries):
        d = root / f"index{i}"
        d.mkdir()
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
        if shared is not None:
            (d / "shared_cpu_list").write_text(f"{shared}\n")
    return str(root)


def test_sysfs_gives_per_core_caches_with_the_l3_shared(tmp_path):
    root = fake_sysfs(tmp_path, [(1, "Data", "48K", "0"), (1, "Instruction", "32K", "0"),
                                 (2, "Unified", "2048K", "0"), (3, "Unified", "60M", "0-7,16-23")])
    assert cpu.read_sysfs(root) == cpu.Caches(48 * 1024, 2 * 1024**2, 60 * 1024**2 // 16, "sysfs")


def test_missing_or_partial_sysfs_falls_back(tmp_path, monkeypatch):
    assert cpu.read_sysfs(str(tmp_path / "absent")) is None
    assert cpu.read_sysfs(fake_sysfs(tmp_path, [(1, "Data", "garbage", "0"), (2, "Unified", "1M", None)])) is None
    monkeypatch.delenv("MLPBENCH_CACHES", raising=False)
    monkeypatch.setattr(cpu, "read_sysfs", lambda root=cpu.SYSFS: None)
    monkeypatch.setattr(cpu, "read_sysconf", lambda: None)
    cpu.cache_sizes.cache_clear()
    try:
        assert cpu.cache_sizes() == cpu.FALLBACK
    finally:
        cpu.cache_sizes.cache_clear()


def test_this_machine_reports_sane_caches():
    c = cpu.cache_sizes()
    assert 4 * 1024 <= c.l1 <= c.l2 <= 64 * 1024**2 and c.l3 >= 0
    assert cpu.vector_bytes() in (16, 32, 64) or cpu.vector_bytes() > 0


def test_the_env_override_and_its_errors(monkeypatch):
    assert cpu.from_env("32K,1M,0") == cpu.Caches(32 * 1024, 1024**2, 0, "env")
    for bad in ("32K,1M", "32K,x,1M", "32K,-1,2M"):
        with pytest.raises(ValueError, match="MLPBENCH_CACHES|cache size"):
            cpu.from_env(bad)
    monkeypatch.setenv("MLPBENCH_VECTOR_BYTES", "wide")
    cpu.vector_bytes.cache_clear()
    try:
        with pytest.raises(ValueError, match="MLPBENCH_VECTOR_BYTES"):
            cpu.vector_bytes()
    finally:
        cpu.vector_bytes.cache_clear()


def test_vector_width_from_the_flags(tmp_path):
    path = tmp_path / "cpuinfo"
    for flags, expected in (("fpu sse2 avx avx2 fma avx512f", 64), ("fpu sse2 avx avx2 fma", 32),
                            ("fp asimd evtstrm", 16), ("fpu", None)):
        path.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert cpu.read_vector_bytes(str(path)) == expected
    assert cpu.read_vector_bytes(str(tmp_path / "absent")) is None


ZEN4_VM = cpu.Caches(32 * 1024, 1024**2, 16 * 1024**2, "test")  # the CPU the coefficients were measured on


def test_the_step_block_rule():
    row = 2048 + 1 + 2 * 2048  # [32, 2048, 1]: workspace elements per row
    f64 = rules.step_block_rows(row, 8, 16384, caches=ZEN4_VM)
    assert 80 <= f64 <= 95  # ~2**19 float64 elements of workspace, the measured best there
    assert rules.step_block_rows(row, 4, 16384, caches=ZEN4_VM) in (2 * f64, 2 * f64 + 1)  # same bytes
    laptop = cpu.Caches(48 * 1024, 512 * 1024, 0, "test")  # no L3: at least the L2
    assert rules.step_block_rows(row, 8, 16384, caches=laptop) == 512 * 1024 // (row * 8)
    server = cpu.Caches(48 * 1024, 2 * 1024**2, 4 * 1024**2, "test")  # 2 MiB L2 + 4 MiB of L3: the L2 wins
    assert rules.step_block_rows(row, 8, 16384, caches=server) == 2 * 1024**2 // (row * 8)
    assert rules.step_block_rows(10**6, 8, 16384, caches=laptop) == rules.MIN_BLOCK_ROWS  # huge rows
    assert rules.step_block_rows(row, 8, 50, caches=ZEN4_VM) == 50  # all rows when they fit
    assert rules.step_block_rows(row, 8, 100, n_threads=2, caches=ZEN4_VM) == 50  # a block per thread


def test_the_thread_thresholds_scale_with_the_vector_width():
    assert rules.step_parallel_min_macs(64) == 2**26 and rules.pin_min_macs(64) == 2**20  # measured on AVX-512
    assert rules.step_parallel_min_macs(16) == 2**24 and rules.pin_min_macs(32) == 2**19  # SSE / NEON, AVX2


def test_the_l1_tile_rule():
    assert rules.l1_tile(8, ZEN4_VM, 64) == 512 and rules.l1_tile(4, ZEN4_VM, 64) == 1024  # measured best there
    assert rules.l1_tile(8, cpu.Caches(48 * 1024, 2**20, 0, "test"), 64) == 768  # a multiple of 8 lanes
    assert rules.l1_tile(8, cpu.Caches(256, 2**20, 0, "test"), 64) == 8  # at least one vector
