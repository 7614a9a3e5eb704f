"""Simulated clustered data with a known truth, to check that the report's tests keep their promises.

Everything is vectorised over replicates: a design draws ``replicates`` data sets of ``clusters`` patients
× ``items`` questions at once as boolean arrays (replicates × clusters × items), and the evaluators run
the report's own functions (:func:`~volprobe.stats.clustered.cluster_paired`,
:func:`~volprobe.stats.verdict.decide`, exact McNemar) on all replicates together. The tests
(``tests/test_stats_simulation.py``) and the slower exhaustive script (``benchmarks/stats_simulation.py``)
share these designs.

Designs (logit scale; u_k: patient level, e_ik: item difficulty shared by both conditions):

- :func:`null_pairs`: under both conditions P(right) = expit(base + u_k + e_ik ± v_k/2), v_k ~ N(0, effect_sd):
  every patient has its own effect of the control, of mean zero, and the two conditions are exchangeable
  within a patient — the null of "the control changes nothing on average". Also the null of a model
  and a blind baseline that are equally good.
- :func:`baseline_null_pairs`: a blind baseline (x) whose P(right) is the item's difficulty q_ik ~ U(0.25, 0.75)
  alone, and a model (y) that is right with q_ik ± 0.2, the sign drawn per patient: as good as the baseline
  on average, its answers correlated within a patient.
- :func:`skewed_null_pairs`: a mean-zero null that is *not* symmetric: a share of patients loses a lot,
  the rest gains a little (a stress case; no method holds its level there with few patients).
- :func:`planned_drop_pairs`: the design power planning assumes (a discordance, a drop, an intra-patient
  correlation of the paired differences), to check that the planned power is the power obtained.
- :func:`drop_pairs`: a real drop with an exact truth: P(right with the volume) = p_k ~ Beta(a, b); without
  it an item stays right with probability r_k ~ Beta(c, d), so the expected change is
  E[p] (E[r] − 1).

``sizes="varying"`` gives patients 1 + Poisson(items − 1) questions (capped at 2 × items) instead of
exactly ``items``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from volprobe.stats.clustered import cluster_paired
from volprobe.stats.paired import mcnemar_pvalues
from volprobe.stats.verdict import VERDICTS, decide


@dataclass
class PairedData:
    """Replicates of paired binary outcomes: ``x`` (reference, or blind baseline) and ``y`` (control, or
    model), (replicates × clusters × slots) booleans; ``mask`` marks the slots that are items; ``truth``
    the expected change y − x."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray
    truth: float

    def cluster_sums(self) -> tuple[np.ndarray, np.ndarray]:
        """(clusters × replicates) sums of y − x and of items: the input of the cluster-robust test."""
        d = (self.y.astype(np.int32) - self.x) * self.mask
        return d.sum(axis=2).T.astype(float), self.mask.sum(axis=2).T.astype(float)

    def discordant(self) -> tuple[np.ndarray, np.ndarray]:
        """Per replicate, (b: right only under x, c: right only under y) — the exact McNemar counts."""
        return ((self.x & ~self.y & self.mask).sum(axis=(1, 2)), (~self.x & self.y & self.mask).sum(axis=(1, 2)))


def _expit(v):
    return 1.0 / (1.0 + np.exp(-v))


def _mask(rng, replicates: int, clusters: int, items: int, sizes: str) -> np.ndarray:
    if sizes == "equal":
        return np.ones((replicates, clusters, items), dtype=bool)
    n = np.minimum(1 + rng.poisson(items - 1, (replicates, clusters)), 2 * items)
    return np.arange(2 * items)[None, None, :] < n[:, :, None]


def null_pairs(rng, replicates: int, clusters: int, items: int, base: float = 1.0, level_sd: float = 1.5,
               effect_sd: float = 1.0, item_sd: float = 1.0, sizes: str = "equal") -> PairedData:
    """Null data (module docstring): a patient-level effect of mean zero, conditions exchangeable."""
    mask = _mask(rng, replicates, clusters, items, sizes)
    shape = mask.shape
    u = rng.normal(0, level_sd, (replicates, clusters, 1))
    v = rng.normal(0, effect_sd, (replicates, clusters, 1))
    e = rng.normal(0, item_sd, shape)
    x = rng.random(shape) < _expit(base + u + e - v / 2)
    y = rng.random(shape) < _expit(base + u + e + v / 2)
    return PairedData(x=x, y=y, mask=mask, truth=0.0)


def baseline_null_pairs(rng, replicates: int, clusters: int, items: int, shift: float = 0.2) -> PairedData:
    """A model no better than a blind baseline on average (module docstring); x: baseline, y: model."""
    shape = (replicates, clusters, items)
    q = rng.uniform(0.25, 0.75, shape)
    sign = np.where(rng.random((replicates, clusters, 1)) < 0.5, -1.0, 1.0)
    x = rng.random(shape) < q
    y = rng.random(shape) < q + shift * sign
    return PairedData(x=x, y=y, mask=np.ones(shape, dtype=bool), truth=0.0)


def skewed_null_pairs(rng, replicates: int, clusters: int, items: int, base: float = 0.6, share: float = 0.2,
                      loss: float = 0.4) -> PairedData:
    """A skewed mean-zero null: a ``share`` of patients loses ``loss`` under y, the others gain
    share·loss/(1 − share), so that the expected change is 0."""
    shape = (replicates, clusters, items)
    hit = rng.random((replicates, clusters, 1)) < share
    effect = np.where(hit, -loss, share * loss / (1 - share))
    x = rng.random(shape) < base
    y = rng.random(shape) < base + effect
    return PairedData(x=x, y=y, mask=np.ones(shape, dtype=bool), truth=0.0)


def drop_pairs(rng, replicates: int, clusters: int, items: int, right: tuple[float, float] = (8, 2),
               kept: tuple[float, float] = (6, 4), sizes: str = "equal") -> PairedData:
    """A real drop with an exact truth (module docstring); defaults: 80% right, 60% of it kept: −32 points."""
    mask = _mask(rng, replicates, clusters, items, sizes)
    p = rng.beta(*right, (replicates, clusters, 1))
    r = rng.beta(*kept, (replicates, clusters, 1))
    x = rng.random(mask.shape) < p
    y = x & (rng.random(mask.shape) < r)
    mean_p, mean_r = right[0] / sum(right), kept[0] / sum(kept)
    return PairedData(x=x, y=y, mask=mask, truth=mean_p * (mean_r - 1))


def planned_drop_pairs(rng, replicates: int, clusters: int, items: int, discordance: float, drop: float,
                       icc: float) -> PairedData:
    """The design :func:`~volprobe.stats.power.mde_clustered` plans for: every item is discordant with
    probability ``discordance``; patient k's expected difference is −drop + τ s_k with s_k = ±1 (equal
    odds), so two items of one patient have paired differences correlated ``icc`` = τ² / (discordance −
    drop²); a discordant item is lost (right only with the volume) with probability
    (discordance + drop − τ s_k) / (2 discordance)."""
    tau = np.sqrt(icc * (discordance - drop ** 2))
    if abs(drop) + tau > discordance:
        raise ValueError(f"drop {drop} with icc {icc} needs discordance ≥ {abs(drop) + tau:.3f}")
    shape = (replicates, clusters, items)
    mean = -drop + tau * rng.choice([-1.0, 1.0], (replicates, clusters, 1))  # E[y − x] per patient
    u = rng.random(shape)
    lost = u < (discordance - mean) / 2
    gained = ~lost & (u < discordance)
    both = rng.random(shape) < 0.5  # concordant items: right under both or neither
    x = lost | (~gained & both)
    y = gained | (~lost & both)
    return PairedData(x=x, y=y, mask=np.ones(shape, dtype=bool), truth=-drop)


# --------------------------------------------------------------------------- evaluators


def cluster_rejections(data: PairedData, alpha: float = 0.05, alternative: str = "two-sided") -> np.ndarray:
    """Per replicate: does the cluster-robust test reject at ``alpha``?"""
    num, den = data.cluster_sums()
    return cluster_paired(num, den, alpha, alternative).pvalue <= alpha


def mcnemar_rejections(data: PairedData, alpha: float = 0.05, alternative: str = "two-sided") -> np.ndarray:
    """Per replicate: does exact McNemar (items as independent) reject? ``greater``: y above x."""
    b, c = data.discordant()
    flipped = {"greater": "less", "less": "greater"}.get(alternative, alternative)  # mcnemar's b is x's side
    return mcnemar_pvalues(b, c, flipped) <= alpha


def verdict_claims(data: PairedData, alpha: float = 0.05) -> np.ndarray:
    """Per replicate: would the report claim an effect of the volume (``uses the volume`` or ``does better
    without the volume``), with x the reference and y the control without the image, the report's rule
    (:func:`~volprobe.stats.verdict.decide`) applied to its tests at ``alpha`` (a family of one)?"""
    num, den = data.cluster_sums()
    r = cluster_paired(num, den, alpha)
    b, c = data.discordant()
    verdict = decide(r.pvalue <= alpha, r.estimate, mcnemar_pvalues(b, c) <= alpha)
    return np.isin(verdict, VERDICTS[:2])


def one_sample_baseline_rejections(data: PairedData, alpha: float = 0.05) -> np.ndarray:
    """Per replicate: the one-sample binomial test that volprobe used to compare a model (y) with a blind
    baseline (x), the baseline's observed accuracy taken as fixed (one-sided) — anti-conservative."""
    n = data.mask.sum(axis=(1, 2))
    k_model, k_base = (data.y & data.mask).sum(axis=(1, 2)), (data.x & data.mask).sum(axis=(1, 2))
    return stats.binom.sf(k_model - 1, n, k_base / n) <= alpha


def coverage(data: PairedData, alpha: float = 0.05) -> tuple[float, float]:
    """(share of replicates whose interval covers the truth, share with an interval at all)."""
    num, den = data.cluster_sums()
    r = cluster_paired(num, den, alpha)
    given = ~np.isnan(r.ci_low)
    covered = given & (r.ci_low <= data.truth) & (data.truth <= r.ci_high)
    return float(covered.sum() / max(given.sum(), 1)), float(given.mean())


def mc_bound(rate: float, replicates: int, sds: float = 3.0) -> float:
    """``sds`` Monte-Carlo standard errors of a rate estimated from ``replicates`` replicates."""
    return sds * float(np.sqrt(rate * (1 - rate) / replicates))
