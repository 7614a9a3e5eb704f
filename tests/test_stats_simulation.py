"""Simulations with a known truth (fixed seeds, vectorised over replicates): the report's tests hold their
level under clustered nulls (questions on one patient correlated), its interval covers the true change,
and it still finds real effects. The designs are :mod:`volprobe.stats.simulation`'s; the exhaustive
version, with more replicates and designs, is ``benchmarks/stats_simulation.py``."""

import numpy as np
import pytest

from volprobe.stats.binomial import poisson_binomial
from volprobe.stats.bootstrap import cluster_sums, sign_flip_pvalues
from volprobe.stats.clustered import MIN_CLUSTERS
from volprobe.stats.paired import mcnemar_pvalues
from volprobe.stats.sensitivity import answer_sensitivity
from volprobe.stats.simulation import (baseline_null_pairs, cluster_rejections, coverage, drop_pairs, mc_bound,
                                       mcnemar_rejections, null_pairs, one_sample_baseline_rejections, verdict_claims)

N_NULL = 4000  # simulated null data sets per test: 3 Monte-Carlo SE = 1.0 point, so 5% is told from 8%
ALPHA = 0.05
MC_SLACK = 3 * np.sqrt(ALPHA * (1 - ALPHA) / N_NULL)  # three Monte-Carlo standard errors
DESIGNS = [(10, 40), (20, 20), (60, 5)]  # patients × items per patient


@pytest.fixture(scope="module", params=[(k, m, sizes) for k, m in DESIGNS for sizes in ("equal", "varying")],
                ids=lambda p: f"{p[0]}x{p[1]}-{p[2]}")
def null_data(request):
    k, m, sizes = request.param
    return k, m, null_pairs(np.random.default_rng([k, m, len(sizes)]), N_NULL, k, m, sizes=sizes)


def test_the_cluster_robust_test_holds_its_level_under_clustered_nulls(null_data):
    k, m, data = null_data
    for alternative in ("two-sided", "greater", "less"):
        rate = cluster_rejections(data, ALPHA, alternative).mean()
        assert 0.03 <= rate <= ALPHA + MC_SLACK, (alternative, rate)  # at its level, and not blind
    item_level = mcnemar_rejections(data, ALPHA).mean()
    if m >= 20:  # the data are clustered enough to break a test that treats items as independent
        assert item_level > 0.15, item_level


def test_the_verdict_rule_as_a_whole_claims_no_effect_more_than_alpha(null_data):
    """With the control changing nothing on average, the report claims "uses the volume" or "does better
    without the volume" (its rule applied to its tests) in at most 5% of data sets."""
    _, _, data = null_data
    rate = verdict_claims(data, ALPHA).mean()
    assert rate <= ALPHA + MC_SLACK, rate


@pytest.mark.parametrize("clusters,items", DESIGNS)
def test_the_blind_baseline_comparison_holds_its_level(clusters, items):
    """A model no better than the blind baseline on the same items (x: baseline, y: model; 20 points better
    or worse per patient) is declared better at most 5% of the time (one-sided); the one-sample test against
    the baseline's observed accuracy, which volprobe used before, is far above that."""
    data = baseline_null_pairs(np.random.default_rng([clusters, items, 9]), N_NULL, clusters, items)
    rate = cluster_rejections(data, ALPHA, "greater").mean()
    assert rate <= ALPHA + MC_SLACK, rate
    old = one_sample_baseline_rejections(data, ALPHA).mean()
    assert old > 0.08, old


@pytest.mark.parametrize("clusters", [10, 15, 30, 60])
def test_the_interval_covers_the_true_change(clusters):
    data = drop_pairs(np.random.default_rng(clusters), N_NULL, clusters, 20, sizes="varying")
    covered, given = coverage(data, ALPHA)
    assert given == 1.0
    assert 0.93 <= covered <= 0.97, covered


def test_below_min_clusters_there_is_no_interval_and_the_exact_test_holds_its_level():
    clusters = MIN_CLUSTERS - 2
    covered, given = coverage(drop_pairs(np.random.default_rng(6), 500, clusters, 20), ALPHA)
    assert given == 0.0
    data = null_pairs(np.random.default_rng(7), N_NULL, clusters, 30)
    assert cluster_rejections(data, ALPHA).mean() <= ALPHA + MC_SLACK  # at most 2/64 can be reached here
    assert cluster_rejections(data, ALPHA, "greater").mean() <= ALPHA + MC_SLACK


def test_power_for_a_real_drop():
    """A 9-point drop (90% right, a tenth of that lost) with 20 patients × 20 items is found almost always;
    4.5 points (a twentieth lost) most of the time — a little less often than by McNemar, the price of
    not counting correlated questions as independent evidence."""
    rng = np.random.default_rng(11)
    big = drop_pairs(rng, 2000, 20, 20, right=(9, 1), kept=(9, 1))
    small = drop_pairs(rng, 2000, 20, 20, right=(9, 1), kept=(19, 1))
    assert big.truth == pytest.approx(-0.09) and small.truth == pytest.approx(-0.045)
    assert cluster_rejections(big, ALPHA).mean() > 0.99
    power = cluster_rejections(small, ALPHA).mean()
    assert 0.9 < power <= mcnemar_rejections(small, ALPHA).mean()


def test_answer_sensitivity_holds_its_level_where_a_pooled_comparison_fails():
    """Blind answers that vary exactly on the question texts whose golds vary: the within-text permutation
    test keeps its level although the pooled shares differ; a model following the gold is found."""
    rng = np.random.default_rng(12)
    texts, volumes, datasets = 30, 6, 300
    text = np.repeat(np.arange(texts), volumes)
    rejected, found = 0, 0
    for i in range(datasets):
        varies = rng.random(texts) < 0.5
        gold = np.where(varies[text], rng.integers(0, 2, text.size), 0)
        noise = rng.integers(0, 2, text.size)
        blind = answer_sensitivity(text, np.arange(text.size), gold, np.where(varies[text], noise, 0), n_perm=99,
                                   seed=i)
        rejected += blind.pvalue <= ALPHA
        assert blind.changed_differ / blind.pairs_differ > blind.changed_agree / blind.pairs_agree  # confounded
        if i < 50:
            follows = answer_sensitivity(text, np.arange(text.size), gold, np.where(rng.random(text.size) < 0.7,
                                                                                     gold, noise), n_perm=99, seed=i)
            found += follows.pvalue <= ALPHA
    assert rejected / datasets <= ALPHA + mc_bound(ALPHA, datasets)
    assert found >= 45


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


def test_cluster_sums_match_a_loop():
    values = np.arange(10.0)
    clusters = np.array([0, 0, 1, 2, 2, 2, 1, 0, 3, 3])
    sums = cluster_sums(values, clusters)
    assert list(sums) == [sum(values[clusters == c]) for c in range(4)]
