"""backend='auto' over a loop of fits (issue 20): the ski-rental rule, convergence across processes, paid first calls,
and a decided fit that touches no file. No timing assertions: the rule is played on a simulated clock."""

import builtins
import dataclasses
import itertools
import time

import numpy as np
import pytest

from mlpbench import MLP, datasets
from mlpbench.auto import choose as auto
from mlpbench.auto import amortize
from mlpbench.auto.amortize import Ledger, Option, losses, uses_of
from mlpbench.backends import register_backend, unregister_backend
from mlpbench.backends.numpy_backend import NumpyBackend


# ---------------------------------------------------------------- the rule on a simulated clock
def play(fits, a, c, load, ledger=None, timed=False):
    """Seconds the rule spends on ``fits`` (epochs per fit): a paid reference at ``a`` s/epoch, a candidate at
    ``c`` s/epoch whose first call costs ``load`` (``timed``: its s/epoch known before it is paid), and the 1-based fit
    at which it paid for the candidate (False: never)."""
    ledger, clock, paid = ledger or Ledger(), 0.0, False

    def options(e):
        return [Option("ref", 0.0, e * a), Option("cand", 0.0 if paid else load, e * c if paid or timed else None)]

    for i, e in enumerate(fits, 1):
        if not paid and "cand" in ledger.due(options(e))[0]:
            clock, paid = clock + load, i
            ledger.paid_for("cand", load, "on the simulated clock")
        clock += e * (min(a, c) if paid else a)
        ledger.record(options(e))
    return clock, paid


def hindsight(fits, a, c, load):
    """The best choice knowing the whole sequence: never pay, or pay before the first fit."""
    total = sum(fits)
    return min(total * a, load + total * min(a, c))


def adversarial_sequences(a, c, load):
    """Stop right after the payment (the adversary's best), one huge fit, many tiny ones, mixed."""
    per_fit = 2000
    # the rule is online (each decision sees only the fits before it), so the fit that pays in a long run of
    # equal fits is the one that pays in every run of that length or longer
    k = play([per_fit] * 10_000, a, c, load)[1] or 10_000
    yield [per_fit] * k  # the sequence ends with the fit that paid
    yield [per_fit] * max(1, k - 1)  # ... or just before it
    yield [10**7]
    yield [1] * 5000
    rng = np.random.default_rng(0)
    yield list(rng.integers(1, 20_000, 300))
    yield [per_fit] * 3 + [10**6] + [1] * 100


@pytest.mark.parametrize("a, c, load", [(35e-6, 0.2e-6, 0.3), (35e-6, 0.0, 0.3), (35e-6, 70e-6, 0.3),
                                        (35e-6, 34e-6, 0.01), (1e-6, 0.5e-6, 2.0), (1e-3, 1e-6, 1e-4)])
@pytest.mark.parametrize("timed", [False, True])
def test_the_ski_rental_rule_is_never_worse_than_twice_the_best_choice_in_hindsight(a, c, load, timed):
    for fits in adversarial_sequences(a, c, load):
        spent, _ = play(fits, a, c, load, timed=timed)
        best = hindsight(fits, a, c, load)
        assert spent <= 2 * best * (1 + 1e-9), (fits[:5], len(fits), spent, best)


def test_the_rule_pays_once_the_time_lost_reaches_the_first_call():
    ledger = Ledger()
    opts = [Option("ref", 0.0, 0.1), Option("cand", 0.35, None)]
    for paid_at in itertools.count(1):
        if ledger.due(opts)[0]:
            break
        ledger.record(opts)
    assert paid_at == 4  # 0.3 s lost after 3 fits; the 4th would make it 0.4 >= 0.35
    assert losses([Option("ref", 0.0, 1.0), Option("same", 0.2, 0.99)], margin=0.02) == {}  # within the noise floor


def test_a_recurring_key_pays_up_front_until_an_up_front_payment_is_left_unamortized():
    opts = [Option("ref", 0.0, 0.06), Option("cand", 0.3, None)]
    assert Ledger(uses_of(None)).due(opts) == ([], False)  # never fitted before: the rule alone
    assert Ledger({"fits": 1, "processes": 1}).due(opts) == (["cand"], True)  # fitted in an earlier process
    assert Ledger({"fits": 2, "processes": 2, "unamortized": 1}).due(opts) == ([], False)  # last one wasted
    ledger = Ledger({"fits": 1, "processes": 1})
    ledger.record(opts)
    assert ledger.due(opts) == ([], False)  # up front is the first fit's decision only


# ---------------------------------------------------------------- through choose, across simulated processes
class Far(NumpyBackend):
    """NumPy's math behind a package this process never imports: its first call is a real 'load' for auto."""

    name = "far"
    requires = ("mlpbench_test_never_imported",)
    loaded = False  # per simulated process: its first construction 'loads' for 50 ms (no fit here saves that)

    @classmethod
    def availability(cls):
        return True, ""

    def __init__(self):
        if not Far.loaded:
            time.sleep(0.05)
            Far.loaded = True


@pytest.fixture
def far(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    register_backend("far", Far)
    new_process(monkeypatch)
    yield
    unregister_backend("far")
    auto.shared_cache.cache_clear()


def new_process(monkeypatch):
    """What a fresh interpreter starts with: nothing paid, nothing known, the file read again."""
    monkeypatch.setattr(auto, "_PAID", {})
    monkeypatch.setattr(auto, "_LATER", {})
    monkeypatch.setattr(auto, "_RAN", set())
    monkeypatch.setattr(auto, "_SEEN", {})
    monkeypatch.setattr(Far, "loaded", False)
    auto.shared_cache.cache_clear()


def fit(epochs=50):
    return auto.choose(4, [2, 4, 1], "float64", epochs=epochs, names=["numpy", "far"])


def test_provisional_decisions_converge_across_processes(far, monkeypatch):
    monkeypatch.setattr(auto, "UNLOADED_PRIOR_S", 1e6)  # 'far' is never worth loading by the rule alone
    first = fit()
    assert first.provisional and [c.label for c in first.ranking] == ["numpy"] and "far" not in auto.paid()
    for _ in range(3):
        assert fit().provisional  # process 1 keeps fitting: still not worth it, nothing is loaded
    entry = auto.shared_cache(auto.cache_path()).get(first_key())
    assert entry["uses"] == {"fits": 1, "processes": 1, "unamortized": 0}  # written on its first fit only
    new_process(monkeypatch)  # process 2: the key recurs, its first fit pays 'far' up front and times it
    second = fit()
    assert not second.provisional and "far" in auto.paid() and "far" in second.seconds_per_epoch
    assert "up front" in second.reason and "1 earlier process" in second.reason
    stored = auto.shared_cache(auto.cache_path()).get(first_key())
    assert "far" in stored["measured"] and not stored["untimed"]
    assert stored["uses"]["processes"] == 2 and stored["uses"]["unamortized"] == 1  # not amortized (yet)
    new_process(monkeypatch)  # process 3: the entry is complete; nothing provisional from its first fit on
    third = fit()
    assert third.cached and not third.provisional and "provisional" not in third.reason


def test_a_process_that_loses_more_than_a_first_call_pays_it(far, monkeypatch):
    # the slowest of 5 readings: a first fit timed during a burst of load elsewhere must not pass for 2.5 fits
    numpy_fit = max(auto.choose(4, [2, 4, 1], "float64", names=["numpy"], refresh=True).seconds_per_epoch["numpy"]
                    for _ in range(5)) * 200
    # far's first call, whichever estimate applies (never measured, or its package counted as imported): worth
    # paying after about 3 fits of 200 epochs
    monkeypatch.setattr(auto, "UNLOADED_PRIOR_S", 2.5 * numpy_fit)
    monkeypatch.setattr(auto, "LOAD_FLOOR_S", 2.5 * numpy_fit)
    real_time, real_losses = auto._time, amortize.losses

    def steady_numpy(d, *args, **kwargs):  # each fit's few rounds of numpy read as calibrated: a burst of load
        real_time(d, *args, **kwargs)      # elsewhere (CI's other core) once made fit 0 alone look worth the load
        if "numpy" in d.seconds_per_epoch:
            d.seconds_per_epoch["numpy"] = numpy_fit / 200

    def steady_losses(options, margin=0.0):  # the rule sees the calibrated numpy fit inside the timing too
        return real_losses([dataclasses.replace(o, fit_s=numpy_fit) if o.label == "numpy" and o.fit_s is not None
                            else o for o in options], margin)

    monkeypatch.setattr(auto, "_time", steady_numpy)
    monkeypatch.setattr(amortize, "losses", steady_losses)
    decisions = [fit(200) for _ in range(30)]
    paid_on = next(i for i, d in enumerate(decisions) if not d.provisional)
    assert paid_on >= 1 and "far" in auto.paid(), [d.reason for d in decisions[:2]]  # one fit alone does not pay it
    assert all(d.provisional for d in decisions[:paid_on]) and not any(d.provisional for d in decisions[paid_on:])
    assert "lost without it" in decisions[paid_on].reason


def first_key():
    return auto.cache_key(4, [2, 4, 1], "float64", "relu") + "|only far,numpy"


def test_a_candidate_already_loaded_counts_as_paid(far, monkeypatch):
    monkeypatch.setattr(auto, "UNLOADED_PRIOR_S", 1e6)
    assert fit().provisional  # alone it would never be loaded ...
    monkeypatch.setattr(auto, "_RAN", {"far"})  # ... but a fit of this process ran it (another key, or directly)
    d = fit()
    assert not d.provisional and "far" in d.seconds_per_epoch and "far" in d.paid
    assert "far" not in d.reason.split(" vs ")[0] or "load" not in d.reason.split(" vs ")[0]  # no load charged
    assert d.total_s("far") == pytest.approx(50 * d.seconds_per_epoch["far"])


def test_a_decided_fit_reads_no_file_and_takes_no_lock(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    auto.shared_cache.cache_clear()
    monkeypatch.setattr(auto, "candidates", lambda names=None, output="sigmoid": ([auto.BackendSpec("numpy")], {}))
    X, y = datasets.load("and")
    model = MLP()
    model.fit(X, y, epochs=30, backend="auto")  # decides, writes the cache
    model.fit(X, y, epochs=30, backend="auto")  # known in this process
    same = MLP()
    same.params = model.params
    expected = same.fit(X, y, epochs=30, backend="numpy")

    def refuse(*a, **k):
        raise AssertionError("the cache was touched on a decided fit")

    real_open = builtins.open

    def refuse_cache_files(path, *a, **k):  # MLP.fit itself reads /proc/meminfo (its memory check)
        if str(path).startswith(str(tmp_path)):
            refuse()
        return real_open(path, *a, **k)

    from mlpbench.auto import cache as auto_cache

    again = MLP()
    with monkeypatch.context() as m:
        m.setattr(builtins, "open", refuse_cache_files)
        for name in ("FileLock", "atomic_write"):
            m.setattr(auto_cache, name, refuse)
        for name in ("get", "put", "_read", "entries"):
            m.setattr(auto_cache.Cache, name, refuse)
        m.setattr(auto, "calibrate", refuse)
        for _ in range(3):
            again.params = model.params
            out = again.fit(X, y, epochs=30, backend="auto")
    assert again.backend_ == "numpy" and "(cached)" in again.backend_reason_
    np.testing.assert_array_equal(out, expected)


def test_old_entries_without_uses_are_still_read(tmp_path, monkeypatch):
    monkeypatch.setenv("MLPBENCH_CACHE_DIR", str(tmp_path / "cache"))
    auto.shared_cache.cache_clear()
    entry = auto.choose(4, [2, 4, 1], "float64", names=["numpy"]).to_json()
    assert "uses" not in entry  # what a version before issue 20 wrote
    from mlpbench.auto.cache import check_entry

    assert check_entry(entry) == entry  # a fresh record of the checked fields
    with pytest.raises(ValueError, match="uses"):
        check_entry(dict(entry, uses={"fits": -1}))
    with pytest.raises(ValueError, match="uses"):
        check_entry(dict(entry, uses={"fits": True}))
