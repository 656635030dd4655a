"""mlpbench.measure.stats on samples whose answer is known: intervals, verdicts, Mann-Whitney U, the compare gate."""

import functools
import itertools
import math

import numpy as np
import pytest

from mlpbench.measure import stats as S


def lognormal(rng, n, ratio=1.0, sigma=0.05):
    return ratio * rng.lognormal(0.0, sigma, n)


# ---------------------------------------------------------------- summary, ranks, paired ratio
def test_summary():
    s = S.summary([4.0, 1.0, 3.0, 2.0, 5.0])
    assert s == {"n": 5, "min": 1.0, "median": 3.0, "q25": 2.0, "q75": 4.0, "iqr": 2.0}
    for bad in ([], [1.0, float("nan")], [1.0, -2.0], [0.0]):
        with pytest.raises(ValueError, match="samples"):
            S.summary(bad)


def test_sign_test_rank_matches_the_binomial():
    assert S.sign_test_rank(8, 0.99) == (1, 1 - 2 / 256)
    assert S.sign_test_rank(6, 0.95) == (1, 1 - 2 / 64)
    assert S.sign_test_rank(5, 0.95)[0] == 0  # 2 / 32 > 0.05: no interval from 5 rounds
    assert S.sign_test_rank(7, 0.99)[0] == 0
    for n in range(1, 41):
        k, achieved = S.sign_test_rank(n, 0.9)
        tail = lambda j: sum(math.comb(n, i) for i in range(j + 1)) / 2 ** n  # noqa: E731
        if k:
            assert 2 * tail(k - 1) <= 0.1 < 2 * tail(k) or k == n // 2
            assert achieved == pytest.approx(1 - 2 * tail(k - 1))
        else:
            assert 2 * tail(0) > 0.1
    with pytest.raises(ValueError, match="confidence"):
        S.sign_test_rank(10, 1.0)


def test_sign_test_rank_equals_the_former_exact_sums():
    for n in range(1, 301):
        counts = list(itertools.accumulate(math.comb(n, j) for j in range(n + 1)))
        cdf = [c / 2 ** n for c in counts]  # exact integer sums, each divided once (the former values)
        for confidence in (0.5, 0.9, 0.95, 0.99):
            k = 0
            while k < n // 2 and 2 * cdf[k] <= 1 - confidence:
                k += 1
            got, achieved = S.sign_test_rank(n, confidence)
            assert got == k, (n, confidence)
            if k:
                assert achieved == pytest.approx(1 - 2 * cdf[k - 1], rel=1e-12, abs=1e-15)
            else:
                assert math.isnan(achieved)


def test_ratio_ci_exact_ratio_without_noise():
    base = np.linspace(1.0, 2.0, 12)
    ci = S.ratio_ci(1.5 * base, base, 0.99)
    assert ci.ratio == pytest.approx(1.5) and ci.lo == pytest.approx(1.5) and ci.hi == pytest.approx(1.5)
    assert ci.n == 12 and ci.defined and ci.confidence >= 0.99


def test_ratio_ci_pairs_by_round_so_drift_cancels():
    rng = np.random.RandomState(0)
    drift = np.exp(np.linspace(0, 1.0, 30))  # the machine slows down 2.7x during the run
    base = drift * lognormal(rng, 30, sigma=0.01)
    ci = S.ratio_ci(drift * lognormal(rng, 30, 1.2, 0.01), base, 0.99)
    assert 1.15 < ci.lo <= 1.2 <= ci.hi < 1.25 and ci.hi / ci.lo < 1.05  # the raw times span 2.7x


def test_ratio_ci_too_few_rounds_and_bad_input():
    ci = S.ratio_ci([1.0, 1.1, 1.2], [1.0, 1.0, 1.0], 0.99)
    assert not ci.defined and math.isnan(ci.lo) and ci.ratio == pytest.approx(1.1)
    with pytest.raises(ValueError, match="paired by round"):
        S.ratio_ci([1.0, 2.0], [1.0], 0.99)
    with pytest.raises(ValueError, match="subject"):
        S.ratio_ci([1.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="baseline"):
        S.ratio_ci([1.0, 1.0], [1.0, 0.0])


@pytest.mark.parametrize("n, confidence", [(12, 0.9), (25, 0.99)])
def test_ratio_ci_coverage_on_lognormal_noise(n, confidence):
    rng = np.random.RandomState(n)
    true, trials, hits = 1.3, 800, 0
    achieved = S.sign_test_rank(n, confidence)[1]
    for _ in range(trials):
        ci = S.ratio_ci(lognormal(rng, n, true, 0.1), lognormal(rng, n, 1.0, 0.1), confidence)
        hits += ci.lo <= true <= ci.hi
    se = math.sqrt(achieved * (1 - achieved) / trials)
    assert achieved >= confidence
    assert achieved - 4 * se - 0.005 <= hits / trials <= min(1.0, achieved + 4 * se + 0.005)


def test_ratio_ci_is_deterministic():
    rng = np.random.RandomState(3)
    a, b = lognormal(rng, 20), lognormal(rng, 20)
    assert S.ratio_ci(a, b) == S.ratio_ci(a.copy(), b.copy())


# ---------------------------------------------------------------- margin and verdicts
def ci(ratio, lo, hi):
    return S.RatioCI(ratio, lo, hi, 20, 0.99)


@pytest.mark.parametrize("interval, margin, final, expected", [
    ((1.30, 1.20, 1.40), 0.05, True, "slower"),
    ((1.30, 1.20, 1.40), 0.05, False, "slower"),
    ((0.70, 0.60, 0.80), 0.05, False, "faster"),
    ((1.00, 0.99, 1.01), 0.10, False, "same"),       # wholly inside the band: firm
    ((1.00, 0.95, 1.06), 0.10, False, "same"),
    ((1.00, 0.80, 1.30), 0.10, True, "unresolved"),  # straddles both edges
    ((1.00, 0.80, 1.30), 0.10, False, None),         # not firm: the adaptive loop goes on
    ((1.25, 0.95, 1.60), 0.10, True, "unresolved"),  # straddles the upper edge
    ((1.06, 1.03, 1.15), 0.10, True, "unresolved"),
    ((1.08, 1.03, 1.15), 0.05, True, "unresolved"),  # excludes 1, but not the band
    ((1.08, 1.06, 1.15), 0.05, True, "slower"),      # wholly above the band
    ((1.08, 1.03, 1.15), 0.20, True, "same"),        # wholly inside a wider band
    ((1.00, 0.99, 1.015), 0.01, True, "same"),       # the band is never narrower than the 2 % floor...
    ((1.00, 0.99, 1.03), 0.00, True, "unresolved"),  # ...and no wider either
    ((1.30, 0.50, 3.00), 0.40, True, "unresolved"),
    ((1.00, 0.90, 1.10), 0.40, True, "unresolved"),  # inside a 40 % band: "same" would say little
    ((1.00, 0.99, 1.01), 0.40, True, "same"),        # ...but within the floor it says enough
    ((0.30, 0.20, 0.40), 0.40, True, "faster"),      # beyond even a wide band
    ((0.0799, 0.0345, 0.216), 0.15, True, "faster"),  # the 12x speed-up under a noisy baseline
    ((0.472, 0.44, 0.498), 0.10, True, "faster"),
    ((1.0, float("nan"), float("nan")), 0.05, True, "unresolved"),
    ((1.3, 1.2, 1.4), float("nan"), True, "unresolved"),
])
def test_verdict_rules(interval, margin, final, expected):
    got = S.verdict(ci(*interval), margin, final=final)
    assert got == expected
    assert S.decided(ci(*interval), margin) == (S.verdict(ci(*interval), margin, final=False) is not None)


def test_bias_margin_is_the_systematic_difference_not_the_noise():
    rng = np.random.RandomState(1)
    base = lognormal(rng, 30, sigma=0.001)
    assert S.bias_margin(base * 1.0001, base) == S.MARGIN_FLOOR  # quiet: the floor
    # noise alone, however wide, leaves the band near the floor: the subjects' own intervals carry the noise
    noisy = [S.bias_margin(lognormal(rng, 30, sigma=0.3), lognormal(rng, 30, sigma=0.3)) for _ in range(50)]
    assert np.median(noisy) < 0.15
    # a systematic A/A difference sets it, a preempted sample does not
    aa = lognormal(rng, 12, sigma=0.01)
    assert S.bias_margin(1.15 * aa, base[:12]) == pytest.approx(0.15, abs=0.02)
    hit = aa.copy()
    hit[3] *= 10
    assert S.bias_margin(hit, base[:12]) < 0.05
    assert S.bias_margin([1.0], [1.0]) == S.MARGIN_FLOOR
    with pytest.raises(ValueError, match="floor"):
        S.bias_margin(aa, base[:12], floor=-0.1)


def test_control_verdict():
    assert S.control_verdict(ci(1.0, 0.97, 1.04)) == "same"
    assert S.control_verdict(ci(1.01, 1.005, 1.015)) == "same"  # excludes 1 but within the floor
    assert S.control_verdict(ci(1.10, 1.05, 1.15)) == "slower"
    assert S.control_verdict(ci(0.90, 0.85, 0.95)) == "faster"
    assert S.control_verdict(ci(1.0, float("nan"), float("nan"))) == "unresolved"


def judge(rng, ratio, sigma, n=40, confidence=0.99, floor=0.05):
    base, aa, sub = lognormal(rng, n, 1.0, sigma), lognormal(rng, n, 1.0, sigma), lognormal(rng, n, ratio, sigma)
    margin = S.bias_margin(aa, base, floor)
    return (S.verdict(S.ratio_ci(sub, base, confidence), margin, floor),
            S.control_verdict(S.ratio_ci(aa, base, confidence), floor))


def test_identical_distributions_are_same():
    rng = np.random.RandomState(7)
    got = [judge(rng, 1.0, 0.02) for _ in range(300)]
    verdicts = [v for v, _ in got]
    assert "faster" not in verdicts and "slower" not in verdicts
    assert verdicts.count("same") >= 0.95 * len(got)
    assert sum(c == "same" for _, c in got) >= 0.95 * len(got)  # the A/A control


def test_clear_shift_is_called():
    rng = np.random.RandomState(8)
    assert all(judge(rng, 1.2, 0.05)[0] == "slower" for _ in range(100))
    assert all(judge(rng, 1 / 1.2, 0.05)[0] == "faster" for _ in range(100))


def test_a_huge_effect_under_a_noisy_baseline_is_decided():
    """The issue's numba point: 12x faster, the baseline and its A/A copy noisy (40 % per sample, one round in
    five preempted): the band stays a bias band, so the verdict is ``faster`` however noisy the control."""
    rng = np.random.RandomState(11)
    for _ in range(50):
        n = 16
        base, aa, sub = (lognormal(rng, n, 1.0, 0.4), lognormal(rng, n, 1.0, 0.4), lognormal(rng, n, 1 / 12, 0.4))
        for x in (base, aa, sub):
            x[rng.rand(n) < 0.2] *= 5
        margin = S.bias_margin(aa, base, 0.05)
        assert S.verdict(S.ratio_ci(sub, base), margin, 0.05) == "faster"
        assert S.verdict(S.ratio_ci(1 / sub, 1 / base), margin, 0.05) == "slower"


def twin_verdicts(rng, trials, n, sigma, floor, passes=1, between=0.0, widen_by=None):
    """Verdicts of an identical copy under heavy noise (lognormal ``sigma`` per sample, one round in ten
    preempted 3x), rounds cut into ``passes`` that each shift the copy's ratio by N(0, ``between``) in logs;
    intervals widened by ``widen_by`` (``levels.widen``)."""
    from mlpbench.measure import levels

    sizes = [n // passes] * passes
    shift = np.repeat(rng.normal(0, math.sqrt(between), (trials, passes)), n // passes, axis=1) if between else 0
    base, aa, twin = (np.exp(rng.normal(0, sigma, (trials, n))) for _ in range(3))
    twin = twin * np.exp(shift)
    for x in (base, aa, twin):
        x[rng.rand(trials, n) < 0.1] *= 3
    out = []
    for b, a, t in zip(base, aa, twin):
        ci = S.ratio_ci(t, b)
        if widen_by is not None:
            ci = levels.widen(ci, widen_by, len(sizes))
        out.append(S.verdict(ci, S.bias_margin(a, b, floor), floor))
    return out


def test_an_identical_copy_is_never_decided_beyond_the_confidence_level():
    """Over 1500 seeds of heavy noise, an identical copy is called faster or slower at most as often as the
    99 % level allows (1 %, plus binomial slack), whatever the A/A control reads: the band contains 1, so a
    decision needs an interval that misses the true ratio."""
    rng = np.random.RandomState(12)
    trials = 1500
    got = twin_verdicts(rng, trials, n=10, sigma=0.3, floor=0.0)  # no floor at all: the worst case
    wrong = sum(v in ("faster", "slower") for v in got)
    assert wrong <= trials * (1 - S.CONFIDENCE) + 3 * math.sqrt(trials * 0.01), wrong
    assert got.count("unresolved") > 0.5 * trials  # the noise is heavy indeed: mostly left open


def test_pass_shifts_need_the_between_component():
    """An identical copy whose whole pass shifts (memory placement: N(0, 0.05^2) in logs per pass, rounds
    quiet): the rounds' interval alone calls it faster or slower far beyond 1 %; widened by the between-pass
    variance (``levels.widen``) it is back within the confidence level."""
    rng = np.random.RandomState(13)
    trials, kw = 600, {"n": 16, "sigma": 0.01, "floor": 0.0, "passes": 2, "between": 0.05 ** 2}
    narrow = twin_verdicts(rng, trials, **kw)
    wide = twin_verdicts(rng, trials, widen_by=0.05 ** 2, **kw)
    wrong = [sum(v in ("faster", "slower") for v in got) for got in (narrow, wide)]
    assert wrong[0] > 0.1 * trials and wrong[1] <= trials * 0.01 + 3 * math.sqrt(trials * 0.01), wrong


# ---------------------------------------------------------------- Mann-Whitney U
def test_mann_whitney_hand_computed():
    # x all below y: U = 0; of the C(5, 2) = 10 equally likely orderings one gives U = 0
    # and one gives U = 6, so the two-sided p is 2 / 10
    assert S.mann_whitney_u([1, 2, 3], [4, 5]) == (0.0, pytest.approx(0.2))
    # U = #(x > y) = 2 (3.3 > 2.9, 4.0 > 2.9); orderings with U <= 2 among C(9, 4) = 126:
    # U = 0: 1, U = 1: 1, U = 2: 2, so p = 2 * 4 / 126
    u, p = S.mann_whitney_u([1.1, 2.3, 0.7, 4.0, 3.3], [5.1, 6.2, 2.9, 7.7])
    assert u == 2.0 and p == pytest.approx(8 / 126)


def test_mann_whitney_ties_and_large_samples():
    # ties count 1/2: x > y pairs 1+... counted by hand: U = 5.5 (5 wins, 1 tie)
    x, y = [1, 2, 2, 3, 3, 3], [2, 3, 4, 4, 5]
    u, p = S.mann_whitney_u(x, y)
    assert u == 5.5
    # normal approximation: mean 15, tie-corrected variance, continuity 0.5
    n_all, ties = 11, np.array([1, 3, 4, 2, 1])
    var = 30 / 12 * (12 - np.sum(ties ** 3 - ties) / (n_all * (n_all - 1)))
    assert p == pytest.approx(math.erfc((15 - 5.5 - 0.5) / math.sqrt(var) / math.sqrt(2)))
    rng = np.random.RandomState(0)
    a, b = rng.rand(30), rng.rand(25) + 0.2
    u_ab, p_ab = S.mann_whitney_u(a, b)
    u_ba, p_ba = S.mann_whitney_u(b, a)
    assert u_ab + u_ba == 30 * 25 and p_ab == pytest.approx(p_ba)
    assert S.mann_whitney_u([1.0, 1.0], [1.0, 1.0]) == (2.0, 1.0)
    with pytest.raises(ValueError):
        S.mann_whitney_u([], [1.0])


def test_mann_whitney_against_scipy():
    scipy_stats = pytest.importorskip("scipy.stats")  # an independent oracle; the hand cases above need none
    rng = np.random.RandomState(5)
    for m, n in [(4, 6), (9, 9), (20, 20), (25, 31)]:
        a, b = rng.rand(m), rng.rand(n) + 0.3
        method = "exact" if m * n <= S.EXACT_MAX_MN else "asymptotic"
        ref = scipy_stats.mannwhitneyu(a, b, method=method)
        assert S.mann_whitney_u(a, b) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))


def u_counts(m, n) -> list:
    """Orderings of m x's and n y's with U = #(x > y) = u, u = 0..m n: the largest value is an x (above all n y's) or a y."""
    @functools.lru_cache(maxsize=None)
    def f(u, m, n):
        if u < 0 or u > m * n:
            return 0
        if m == 0 or n == 0:
            return 1 if u == 0 else 0
        return f(u - n, m - 1, n) + f(u, m, n - 1)
    return [f(u, m, n) for u in range(m * n + 1)]


def former_cdf(counts) -> np.ndarray:
    """The former hand-written ``P(U <= u)``: exact integer sums, each divided once."""
    total = sum(counts)
    return np.array([c / total for c in itertools.accumulate(counts)])


def test_exact_u_distribution_counts_every_ordering():
    for m, n in [(1, 1), (3, 4), (6, 5)]:
        total = math.comb(m + n, m)
        counts = np.diff(np.rint(S._u_cdf(m, n) * total), prepend=0).astype(int).tolist()
        assert sum(counts) == math.comb(m + n, m) and counts == counts[::-1]
        brute = [0] * (m * n + 1)  # every placement of the x's among m + n ranks, counted
        for xs in itertools.combinations(range(m + n), m):
            brute[sum(r - i for i, r in enumerate(xs))] += 1  # the x at rank r has r - i y's below it
        assert counts == brute == u_counts(m, n)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 8, 13, 20])
def test_exact_u_cdf_and_moses_rank_equal_the_former_counted_values(m):
    for n in sorted({1, 2, 3, 7, 15, 20, 31, S.EXACT_MAX_MN // m}):
        if m * n > S.EXACT_MAX_MN:
            continue
        expected = former_cdf(u_counts(m, n))
        assert np.array_equal(S._u_cdf(m, n), expected), (m, n)
        for confidence in (0.99, 0.95, 0.9):
            alpha = 1 - confidence
            k = 0  # the former rank: widen while the U distribution leaves at most alpha / 2 below
            while k < m * n // 2 and expected[k] <= alpha / 2:
                k += 1
            assert S._shift_rank(m, n, confidence, False) == k, (m, n, confidence)


def test_mann_whitney_exact_p_is_the_counted_tail():
    rng = np.random.RandomState(9)
    for m, n in [(1, 1), (2, 7), (5, 5), (8, 11), (20, 20)]:
        cdf = former_cdf(u_counts(m, n))
        for _ in range(5):
            a, b = rng.rand(m), rng.rand(n) + rng.choice([0.0, 0.3])
            u, p = S.mann_whitney_u(a, b)
            assert u == sum(ai > bj for ai in a for bj in b)
            ui = int(u)
            assert p == pytest.approx(min(1.0, 2 * min(cdf[ui], 1 - (cdf[ui - 1] if ui else 0.0))), rel=1e-12)


def test_moses_rank_normal_approximation_beyond_the_exact_sizes():
    for m, n, confidence in [(25, 31, 0.99), (40, 40, 0.95), (21, 20, 0.9)]:
        k = S._shift_rank(m, n, confidence, False)
        z = (m * n / 2 - k) / math.sqrt(m * n * (m + n + 1) / 12)  # the z that puts k just inside the bound
        z_next = (m * n / 2 - k - 1) / math.sqrt(m * n * (m + n + 1) / 12)
        assert math.erf(z_next / math.sqrt(2)) < confidence <= math.erf(z / math.sqrt(2))
    assert S._shift_rank(3, 3, 0.99, True) == 0  # ties, tiny samples: no interval
    for confidence in (0.5, 0.9, 0.95, 0.99, 0.999):
        assert math.erf(S._z(confidence) / math.sqrt(2)) == pytest.approx(confidence, rel=1e-14)


# ---------------------------------------------------------------- compare and the gate
def test_compare_flags_a_significant_slowdown_beyond_the_threshold():
    rng = np.random.RandomState(11)
    old, new = lognormal(rng, 20), lognormal(rng, 20, 1.25)
    c = S.compare(old, new, 0.10)
    assert c.regression and c.flag == "regression" and c.p < 0.01 and c.decidable
    assert c.lo <= 1.25 <= c.hi and c.lo > 1.0
    assert S.compare(new, old, 0.10).flag == "improvement"
    assert S.gate([c], fail_on_regression=True) == 1
    assert S.gate([c], fail_on_regression=False) == 0


def test_compare_does_not_fail_within_the_threshold_or_without_significance():
    rng = np.random.RandomState(12)
    small = S.compare(lognormal(rng, 30, sigma=0.01), lognormal(rng, 30, 1.05, 0.01), 0.10)
    assert small.p < 0.01 and not small.regression  # significant, but 5 % < 10 %
    few = S.compare([1.0, 1.01], [2.0, 2.02], 0.10)  # twice as slow, but 2 vs 2 samples cannot be significant
    assert not few.decidable and not few.regression and few.ratio == pytest.approx(2.0, rel=0.02)
    same = S.compare(lognormal(rng, 20, sigma=0.2), lognormal(rng, 20, sigma=0.2), 0.0)
    assert not same.regression
    assert S.compare([1.0], [5.0]).flag == ""  # a median alone is accepted, never significant
    assert S.gate([small, few, same], fail_on_regression=True) == 0


@pytest.mark.parametrize("threshold", [float("nan"), -0.1, float("inf"), "x", None])
def test_compare_rejects_a_bad_threshold(threshold):
    with pytest.raises(S.CompareError, match="threshold"):
        S.compare([1.0, 1.1], [1.0, 1.1], threshold)


@pytest.mark.parametrize("old, new, culprit", [
    (None, [1.0], "old"), ([1.0], None, "new"), ([], [1.0], "old"), ([1.0], [], "new"),
    ([float("nan")], [1.0], "old"), ([1.0], [1.0, float("nan")], "new"), ([1.0], [-1.0], "new"),
])
def test_compare_rejects_missing_or_nan_medians(old, new, culprit):
    with pytest.raises(S.CompareError, match=f"^{culprit}: .*median"):
        S.compare(old, new)


def test_gate_nothing_comparable_is_an_error():
    with pytest.raises(S.CompareError, match="nothing comparable"):
        S.gate([])
    assert issubclass(S.CompareError, ValueError)  # the CLI's "user fault": exit 2


def test_compare_interval_coverage():
    rng = np.random.RandomState(13)
    hits, trials = 0, 300
    for _ in range(trials):
        c = S.compare(lognormal(rng, 15), lognormal(rng, 12, 1.1), alpha=0.05)
        hits += c.lo <= 1.1 <= c.hi
    assert hits / trials >= 0.92
