"""Accuracy against chance: Wilson intervals, exact binomial and Poisson-binomial tests.

When every item has the same chance level the number of correct answers of a random
guesser is Binomial(n, chance); when chance varies across items (2-option and 4-option
questions mixed) it is Poisson-binomial. :class:`PoissonBinomial` computes that null
distribution exactly (to double precision) by convolving one binomial per distinct
chance level, each trimmed to the entries that are not zero in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, lru_cache

import numpy as np
from scipy import stats

from volprobe.errors import InvalidValueError
from volprobe.stats.result import TestResult, check_alternative

#: scipy's relative tolerance when collecting "as or less likely" outcomes for two-sided tests.
_RERR = 1 + 1e-7


def wilson_interval(k, n, alpha: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for k successes in n trials (arrays broadcast; NaN where n = 0)."""
    from statsmodels.stats.proportion import proportion_confint

    k = np.asarray(k, dtype=float)
    n = np.asarray(n, dtype=float)
    safe_n = np.where(n > 0, n, 1.0)
    lo, hi = proportion_confint(np.minimum(k, safe_n), safe_n, alpha=alpha, method="wilson")
    empty = n <= 0
    return np.where(empty, np.nan, lo), np.where(empty, np.nan, hi)


@dataclass(frozen=True)
class PoissonBinomial:
    """Distribution of the number of successes of independent Bernoulli(p_i) trials.

    ``pmf[j]`` is P(S = offset + j); outside ``[offset, offset + len(pmf))`` the
    probability is below the smallest positive double.
    """

    n: int
    offset: int
    pmf: np.ndarray

    @property
    def mean(self) -> float:
        return float(np.dot(self.offset + np.arange(len(self.pmf)), self.pmf))

    def _index(self, k) -> np.ndarray:
        return np.asarray(k, dtype=np.int64) - self.offset

    @cached_property
    def _upper(self) -> np.ndarray:  # _upper[j] = P(S >= offset + j); small terms summed first
        return np.concatenate([np.cumsum(self.pmf[::-1])[::-1], [0.0]])

    @cached_property
    def _lower(self) -> np.ndarray:  # _lower[j] = P(S < offset + j)
        return np.concatenate([[0.0], np.cumsum(self.pmf)])

    @cached_property
    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:  # pmf ascending and its running sum
        order = np.sort(self.pmf)
        return order, np.cumsum(order)

    def sf_inclusive(self, k) -> np.ndarray:
        """P(S >= k)."""
        j = np.clip(self._index(k), 0, len(self.pmf))
        return np.minimum(self._upper[j], 1.0)

    def cdf(self, k) -> np.ndarray:
        """P(S <= k)."""
        j = np.clip(self._index(k) + 1, 0, len(self.pmf))
        return np.minimum(self._lower[j], 1.0)

    def prob(self, k) -> np.ndarray:
        j = self._index(k)
        inside = (j >= 0) & (j < len(self.pmf))
        return np.where(inside, self.pmf[np.clip(j, 0, len(self.pmf) - 1)], 0.0)

    def pvalue(self, k, alternative: str = "two-sided") -> np.ndarray:
        """p-value of observing k successes; two-sided sums every outcome no more likely than k
        (scipy.stats.binomtest's rule, with its 1e-7 relative tolerance)."""
        check_alternative(alternative)
        if alternative == "greater":
            return self.sf_inclusive(k)
        if alternative == "less":
            return self.cdf(k)
        order, cum = self._sorted
        d = self.prob(k) * _RERR
        count = np.searchsorted(order, d, side="right")
        p = np.where(count > 0, cum[np.maximum(count - 1, 0)], 0.0)
        return np.minimum(p, 1.0)


def _binomial_piece(n: int, p: float) -> tuple[int, np.ndarray]:
    """Binomial(n, p) pmf trimmed to its non-zero entries: (first index, values)."""
    pmf = stats.binom.pmf(np.arange(n + 1), n, p)
    nz = np.flatnonzero(pmf > 0)
    return int(nz[0]), pmf[nz[0]: nz[-1] + 1]


@lru_cache(maxsize=512)
def _from_levels(levels: tuple[float, ...], counts: tuple[int, ...]) -> PoissonBinomial:
    offset, pmf = 0, np.ones(1)
    for p, n in zip(levels, counts):
        if n == 0 or p <= 0.0:
            continue
        if p >= 1.0:
            offset += n
            continue
        first, piece = _binomial_piece(n, p)
        offset += first
        pmf = np.convolve(pmf, piece)  # direct sums of positive terms: keeps relative accuracy
        nz = np.flatnonzero(pmf > 0)
        offset += int(nz[0])
        pmf = pmf[nz[0]: nz[-1] + 1]
    pmf.setflags(write=False)
    return PoissonBinomial(n=int(sum(counts)), offset=offset, pmf=pmf)


def poisson_binomial(chance) -> PoissonBinomial:
    """Null distribution of the number correct when item i is guessed right with probability chance[i]."""
    levels, counts = chance_levels(chance)
    return poisson_binomial_from_levels(levels, counts)


def poisson_binomial_from_levels(levels, counts) -> PoissonBinomial:
    """As :func:`poisson_binomial`, from distinct chance levels and the number of items at each."""
    return _from_levels(tuple(float(x) for x in levels), tuple(int(c) for c in counts))


def chance_level_codes(chance) -> tuple[np.ndarray, np.ndarray]:
    """(distinct chance levels, level index of each item); values equal to 12 decimals (1/3
    computed two ways) are one level, represented by their mean."""
    chance = np.asarray(chance, dtype=float).ravel()
    if np.any(np.isnan(chance)):
        raise InvalidValueError("chance contains NaN (open items have no chance level; drop them first)")
    if np.any((chance < 0) | (chance > 1)):
        raise InvalidValueError("chance levels must lie in [0, 1]")
    _, code, counts = np.unique(np.round(chance, 12), return_inverse=True, return_counts=True)
    return np.bincount(code, weights=chance) / np.maximum(counts, 1), code


def chance_levels(chance) -> tuple[np.ndarray, np.ndarray]:
    """Distinct chance levels (see :func:`chance_level_codes`) and the number of items at each."""
    levels, code = chance_level_codes(chance)
    return levels, np.bincount(code, minlength=levels.size)


def chance_test(correct, chance, alternative: str = "two-sided", alpha: float = 0.05) -> TestResult:
    """Exact test of accuracy against chance.

    Args:
        correct: per-item correctness (bool array).
        chance: one chance level or one per item (items with NaN chance, i.e. open items, are dropped).
        alternative: ``greater`` (better than chance), ``less`` (below chance) or ``two-sided``.
    """
    correct = np.asarray(correct, dtype=bool).ravel()
    chance = np.broadcast_to(np.asarray(chance, dtype=float), correct.shape)
    keep = ~np.isnan(chance)
    correct, chance = correct[keep], chance[keep]
    n, k = int(correct.size), int(correct.sum())
    levels, counts = chance_levels(chance)
    dist = poisson_binomial_from_levels(levels, counts)
    lo, hi = wilson_interval(k, n, alpha)
    return TestResult(
        test="exact binomial test vs chance" if levels.size <= 1 else "exact Poisson-binomial test vs chance",
        statistic=float(k), statistic_name="correct", pvalue=float(dist.pvalue(k, alternative)),
        alternative=check_alternative(alternative), estimate=k / n if n else float("nan"), estimate_name="accuracy",
        ci=(float(lo), float(hi)), ci_level=1 - alpha,
        counts={"n": n, "correct": k, "dropped_no_chance": int((~keep).sum())},
        method=f"null: mean chance {dist.mean / n if n else float('nan'):.4f} over {levels.size} level(s); Wilson CI",
    )


def binomial_test(k: int, n: int, p0: float, alternative: str = "greater", alpha: float = 0.05) -> TestResult:
    """Exact binomial test of k/n against a fixed rate p0 (e.g. a blind baseline's accuracy), via scipy."""
    res = stats.binomtest(int(k), int(n), float(p0), alternative=check_alternative(alternative))
    lo, hi = wilson_interval(k, n, alpha)
    return TestResult(
        test="exact binomial test vs fixed rate", statistic=float(k), statistic_name="correct",
        pvalue=float(res.pvalue), alternative=alternative, estimate=k / n if n else float("nan"),
        estimate_name="accuracy", ci=(float(lo), float(hi)), ci_level=1 - alpha,
        counts={"n": int(n), "correct": int(k)}, method=f"p0 = {p0:.4f}; scipy.stats.binomtest; Wilson CI",
    )
