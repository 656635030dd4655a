"""asv: the suite under bench/ passes ``asv check`` and one quick current-environment run saves results."""

import json
import math
import os
import shutil
import subprocess
import sys

import pytest

pytest.importorskip("asv")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def asv_env(tmp_path):
    """A copy of asv.conf.json pointing at this checkout, with every output (and HOME) under tmp_path."""
    with open(os.path.join(ROOT, "asv.conf.json")) as f:
        conf = json.load(f)
    assert conf["benchmark_dir"] == "bench"
    conf.update(repo=ROOT, benchmark_dir=os.path.join(ROOT, "bench"), results_dir=str(tmp_path / "results"),
                html_dir=str(tmp_path / "html"), env_dir=str(tmp_path / "env"))
    (tmp_path / "asv.conf.json").write_text(json.dumps(conf))
    (tmp_path / "home").mkdir()
    env = dict(os.environ, HOME=str(tmp_path / "home"), MLPBENCH_ASV_BACKENDS="numpy,absent-backend")
    asv = [sys.executable, "-m", "asv"] if shutil.which("asv") is None else ["asv"]

    def run(*args, timeout=120):
        proc = subprocess.run([*asv, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    return run, tmp_path


@pytest.mark.slow  # asv's own processes and environment setup: .ci/run runs it (-m slow)
def test_asv_check_and_a_quick_current_environment_run(asv_env):
    run, tmp = asv_env
    out = run("check", "--python=same")
    assert "No problems found" in out
    run("machine", "--yes", "--machine", "ci-test")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    out = run("run", "--python=same", "--quick", "--machine", "ci-test", "--set-commit-hash", head,
              "--bench", r"Ops.time_train_step|Lab.time_lab|Parity.track", "--show-stderr")
    assert "time_train_step" in out and "time_lab_and_5000_epochs" in out
    files = [p for p in (tmp / "results" / "ci-test").iterdir() if p.name != "machine.json"]
    assert len(files) == 1 and files[0].name.startswith(head[:8])
    saved = json.loads(files[0].read_text())
    names = set(saved["results"])
    assert {"bench_mlp.Ops.time_train_step", "bench_mlp.Lab.time_lab_and_5000_epochs",
            "bench_mlp.Parity.track_parity_error"} <= names
    # results follow the params' product: numpy's 18 combinations measured, the unknown backend's skipped (NaN)
    values, params = saved["results"]["bench_mlp.Ops.time_train_step"][:2]
    assert params[0] == ["'numpy'", "'absent-backend'"]
    assert len(values) == 36
    assert all(v > 0 for v in values[:18]) and all(v is None or math.isnan(v) for v in values[18:])
    errors = saved["results"]["bench_mlp.Parity.track_parity_error"][0]
    assert errors[:2] == [0.0, 0.0]  # numpy is the reference, in both dtypes
