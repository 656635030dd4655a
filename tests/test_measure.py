"""The timing engine: fake callables on a fake clock for its mechanics, then the control experiment on the real one.

The real-clock tests assert verdicts, never times.
"""

import math
import subprocess
import sys
import time

import numpy as np
import pytest

from mlpbench.measure import engine as M
from mlpbench.measure import orders as O
from mlpbench.measure import peaks as perf
from mlpbench.measure import stats as S
import lab_code as L


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def timed(clock, label, cost, log=None):
    """A subject whose every call advances ``clock`` by ``cost()`` (or ``cost``) seconds and logs its label."""
    def fn():
        if log is not None:
            log.append(label)
        clock.t += cost() if callable(cost) else cost
        return label
    return M.Subject(label, fn)


def jitter(rng, mean, sigma=0.02):
    return lambda: mean * rng.lognormal(0.0, sigma)


# ---------------------------------------------------------------- mechanics on a fake clock
def test_calibration_batches_calls_to_min_time():
    clock = FakeClock()
    s = timed(clock, "a", 1e-4)
    number = M.calibrate(s, 0.01, clock)
    assert number * 1e-4 >= 0.01 and number <= 10 * 0.01 / 1e-4
    assert M.calibrate(s, 0.0, clock) == 1
    assert M.calibrate(timed(clock, "slow", 0.5), 0.01, clock) == 1
    stalls = iter([0.05] + [1e-4] * 10 ** 5)  # the very first batch stalls: the second one is trusted
    assert M.calibrate(M.Subject("s", lambda: clock.__setattr__("t", clock.t + next(stalls))), 0.01, clock) >= 100


@pytest.mark.parametrize("k", range(1, 8))
def test_round_orders_are_balanced(k):
    rows = O.round_orders(k)
    assert all(sorted(r) == list(range(k)) for r in rows)
    for pos in range(k):  # every subject in every position equally often
        assert sorted(r[pos] for r in rows) == sorted(list(range(k)) * (len(rows) // k))
    pairs = [(r[i], r[i + 1]) for r in rows for i in range(k - 1)]
    counts = {p: pairs.count(p) for p in set(pairs)}
    assert len(counts) == k * (k - 1) and len(set(counts.values())) <= 1  # every neighbour equally often


def test_a_pause_before_every_sample_the_copys_too(monkeypatch):
    clock, log = FakeClock(), []
    monkeypatch.setattr(M.quiet.Settle, "__call__", lambda self: log.append("pause"))

    def subject(label):
        return M.Subject(label, lambda: (log.append(label), clock.__setattr__("t", clock.t + 0.001)))

    M.measure([subject("base"), subject("other")], control=subject("copy"), min_time=0.0, min_rounds=6,
              max_rounds=6, settle_s=0.01, clock=clock)
    rounds = log[3:]  # after the three first calls (no calibration at min_time 0)
    assert rounds == [x for sample in rounds[1::2] for x in ("pause", sample)] and len(rounds) == 36


def test_the_baseline_is_not_favoured_over_an_identical_subject(monkeypatch):
    """Code timed right after the same code, with no pause between, runs 10% faster here (a hot cache, a hot
    pool). Every subject waits the same pause, so an identical copy timed as a subject reads 1, and so does
    the A/A copy. Timed back to back with its copy and no pause, as it was, the baseline was favoured."""
    clock = FakeClock()
    state = {"last": None, "paused": True}

    def identical(label):
        def call():
            hot = not state["paused"] and state["last"] == "numpy-code"
            clock.t += 0.01 * (0.9 if hot else 1.0)
            state["last"], state["paused"] = "numpy-code", False
        return M.Subject(label, call)

    def other():
        def call():
            clock.t += 0.02
            state["last"], state["paused"] = "other", False
        return M.Subject("other", call)

    monkeypatch.setattr(M.quiet.Settle, "__call__", lambda self: state.__setitem__("paused", True))
    m = M.measure([identical("base"), other(), identical("twin")], control=identical("copy"), min_time=0.0,
                  min_rounds=12, max_rounds=12, settle_s=0.01, clock=clock)
    assert m["twin"].ratio == pytest.approx(1.0) and m.noise.ratio == pytest.approx(1.0)
    assert m["other"].ratio == pytest.approx(2.0)


def test_warmup_is_apart_and_samples_are_per_call():
    clock = FakeClock()
    calls = []

    def cost():
        calls.append(1)
        return 2.0 if len(calls) == 1 else 0.001  # the first call compiles

    m = M.measure([M.Subject("jit", timed(clock, "jit", cost).fn)], control=False, min_time=0.01, min_rounds=3,
                  max_rounds=3, clock=clock)
    r = m["jit"]
    assert r.first_s == pytest.approx(2.0)
    assert r.samples == pytest.approx([0.001] * 3) and r.number >= 10
    assert r.min == pytest.approx(0.001) and r.median == pytest.approx(0.001) and r.iqr == pytest.approx(0.0)


def test_rounds_rotate_the_order():
    clock, log = FakeClock(), []
    subjects = [timed(clock, x, 0.02, log) for x in "ABC"]
    m = M.measure(subjects, control=False, min_time=0.01, min_rounds=3, max_rounds=3, warmup=1, clock=clock)
    assert m.rounds == 3
    rounds = log[-9:]  # each sample is one call (0.02 s >= min_time)
    assert rounds == list("ABC") + list("BCA") + list("CAB")


def test_control_is_timed_in_the_rounds_as_a_second_baseline():
    clock, log = FakeClock(), []
    subjects = [timed(clock, "A", 0.02, log), timed(clock, "B", 0.02, log)]
    m = M.measure(subjects, min_time=0.01, min_rounds=3, max_rounds=3, clock=clock)
    assert log[-9:] == ["A", "A", "B", "A", "B", "A", "B", "A", "A"]  # A, its copy, B: a Williams design over three
    assert m.noise.label == "A (A/A)" and len(m.noise.samples) == 3 and math.isnan(m.noise.first_s)
    assert list(m.results) == ["A", "B"]


def test_control_can_be_an_independent_copy():
    clock, log = FakeClock(), []
    copy = timed(clock, "copy of A", 0.03, log)
    m = M.measure([timed(clock, "A", 0.02, log)], control=copy, min_time=0.01, min_rounds=4, max_rounds=4,
                  clock=clock)
    assert log.count("copy of A") == 1 + 2 + 4  # its own first call, calibration, rounds
    assert m.noise.label == "A (A/A)" and m.noise.first_s == pytest.approx(0.03)
    assert m.noise.ratio == pytest.approx(1.5)
    with pytest.raises(TypeError, match="control"):
        M.measure([timed(clock, "A", 0.02)], control="yes", clock=clock)


def test_sync_and_block_end_every_batch():
    clock = FakeClock()
    events = []
    s = M.Subject("a", lambda: clock.__setattr__("t", clock.t + 0.004) or "out", sync=lambda: events.append("sync"),
                  block=lambda out: events.append(("block", out)))
    m = M.measure([s], control=False, min_time=0.01, min_rounds=2, max_rounds=2, warmup=1, clock=clock)
    batches = 1 + 4 + m.rounds  # first call, calibration (two batches of 1 call, then two of 3), the rounds
    assert events.count("sync") == batches and events.count(("block", "out")) == batches
    assert events[:2] == [("block", "out"), "sync"]


def test_block_ready_waits_on_nested_results():
    waited = []

    class Lazy:
        def block_until_ready(self):
            waited.append(self)

    a, b = Lazy(), Lazy()
    M.block_ready((a, [1, {"x": b}]))
    assert set(map(id, waited)) == {id(a), id(b)}


def test_clear_difference_stops_early_with_verdicts():
    noisy = 0
    for seed in range(100):  # the A/A control is i.i.d. noise here: "same" but for the confidence level's share
        clock, rng = FakeClock(), np.random.RandomState(seed)
        subjects = [timed(clock, "base", jitter(rng, 0.01)), timed(clock, "fast", jitter(rng, 0.005)),
                    timed(clock, "slow", jitter(rng, 0.013))]
        m = M.measure(subjects, min_time=0.005, max_rounds=200, max_time=100, clock=clock)
        assert m.stop == "decided" and m.rounds < 200
        assert m["fast"].verdict == "faster" and m["slow"].verdict == "slower" and m["base"].verdict == "baseline"
        assert m["fast"].ratio_ci[0] <= 0.5 / 0.97 and m["fast"].ratio_ci[1] >= 0.5 * 0.97
        assert m.margin >= S.MARGIN_FLOOR
        noisy += m.noise.verdict != "same" or m.noisy
    assert noisy <= 5  # 1 % expected (99 % intervals), stopped early as soon as every verdict is firm


def test_identical_subject_is_same_and_stops_or_runs_to_the_budget():
    clock, rng = FakeClock(), np.random.RandomState(1)
    subjects = [timed(clock, "base", jitter(rng, 0.01, 0.05)), timed(clock, "copy", jitter(rng, 0.01, 0.05))]
    m = M.measure(subjects, min_time=0.005, max_rounds=1000, max_time=100.0, margin_floor=0.05, clock=clock)
    assert m.stop == "decided" and m["copy"].verdict == "same"  # wholly inside the 5 % band: firm
    # no floor: the band is the A/A bias alone, too narrow for this noise: the interval straddles it to the end
    m = M.measure(subjects, min_time=0.005, max_rounds=1000, max_time=1.0, margin_floor=0.0, clock=clock)
    assert m.stop == "max_time" and 0.99 <= m.elapsed_s < 1.1
    assert m["copy"].verdict in ("same", "unresolved")
    m = M.measure(subjects, min_time=0.005, max_rounds=12, max_time=100, clock=clock)
    assert m.stop == "max_rounds" and m.rounds == 12


def test_too_few_rounds_is_unresolved():
    clock, rng = FakeClock(), np.random.RandomState(2)
    subjects = [timed(clock, "base", jitter(rng, 0.01)), timed(clock, "slow", jitter(rng, 0.02))]
    m = M.measure(subjects, min_time=0.005, min_rounds=4, max_rounds=4, clock=clock)
    assert m["slow"].verdict == "unresolved" and m["slow"].ratio == pytest.approx(2.0, rel=0.1)


def test_baseline_by_label_comes_first():
    clock = FakeClock()
    m = M.measure([timed(clock, "x", 0.02), timed(clock, "ref", 0.01)], baseline="ref", min_time=0.005,
                  max_rounds=10, clock=clock)
    assert list(m.results) == ["ref", "x"] and m.baseline == "ref"
    assert m["x"].ratio == pytest.approx(2.0) and m["x"].verdict == "slower"


def test_results_to_dict():
    clock, rng = FakeClock(), np.random.RandomState(3)
    m = M.measure([timed(clock, "a", jitter(rng, 0.01)), timed(clock, "b", jitter(rng, 0.02))], min_time=0.005,
                  max_rounds=20, clock=clock)
    d = m.to_dict()
    assert {"baseline", "rounds", "stop", "margin", "noisy", "noise", "subjects", "confidence"} <= set(d)
    b = d["subjects"][1]
    assert {"min_s", "median_s", "iqr_s", "ratio", "ratio_ci", "verdict", "samples_s", "first_s", "number"} <= set(b)
    assert b["label"] == "b" and b["verdict"] == "slower" and len(b["samples_s"]) == d["rounds"]
    assert d["noise"]["label"] == "a (A/A)" and d["noisy"] is False


def test_noisy_when_the_control_differs():
    r = M.SubjectResult("a (A/A)", [1.0, 1.0], 1, float("nan"), 1.2, (1.1, 1.3), "slower")
    m = M.Measurement("a", {}, r, 0.3, 0.99, 2, 1.0, "max_time")
    assert m.noisy and m.to_dict()["noisy"] is True
    assert not M.Measurement("a", {}, None, 0.02, 0.99, 2, 1.0, "max_time").noisy
    same = M.SubjectResult("a (A/A)", [1.0, 1.0], 1, float("nan"), 1.0, (0.5, 2.0), "same")
    assert M.Measurement("a", {}, same, 0.5, 0.99, 2, 1.0, "max_time").noisy  # a 50 % noise margin
    assert not M.Measurement("a", {}, same, 0.05, 0.99, 2, 1.0, "max_time").noisy


def test_a_failing_subject_is_dropped_or_raises():
    clock = FakeClock()
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] > 6:
            raise RuntimeError("device lost")
        clock.t += 0.02

    subjects = [timed(clock, "base", 0.01), M.Subject("flaky", flaky), timed(clock, "ok", 0.02)]
    m = M.measure(subjects, min_time=0.005, max_rounds=10, on_error="drop", clock=clock)
    assert m.errors == {"flaky": "RuntimeError: device lost"} and list(m.results) == ["base", "ok"]
    assert m["ok"].verdict == "slower"
    calls["n"] = 0
    with pytest.raises(RuntimeError, match="device lost"):
        M.measure(subjects, min_time=0.005, max_rounds=10, clock=clock)

    def broken():
        raise RuntimeError("no baseline")

    with pytest.raises(RuntimeError, match="no baseline"):
        M.measure([M.Subject("base", broken), timed(clock, "ok", 0.01)], on_error="drop", clock=clock)


def test_resume_pools_a_later_pass_without_recalibrating():
    clock, calls = FakeClock(), {"a": 0, "b": 0}

    def subject(label, cost):
        def fn():
            calls[label] += 1
            clock.t += cost
        return M.Subject(label, fn)

    first = M.measure([subject("a", 0.001), subject("b", 0.002)], min_time=0.01, min_rounds=8, max_rounds=8,
                      clock=clock)
    assert first.rounds == 8 and first["b"].ratio == pytest.approx(2.0)
    numbers = {k: first[k].number for k in ("a", "b")}
    calls.update(a=0, b=0)
    # the machine changed: b now costs 3x a; the pooled interval spans both passes
    second = M.measure([subject("a", 0.001), subject("b", 0.003)], min_time=0.01, min_rounds=8, max_rounds=8,
                       clock=clock, resume=first)
    assert second.rounds == 16 and len(second["b"].samples) == 16 and len(second.noise.samples) == 16
    assert second["b"].samples[:8] == first["b"].samples  # the earlier pass's samples, then this pass's
    assert {k: second[k].number for k in ("a", "b")} == numbers
    # no calibration: a warm-up call per subject (a is also its own A/A control), then its samples' calls
    assert calls["b"] == 1 + 8 * numbers["b"] and calls["a"] == 2 + 16 * numbers["a"]
    lo, hi = second["b"].ratio_ci
    # the rounds' order statistics span 2 to 3, widened by the passes' own disagreement (``levels.shrunk``)
    assert lo < 2.0 and hi > 3.0 and second["b"].verdict == "slower"
    assert second["b"].passes == [8, 8] and second.noise.passes == [8, 8]
    assert second["b"].variance["between"] == pytest.approx(math.log(1.5) ** 2 / 2) and second["b"].variance[
        "within"] == 0
    assert second.elapsed_s > first.elapsed_s and second["a"].first_s == first["a"].first_s


def test_resume_keeps_failed_subjects_out_and_checks_its_argument():
    clock = FakeClock()
    first = M.measure([timed(clock, "a", 0.01), M.Subject("bad", lambda: 1 / 0)], min_time=0.0, min_rounds=2,
                      max_rounds=2, on_error="drop", clock=clock)
    assert "bad" in first.errors
    never = M.Subject("bad", lambda: pytest.fail("a subject that failed in an earlier pass ran again"))
    second = M.measure([timed(clock, "a", 0.01), never], min_time=0.0, min_rounds=2, max_rounds=2,
                       on_error="drop", clock=clock, resume=first)
    assert list(second.results) == ["a"] and second.errors == first.errors and len(second["a"].samples) == 4
    with pytest.raises(TypeError, match="resume"):
        M.measure([timed(clock, "a", 0.01)], clock=clock, resume={"a": [1.0]})
    with pytest.raises(ValueError, match="same baseline"):
        M.measure([timed(clock, "z", 0.01), timed(clock, "a", 0.01)], clock=clock, resume=first)


@pytest.mark.parametrize("kw, match", [
    (dict(subjects=[]), "at least one"),
    (dict(subjects=["f"]), "Subject"),
    (dict(dup=True), "unique"),
    (dict(baseline="nope"), "baseline"),
    (dict(min_rounds=0), "min_rounds"),
    (dict(min_rounds=5, max_rounds=4), "max_rounds"),
    (dict(min_time=-1.0), "min_time"),
    (dict(min_time=float("nan")), "min_time"),
    (dict(max_time=0), "max_time"),
    (dict(confidence=1.0), "confidence"),
    (dict(on_error="ignore"), "on_error"),
    (dict(subjects="collide"), "A/A"),
])
def test_bad_arguments(kw, match):
    clock = FakeClock()
    subjects = kw.pop("subjects", [timed(clock, "a", 0.01), timed(clock, "b", 0.01)])
    if subjects == "collide":
        subjects = [timed(clock, "a", 0.01), timed(clock, "a (A/A)", 0.01)]
    if kw.pop("dup", False):
        subjects = [timed(clock, "a", 0.01), timed(clock, "a", 0.01)]
    with pytest.raises((ValueError, TypeError), match=match):
        M.measure(subjects, clock=clock, **kw)


def test_rounds_needed():
    assert M.rounds_needed(0.99) == 8 and M.rounds_needed(0.95) == 6
    assert M.rounds_needed(S.CONFIDENCE) == 8  # the benchmark's confidence, measure's default


def test_importing_the_engine_leaves_scipy_out():
    # a backend="auto" fit imports the engine: SciPy (the statistics' distributions) is imported on first use only
    code = "import sys, mlpbench.measure.engine; print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_statistics_load_before_the_timed_rounds():
    # a process's first judgement imports SciPy: that happens before the rounds, never inside max_time's budget
    code = """if True:
        import sys
        from mlpbench.measure import engine as M
        loaded = []
        ticks = iter(range(10 ** 6))
        m = M.measure([M.Subject("a", lambda: loaded.append("scipy" in sys.modules))], control=False, min_time=0.0,
                      min_rounds=3, max_rounds=5, clock=lambda: next(ticks) * 1e-3)
        timed = len(m["a"].samples) * m["a"].number  # the last calls are the rounds'
        print(loaded[0], all(loaded[-timed:]), len(loaded) > timed)
    """
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "True", "True"]


# ---------------------------------------------------------------- peaks
def test_peak_best_spread_and_flag():
    clock = FakeClock()
    peak = perf.Peak("GFLOP/s")
    assert math.isnan(peak.best) and not peak.flagged
    assert peak.sample(timed(clock, "mm", 0.010), 2.0, rounds=3, clock=clock) == pytest.approx(200.0)
    assert not peak.flagged and peak.spread == 0.0
    peak.sample(timed(clock, "mm", 0.0105), 2.0, rounds=3, clock=clock)  # 5 % slower at the end: fine
    assert peak.best == pytest.approx(200.0) and not peak.flagged
    peak.sample(timed(clock, "mm", 0.020), 2.0, rounds=3, clock=clock)  # half the rate: flagged
    d = peak.to_dict()
    assert d["flagged"] and d["spread"] == pytest.approx(0.5) and d["best"] == pytest.approx(200.0)
    assert len(d["samples"]) == 3 and d["unit"] == "GFLOP/s"


def test_rate_takes_the_best_sample():
    clock = FakeClock()
    costs = iter([0.5] + [0.03, 0.01, 0.02])  # first call, then rounds (min_time 0: no calibration batch)
    s = M.Subject("copy", lambda: clock.__setattr__("t", clock.t + next(costs)))
    assert perf.rate(s, 1.0, rounds=3, min_time=0.0, clock=clock) == pytest.approx(100.0)
    assert next(costs, None) is None  # every cost used: no call more than those


def test_min_time_zero_calibrates_without_timing_a_batch():
    calls = []
    s = M.Subject("f", lambda: calls.append(1))
    assert M.calibrate(s, 0.0) == 1 and calls == []
    assert M.calibrate(s, 1e-9) >= 1 and len(calls) >= 2  # any positive minimum times two batches at least


def test_matmul_size_grows_by_the_cube_root_of_the_missing_time_without_overshooting(monkeypatch):
    import mlpbench.measure.peaks as P

    clock, sizes = [0.0], []

    def make(n):
        sizes.append(n)
        return n, None

    def matmul(n, _):  # a fake machine: a call of size n takes (n / 1000)^3 * 0.05 s, so 1000 meets the target
        clock[0] += (n / 1000) ** 3 * 0.05

    monkeypatch.setattr(P.time, "perf_counter", lambda: clock[0])
    n = P.matmul_size(make, matmul, start=512, limit=8192, target_s=0.05)
    assert n == sizes[-1] and n % 256 == 0
    assert 1000 <= n <= 1280  # the first size over 1000 on the 256 grid, where doubling reached 2048
    assert all(1.25 <= b / a <= 2 for a, b in zip(sizes, sizes[1:]))
    assert P.matmul_size(make, matmul, start=512, limit=768, target_s=0.05) == 768  # the limit caps it


# ---------------------------------------------------------------- the control experiment, real clock
def lab_step():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    y = np.array([[0.0], [0.0], [0.0], [1.0]])
    rng = np.random.RandomState(42)
    W1, b1, W2, b2 = rng.randn(2, 4) * 0.5, np.zeros((1, 4)), rng.randn(4, 1) * 0.5, np.zeros((1, 1))

    def step():
        y_hat, cache = L.forward_pass(X, W1, b1, W2, b2)
        return L.backward_pass(X, y, cache, W2)

    return step


def slowed(fn, extra=0.2):
    """``fn`` plus a busy-wait of ``extra`` times its own duration (so load slows both alike)."""
    def run():
        t0 = time.perf_counter()
        out = fn()
        end = time.perf_counter() + extra * (time.perf_counter() - t0)
        while time.perf_counter() < end:
            pass
        return out
    return run


def test_control_experiment_slowed_is_slower_and_copy_is_never_different():
    step = lab_step()
    subjects = [M.Subject("numpy", step), M.Subject("copy", lab_step()), M.Subject("slowed", slowed(lab_step()))]
    verdicts = []
    for _ in range(3):  # a loaded machine may leave "slowed" unresolved once; it may never flip a verdict
        m = M.measure(subjects, min_time=0.002, max_time=1.5, max_rounds=300)
        verdicts.append((m["copy"].verdict, m["slowed"].verdict))
        assert m["copy"].verdict not in ("faster", "slower"), m.to_dict()
        assert m["slowed"].verdict != "faster", m.to_dict()
        if m["slowed"].verdict == "slower":
            break
    assert verdicts[-1][1] == "slower", verdicts


def test_settle_pauses_before_every_sample(monkeypatch):
    clock, pauses = FakeClock(), []
    monkeypatch.setattr(M.time, "sleep", pauses.append)
    m = M.measure([timed(clock, "a", 0.02), timed(clock, "b", 0.02)], min_time=0.01, min_rounds=3, max_rounds=3,
                  settle_s=0.05, clock=clock)
    assert pauses == [0.05] * (3 * m.rounds)  # before a, its A/A copy and b


def test_scaled_settle_pauses_no_longer_than_the_previous_sample(monkeypatch):
    clock, pauses = FakeClock(), []
    monkeypatch.setattr(M.time, "sleep", pauses.append)
    m = M.measure([timed(clock, "a", 0.02), timed(clock, "b", 0.02)], min_time=0.01, min_rounds=3, max_rounds=3,
                  settle_s=0.05, settle_scaled=True, clock=clock)
    assert len(pauses) == 3 * m.rounds and pauses[0] == 0.05  # nothing measured yet: the full pause
    assert all(0 < p <= 0.05 for p in pauses) and max(pauses[1:]) < 0.05  # then at most the 0.02 s sample
