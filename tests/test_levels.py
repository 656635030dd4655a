"""The two levels of variance (``measure/levels.py``) and the sweep's budget (``suite/budget.py``): components
recovered from synthetic two-level data, intervals widened by them, and the follow-up time going to the points
still open, on a fake clock (nothing is timed)."""

import math

import numpy as np
import pytest

from mlpbench.measure import levels
from mlpbench.measure import stats as S
from mlpbench.suite.budget import MIN_SHARE_S, Budget, follow_up


def two_level(rng, points, passes, rounds, sd_within, sd_between):
    """``points`` x ``passes`` x ``rounds`` log ratios: a pass effect N(0, sd_between^2), a round's N(0, sd_within^2)."""
    effect = rng.normal(0, sd_between, (points, passes, 1))
    return effect + rng.normal(0, sd_within, (points, passes, rounds))


@pytest.mark.parametrize("sd_within, sd_between", [(0.02, 0.05), (0.05, 0.01), (0.03, 0.0)])
def test_components_are_recovered_from_two_level_data(sd_within, sd_between):
    rng = np.random.RandomState(21)
    data = two_level(rng, 1, 60, 12, sd_within, sd_between)[0]
    c = levels.components(list(data))
    assert c.passes == 60 and c.rounds == 720
    assert c.within == pytest.approx(sd_within ** 2, rel=0.15)
    assert max(0.0, c.between) == pytest.approx(sd_between ** 2, rel=0.4, abs=0.1 * sd_within ** 2)


@pytest.mark.parametrize("sd_within, sd_between", [(0.02, 0.04), (0.1, 0.045), (0.05, 0.0)])
def test_the_run_pools_the_between_component_over_points_with_two_passes(sd_within, sd_between):
    """A sweep's points have two passes each: one point says little (1 degree of freedom), 300 of them pooled
    recover the between-pass variance, also when the rounds' noise moves a pass median as much as the between
    component does (the second case), and one wild point does not swamp it."""
    rng = np.random.RandomState(22)
    comps = [levels.components(list(p)) for p in two_level(rng, 300, 2, 8, sd_within, sd_between)]
    assert levels.pooled_between(comps) == pytest.approx(sd_between ** 2, rel=0.35, abs=0.15 * sd_within ** 2)
    if not sd_between:
        return
    wild = levels.components([np.zeros(8) + rng.normal(0, 0.02, 8), np.full(8, 5.0) + rng.normal(0, 0.02, 8)])
    assert levels.pooled_between(comps + [wild]) == pytest.approx(levels.pooled_between(comps), rel=0.1)
    assert levels.shrunk(wild, 0.0016) > 10 * 0.0016  # ...but its own interval is widened by its own spread
    assert levels.pooled_between(comps[:1] + [levels.components([np.ones(5)])]) >= 0  # one pass: not counted
    assert levels.pooled_between([]) == 0.0


def test_widen_adds_the_between_variance_on_each_side():
    ci = S.RatioCI(1.0, math.exp(-0.03), math.exp(0.04), 16, 0.99)
    z = S._z(0.99)
    w = levels.widen(ci, 0.02 ** 2, passes=2)
    assert math.log(w.ratio) == 0 and w.n == 16
    assert -math.log(w.lo) == pytest.approx(math.sqrt(0.03 ** 2 + z ** 2 * 0.02 ** 2 / 2))
    assert math.log(w.hi) == pytest.approx(math.sqrt(0.04 ** 2 + z ** 2 * 0.02 ** 2 / 2))
    assert levels.widen(ci, 0.0, 2) == ci and not levels.widen(S.RatioCI(1.0, math.nan, math.nan, 3, math.nan),
                                                              0.1, 2).defined


def test_edge_distance_is_how_far_the_ratio_sits_from_the_edge_to_clear():
    m = 0.05
    assert S.edge_distance(0.5, m, m) == pytest.approx(math.log(2) - math.log1p(m))  # faster: from the band
    assert S.edge_distance(1.3, m, m) == pytest.approx(math.log(1.3) - math.log1p(m))  # slower
    assert S.edge_distance(1.0, m, m) == pytest.approx(math.log1p(m))  # same: from either edge
    assert S.edge_distance(1.05, m, m) == pytest.approx(0.0, abs=1e-15)  # on the edge: nothing decides it
    assert S.edge_distance(1.2, 0.4, m) == 0.0  # inside a band too wide to say "same", outside the floor band
    assert S.edge_distance(1.02, 0.4, m) == pytest.approx(math.log1p(m) - math.log(1.02))
    assert math.isnan(S.edge_distance(math.nan, m, m)) and math.isnan(S.edge_distance(1.0, math.nan, m))


def test_the_forecast_passes_decide_the_point_as_often_as_the_estimate_is_right():
    """A point measured in 3 passes with a pass-level shift: the forecast (``more_passes``) says how many more
    passes of the same size clear its edge; measured that many more, the point is decided in about half the
    seeds or more (the forecast is at the point estimate), and a point on the band edge is never forecast."""
    sd_w, sd_b, rounds, true = 0.03, 0.06, 6, math.log(0.85)
    decided, forecasts = 0, []
    for seed in range(60):
        rng = np.random.RandomState(seed)
        logs = list(true + two_level(rng, 1, 3, rounds, sd_w, sd_b)[0])
        base = np.ones(3 * rounds)
        comp = levels.components(logs)
        ci = levels.widen(S.ratio_ci(np.exp(np.concatenate(logs)), base, 0.99), levels.shrunk(comp, sd_b ** 2), 3)
        if S.verdict(ci, 0.05, 0.05) != "unresolved":
            continue
        r = type("R", (), {"label": "x", "ratio": ci.ratio, "components": comp})()
        extra = levels.more_passes(r, 0.05, 0.05, 0.99, sd_b ** 2)
        assert extra >= 1
        if not math.isfinite(extra):
            continue
        forecasts.append(extra)
        logs += list(true + two_level(rng, 1, int(extra), rounds, sd_w, sd_b)[0])
        comp = levels.components(logs)
        ci = levels.widen(S.ratio_ci(np.exp(np.concatenate(logs)), np.ones(sum(map(len, logs))), 0.99),
                          levels.shrunk(comp, sd_b ** 2), comp.passes)
        decided += S.verdict(ci, 0.05, 0.05) == "faster"
    assert len(forecasts) >= 20 and decided >= 0.45 * len(forecasts), (decided, forecasts)
    on_edge = levels.components([np.full(4, math.log(1.05)) + d for d in (0.0, 0.01, -0.01)])
    r = type("R", (), {"label": "x", "ratio": 1.05, "components": on_edge})()
    assert levels.more_passes(r, 0.05, 0.05, 0.99, 0.001) == math.inf
    assert levels.passes_to_decide(on_edge, 0.0, 0.2, 0.99, 4) == 1  # far from the edge: one pass does


def test_rounds_per_pass_balances_the_levels_by_their_costs():
    # n* = sqrt(c_pass w / (c_round b)): a costly pass, or a small between component, buys longer passes
    assert levels.rounds_per_pass(0.04, 0.01, pass_cost_s=1.0, round_cost_s=0.01) == 20
    assert levels.rounds_per_pass(0.04, 0.01, pass_cost_s=0.01, round_cost_s=0.01) == 2
    assert levels.rounds_per_pass(0.04, 0.01, pass_cost_s=0.0, round_cost_s=0.01, lo=3) == 3
    assert levels.rounds_per_pass(0.04, 0.0001, 1.0, 0.01, hi=50) == 50
    assert levels.rounds_per_pass(0.04, 0.0, 1.0, 0.01, hi=50) == 50  # no between component: one long pass
    assert levels.rounds_per_pass(float("nan"), 0.01, 1.0, 0.01) is None
    # the rule is the optimum: over integer n at a fixed cost, the variance is least near n*
    w, b, cp, cr, cost = 0.04, 0.01, 1.0, 0.01, 100.0
    var = {n: (b + w / n) / (cost / (cp + n * cr)) for n in range(1, 200)}
    assert abs(min(var, key=var.get) - levels.rounds_per_pass(w, b, cp, cr)) <= 1


def test_split_checks_the_pass_sizes():
    assert [g.tolist() for g in levels.split([1, 2, 3, 4, 5], [2, 3])] == [[1, 2], [3, 4, 5]]
    with pytest.raises(ValueError, match="pass sizes"):
        levels.split([1, 2, 3], [2, 2])


def test_two_runs_intervals_cover_each_other_with_the_between_component():
    """Two 'runs' of the same point (different pass effects): with the pooled between component in the interval
    one run's interval holds the other's ratio at least 95 % of the time; without it, far less often."""
    rng = np.random.RandomState(23)
    held = {False: 0, True: 0}
    trials, between = 200, 0.03 ** 2
    for _ in range(trials):
        runs = []
        for _ in range(2):
            logs = two_level(rng, 1, 2, 8, 0.01, 0.03)[0]
            base = np.exp(rng.normal(0, 0.001, 16))
            sub = base * np.exp(logs.ravel())
            runs.append((S.ratio_ci(sub, base), levels.components(list(logs))))
        for wide in (False, True):
            (a, ca), (b, _) = runs
            ci = levels.widen(a, levels.shrunk(ca, between), 2) if wide else a
            held[wide] += ci.lo <= b.ratio <= ci.hi
    assert held[True] >= 0.95 * trials and held[False] < 0.8 * trials, held


# ---------------------------------------------------------------- the budget
def test_shares_water_fill_within_each_cap():
    b = Budget(total_s=3.0, cap_s=2.0)
    for p, spent in {"a": 1.9, "b": 0.5, "c": 0.2, "firm": 0.1}.items():
        b.record(p, spent)
    got = b.shares(["a", "b", "c"])  # "a" can take 0.1 only; the rest is split between b and c
    assert got == pytest.approx({"a": 0.1, "b": 1.45, "c": 1.45})
    b.record("x", 1.99)
    assert "x" not in b.shares(["x"])  # under MIN_SHARE_S of cap left: not worth a pass
    assert b.shares([]) == {}
    with pytest.raises(ValueError, match="total_s"):
        Budget(total_s=float("nan"), cap_s=1.0)


class FakePoint:
    """A point that needs ``need`` seconds of rounds in all before its verdict is firm; a pass of ``seconds``
    runs its 4 minimum rounds of ``round_s`` at least, and stops early once firm."""

    def __init__(self, spent, need, round_s=0.01):
        self.spent, self.need, self.round_s, self.passes = spent, need, round_s, 1

    @property
    def open(self):
        return self.spent < self.need

    def run(self, seconds):
        self.passes += 1
        self.spent += max(4 * self.round_s, min(seconds, max(0.0, self.need - self.spent)))
        return self.spent


def test_follow_ups_give_the_time_firm_points_saved_to_the_open_ones():
    # after the regular passes (each point capped at 1 s): four firm points, two nearly there, one hopeless
    points = {f"firm{i}": FakePoint(0.1, 0.05) for i in range(4)}
    points |= {"close": FakePoint(0.6, 0.8), "closer": FakePoint(0.6, 0.7), "hopeless": FakePoint(0.6, 99.0)}
    b = Budget(total_s=1.0, cap_s=1.0)
    for name, p in points.items():
        b.record(name, p.spent)
    done = follow_up(b, lambda n: points[n].open, lambda n, s, last: points[n].run(s), list(points), rounds=4)
    assert done == 4  # the budget spread over the 4 follow-ups: close and closer firm on the way, hopeless to its cap
    assert not points["close"].open and not points["closer"].open and points["hopeless"].open
    assert all(points[f"firm{i}"].passes == 1 for i in range(4))  # firm points get nothing
    assert points["hopeless"].spent == pytest.approx(1.0)  # its cap, never more
    assert sum(b.used.values()) <= b.total_s and b.left >= 0


def test_the_points_a_forecast_says_the_budget_decides_go_first():
    # one point 0.25 s from firm among four hopeless ones: equal shares (0.5 s over 5 points and 4 passes)
    # never give it enough; with the forecast it is served first, in one pass, and the rest goes to the others
    def setup():
        pts = {"close": FakePoint(0.6, 0.85)} | {f"hopeless{i}": FakePoint(0.6, 99.0) for i in range(4)}
        b = Budget(total_s=0.5, cap_s=1.0)
        for name, p in pts.items():
            b.record(name, p.spent)
        return pts, b

    def forecast(pts):
        return lambda n: (1, pts[n].need - pts[n].spent) if pts[n].need - pts[n].spent < 1 else None

    pts, b = setup()
    follow_up(b, lambda n: pts[n].open, lambda n, s, last: pts[n].run(s), list(pts), rounds=4)
    assert pts["close"].open  # equal shares: 0.025 s a pass each, raised to MIN_SHARE_S, 0.2 s in all
    pts, b = setup()
    follow_up(b, lambda n: pts[n].open, lambda n, s, last: pts[n].run(s), list(pts), rounds=4, need=forecast(pts))
    assert not pts["close"].open and pts["close"].passes == 2  # decided by its first follow-up
    assert sum(b.used.values()) <= b.total_s + 1e-12
    assert all(pts[f"hopeless{i}"].passes > 1 for i in range(4))  # what was left still went to the others


def test_a_forecast_beyond_the_cap_the_budget_or_the_passes_left_is_not_served_first():
    b = Budget(total_s=1.0, cap_s=1.0)
    for p in "abcd":
        b.record(p, 0.5)
    need = {"a": (1, 0.6), "b": (5, 0.2), "c": (1, 0.3), "d": None}.get  # a: over its cap; b: too many passes
    got = b.shares(list("abcd"), passes_left=2, need=need)
    assert got["c"] == pytest.approx(0.3)  # served first: its whole need in its one pass
    assert got["a"] == got["b"] == got["d"] == pytest.approx((0.5 - 0.3) / 3)  # the rest of this pass's pool
    got = Budget(total_s=0.25, cap_s=1.0).shares(["c"], passes_left=2, need=need)
    assert got["c"] == pytest.approx(0.125)  # its need exceeds the budget: an equal share of this pass


def test_follow_ups_stop_when_the_budget_is_spent():
    points = {n: FakePoint(0.0, 50.0) for n in "abcd"}
    b = Budget(total_s=0.4, cap_s=10.0)
    calls = []

    def run(n, s, last):
        calls.append((n, s, last))
        return points[n].run(s)

    done = follow_up(b, lambda n: points[n].open, run, list(points), rounds=5)
    # equal shares of what is left spread over the 5 passes (0.02 each), raised to MIN_SHARE_S (0.05)
    assert calls[:4] == [(n, pytest.approx(MIN_SHARE_S), False) for n in "abcd"]
    assert b.left < MIN_SHARE_S and done == len(calls) // 4
    assert follow_up(Budget(1.0, 1.0), lambda n: False, run, ["a"]) == 0  # nothing open: no pass


def test_only_the_last_follow_up_is_told_it_is_the_last():
    points = {n: FakePoint(0.0, 50.0) for n in "ab"}
    b = Budget(total_s=10.0, cap_s=10.0)
    lasts = []

    def run(n, s, last):
        lasts.append(last)
        return points[n].run(s)

    assert follow_up(b, lambda n: points[n].open, run, list(points), rounds=3) == 3
    assert lasts == [False, False, False, False, True, True]


# ---------------------------------------------------------------- through the sweep (a fake clock: no timing)
def test_the_sweep_gives_follow_up_passes_to_open_points_within_budget_and_cap(tmp_path, monkeypatch):
    from mlpbench.backends import parse_specs, ready
    from mlpbench.suite import cases, sweep

    real = sweep.M.measure

    def on_a_fake_clock(*args, **kw):  # every clock reading 1 ms later: each batch "lasts" 1 ms
        t = [0.0]

        def clock():
            t[0] += 0.001
            return t[0]
        kw.setdefault("clock", clock)  # (the peaks bring their own)
        return real(*args, **kw)

    def never_firm(ci, margin, floor=S.MARGIN_FLOOR, final=True):
        return "unresolved" if final else None

    monkeypatch.setattr(sweep.M, "measure", on_a_fake_clock)
    monkeypatch.setattr(S, "verdict", never_firm)
    monkeypatch.setattr(sweep, "machine_info", lambda backends: {})
    grid = cases.sweep("quick", batch=[2, 8], hidden=[3], features=[4], dtypes=["float64"], ops=["step"], labs=())
    from mlpbench.backends import register_backend, unregister_backend
    from mlpbench.backends.numpy_backend import NumpyBackend

    class Other(NumpyBackend):
        name = "other"

    register_backend("other", Other)
    try:
        backends, _ = ready(parse_specs("numpy,other"))
    finally:
        unregister_backend("other")
    class NoPeaks:  # the machine's peaks are not this test's business
        def sample(self, dtypes=None):
            pass

        def best(self, device, dtype):
            return None

        def to_dict(self):
            return {}

    kw = {"min_time": 0.0, "max_time": 0.5, "config": {}, "settle_s": 0.0, "peaks": NoPeaks()}
    doc = sweep.run_sweep(grid, backends, tmp_path, budget=0.25, **kw)
    assert doc["status"] == "complete" and doc["config"]["budget_s"] == 0.25
    # two regular passes of 0.15 s each; then follow-ups of MIN_SHARE_S a point (a quarter of the budget,
    # 0.0625 s, is under that floor for two points): two of them, and the 0.05 s left is too little for two
    follow_ups = doc["noise"]["follow_ups"]
    assert follow_ups == 2
    for p in doc["points"]:
        assert len(p["passes"]) == 2 + follow_ups and sum(p["passes"]) == p["rounds"] == len(p["samples_s"])
        assert p["elapsed_s"] <= 0.5 and p["verdict"] in ("baseline", "unresolved")
        # each open verdict carries its forecast: further passes, or None (a ratio of 1 against the identical
        # "other" sits inside the band: "same" is a distance away, so a count, unless the noise swamps it)
        assert p["verdict"] == "baseline" or set(p["to_decide"]) == {"passes"}
        assert p["verdict"] == "unresolved" or "to_decide" not in p
    # no budget: no follow-up
    doc = sweep.run_sweep(grid, backends, tmp_path / "none", budget=0, **kw)
    assert doc["noise"]["follow_ups"] == 0 and all(len(p["passes"]) == 2 for p in doc["points"])


def test_the_summary_says_what_the_open_verdicts_would_take():
    from mlpbench.suite import summary

    def pt(verdict, passes="absent"):
        return {"verdict": verdict, **({} if passes == "absent" else {"to_decide": {"passes": passes}})}

    points = [pt("faster"), pt("baseline"), pt("unresolved", 3), pt("unresolved", 9), pt("unresolved", 1),
              pt("unresolved", None)]
    text = summary.forecast_text(points)
    assert text.startswith("unresolved 4, the forecast: 3 would be decided by 1 to 9 more passes (median 3)")
    assert text.endswith(f"1 sit within noise of a band edge (more than {levels.FORECAST_PASSES} passes)")
    assert summary.forecast_text([pt("unresolved", None)]) == ("unresolved 1, the forecast: 1 sit within noise of a "
                                                               f"band edge (more than {levels.FORECAST_PASSES} passes)")
    assert summary.forecast_text([pt("faster"), pt("unresolved")]) is None  # an older file: no forecast


def test_compare_reads_a_v2_file_against_a_v3_file():
    from mlpbench.suite import results as R

    def doc(schema, scale):
        point = {"backend": "numpy", "op": "step", "dtype": "float64", "n_samples": 2, "layer_sizes": [4, 3, 1],
                 "min_s": scale, "median_s": scale, "iqr_s": 0.0, "ratio": 1.0, "ratio_ci": [1.0, 1.0],
                 "verdict": "baseline", "samples_s": [scale * (1 + 0.01 * i) for i in range(12)], "noisy": False,
                 "first_s": scale, "rounds": 12, "gflops": None, "pct_peak": None, "case": "c"}
        return {"schema": schema, "machine": {}, "peak": {}, "config": {}, "points": [point]}

    old, new = doc(R.SCHEMA_V2, 1.0), doc(R.SCHEMA, 2.0)
    assert R.validate(old) == [] and R.validate(new) == [] and R.SCHEMA == "mlpbench.bench/3"
    (row,) = R.compare(old, new)
    assert row["regression"] and row["ratio"] == pytest.approx(2.0)


def test_median_variance_and_the_chi_square_medians():
    """The constants behind the between component: the variance of a median of n normal values (by simulation)
    and the median of a chi-square over its degrees of freedom (0.455 at 1, towards 1)."""
    rng = np.random.RandomState(23)
    for n in (1, 2, 3, 4, 7, 15, 30, 40):
        draws = np.median(rng.normal(0, 1, (100_000, n)), axis=1)
        assert levels.median_variance(n) == pytest.approx(draws.var(), rel=0.04)
    assert levels.chi2_median_per_df(1) == pytest.approx(0.454936, abs=1e-6)
    for df in (2, 6):
        draws = rng.chisquare(df, 200_000) / df
        assert levels.chi2_median_per_df(df) == pytest.approx(np.median(draws), rel=0.01)


@pytest.mark.parametrize("sd_within, sd_between", [(0.1, 0.1), (0.2, 0.05), (0.1, 0.0)])
def test_pooled_between_holds_for_points_with_more_passes_and_few_rounds(sd_within, sd_between):
    """As a sweep now leaves them: three regular passes of 3-12 rounds, up to four follow-ups of 2 rounds. Before
    each spread was judged against one degree of freedom, and a point with seven passes doubled the estimate."""
    rng = np.random.RandomState(24)
    comps = []
    for _ in range(200):
        sizes = [int(n) for n in rng.randint(3, 13, 3)] + [2] * int(rng.randint(0, 5))
        effects = rng.normal(0, sd_between, len(sizes))
        comps.append(levels.components([e + rng.normal(0, sd_within, n) for e, n in zip(effects, sizes)]))
    assert levels.pooled_between(comps) == pytest.approx(sd_between ** 2, rel=0.3, abs=0.1 * sd_within ** 2)
