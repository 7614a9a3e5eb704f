"""Paired tests on the same items: exact McNemar, counterfactual tracking, Cochran's Q.

Convention for two conditions A (the reference, e.g. ``full``) and B (a control) answered on
the same items: ``b`` = items right under A and wrong under B (lost), ``c`` = wrong under A and
right under B (gained); the accuracy change B − A is ``(c − b) / n``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from volprobe.errors import InvalidValueError
from volprobe.stats.result import TestResult, check_alternative


def mcnemar_pvalues(b, c, alternative: str = "two-sided") -> np.ndarray:
    """Exact McNemar p-values for discordant counts (arrays broadcast).

    two-sided: ``min(1, 2·P(Bin(b+c, ½) ≤ min(b, c)))`` (statsmodels' exact rule);
    greater: P(Bin(b+c, ½) ≥ b) — A better than B; less: P(Bin(b+c, ½) ≤ b). No discordant pair: 1.
    """
    check_alternative(alternative)
    b = np.asarray(b, dtype=np.int64)
    c = np.asarray(c, dtype=np.int64)
    d = b + c
    if alternative == "two-sided":
        p = np.minimum(2.0 * stats.binom.cdf(np.minimum(b, c), d, 0.5), 1.0)
    elif alternative == "greater":
        p = stats.binom.sf(b - 1, d, 0.5)
    else:
        p = stats.binom.cdf(b, d, 0.5)
    return np.where(d > 0, p, 1.0)


def mcnemar_from_counts(b: int, c: int, n: int | None = None, alternative: str = "two-sided") -> TestResult:
    """Exact McNemar test from the discordant counts (b: lost under B, c: gained under B)."""
    n = b + c if n is None else n
    return TestResult(
        test="exact McNemar test", statistic=float(min(b, c)) if alternative == "two-sided" else float(b),
        statistic_name="min(b, c)" if alternative == "two-sided" else "b",
        pvalue=float(mcnemar_pvalues(b, c, alternative)), alternative=alternative,
        estimate=(c - b) / n if n else float("nan"), estimate_name="accuracy change B - A",
        counts={"n": int(n), "b_lost": int(b), "c_gained": int(c)},
        method="binomial test of b among b + c discordant pairs, p = 1/2",
    )


def mcnemar_test(correct_a, correct_b, alternative: str = "two-sided") -> TestResult:
    """Exact McNemar test on per-item correctness under conditions A and B (same items, same order)."""
    a = np.asarray(correct_a, dtype=bool)
    bb = np.asarray(correct_b, dtype=bool)
    if a.shape != bb.shape:
        raise InvalidValueError(f"paired arrays differ in length: {a.shape} vs {bb.shape}")
    return mcnemar_from_counts(int((a & ~bb).sum()), int((~a & bb).sum()), int(a.size), alternative)


def tracking_counts(parsed_ref, parsed_cf, gold_cf, gold_original) -> dict[str, int]:
    """Counts behind :func:`tracking_test` (arrays of answers; None/NaN never matches)."""
    parsed_ref, parsed_cf = np.asarray(parsed_ref, dtype=object), np.asarray(parsed_cf, dtype=object)
    gold_cf, gold_original = np.asarray(gold_cf, dtype=object), np.asarray(gold_original, dtype=object)
    changed = gold_cf != gold_original
    ref_tracks = (parsed_ref == gold_cf) & changed
    cf_tracks = (parsed_cf == gold_cf) & changed
    return {
        "n_changed": int(changed.sum()), "n_unchanged": int((~changed).sum()),
        "tracking": int(cf_tracks.sum()), "kept_original": int(((parsed_cf == gold_original) & changed).sum()),
        "ref_matches_transformed": int(ref_tracks.sum()),
        "followed": int((cf_tracks & ~ref_tracks).sum()), "against": int((ref_tracks & ~cf_tracks).sum()),
    }


def tracking_test(parsed_ref, parsed_cf, gold_cf, gold_original) -> TestResult:
    """Does the answer follow a counterfactual (mirrored/flipped) volume?

    Only items whose gold changed under the counterfactual are informative. On those, let
    x = the answer to the *original* volume equals the transformed gold and y = the answer to the
    counterfactual volume does. A model that ignores the image answers both volumes alike, so
    (x, y) are exchangeable and the discordant pairs split 1:1 — the exact McNemar null.
    The test is one-sided (``greater``): y more often than x. The tracking rate is mean(y).
    """
    k = tracking_counts(parsed_ref, parsed_cf, gold_cf, gold_original)
    n = k["n_changed"]
    p = float(mcnemar_pvalues(k["followed"], k["against"], "greater"))
    return TestResult(
        test="counterfactual tracking test (exact McNemar)", statistic=float(k["followed"]),
        statistic_name="followed", pvalue=p, alternative="greater",
        estimate=k["tracking"] / n if n else float("nan"), estimate_name="tracking rate", counts=k,
        method="answers equal the transformed gold more often with the counterfactual volume than with "
               "the original; discordant pairs under the image-ignoring null split 1:1",
    )


def cochrans_q_test(correct, conditions: list[str] | None = None) -> TestResult:
    """Cochran's Q: is accuracy equal across k ≥ 2 conditions answered on the same n items?

    ``correct`` is an (n items × k conditions) 0/1 matrix. Rows that are all right or all wrong
    carry no information (Q is unchanged without them) and are dropped before calling statsmodels.
    """
    from statsmodels.stats.contingency_tables import cochrans_q

    x = np.asarray(correct, dtype=float)
    if x.ndim != 2 or x.shape[1] < 2:
        raise InvalidValueError(f"need an (items x conditions) matrix with at least 2 conditions, got shape {x.shape}")
    row = x.sum(axis=1)
    informative = (row > 0) & (row < x.shape[1])
    if informative.sum() == 0:
        q, p = 0.0, 1.0
    else:
        res = cochrans_q(x[informative])
        q, p = float(res.statistic), float(res.pvalue)
    return TestResult(
        test="Cochran's Q test", statistic=q, statistic_name="Q", pvalue=p,
        counts={"n": int(x.shape[0]), "n_informative": int(informative.sum()), "k": int(x.shape[1]),
                "df": int(x.shape[1] - 1)},
        method="chi-square with k-1 df (statsmodels)" + (f"; conditions {', '.join(conditions)}" if conditions else ""),
    )
