"""``mlpbench compare OLD.json NEW.json`` and its older name ``mlpbench bench --compare OLD NEW``: the same stdout
and the same exit codes, on a real tiny run and on crafted files; a bad option is exit 2 and one line."""

from __future__ import annotations

import json

import pytest

from mlpbench.cli import main
from mlpbench.cli import app
from mlpbench.suite import results as R

SAME = [1.0, 1.02, 0.98, 1.01, 0.99, 1.03, 0.97, 1.0]


def _point(n, samples):
    """A point of the current results schema (``R.SCHEMA``), timed ``samples`` seconds."""
    return {"backend": "numpy", "op": "step", "dtype": "float64", "n_samples": n, "layer_sizes": [4, 8, 1],
            "activation": "relu", "epochs": 1, "batch_size": None, "output": "sigmoid", "case": f"step N={n}",
            "device": "cpu", "min_s": min(samples), "median_s": sorted(samples)[len(samples) // 2], "iqr_s": 0.0,
            "ratio": 1.0, "ratio_ci": [1.0, 1.0], "verdict": "baseline", "first_s": 0.1, "rounds": len(samples),
            "samples_s": samples, "noisy": False, "gflops": 1.0, "pct_peak": 1.0}


def _write(path, points, cpu="x"):
    path.write_text(json.dumps({"schema": R.SCHEMA, "machine": {"cpu": cpu}, "peak": {}, "config": {},
                                "points": [_point(n, s) for n, s in points.items()]}))
    return str(path)


@pytest.fixture
def files(tmp_path):
    """OLD and NEW: point 1 the same, 2 half again as slow, 3 twice as fast, 4 only in NEW; another machine."""
    old = _write(tmp_path / "old.json", {1: SAME, 2: SAME, 3: SAME})
    new = _write(tmp_path / "new.json", {1: [1.01 * x for x in SAME], 2: [1.5 * x for x in SAME],
                                         3: [0.5 * x for x in SAME], 4: SAME}, cpu="y")
    return old, new


def _both(capsys, old, new, *extra):
    """``[(exit code, stdout, stderr)]`` of the subcommand and of the alias, stderr's command name made alike."""
    out = []
    for argv in (["compare", old, new, *extra], ["bench", "--compare", old, new, *extra]):
        rc = main(argv)
        cap = capsys.readouterr()
        out.append((rc, cap.out, cap.err.replace(f"mlpbench {argv[0]}:", "mlpbench COMMAND:")))
    return out


@pytest.mark.parametrize("extra, rc, slower", [
    ([], 0, 1),
    (["--fail-on-regression"], 1, 1),  # point 2 is significantly 50% slower
    (["--fail-on-regression", "--threshold", "0.6"], 0, 0),  # ... but not by more than 60%
    (["--threshold", "0"], 0, 1),  # without --fail-on-regression a regression is reported, never a failure
    (["--fail-on-regression", "--threshold", "0"], 1, 1),
])
def test_the_subcommand_and_the_alias_print_the_same_and_exit_the_same(files, capsys, extra, rc, slower):
    sub, alias = _both(capsys, *files, *extra)
    assert sub == alias
    code, out, err = sub
    assert code == rc and err == ""
    assert ("REGRESSION" in out) == bool(slower) and f"3 points compared; {slower} significantly slower" in out
    assert "note: different machines (x vs y)" in out


def test_a_real_tiny_run_compares_with_itself_and_with_a_slower_copy(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["bench", "--backends", "numpy", "--no-lab", "--batch", "4", "--hidden", "4", "--features", "2",
                 "--op", "forward", "--dtype", "float64", "--min-time", "0", "--max-time", "1", "--repeat", "40",
                 "--passes", "1",
                 "--no-plots", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    run = str(out / "results.json")
    doc = json.loads((out / "results.json").read_text())
    for p in doc["points"]:
        p["samples_s"] = [3 * s for s in p["samples_s"]]
        p["median_s"] *= 3
    slower = tmp_path / "slower.json"
    slower.write_text(json.dumps(doc))
    same, alias = _both(capsys, run, run, "--fail-on-regression")
    assert same == alias and same[0] == 0 and "0 significantly slower" in same[1]
    worse, alias = _both(capsys, run, str(slower), "--fail-on-regression")
    assert worse == alias and worse[0] == 1 and "1 significantly slower" in worse[1]


def _disjoint(tmp_path):
    return _write(tmp_path / "disjoint.json", {99: SAME})


def _not_json(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    return str(tmp_path / "bad.json")


def _missing(tmp_path):
    return str(tmp_path / "missing.json")


@pytest.mark.parametrize("make_new, culprit", [
    (_disjoint, "share no point"), (_not_json, "bad.json"), (_missing, "missing.json"),
])
def test_files_that_cannot_be_compared_are_exit_2_and_the_same_one_line(files, tmp_path, capsys, make_new, culprit):
    sub, alias = _both(capsys, files[0], make_new(tmp_path))
    assert sub == alias
    rc, out, err = sub
    assert rc == 2 and out == "" and err.count("\n") == 1 and culprit in err and "Traceback" not in err


@pytest.mark.parametrize("argv, culprit", [
    (["--threshold", "-1"], "--threshold"),
    (["--threshold", "nan"], "--threshold"),
    (["--threshold", "ten"], "--threshold"),
    (["--threshold"], "--threshold"),
    (["--batch", "1"], "--batch"),  # a bench option: compare does not take it
    (["--passes", "2"], "--passes"),
    (["--bogus"], "--bogus"),
])
def test_a_bad_option_to_compare_is_exit_2_and_one_line_naming_it(files, capsys, argv, culprit):
    assert main(["compare", *files, *argv]) == 2
    cap = capsys.readouterr()
    assert cap.out == "" and cap.err.count("\n") == 1 and culprit in cap.err and "Traceback" not in cap.err


@pytest.mark.parametrize("argv, culprit", [([], "OLD.json"), (["only.json"], "NEW.json"),
                                           (["a.json", "b.json", "c.json"], "c.json")])
def test_compare_takes_exactly_two_files(capsys, argv, culprit):
    assert main(["compare", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and culprit in err


def test_bench_compare_still_refuses_the_sweep_options(files, capsys):
    for opt in (["--batch", "1"], ["--passes", "2"], ["--dtype", "float32"], ["--no-lab"], ["--dry-run"]):
        assert main(["bench", "--compare", *files, *opt]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and opt[0] in err and "--compare" in err


def test_compare_is_a_command_of_its_own_module():
    from mlpbench.cli import compare

    assert app.cmd_compare is compare.cmd_compare
    assert "compare" in app.build_parser().format_help()
