"""Statistics and reports over run records. Never imports torch.

Tests (each returns a :class:`TestResult` with statistic, p-value, CI, counts and a readable ``str``):

- :func:`chance_test` (exact binomial / Poisson-binomial against per-item chance), :func:`binomial_test`,
  :func:`wilson_interval`;
- :func:`cluster_paired_test`: the cluster-robust paired test every verdict of a report rests on (CR2
  variance, Bell–McCaffrey t; exact sign flips below 8 clusters), :mod:`volprobe.stats.clustered`;
- :func:`mcnemar_test`, :func:`mcnemar_from_counts`, :func:`tracking_test` (counterfactual controls),
  :func:`cochrans_q_test` (items as independent: secondary in reports);
- :func:`cluster_bootstrap_difference`, :func:`paired_permutation_test` (cluster resampling / sign flips);
- :func:`answer_sensitivity`: do answers change with the volume, from predictions alone;
- :func:`minimum_detectable_drop` (power), :func:`adjust_pvalues` (Holm, Benjamini–Hochberg).

Reports: :func:`make_report` with :class:`ReportSettings` (``probe report``); the pieces are in
``load`` → ``panel`` → ``analysis`` → ``verdict`` → ``tables``/``figures``/``report``. Simulated
clustered data that check the tests' promises: :mod:`volprobe.stats.simulation`.
"""

from volprobe.stats.binomial import binomial_test, chance_test, poisson_binomial, wilson_interval
from volprobe.stats.bootstrap import cluster_bootstrap_difference, paired_permutation_test
from volprobe.stats.clustered import cluster_paired_test
from volprobe.stats.multiple import adjust_pvalues
from volprobe.stats.paired import cochrans_q_test, mcnemar_from_counts, mcnemar_test, tracking_test
from volprobe.stats.power import minimum_detectable_drop
from volprobe.stats.result import TestResult

_LAZY = {"make_report": "volprobe.stats.report", "ReportSettings": "volprobe.stats.settings",
         "answer_sensitivity": "volprobe.stats.sensitivity"}


def __getattr__(name: str):
    """``make_report``, ``ReportSettings`` and ``answer_sensitivity`` load pandas/pyarrow only when first used."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'volprobe.stats' has no attribute {name!r}")


__all__ = ["TestResult", "adjust_pvalues", "answer_sensitivity", "binomial_test", "chance_test",
           "cluster_bootstrap_difference", "cluster_paired_test",
           "cochrans_q_test", "make_report", "mcnemar_from_counts", "mcnemar_test", "minimum_detectable_drop",
           "paired_permutation_test", "poisson_binomial", "tracking_test", "wilson_interval", "ReportSettings"]
