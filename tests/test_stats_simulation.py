"""Simulations with a known truth (fixed seeds, vectorised): the tests hold their level under the null,
and the cluster-bootstrap CI covers the true drop about 95% of the time on clustered data."""

import numpy as np

from volprobe.stats.binomial import poisson_binomial
from volprobe.stats.bootstrap import bootstrap_ratio, cluster_sums, sign_flip_pvalues
from volprobe.stats.paired import mcnemar_pvalues

N_NULL = 4000  # simulated null data sets per test
ALPHA = 0.05
MC_SLACK = 3 * np.sqrt(ALPHA * (1 - ALPHA) / N_NULL)  # three Monte-Carlo standard errors


def test_mcnemar_rejects_at_most_alpha_under_the_null():
    rng = np.random.default_rng(20240601)
    n, discordance = 250, 0.2
    d = rng.binomial(n, discordance, N_NULL)  # discordant pairs, split 1:1 under the null
    b = rng.binomial(d, 0.5)
    p = mcnemar_pvalues(b, d - b)
    rate = np.mean(p <= ALPHA)
    assert rate <= ALPHA + MC_SLACK
    assert rate >= 0.02  # exact tests are conservative, not blind
    one_sided = np.mean(mcnemar_pvalues(b, d - b, "greater") <= ALPHA)
    assert one_sided <= ALPHA + MC_SLACK


def test_mcnemar_detects_a_real_drop():
    rng = np.random.default_rng(7)
    d = rng.binomial(250, 0.2, 1000)
    b = rng.binomial(d, 0.8)  # four in five changes are losses
    assert np.mean(mcnemar_pvalues(b, d - b) <= ALPHA) > 0.95


def test_chance_tests_hold_their_level_with_varying_chance():
    rng = np.random.default_rng(99)
    chance = np.repeat([0.5, 1 / 3, 0.25, 0.2], [60, 50, 40, 30])  # 180 items, 2 to 5 options
    k = (rng.random((N_NULL, chance.size)) < chance).sum(axis=1)  # random guessing
    dist = poisson_binomial(chance)
    for alternative in ("two-sided", "greater", "less"):
        rate = np.mean(dist.pvalue(k, alternative) <= ALPHA)
        assert 0.02 <= rate <= ALPHA + MC_SLACK, (alternative, rate)


def test_a_constant_chance_test_on_mixed_items_is_miscalibrated():
    # Why the Poisson-binomial null matters: a binomial null at the mean chance misstates the spread.
    rng = np.random.default_rng(5)
    chance = np.repeat([0.9, 0.1], [100, 100])
    k = (rng.random((N_NULL, chance.size)) < chance).sum(axis=1)
    exact = np.mean(poisson_binomial(chance).pvalue(k) <= ALPHA)
    naive = np.mean(poisson_binomial(np.full(chance.size, chance.mean())).pvalue(k) <= ALPHA)
    assert exact <= ALPHA + MC_SLACK and naive < exact / 3


def test_cluster_sign_flip_holds_its_level():
    rng = np.random.default_rng(3)
    k, datasets = 30, 2000
    u = rng.normal(0, 1, (k, datasets))  # cluster-correlated differences with mean 0
    diffs = u * rng.integers(2, 6, (k, 1)) + rng.normal(0, 0.5, (k, datasets))
    p = sign_flip_pvalues(diffs, n_perm=999, seed=1)
    assert np.mean(p <= ALPHA) <= ALPHA + 3 * np.sqrt(ALPHA * (1 - ALPHA) / datasets)


def _clustered_drop_data(rng, datasets, k, per):
    """Paired correctness (full, control) for `datasets` data sets of k clusters × per items, with
    cluster effects on both the level and the drop (so items of a cluster are correlated)."""
    level = rng.normal(0, 1.5, (datasets, k, 1))
    drop = rng.normal(0, 1.2, (datasets, k, 1))
    full = rng.random((datasets, k, per)) < 1 / (1 + np.exp(-(1.0 + level)))
    ctrl = rng.random((datasets, k, per)) < 1 / (1 + np.exp(-(0.2 + level + drop)))
    return ctrl.astype(float) - full.astype(float)


def _true_drop(seed=12345, clusters=2_000_000):
    rng = np.random.default_rng(seed)
    level, drop = rng.normal(0, 1.5, clusters), rng.normal(0, 1.2, clusters)
    return np.mean(1 / (1 + np.exp(-(0.2 + level + drop))) - 1 / (1 + np.exp(-(1.0 + level))))


def test_cluster_bootstrap_covers_the_true_drop_about_95_percent():
    rng = np.random.default_rng(2024)
    datasets, k, per, chunk = 400, 50, 8, 50
    truth = _true_drop()
    diff = _clustered_drop_data(rng, datasets, k, per)
    cluster_num = diff.sum(axis=2).T  # (clusters × data sets)
    item_num = diff.reshape(datasets, k * per).T  # every item its own cluster
    covered, naive_covered = [], []
    for start in range(0, datasets, chunk):  # independent resamples per chunk of data sets
        cols = slice(start, start + chunk)
        boot = bootstrap_ratio(cluster_num[:, cols], np.full((k, chunk), per), n_boot=1000, seed=[start, 1])
        covered.append((boot.low <= truth) & (truth <= boot.high))
        naive = bootstrap_ratio(item_num[:, cols], np.ones((k * per, chunk)), n_boot=1000, seed=[start, 2])
        naive_covered.append((naive.low <= truth) & (truth <= naive.high))
    coverage, naive_coverage = np.mean(covered), np.mean(naive_covered)
    assert 0.91 <= coverage <= 0.985, coverage  # 400 data sets: Monte-Carlo SE about 1.1 points
    assert naive_coverage < coverage - 0.04, (naive_coverage, coverage)  # ignoring clusters under-covers


def test_cluster_sums_match_a_loop():
    values = np.arange(10.0)
    clusters = np.array([0, 0, 1, 2, 2, 2, 1, 0, 3, 3])
    sums = cluster_sums(values, clusters)
    assert list(sums) == [sum(values[clusters == c]) for c in range(4)]
