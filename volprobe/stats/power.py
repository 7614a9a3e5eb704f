"""Power: the smallest effect a test would detect (minimum detectable drop / difference).

Reported beside every non-significant result, so "no evidence of volume use" says how large
an effect could have gone unseen. Differences are fractions (0.041 = 4.1 points).

Planning (``probe power``): :func:`minimum_detectable_drop` for independent items (exact McNemar) or, with
patients and an intra-patient correlation, for the cluster-robust test reports use
(:func:`mde_clustered`); :func:`pilot_estimate` reads those inputs off a pilot run's records.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

from volprobe.errors import InvalidValueError
from volprobe.stats.clustered import MIN_CLUSTERS, mde_cluster
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
    """Minimum detectable drop of a planned paired comparison (see :func:`minimum_detectable_drop`).

    ``patients`` is None for a plan with independent items (exact McNemar); otherwise the plan is for the
    report's primary test, the cluster-robust paired t test over ``patients`` patients sharing the items
    equally, with the items' paired differences correlated ``icc`` within a patient (``design_effect`` =
    1 + (items per patient − 1) · icc)."""

    n: int
    discordance: float
    alpha: float
    power: float
    alternative: str
    mde: float
    patients: int | None = None
    icc: float | None = None

    @property
    def design_effect(self) -> float:
        return 1.0 if self.patients is None else 1.0 + (self.n / self.patients - 1.0) * float(self.icc)

    def __str__(self) -> str:
        what = "not reachable (too few items)" if np.isnan(self.mde) else f"{100 * self.mde:.1f} points"
        if self.patients is None:
            return (f"Minimum detectable drop, exact McNemar ({self.alternative}, alpha = {self.alpha:g}, "
                    f"power = {self.power:.0%}):\n  n = {self.n:,} paired items, discordance = {self.discordance:.1%}"
                    f"\n  minimum detectable drop = {what}\n  (items taken as independent; with several questions "
                    f"per patient give --patients and --icc: reports test over patients)")
        if np.isnan(self.mde):
            what = (f"not reachable (with {self.patients} patients the exact sign-flip test cannot reach "
                    f"alpha = {self.alpha:g})" if self.patients < MIN_CLUSTERS else "not reachable (too few items)")
        return (f"Minimum detectable drop, cluster-robust paired t test over patients ({self.alternative}, "
                f"alpha = {self.alpha:g}, power = {self.power:.0%}):\n  n = {self.n:,} paired items on "
                f"{self.patients:,} patients ({self.n / self.patients:.1f} each), discordance = "
                f"{self.discordance:.1%}, intra-patient correlation = {self.icc:.3g}, design effect = "
                f"{self.design_effect:.2f} (effective n = {self.n / self.design_effect:,.0f})"
                f"\n  minimum detectable drop = {what}"
                + ("\n  (below 8 patients reports use the exact sign-flip test: this t-based figure is "
                   "optimistic)" if self.patients < MIN_CLUSTERS and not np.isnan(self.mde) else ""))


def mde_clustered(n: int, patients: int, discordance: float, icc: float, alpha: float = 0.05,
                  power: float = 0.8, alternative: str = "two-sided") -> float:
    """Minimum detectable drop (fraction) of the cluster-robust paired t test (the report's primary test)
    for ``n`` items spread equally over ``patients`` patients.

    Each item's paired difference D (−1, 0 or 1) has E[D²] = ``discordance`` and variance
    discordance − δ² at a drop δ; within a patient two items' differences correlate ``icc``, so the
    variance of the mean is (discordance − δ²) · DE / n with DE = 1 + (n/patients − 1) · icc. With equal
    patients the test has patients − 1 degrees of freedom, and power 1 − β needs δ = λ · SE(δ), λ the
    noncentrality at which the noncentral t reaches that power (:func:`mde_cluster` at SE 1). Solving
    δ² = λ² DE (discordance − δ²) / n gives δ = √(a · discordance / (1 + a)), a = λ² DE / n; a drop above
    the discordance is impossible, so a smaller discordance is raised to the drop (as for McNemar): δ = a / (1 + a).
    NaN where the test cannot reach ``alpha`` (few patients). Checked by simulation
    (``tests/test_stats_power.py``): the power at this drop is the planned power."""
    if not 2 <= patients <= n:
        raise InvalidValueError(f"patients must lie between 2 and the number of items ({n:,}), got {patients}")
    if not 0 <= icc <= 1:
        raise InvalidValueError(f"icc (the intra-patient correlation of the paired differences) must lie in "
                                f"[0, 1], got {icc}")
    if not 0 <= discordance <= 1:
        raise InvalidValueError(f"discordance must lie in [0, 1], got {discordance}")
    lam = float(mde_cluster(1.0, patients - 1, patients, alpha, power, alternative))
    if np.isnan(lam):
        return float("nan")
    a = lam ** 2 * (1.0 + (n / patients - 1.0) * icc) / n
    # a drop needs at least as much discordance; with less, the discordance is the drop: δ² = a (δ − δ²)
    floor = a / (1.0 + a)
    return float(np.sqrt(floor * discordance)) if floor <= discordance else float(floor)


def minimum_detectable_drop(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8,
                            alternative: str = "two-sided", patients: int | None = None,
                            icc: float | None = None) -> PowerResult:
    """Plan a study: the accuracy drop (full vs a control) detectable with ``n`` items when a share
    ``discordance`` of items is answered right under one condition and wrong under the other.

    Without ``patients`` the items are taken as independent (exact McNemar). With ``patients`` and ``icc``
    the plan is for the cluster-robust test the reports use (:func:`mde_clustered`)."""
    if not 0 <= discordance <= 1:
        raise InvalidValueError(f"discordance must lie in [0, 1], got {discordance}")
    if (patients is None) != (icc is None):
        raise InvalidValueError("give --patients and --icc together (the number of patients the items are "
                                "spread over and the intra-patient correlation of the paired differences)")
    if patients is None:
        mde = mde_mcnemar(n, discordance, alpha, power, alternative)
    else:
        mde = mde_clustered(n, patients, discordance, icc, alpha, power, alternative)
    return PowerResult(n=n, discordance=discordance, alpha=alpha, power=power, alternative=alternative,
                       mde=mde, patients=patients, icc=icc)


@dataclass
class PilotEstimate:
    """What a pilot run says about a planned comparison of one model: its reference condition against
    ``control`` on the items both answered. ``discordance``: share of items right under exactly one of the
    two; ``drop``: reference accuracy − control accuracy (fraction); ``icc``: intra-patient correlation of
    the paired differences (one-way ANOVA estimator, unequal patients; negative estimates set to 0)."""

    model: str
    reference: str
    control: str
    n: int
    patients: int
    discordance: float
    drop: float
    icc: float

    def __str__(self) -> str:
        return (f"Pilot: {self.model}, {self.reference} vs {self.control}: n = {self.n:,} paired items on "
                f"{self.patients:,} patients, discordance = {self.discordance:.1%}, observed drop = "
                f"{100 * self.drop + 0.0:.1f} points, intra-patient correlation = {self.icc:.3f}")

    def plan(self, n: int | None = None, patients: int | None = None, discordance: float | None = None,
             icc: float | None = None, alpha: float = 0.05, power: float = 0.8,
             alternative: str = "two-sided") -> PowerResult:
        """The minimum detectable drop of a study like the pilot: what is not given comes from the pilot
        (``n``, ``discordance``, ``icc``; ``patients`` keeps the pilot's questions per patient)."""
        n = self.n if n is None else n
        if patients is None:
            patients = self.patients if n == self.n else max(2, round(n * self.patients / self.n))
        if patients > n:
            raise InvalidValueError(f"patients ({patients}) exceed the items ({n:,})")
        return minimum_detectable_drop(n, self.discordance if discordance is None else discordance, alpha, power,
                                       alternative, patients=patients, icc=self.icc if icc is None else icc)


def intra_patient_correlation(values, clusters) -> float:
    """One-way ANOVA estimate of the intra-cluster correlation of ``values`` (the usual n0 for unequal
    clusters), clipped to [0, 1]; 0 with fewer than two clusters or no within-cluster spread to compare."""
    values = np.asarray(values, dtype=float)
    codes = np.unique(np.asarray(clusters), return_inverse=True)[1]
    sizes = np.bincount(codes)
    n, k = len(values), len(sizes)
    if k < 2 or n <= k:
        return 0.0
    means = np.bincount(codes, weights=values) / sizes
    msb = float(np.sum(sizes * (means - values.mean()) ** 2) / (k - 1))
    msw = float(np.sum((values - means[codes]) ** 2) / (n - k))
    n0 = (n - np.sum(sizes ** 2) / n) / (k - 1)
    denominator = msb + (n0 - 1) * msw
    return 0.0 if denominator <= 0 else float(np.clip((msb - msw) / denominator, 0.0, 1.0))


def pilot_estimate(runs, control: str, model: str | None = None) -> PilotEstimate:
    """Discordance, drop and intra-patient correlation of ``model`` (needed when the runs hold several)
    between its reference condition and ``control``, from pilot runs' records (clusters: patient, else
    case, else the item). Records that ended in an error are left out."""
    from volprobe.stats.load import read_runs

    frame = read_runs(runs).frame
    frame = frame[frame["error"].isna()]
    models = sorted(frame["model"].astype(str).unique())
    if model is None:
        if len(models) != 1:
            raise InvalidValueError(f"the pilot runs hold {len(models)} models ({', '.join(models)}): "
                                    "name one with --model")
        model = models[0]
    if model not in models:
        raise InvalidValueError(f"no records of model {model!r} in the pilot runs (models: {', '.join(models)})")
    frame = frame[frame["model"].astype(str) == model]
    reference = frame.loc[frame["fact:reference"].fillna(False).astype(bool), "control"].astype(str).unique()
    if len(reference) != 1:
        raise InvalidValueError(f"the pilot runs of {model} state {len(reference)} reference controls "
                                f"({', '.join(reference) or 'none'}); a pilot needs exactly one")
    controls = sorted(frame["control"].astype(str).unique())
    if control not in controls or control == reference[0]:
        raise InvalidValueError(f"control {control!r} is not a non-reference control of {model}'s pilot runs "
                                f"(controls: {', '.join(c for c in controls if c != reference[0])})")
    keep = ["item_id", "correct", "patient", "case"]
    ref = frame.loc[frame["control"].astype(str) == reference[0], keep].drop_duplicates("item_id")
    other = frame.loc[frame["control"].astype(str) == control, ["item_id", "correct"]].drop_duplicates("item_id")
    paired = ref.merge(other, on="item_id", suffixes=("_ref", "_control"))
    if paired.empty:
        raise InvalidValueError(f"{model}: no item answered under both {reference[0]} and {control}")
    d = paired["correct_control"].astype(float).to_numpy() - paired["correct_ref"].astype(float).to_numpy()
    cluster = np.where(paired["patient"].notna(), "p:" + paired["patient"].astype(str),
                       np.where(paired["case"].notna(), "c:" + paired["case"].astype(str),
                                "i:" + paired["item_id"].astype(str)))
    return PilotEstimate(model=model, reference=reference[0], control=control, n=len(d),
                         patients=len(np.unique(cluster)), discordance=float(np.mean(d != 0)),
                         drop=float(-np.mean(d)), icc=intra_patient_correlation(d, cluster))
