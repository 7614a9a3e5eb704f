"""Multiple comparisons across the family of tests in one report.

Holm (step-down Bonferroni, strong family-wise error control) by default; Benjamini–Hochberg
(false discovery rate) on request. The method is always passed to statsmodels explicitly:
its default, Holm–Šidák, is not what a reader of "Holm" expects.
"""

from __future__ import annotations

import numpy as np

from volprobe.errors import InvalidValueError

#: report option → (statsmodels method name, words for tables)
CORRECTIONS = {"holm": ("holm", "Holm"), "fdr_bh": ("fdr_bh", "Benjamini-Hochberg")}


def correction_label(method: str) -> str:
    return CORRECTIONS[check_correction(method)][1]


def check_correction(method: str) -> str:
    if method not in CORRECTIONS:
        raise InvalidValueError(f"correction must be one of {sorted(CORRECTIONS)}, not {method!r}")
    return method


def adjust_pvalues(pvalues, method: str = "holm", alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Adjusted p-values and reject flags for a family of tests; NaN entries (tests not done) stay
    NaN, are not counted in the family, and are never rejected."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(p.shape, np.nan)
    reject = np.zeros(p.shape, dtype=bool)
    ok = ~np.isnan(p)
    if ok.any():
        rej, padj, _, _ = multipletests(p[ok], alpha=alpha, method=CORRECTIONS[check_correction(method)][0])
        adjusted[ok], reject[ok] = padj, rej
    return adjusted, reject
