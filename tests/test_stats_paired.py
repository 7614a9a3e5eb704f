"""Exact McNemar, tracking test, Cochran's Q and multiple-comparison adjustment against statsmodels."""

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.contingency_tables import cochrans_q, mcnemar
from statsmodels.stats.multitest import multipletests

from volprobe.stats.multiple import adjust_pvalues
from volprobe.stats.paired import (cochrans_q_test, mcnemar_from_counts, mcnemar_pvalues, mcnemar_test,
                                   tracking_counts, tracking_test)

TABLES = [  # [[both right, right only under A], [right only under B, both wrong]]
    [[101, 121], [59, 33]],  # the statsmodels documentation example
    [[10, 0], [0, 5]],
    [[3, 7], [1, 9]],
    [[40, 25], [25, 10]],
    [[0, 1], [12, 0]],
    [[500, 31], [12, 200]],
]


@pytest.mark.parametrize("table", TABLES)
def test_mcnemar_matches_statsmodels_exact(table):
    expected = mcnemar(np.array(table), exact=True).pvalue
    b, c = table[0][1], table[1][0]
    assert np.isclose(mcnemar_from_counts(b, c).pvalue, expected, rtol=1e-12)
    assert np.isclose(mcnemar_pvalues(b, c), expected, rtol=1e-12)


def test_mcnemar_vectorised_equals_scalar_calls():
    b = np.array([t[0][1] for t in TABLES])
    c = np.array([t[1][0] for t in TABLES])
    expected = [mcnemar(np.array(t), exact=True).pvalue for t in TABLES]
    assert np.allclose(mcnemar_pvalues(b, c), expected, rtol=1e-12)


def test_mcnemar_one_sided_is_binomial_on_discordant_pairs():
    for b, c in [(12, 3), (3, 12), (7, 7)]:
        assert np.isclose(mcnemar_pvalues(b, c, "greater"), stats.binomtest(b, b + c, 0.5, "greater").pvalue)
        assert np.isclose(mcnemar_pvalues(b, c, "less"), stats.binomtest(b, b + c, 0.5, "less").pvalue)


def test_mcnemar_from_paired_arrays_counts_and_str():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0], dtype=bool)
    b = np.array([1, 0, 0, 0, 1, 0, 1, 0], dtype=bool)
    res = mcnemar_test(a, b)
    assert res.counts == {"n": 8, "b_lost": 3, "c_gained": 1}
    assert np.isclose(res.estimate, (1 - 3) / 8)
    assert "b_lost=3" in str(res) and "exact McNemar" in str(res)
    with pytest.raises(ValueError, match="length"):
        mcnemar_test(a, b[:-1])


def test_no_discordant_pairs_gives_p_one():
    assert mcnemar_pvalues(0, 0) == 1.0
    assert mcnemar_pvalues(0, 0, "greater") == 1.0


def test_tracking_test_counts_only_changed_items_and_compares_with_the_original_volume():
    gold_orig = np.array(["left", "left", "right", "right", "left", "above"])
    gold_cf = np.array(["right", "right", "left", "left", "right", "above"])  # last item unchanged
    ref = np.array(["left", "right", "right", "right", "left", "above"])  # answers to the original volume
    cf = np.array(["right", "right", "left", None, "left", "above"])  # answers to the mirrored volume
    k = tracking_counts(ref, cf, gold_cf, gold_orig)
    assert k["n_changed"] == 5 and k["n_unchanged"] == 1
    assert k["tracking"] == 3  # items 0, 1, 2 answered with the transformed gold
    assert k["kept_original"] == 1  # item 4
    assert k["ref_matches_transformed"] == 1  # item 1 was already 'right' with the original volume
    assert (k["followed"], k["against"]) == (2, 0)
    res = tracking_test(ref, cf, gold_cf, gold_orig)
    assert res.alternative == "greater"
    assert np.isclose(res.pvalue, stats.binomtest(2, 2, 0.5, "greater").pvalue)
    assert np.isclose(res.estimate, 3 / 5)


def test_tracking_of_an_image_ignoring_model_is_not_significant():
    rng = np.random.default_rng(0)
    n = 400
    gold_orig = rng.choice(["left", "right"], n)
    gold_cf = np.where(gold_orig == "left", "right", "left")
    answers = rng.choice(["left", "right"], n)  # the same answer with either volume
    res = tracking_test(answers, answers, gold_cf, gold_orig)
    assert res.counts["followed"] == res.counts["against"] == 0 and res.pvalue == 1.0
    assert 0.4 < res.estimate < 0.6  # tracking by coincidence is not evidence


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cochrans_q_matches_statsmodels(seed):
    rng = np.random.default_rng(seed)
    x = (rng.random((60, 4)) < [0.8, 0.5, 0.5, 0.6]).astype(int)
    res = cochrans_q_test(x, ["full", "text_only", "blank", "single_slice"])
    ref = cochrans_q(x)
    assert np.isclose(res.statistic, ref.statistic, rtol=1e-12) and np.isclose(res.pvalue, ref.pvalue, rtol=1e-12)
    assert res.counts["k"] == 4 and res.counts["df"] == 3 and res.counts["n"] == 60


def test_cochrans_q_without_informative_rows():
    x = np.array([[1, 1, 1], [0, 0, 0]])
    res = cochrans_q_test(x)
    assert res.statistic == 0.0 and res.pvalue == 1.0 and res.counts["n_informative"] == 0


@pytest.mark.parametrize("method,sm_method", [("holm", "holm"), ("fdr_bh", "fdr_bh")])
def test_adjustment_matches_statsmodels_with_explicit_method(method, sm_method):
    p = np.array([0.001, 0.04, 0.03, 0.2, np.nan, 0.011])
    adjusted, reject = adjust_pvalues(p, method, 0.05)
    ok = ~np.isnan(p)
    ref_reject, ref_adj, _, _ = multipletests(p[ok], alpha=0.05, method=sm_method)
    assert np.allclose(adjusted[ok], ref_adj) and (reject[ok] == ref_reject).all()
    assert np.isnan(adjusted[4]) and not reject[4]


def test_holm_is_not_statsmodels_default_holm_sidak():
    p = np.array([0.01, 0.02, 0.03, 0.04])
    holm, _ = adjust_pvalues(p, "holm")
    sidak = multipletests(p)[1]  # statsmodels' default method
    assert not np.allclose(holm, sidak)
    assert np.allclose(holm, [0.04, 0.06, 0.06, 0.06])
    with pytest.raises(ValueError, match="correction"):
        adjust_pvalues(p, "bonferroni")
