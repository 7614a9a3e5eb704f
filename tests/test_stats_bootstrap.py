"""Cluster bootstrap and cluster sign-flip tests: equal to naive loops, deterministic, exact when enumerable."""

import itertools

import numpy as np
import pytest

from volprobe.stats import bootstrap as bs
from volprobe.stats.bootstrap import (bootstrap_ratio, cluster_bootstrap_difference, cluster_weights,
                                      paired_permutation_test, sign_flip_pvalues)


def _clustered_pairs(seed=0, k=12, per=4):
    rng = np.random.default_rng(seed)
    clusters = np.repeat(np.arange(k), per)
    u = rng.normal(0, 1, k)[clusters]
    x = (rng.random(k * per) < 1 / (1 + np.exp(-(1 + u)))).astype(float)
    y = (rng.random(k * per) < 1 / (1 + np.exp(-(u - 0.5)))).astype(float)
    return x, y, clusters


def test_weights_are_multinomial_counts_of_cluster_draws():
    chunks = list(cluster_weights(7, 50, seed=3))
    w = np.concatenate(chunks)
    assert w.shape == (50, 7) and (w.sum(axis=1) == 7).all() and (w >= 0).all()
    rng = np.random.default_rng(3)  # the same stream, drawn one resample at a time
    naive = np.stack([np.bincount(rng.integers(0, 7, 7), minlength=7) for _ in range(50)])
    assert (w == naive).all()


def test_bootstrap_equals_a_naive_loop_over_resamples(monkeypatch):
    monkeypatch.setattr(bs, "MAX_CELLS", 5 * 12)  # force several chunks
    x, y, clusters = _clustered_pairs()
    res = cluster_bootstrap_difference(x, y, clusters, n_boot=300, seed=11, alpha=0.1)
    rng = np.random.default_rng(11)
    draws = []
    for _ in range(300):  # resample whole clusters, recompute the mean difference over their items
        picked = rng.integers(0, 12, 12)
        items = np.concatenate([np.flatnonzero(clusters == c) for c in picked])
        draws.append(np.mean(y[items] - x[items]))
    lo, hi = np.quantile(draws, [0.05, 0.95])
    assert np.isclose(res.estimate, np.mean(y - x))
    assert np.allclose(res.ci, (lo, hi), rtol=1e-12, atol=1e-15)
    assert res.counts == {"n": 48, "clusters": 12, "resamples": 300}


def test_bootstrap_is_deterministic_and_seed_dependent():
    x, y, clusters = _clustered_pairs(1)
    y = y + np.random.default_rng(9).normal(0, 0.1, y.size)  # continuous: quantiles move with the seed
    a = cluster_bootstrap_difference(x, y, clusters, n_boot=500, seed=0)
    b = cluster_bootstrap_difference(x, y, clusters, n_boot=500, seed=0)
    c = cluster_bootstrap_difference(x, y, clusters, n_boot=500, seed=1)
    assert a.ci == b.ci and a.ci != c.ci


def test_ratio_bootstrap_many_columns_at_once_equals_one_at_a_time():
    rng = np.random.default_rng(2)
    num = rng.integers(-3, 4, size=(20, 5)).astype(float)
    den = rng.integers(1, 6, size=(20, 5)).astype(float)
    together = bootstrap_ratio(num, den, n_boot=400, seed=[4, 2])
    for j in range(5):
        alone = bootstrap_ratio(num[:, j], den[:, j], n_boot=400, seed=[4, 2])
        assert np.isclose(together.low[j], alone.low[0]) and np.isclose(together.high[j], alone.high[0])


def test_ratio_bootstrap_with_undefined_resamples():
    num = np.array([[1.0], [0.0], [0.0]])
    den = np.array([[1.0], [0.0], [0.0]])  # only one cluster has items: many resamples draw none
    boot = bootstrap_ratio(num, den, n_boot=200, seed=0)
    assert np.isnan(boot.draws).any() and boot.low[0] == boot.high[0] == 1.0


def _brute_sign_flip(d):
    total = abs(d.sum())
    hits = [abs(np.dot(s, d)) >= total - 1e-9 for s in itertools.product([-1, 1], repeat=len(d))]
    return np.mean(hits)


def test_sign_flip_enumerates_small_cluster_counts_exactly():
    rng = np.random.default_rng(0)
    d = rng.normal(0.4, 1, size=(10, 3))
    p = sign_flip_pvalues(d, n_perm=5000)
    for j in range(3):
        assert p[j] == pytest.approx(_brute_sign_flip(d[:, j]), abs=1e-12)


def test_sign_flip_monte_carlo_close_to_exact():
    rng = np.random.default_rng(1)
    d = rng.normal(0.25, 1, size=(16, 1))
    exact = sign_flip_pvalues(d, n_perm=2 ** 16)[0]
    mc = sign_flip_pvalues(d, n_perm=4000, seed=3)[0]
    assert abs(mc - exact) < 4 * np.sqrt(exact * (1 - exact) / 4000) + 1e-3


def test_paired_permutation_result_object():
    x, y, clusters = _clustered_pairs(2)
    res = paired_permutation_test(x + 0.01, y, clusters, n_perm=5000, seed=0, n_boot=300)
    assert res.counts["clusters"] == 12 and res.counts["permutations"] == 4096  # 2**12 enumerated
    assert res.alternative == "two-sided" and 0 <= res.pvalue <= 1
    assert "sign-flip" in str(res)
    with pytest.raises(ValueError, match="clusters"):
        paired_permutation_test(x, y, clusters[:-1])


def test_sign_flip_normal_approximation_for_many_clusters_agrees_with_monte_carlo(monkeypatch):
    rng = np.random.default_rng(4)
    d = rng.gamma(2, 1, size=(300, 4)) * rng.choice([-1, 1], size=(300, 4)) + [0, 0.05, 0.1, 0.2]
    assert bs.sign_flip_method(300, 10000) == "normal"
    normal = sign_flip_pvalues(d)
    tiny = sign_flip_pvalues(np.abs(d[:, :1]))  # every cluster favours one side: far below 1/n_perm
    assert 0 <= tiny[0] < 1e-10
    monkeypatch.setattr(bs, "NORMAL_FROM", 10 ** 9)
    mc = sign_flip_pvalues(d, n_perm=20000, seed=1)
    assert np.allclose(normal, mc, atol=0.015)
