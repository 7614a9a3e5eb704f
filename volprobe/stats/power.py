"""Power: the smallest effect a test would detect (minimum detectable drop / difference).

Reported beside every non-significant result, so "no evidence of volume use" says how large
an effect could have gone unseen. Differences are fractions (0.041 = 4.1 points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from volprobe.errors import InvalidValueError
from volprobe.stats.result import check_alternative


def _tail(k, n, p, upper: bool):
    """P(Bin(n, p) > k) if ``upper`` (summed directly, so accurate when small) else P(Bin(n, p) <= k),
    for any integer k, with scipy.special's ufuncs (fast; they reject k outside [0, n))."""
    at_low, at_high = (1.0, 0.0) if upper else (0.0, 1.0)  # the values for k < 0 and k >= n
    tail = special.bdtrc if upper else special.bdtr
    if np.ndim(k) == 0 and np.ndim(n) == 0:
        return at_low if k < 0 else at_high if k >= n else float(tail(int(k), int(n), p))
    k, n = np.asarray(k, dtype=np.int64), np.asarray(n, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        return np.where(k < 0, at_low, np.where(k >= n, at_high, tail(np.clip(k, 0, None), n, p)))


def _cdf(k, n, p):
    return _tail(k, n, p, upper=False)


def _sf(k, n, p):
    return _tail(k, n, p, upper=True)


def _binom_window(n: int, p: float, eps: float = 1e-12) -> np.ndarray:
    """Support points of Binomial(n, p) outside of which the mass is below eps."""
    sd = np.sqrt(n * p * (1 - p))
    half = 8 * sd + 10  # > 7 sd: the mass outside is far below eps
    return np.arange(max(int(n * p - half), 0), min(int(n * p + half), n) + 1)


def _tail_critical(d: np.ndarray, tail: float) -> np.ndarray:
    """Largest c with P(Bin(d, 1/2) <= c) <= tail, per d (-1 where none)."""
    c = np.floor(d / 2 - stats.norm.isf(tail) * np.sqrt(d) / 2).astype(np.int64)
    for _ in range(64):  # the normal guess is off by a few counts at most; step to the exact value
        up = (c + 1 < d / 2) & (_cdf(c + 1, d, 0.5) <= tail)
        down = (c >= 0) & (_cdf(c, d, 0.5) > tail)
        if not (up.any() or down.any()):
            break
        c = c + up - down
    return np.maximum(c, -1)


class _McNemarPower:
    """Exact power of the exact McNemar test at n pairs and discordance psi, as a function of the drop.

    The number of discordant pairs D is Binomial(n, psi); given D, the lost count is
    Binomial(D, (psi + drop) / (2 psi)); power sums the rejection probability over D. The critical
    counts depend only on D, so they are computed once.
    """

    def __init__(self, n: int, discordance: float, alpha: float, alternative: str):
        self.n, self.psi = n, discordance
        self.tail = alpha / 2 if check_alternative(alternative) == "two-sided" else alpha
        self.two_sided = alternative == "two-sided"
        self.d = _binom_window(n, discordance) if discordance > 0 else np.zeros(1, dtype=np.int64)
        self.weight = stats.binom.pmf(self.d, n, discordance)
        self.c = _tail_critical(self.d, self.tail)
        # with every discordant pair lost, D pairs reject once 0.5**D <= tail:
        self.d_min = int(np.ceil(np.log(self.tail) / np.log(0.5)))

    def __call__(self, drop: float) -> float:
        if drop > self.psi:  # every discordant pair is a loss and P(discordant) = drop
            return float(_sf(self.d_min - 1, self.n, min(drop, 1.0)))
        if drop <= 0 or self.psi <= 0:
            return self._at_null()
        pi = (self.psi + drop) / (2 * self.psi)
        ok = self.c >= 0
        reject = _sf(self.d - self.c - 1, self.d, pi)
        if self.two_sided:
            reject = reject + _cdf(self.c, self.d, pi)
        return float(np.dot(self.weight[ok], reject[ok]))

    def _at_null(self) -> float:
        return self(1e-12) if self.psi > 0 else 0.0


def mcnemar_power(n: int, discordance: float, drop: float, alpha: float = 0.05,
                  alternative: str = "two-sided") -> float:
    """Exact power of the exact McNemar test.

    Args:
        n: number of paired items.
        discordance: probability that an item's correctness differs between the two conditions
            (a drop needs at least that much: a smaller value is raised to the drop).
        drop: P(right under A, wrong under B) − P(wrong under A, right under B).
        alternative: ``two-sided``, or one-sided in the direction of the drop (``greater``/``less``).
    """
    if n <= 0:
        return 0.0
    return _McNemarPower(n, discordance, alpha, alternative)(abs(drop))


def mde_mcnemar(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8,
                alternative: str = "two-sided", at_least: float = 0.0) -> float:
    """Minimum detectable drop (fraction) of the exact McNemar test with n pairs; NaN if even a
    drop of 1 (every item lost) would not reach the power. With ``at_least`` > 0 the result is
    max(MDE, at_least), found without solving for the MDE when the power at ``at_least`` already suffices
    (power grows with the drop)."""
    if n <= 0:
        return float("nan")
    f = _McNemarPower(n, discordance, alpha, alternative)
    if 0 < at_least <= 1 and f(at_least) >= power:
        return float(at_least)
    if f(1.0) < power:
        return float("nan")
    hi = 1.0 if f(discordance) < power else discordance  # bracket the root on the side that holds it
    lo = 1e-9 if hi == discordance else discordance
    if f(lo) >= power:
        return max(float(lo) if lo > 1e-9 else 0.0, at_least)
    if lo < at_least < hi:  # the power at at_least falls short: the root lies above, usually close
        lo = at_least
        if f(min(1.5 * at_least, hi)) >= power:
            hi = min(1.5 * at_least, hi)
    return max(float(optimize.brentq(lambda x: f(x) - power, lo, hi, xtol=1e-5)), at_least)


class _BinomialPower:
    """Exact power of the one-sided or two-sided (α/2 per tail) binomial test of H0: rate = p0,
    as a function of the true rate; the critical counts are computed once."""

    def __init__(self, n: int, p0: float, alpha: float, alternative: str):
        check_alternative(alternative)
        tail = alpha / 2 if alternative == "two-sided" else alpha
        self.n = n
        self.upper = self.lower = None
        if alternative in ("greater", "two-sided"):  # smallest r with P(X >= r) <= tail
            r = int(stats.binom.isf(tail, n, p0)) + 1
            self.upper = r - 1 if _sf(r - 2, n, p0) <= tail else r
        if alternative in ("less", "two-sided"):  # largest c with P(X <= c) <= tail
            c = int(stats.binom.ppf(tail, n, p0))
            self.lower = c - 1 if _cdf(c, n, p0) > tail else c

    def __call__(self, p1: float) -> float:
        power = 0.0
        if self.upper is not None:
            power += float(_sf(self.upper - 1, self.n, p1))
        if self.lower is not None:
            power += float(_cdf(self.lower, self.n, p1))
        return power


def binomial_power(n: int, p0: float, p1: float, alpha: float = 0.05, alternative: str = "greater") -> float:
    """Exact power of the one-sample binomial test of H0: rate = p0 when the true rate is p1
    (two-sided: α/2 in each tail)."""
    return _BinomialPower(n, p0, alpha, alternative)(p1)


def mde_binomial(n: int, p0: float, alpha: float = 0.05, power: float = 0.8, alternative: str = "greater") -> float:
    """Smallest difference from p0 (upwards; downwards for ``less``) the exact binomial test detects.

    With chance varying across items, pass the mean chance as p0 (a close approximation)."""
    sign = -1.0 if alternative == "less" else 1.0
    room = p0 if sign < 0 else 1.0 - p0
    if n <= 0 or room <= 0:
        return float("nan")
    f = _BinomialPower(n, p0, alpha, alternative)
    if f(p0 + sign * room) < power:
        return float("nan")
    g = lambda delta: f(p0 + sign * delta) - power  # noqa: E731
    return float(optimize.brentq(g, 1e-9, room, xtol=1e-5)) if g(1e-9) < 0 else 0.0


@dataclass
class PowerResult:
    """Minimum detectable drop of a planned paired comparison (see :func:`minimum_detectable_drop`)."""

    n: int
    discordance: float
    alpha: float
    power: float
    alternative: str
    mde: float

    def __str__(self) -> str:
        what = "not reachable (too few items)" if np.isnan(self.mde) else f"{100 * self.mde:.1f} points"
        return (f"Minimum detectable drop, exact McNemar ({self.alternative}, alpha = {self.alpha:g}, "
                f"power = {self.power:.0%}):\n  n = {self.n:,} paired items, discordance = {self.discordance:.1%}"
                f"\n  minimum detectable drop = {what}")


def minimum_detectable_drop(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8,
                            alternative: str = "two-sided") -> PowerResult:
    """Plan a study: the accuracy drop (full vs a control) detectable with ``n`` items when a share
    ``discordance`` of items is answered right under one condition and wrong under the other."""
    if not 0 <= discordance <= 1:
        raise InvalidValueError(f"discordance must lie in [0, 1], got {discordance}")
    return PowerResult(n=n, discordance=discordance, alpha=alpha, power=power, alternative=alternative,
                       mde=mde_mcnemar(n, discordance, alpha, power, alternative))
