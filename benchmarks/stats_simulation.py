"""Simulation: do the report's tests keep their error rates when questions share a patient?

The exhaustive version of ``tests/test_stats_simulation.py`` (same designs, :mod:`volprobe.stats.simulation`,
more replicates and more designs). Prints, per design (patients × items per patient):

- type-I error at 5% under clustered nulls of the cluster-robust paired test (two-sided and one-sided),
  of the verdict rule as a whole (a claim of volume use either way), and of the blind-baseline
  comparison (one-sided), beside the item-level exact McNemar test, the previous verdict rule (McNemar
  plus a percentile cluster-bootstrap CI excluding 0) and the previous one-sample baseline test;
- coverage of the 95% interval of the change (t interval, CR2 standard error) beside the percentile
  cluster bootstrap, from 5 to 60 patients (none is given below 8);
- power for real drops, and whether ``probe power``'s plans over patients deliver the power they promise;
- the answer-sensitivity permutation test and interval under its null (blind models that sample their
  answers where golds vary) and for a model that follows the gold half the time.

    python benchmarks/stats_simulation.py                     # 20,000 replicates per design (~2 min)
    python benchmarks/stats_simulation.py --replicates 4000   # quicker
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from volprobe.stats.bootstrap import bootstrap_ratio
from volprobe.stats.clustered import MIN_CLUSTERS
from volprobe.stats.paired import mcnemar_pvalues
from volprobe.stats.power import mde_clustered, mde_mcnemar
from volprobe.stats.sensitivity import answer_sensitivity
from volprobe.stats.simulation import (baseline_null_pairs, cluster_rejections, coverage, drop_pairs, mc_bound,
                                       mcnemar_rejections, null_pairs, one_sample_baseline_rejections,
                                       planned_drop_pairs, skewed_null_pairs, verdict_claims)

NULL_DESIGNS = [(10, 40), (20, 20), (60, 5), (8, 50), (15, 10)]
COVERAGE_CLUSTERS = [5, 8, 10, 15, 30, 60]
CHUNK = 2000  # replicates per block (bounds memory of the bootstrap)


def _blocks(replicates: int):
    for start in range(0, replicates, CHUNK):
        yield start, min(CHUNK, replicates - start)


def _old_verdict_claims(data, n_boot: int, seed: int) -> np.ndarray:
    """The previous rule: exact McNemar significant and the percentile cluster-bootstrap CI excluding 0."""
    num, den = data.cluster_sums()
    boot = bootstrap_ratio(num, den, n_boot=n_boot, seed=seed)
    b, c = data.discordant()
    return (mcnemar_pvalues(b, c) <= 0.05) & ((boot.high < 0) | (boot.low > 0))


def _bootstrap_coverage(data, n_boot: int, seed: int) -> np.ndarray:
    num, den = data.cluster_sums()
    boot = bootstrap_ratio(num, den, n_boot=n_boot, seed=seed)
    return (boot.low <= data.truth) & (data.truth <= boot.high)


def nulls(replicates: int, n_boot: int, seed: int) -> None:
    print(f"\nType-I error at alpha = 0.05 under clustered nulls ({replicates:,} replicates per design; "
          f"3 Monte-Carlo SE = {100 * mc_bound(0.05, replicates):.1f} points)")
    header = (f"{'design':<22}{'cluster 2s':>11}{'cluster 1s':>11}{'verdict':>9}{'baseline':>10}"
              f"{'McNemar':>9}{'old rule':>10}{'old base':>10}")
    print(header)
    for kind in ("equal", "varying", "skewed"):
        for k, m in NULL_DESIGNS:
            rates = np.zeros(7)
            for start, b in _blocks(replicates):
                rng = np.random.default_rng([seed, k, m, start, len(kind)])
                data = skewed_null_pairs(rng, b, k, m) if kind == "skewed" else null_pairs(rng, b, k, m, sizes=kind)
                baseline = baseline_null_pairs(rng, b, k, m)
                rates += [cluster_rejections(data).sum(), cluster_rejections(data, alternative="greater").sum(),
                          verdict_claims(data).sum(), cluster_rejections(baseline, alternative="greater").sum(),
                          mcnemar_rejections(data).sum(), _old_verdict_claims(data, n_boot, seed + start).sum(),
                          one_sample_baseline_rejections(baseline).sum()]
            rates /= replicates
            print(f"{f'{k} x {m} ({kind})':<22}" + "".join(f"{100 * r:>{w}.1f}" for r, w in
                                                               zip(rates, (11, 11, 9, 10, 9, 10, 10))))
    print("cluster 2s/1s: cluster-robust paired test, two-sided / one-sided; verdict: the report's rule claims "
          "an effect either way; baseline: model vs blind baseline, one-sided (baseline design: the model is "
          "20 points better or worse than the baseline per patient, equal on average); "
          "McNemar: exact, items as independent; old rule: McNemar + percentile cluster bootstrap; old base: "
          "one-sample binomial against the baseline's observed accuracy (baseline design). Skewed: 20% of "
          "patients lose 40 points, the others gain 10 (mean 0, not symmetric).")


def coverages(replicates: int, n_boot: int, seed: int) -> None:
    print("\nCoverage of the 95% CI of the change (truth -32 points; patients with 1 + Poisson(19) items)")
    print(f"{'patients':<10}{'t interval (CR2)':>18}{'given':>8}{'percentile bootstrap':>22}")
    for k in COVERAGE_CLUSTERS:
        covered = given = boot = 0.0
        for start, b in _blocks(replicates):
            data = drop_pairs(np.random.default_rng([seed, k, start]), b, k, 20, sizes="varying")
            cov, share = coverage(data)
            covered += cov * share * b
            given += share * b
            boot += _bootstrap_coverage(data, n_boot, seed + start).sum()
        t_cov = f"{100 * covered / given:.1f}" if given else f"none (< {MIN_CLUSTERS})"
        print(f"{k:<10}{t_cov:>18}{100 * given / replicates:>7.0f}%{100 * boot / replicates:>22.1f}")


def power(replicates: int, seed: int) -> None:
    print("\nPower at alpha = 0.05 for real drops (patients x items)")
    print(f"{'design':<12}{'truth':>8}{'cluster':>9}{'McNemar':>9}")
    for (k, m), right, kept in [((20, 20), (9, 1), (19, 1)), ((20, 20), (9, 1), (9, 1)), ((10, 40), (9, 1), (19, 1)),
                                ((60, 5), (9, 1), (19, 1))]:
        data = drop_pairs(np.random.default_rng([seed, k, m]), replicates, k, m, right=right, kept=kept)
        print(f"{f'{k} x {m}':<12}{100 * data.truth:>8.1f}{100 * cluster_rejections(data).mean():>9.1f}"
              f"{100 * mcnemar_rejections(data).mean():>9.1f}")


PLANNED_DESIGNS = [(20, 20, 0.35, 0.1), (10, 40, 0.3, 0.05), (60, 5, 0.45, 0.2), (30, 10, 0.25, 0.0),
                   (8, 25, 0.4, 0.05), (100, 13, 0.2, 0.05)]


def planned_power(replicates: int, seed: int) -> None:
    """probe power's plans: data drawn as planned at the planned drop; the cluster test's power should be 80%.
    Beside it, the item-level plan (exact McNemar, items independent) and the cluster test's power there."""
    print("\nPlanned power 80% (probe power --patients K --icc R) against what the report's test achieves")
    print(f"{'design':<10}{'disc.':>6}{'icc':>6}{'plan':>7}{'power':>7}{'item plan':>11}{'its power':>11}")
    for k, m, psi, icc in PLANNED_DESIGNS:
        n = k * m
        plan, naive = mde_clustered(n, k, psi, icc), mde_mcnemar(n, psi)
        rng = np.random.default_rng([seed, k, m, 7])
        achieved = sum(cluster_rejections(planned_drop_pairs(rng, size, k, m, psi, plan, icc)).sum()
                       for _, size in _blocks(replicates)) / replicates
        naive_power = sum(cluster_rejections(planned_drop_pairs(rng, size, k, m, psi, naive, icc)).sum()
                          for _, size in _blocks(replicates)) / replicates
        print(f"{f'{k} x {m}':<10}{psi:>6.2f}{icc:>6.2f}{100 * plan:>7.1f}{100 * achieved:>7.1f}"
              f"{100 * naive:>11.1f}{100 * naive_power:>11.1f}")


def sensitivity(datasets: int, seed: int) -> None:
    """Answer sensitivity. Null: blind models answering at random exactly on the question texts whose golds
    vary (the confound a pooled comparison falls for): the within-text permutation test must hold its
    level. Effect: a model that gives the gold half the time (else a random answer); the truth is the
    estimate pooled over all data sets."""
    from scipy import stats

    print(f"\nAnswer sensitivity ({datasets:,} data sets per row; texts x 6 volumes, half the texts with "
          f"varying golds; 199 permutations)")
    print(f"{'texts':<7}{'model':<10}{'permutation p <= 5%':>21}{'CI coverage':>13}{'pooled z-test':>15}")
    rng = np.random.default_rng(seed)
    for texts in (30, 100):
        text = np.repeat(np.arange(texts), 6)
        volume = np.arange(text.size)
        for follows in (None, 0.5):
            results = []
            for i in range(datasets):
                varies = rng.random(texts) < 0.5
                gold = np.where(varies[text], rng.integers(0, 2, text.size), 0)
                noise = rng.integers(0, 2, text.size)
                answer = (np.where(varies[text], noise, 0) if follows is None
                          else np.where(rng.random(text.size) < follows, gold, noise))
                results.append(answer_sensitivity(text, volume, gold, answer, n_perm=199, seed=[seed, texts, i]))
            truth = 0.0 if follows is None else np.mean([r.sensitivity for r in results])
            rejected = np.mean([r.pvalue <= 0.05 for r in results])
            covered = np.mean([r.ci_low <= truth <= r.ci_high for r in results])
            pooled = []
            for r in (x.to_dict() for x in results):
                both = (r["changed_differ"] + r["changed_agree"]) / (r["pairs_differ"] + r["pairs_agree"])
                se = np.sqrt(both * (1 - both) * (1 / r["pairs_differ"] + 1 / r["pairs_agree"]))
                pooled.append(stats.norm.sf((r["rate_differ"] - r["rate_agree"]) / se) <= 0.05 if se > 0 else False)
            name = "blind" if follows is None else "follows"
            print(f"{texts:<7}{name:<10}{100 * rejected:>21.1f}{100 * covered:>13.1f}{100 * np.mean(pooled):>15.1f}")
    print("blind: the null (rejections are type-I errors); follows: power. Pooled z-test: the two pooled shares "
          "compared directly, which the confound breaks (why the test permutes within texts).")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, default=20_000)
    parser.add_argument("--n-boot", type=int, default=1000, help="resamples of the percentile bootstrap compared")
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    t = time.perf_counter()
    nulls(args.replicates, args.n_boot, args.seed)
    coverages(args.replicates, args.n_boot, args.seed)
    power(args.replicates, args.seed)
    planned_power(args.replicates, args.seed)
    sensitivity(max(args.replicates // 10, 200), args.seed)
    print(f"\n{time.perf_counter() - t:.0f} s")


if __name__ == "__main__":
    main()
