"""Every number of a report, as tables (pandas DataFrames), from a :class:`Panel`.

Tables (one row per model × control × group unless stated; groups as in :mod:`volprobe.stats.groups`):

- ``accuracy``: n, accuracy with a Wilson CI, the mean of per-subtask accuracies, error/unparseable/refusal
  counts, the test against chance (exact binomial, or Poisson-binomial when chance varies) and, for
  evaluated models, the paired comparison with the strongest blind baseline on the items both answered.
- ``paired``: the reference control (``full``) vs each other control of a model, on the items answered
  under both: the accuracy change with its cluster-robust test and CI, exact McNemar with the discordant
  counts (secondary), the flip rate, and for counterfactual controls the tracking rate and its tests.
- ``cochran``: Cochran's Q across the reference and every non-counterfactual control of a model
  (items as independent: secondary).
- ``pairwise``: model vs model on shared items (cluster-robust test and CI; exact McNemar secondary).
- ``scores``: continuous scores of open items, reference vs control (cluster-robust test and CI).
- ``sensitivity``: for models without a control paired with the reference, how often answers change
  between volumes asked the same question (:mod:`volprobe.stats.sensitivity`).

The cluster-robust tests (:mod:`volprobe.stats.clustered`) decide; exact McNemar treats items as
independent and is shown beside them for comparison. Records whose ``error`` is set are excluded from
accuracy and from every paired test (counted in ``n_error``); a pair missing one side for that reason is
counted in ``n_error_excluded``.

**Families.** The primary p-values (:data:`P_COLUMNS`) form one family adjusted by Holm (or
Benjamini–Hochberg); the secondary p-values of tests that treat items as independent (exact McNemar,
Cochran's Q; :data:`SECONDARY_P_COLUMNS`) are adjusted as a family of their own, so they neither decide
nor dilute. Minimum detectable effects are computed at
alpha / F, F the size of the primary family: the level at which a test is significant whatever the
other tests show (the first step of Holm and of Benjamini–Hochberg).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from volprobe.errors import FormatError
from volprobe.stats.accuracy import accuracy_table
from volprobe.stats.comparisons import cochran_table, paired_table, pairwise_table, scores_table
from volprobe.stats.groups import Groups, build_groups
from volprobe.stats.multiple import adjust_pvalues
from volprobe.stats.panel import Panel
from volprobe.stats.clustered import mde_cluster
from volprobe.stats.power import mde_binomial, mde_mcnemar
from volprobe.stats.rows import ClusterColumns
from volprobe.stats.sensitivity import sensitivity_table
from volprobe.stats.settings import ReportSettings, model_roles


@dataclass
class Analysis:
    """All tables of a report plus what a reader must know about them (``notes``)."""

    settings: ReportSettings
    panel: Panel
    groups: Groups
    roles: dict[str, str]
    accuracy: pd.DataFrame
    paired: pd.DataFrame
    cochran: pd.DataFrame
    pairwise: pd.DataFrame
    scores: pd.DataFrame
    sensitivity: pd.DataFrame = field(default_factory=pd.DataFrame)
    family_size: int = 0
    secondary_family_size: int = 0
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"accuracy": self.accuracy, "paired": self.paired, "cochran": self.cochran,
                "pairwise": self.pairwise, "scores": self.scores, "sensitivity": self.sensitivity}

    @property
    def mde_level(self) -> float:
        """The significance level of every minimum detectable effect: alpha / (size of the primary family)."""
        return self.settings.alpha / max(self.family_size, 1)

    def paired_models(self) -> set[str]:
        """Models with at least one control paired with the reference."""
        return set() if self.paired.empty else set(self.paired["model"])


def analyse(panel: Panel, settings: ReportSettings) -> Analysis:
    """Compute every table of the report (see the module docstring)."""
    s = settings
    if s.reference is None:
        if panel.reference is None:
            raise FormatError("no record states which control is the reference condition (records written by an "
                              f"older volprobe?); pass --reference CONTROL, one of: {', '.join(panel.controls)}")
        s = dataclasses.replace(s, reference=panel.reference)
    roles = model_roles(panel.models, s.baselines)
    unknown = [b for b in s.baselines if b not in panel.models]
    if unknown:
        raise FormatError(f"--baseline {unknown}: no records of such a model (models: {panel.models})")
    groups = build_groups(panel.items, s.by)
    a = Analysis(settings=s, panel=panel, groups=groups, roles=roles, accuracy=pd.DataFrame(),
                 paired=pd.DataFrame(), cochran=pd.DataFrame(), pairwise=pd.DataFrame(), scores=pd.DataFrame())
    if s.reference not in panel.controls:
        a.notes.append(f"no records under the reference control {s.reference!r}: no paired tests")
    tests = ClusterColumns(groups)
    a.accuracy = accuracy_table(panel, groups, roles, s, tests)
    a.paired = paired_table(panel, groups, roles, s, tests, a.notes)
    a.pairwise = pairwise_table(panel, groups, roles, s, tests, a.notes)
    a.scores = scores_table(panel, groups, roles, s, tests)
    a.cochran = cochran_table(panel, groups, roles, s)
    tests.fill(s.alpha)
    unpaired = [m for m in panel.models if s.assessed(roles[m]) and m not in a.paired_models()]
    a.sensitivity = sensitivity_table(panel, unpaired, s, a.notes)
    a.family_size = _adjust(a, P_COLUMNS)
    a.secondary_family_size = _adjust(a, SECONDARY_P_COLUMNS)
    _minimum_detectable(a)
    return a


# --------------------------------------------------------------------------- family of tests


#: (table, p-value column) of every primary test in a report; adjusted together.
P_COLUMNS = (("accuracy", "p_chance"), ("accuracy", "p_baseline"), ("paired", "p_cluster"),
             ("paired", "p_tracking"), ("pairwise", "p_cluster"), ("scores", "p_cluster"),
             ("sensitivity", "p_sensitivity"))
#: The secondary tests, which treat the items as independent (exact McNemar, Cochran's Q): a family of their own.
SECONDARY_P_COLUMNS = (("accuracy", "p_baseline_mcnemar"), ("paired", "p_mcnemar"), ("paired", "p_tracking_mcnemar"),
                       ("pairwise", "p_mcnemar"), ("cochran", "p_cochran"))


def _adjust(a: Analysis, columns) -> int:
    """Adjust the p-values of ``columns`` together (``<col>_adj``, ``<col>_significant``); returns the family size."""
    tables = a.tables()
    parts = [(name, col) for name, col in columns if col in tables[name]]
    values = np.concatenate([tables[name][col].to_numpy(dtype=float) for name, col in parts]) if parts else np.zeros(0)
    adjusted, reject = adjust_pvalues(values, a.settings.correction, a.settings.alpha)
    start = 0
    for name, col in parts:
        n = len(tables[name])
        tables[name][f"{col}_adj"] = adjusted[start:start + n]
        tables[name][f"{col}_significant"] = reject[start:start + n]
        start += n
    return int((~np.isnan(values)).sum())


def _paired_mde(n, lost, gained, se, df, clusters, significant, level, power, alternative="two-sided") -> np.ndarray:
    """For rows that are not significant: the larger of the exact McNemar MDE at the observed discordance
    (items as independent: no design can do better) and the cluster t test's MDE; NaN where either test
    cannot reach ``level`` (too few items or clusters)."""
    cluster = mde_cluster(se, df, clusters, level, power, alternative)
    mde = np.array([mde_mcnemar(int(k), (lo + ga) / k, level, power, alternative, at_least=cl)
                    if k > 0 and not sig and not np.isnan(cl) else np.nan
                    for k, lo, ga, cl, sig in zip(n, lost, gained, cluster, significant)])
    return np.where(mde > 1, np.nan, mde)  # a change of more than 100 points cannot happen


def _minimum_detectable(a: Analysis) -> None:
    """Minimum detectable effects (fractions) beside every primary test that is not significant, at the
    level :attr:`Analysis.mde_level` and the report's power."""
    s, level = a.settings, a.mde_level
    t = a.paired
    if not t.empty:
        t["mde"] = _paired_mde(t["n"], t["lost"], t["gained"], t["se"], t["df"], t["n_clusters"],
                               t["p_cluster_significant"], level, s.power)
        if "p_tracking" in t:
            t["mde_tracking"] = _paired_mde(t["n_changed"].fillna(0), t["followed"].fillna(0), t["against"].fillna(0),
                                            t["tracking_se"], t["tracking_df"], t["tracking_n_clusters"],
                                            t["p_tracking_significant"], level, s.power, "greater")
    t = a.pairwise
    if not t.empty:
        t["mde"] = _paired_mde(t["n"], t["lost"], t["gained"], t["se"], t["df"], t["n_clusters"],
                               t["p_cluster_significant"], level, s.power)
    t = a.scores
    if not t.empty:
        se = t["se"].to_numpy(dtype=float)
        mde = mde_cluster(se, t["df"], t["n_clusters"], level, s.power)
        t["mde"] = np.where(t["p_cluster_significant"] | (se == 0), np.nan, mde)
    t = a.accuracy
    if not t.empty:
        t["mde_chance"] = [
            mde_binomial(int(n), p0, level, s.power, s.chance_alternative)
            if n > 0 and not sig and not np.isnan(p0) else np.nan
            for n, p0, sig in zip(t["n_chance"], t["chance"], t["p_chance_significant"])]
        if "p_baseline" in t:
            t["mde_baseline"] = _paired_mde(t["n_baseline_shared"].fillna(0), t["baseline_only"].fillna(0),
                                            t["model_only"].fillna(0), t["baseline_se"], t["baseline_df"],
                                            t["baseline_n_clusters"], t["p_baseline_significant"], level, s.power,
                                            "greater")
