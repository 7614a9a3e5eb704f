"""The cluster-robust paired test against independent computations: the one-sample t test on cluster means
(equal clusters), CR2 and Bell–McCaffrey degrees of freedom from their matrix definitions (unequal
clusters), and brute-force enumeration of sign patterns (few clusters)."""

import itertools

import numpy as np
import pytest
from scipy import linalg, stats

from volprobe.errors import InvalidValueError
from volprobe.stats.clustered import MIN_CLUSTERS, cluster_paired, cluster_paired_test, mde_cluster


def _pairs(seed, sizes):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(len(sizes)), sizes)
    u = rng.normal(0, 1, len(sizes))[clusters]
    x = (rng.random(clusters.size) < 1 / (1 + np.exp(-(1 + u)))).astype(float)
    y = (rng.random(clusters.size) < 1 / (1 + np.exp(-(0.4 + u)))).astype(float)
    return x, y, clusters


def test_equal_clusters_give_the_t_test_on_cluster_means():
    x, y, clusters = _pairs(0, [15] * 12)
    res = cluster_paired_test(x, y, clusters)
    means = np.bincount(clusters, weights=y - x) / 15
    ref = stats.ttest_1samp(means, 0.0)
    assert res.pvalue == pytest.approx(ref.pvalue, rel=1e-10)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert res.ci == pytest.approx(tuple(ref.confidence_interval(0.95)), rel=1e-10)
    assert "11.0 df" in res.method and res.counts == {"n": 180, "clusters": 12}
    greater = cluster_paired_test(x, y, clusters, "greater")
    assert greater.pvalue == pytest.approx(stats.ttest_1samp(means, 0.0, alternative="greater").pvalue, rel=1e-10)


def _cr2_by_matrices(d, clusters):
    """CR2 variance and Bell–McCaffrey df of the mean of d, from the definitions (Imbens & Kolesár 2016)."""
    n = d.size
    hat = np.full((n, n), 1.0 / n)  # X = 1: H = X (X'X)^-1 X'
    resid = d - d.mean()
    var, columns = 0.0, []
    for k in np.unique(clusters):
        idx = np.flatnonzero(clusters == k)
        adjust = linalg.fractional_matrix_power(np.eye(idx.size) - hat[np.ix_(idx, idx)], -0.5).real
        var += (np.ones(idx.size) @ adjust @ resid[idx] / n) ** 2
        columns.append((np.eye(n) - hat)[:, idx] @ adjust @ np.ones(idx.size) / n)
    g = np.column_stack(columns)
    eig = np.linalg.eigvalsh(g.T @ g)
    return var, eig.sum() ** 2 / (eig ** 2).sum()


@pytest.mark.parametrize("sizes", [[3, 9, 1, 14, 6, 2, 8, 5, 11, 4], [40, 2, 2, 3, 2, 5, 2, 2, 1]])
def test_unequal_clusters_match_cr2_and_bell_mccaffrey_by_matrices(sizes):
    x, y, clusters = _pairs(1, sizes)
    var, df = _cr2_by_matrices(y - x, clusters)
    r = cluster_paired(np.bincount(clusters, weights=y - x), np.bincount(clusters).astype(float))
    assert r.se[0] ** 2 == pytest.approx(var, rel=1e-9)
    assert r.df[0] == pytest.approx(df, rel=1e-9)
    t = np.mean(y - x) / np.sqrt(var)
    assert r.pvalue[0] == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-9)
    assert r.df[0] < len(sizes) - 1  # unequal clusters have fewer effective degrees of freedom


def test_few_clusters_get_the_exact_sign_flip_test_and_no_interval():
    x, y, clusters = _pairs(2, [10, 7, 12, 9, 11])
    res = cluster_paired_test(x, y, clusters)
    d = np.bincount(clusters, weights=y - x)
    totals = [abs(np.dot(s, d)) for s in itertools.product([-1, 1], repeat=5)]
    assert res.pvalue == pytest.approx(np.mean(np.array(totals) >= abs(d.sum()) - 1e-9))
    assert res.ci is None and res.test == "exact cluster sign-flip test" and "too few" in res.method
    one_sided = cluster_paired(d, np.bincount(clusters).astype(float), alternative="less")
    assert one_sided.pvalue[0] == pytest.approx(np.mean([np.dot(s, d) <= d.sum() + 1e-9
                                                         for s in itertools.product([-1, 1], repeat=5)]))
    assert one_sided.exact[0] and np.isnan(one_sided.ci_low[0]) and MIN_CLUSTERS == 8


def test_comparisons_are_vectorised_and_edge_cases_are_defined():
    x, y, clusters = _pairs(3, [6] * 10)
    num = np.column_stack([np.bincount(clusters, weights=y - x), np.zeros(10), np.zeros(10), np.full(10, -2.0)])
    den = np.column_stack([np.bincount(clusters).astype(float), np.full(10, 6.0), np.zeros(10), np.full(10, 6.0)])
    r = cluster_paired(num, den, alternative=["two-sided", "greater", "two-sided", "two-sided"])
    alone = cluster_paired(num[:, 0], den[:, 0])
    assert r.pvalue[0] == alone.pvalue[0] and r.ci_low[0] == alone.ci_low[0]
    assert r.pvalue[1] == 1.0 and r.estimate[1] == 0.0  # no discordance at all: nothing to test
    assert np.isnan(r.estimate[2]) and np.isnan(r.pvalue[2]) and r.n_clusters[2] == 0  # no paired items
    assert r.pvalue[3] == 0.0 and r.ci_low[3] == r.ci_high[3] == pytest.approx(-1 / 3)  # identical in every cluster
    with pytest.raises(InvalidValueError):
        cluster_paired(num, den, alternative="bigger")
    independent = cluster_paired_test(x, y)  # no clusters: every item its own
    assert independent.counts["clusters"] == x.size


def test_mde_has_the_stated_power_and_is_unreachable_with_few_clusters():
    se, df, level = 0.02, 11.0, 0.05 / 40
    mde = float(mde_cluster(se, df, 12, level))
    crit = stats.t.isf(level / 2, df)
    power = stats.nct.sf(crit, df, mde / se) + stats.nct.cdf(-crit, df, mde / se)
    assert power == pytest.approx(0.8, abs=1e-6)  # the noncentral t, solved exactly
    assert np.isnan(mde_cluster(se, 5.0, 6, 0.01))  # 6 clusters: the sign-flip test bottoms out at 2^-5
    assert not np.isnan(mde_cluster(se, 5.0, 6, 0.05, alternative="greater"))  # one-sided floor 2^-6 < 0.05
