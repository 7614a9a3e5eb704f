"""Wilson intervals, exact binomial and Poisson-binomial tests against scipy/statsmodels and brute force."""

import itertools

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

from volprobe.stats.binomial import (binomial_test, chance_levels, chance_test, poisson_binomial,
                                     poisson_binomial_from_levels, wilson_interval)


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 130), (1, 1000)])
def test_wilson_matches_statsmodels(k, n):
    lo, hi = wilson_interval(k, n, 0.05)
    ref = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert np.allclose([lo, hi], ref, rtol=1e-12, atol=1e-15)


def test_wilson_empty_is_nan_and_vectorised():
    lo, hi = wilson_interval(np.array([0, 5]), np.array([0, 20]), 0.1)
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    assert np.allclose([lo[1], hi[1]], proportion_confint(5, 20, alpha=0.1, method="wilson"))


@pytest.mark.parametrize("n,p", [(10, 0.5), (37, 0.25), (200, 1 / 3), (1000, 0.2), (5000, 0.5)])
@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
def test_single_level_equals_scipy_binomtest(n, p, alternative):
    dist = poisson_binomial(np.full(n, p))
    for k in sorted({0, 1, int(n * p) - 3, int(n * p), int(n * p) + 7, n // 2, n - 1, n}):
        k = min(max(k, 0), n)
        expected = stats.binomtest(k, n, p, alternative=alternative).pvalue
        assert np.isclose(dist.pvalue(k, alternative), expected, rtol=1e-9, atol=1e-300), (k, n, p)


def _brute_force_pmf(probs):
    n = len(probs)
    pmf = np.zeros(n + 1)
    for outcome in itertools.product([0, 1], repeat=n):
        o = np.array(outcome)
        pmf[o.sum()] += np.prod(np.where(o == 1, probs, 1 - probs))
    return pmf


@pytest.mark.parametrize("probs", [
    [0.5, 0.25, 0.25, 1 / 3, 0.5, 0.2, 0.2, 0.2],
    [0.5, 0.5, 0.25, 0.25, 0.25, 0.25, 1 / 3, 1 / 3, 1 / 3, 0.2, 0.2, 0.5],
    [0.9, 0.1, 0.5],
    [1.0, 0.5, 0.0, 0.25],  # certain outcomes shift the support
])
def test_poisson_binomial_pmf_matches_brute_force(probs):
    probs = np.array(probs)
    dist = poisson_binomial(probs)
    brute = _brute_force_pmf(probs)
    got = np.array([dist.prob(k) for k in range(len(probs) + 1)])
    assert np.allclose(got, brute, rtol=1e-12, atol=1e-15)
    for k in range(len(probs) + 1):
        assert np.isclose(dist.pvalue(k, "greater"), brute[k:].sum(), rtol=1e-12, atol=1e-15)
        assert np.isclose(dist.pvalue(k, "less"), brute[: k + 1].sum(), rtol=1e-12, atol=1e-15)
        two = brute[brute <= brute[k] * (1 + 1e-7)].sum()
        assert np.isclose(dist.pvalue(k, "two-sided"), min(two, 1.0), rtol=1e-12, atol=1e-15)


def test_poisson_binomial_tail_keeps_relative_accuracy():
    # 400 items at 1/2 and 400 at 1/4: P(S = 800) = 0.5**400 * 0.25**400, far below 1e-300 → 0 in doubles;
    # P(S >= 600) is tiny but representable and must not be lost to cancellation.
    dist = poisson_binomial_from_levels([0.25, 0.5], [400, 400])
    p = float(dist.pvalue(600, "greater"))
    tail_terms = [dist.prob(k) for k in range(600, 800)]
    assert 0 < p < 1e-60
    assert np.isclose(p, np.sum(tail_terms), rtol=1e-10)
    assert np.isclose(dist.mean, 400 * 0.25 + 400 * 0.5, rtol=1e-12)


def test_chance_levels_merge_rounding_noise():
    levels, counts = chance_levels([1 / 3, 1 - 2 / 3, 0.5])
    assert len(levels) == 2 and list(counts) == [2, 1]
    with pytest.raises(ValueError, match="NaN"):
        chance_levels([0.5, np.nan])


def test_chance_test_drops_open_items_and_reports_counts():
    correct = np.array([1, 1, 1, 0, 1, 0, 1, 1, 1, 1], dtype=bool)
    chance = np.array([0.5] * 8 + [np.nan, np.nan])
    res = chance_test(correct, chance, alternative="greater")
    assert res.counts == {"n": 8, "correct": 6, "dropped_no_chance": 2}
    assert np.isclose(res.pvalue, stats.binomtest(6, 8, 0.5, alternative="greater").pvalue)
    assert res.test == "exact binomial test vs chance"
    text = str(res)
    assert "greater" in text and "n=8" in text and "p-value" in text


def test_chance_test_mixed_levels_is_poisson_binomial():
    correct = np.r_[np.ones(6, bool), np.zeros(4, bool)]
    chance = np.r_[np.full(5, 0.5), np.full(5, 0.25)]
    res = chance_test(correct, chance, alternative="greater")
    brute = _brute_force_pmf(chance)
    assert res.test == "exact Poisson-binomial test vs chance"
    assert np.isclose(res.pvalue, brute[6:].sum(), rtol=1e-12)


def test_binomial_test_against_fixed_rate_matches_scipy():
    res = binomial_test(70, 100, 0.6, alternative="greater")
    assert np.isclose(res.pvalue, stats.binomtest(70, 100, 0.6, alternative="greater").pvalue, rtol=1e-12)
    assert res.alternative == "greater" and res.estimate == 0.7
