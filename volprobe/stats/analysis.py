"""Every number of a report, as tables (pandas DataFrames), from a :class:`Panel`.

Tables (one row per model × control × group unless stated):

- ``accuracy``: n, accuracy with a Wilson CI, error/unparseable/refusal counts, the test against
  chance (exact binomial, or Poisson-binomial when chance varies) and, for evaluated models, the
  one-sided binomial test against the strongest blind baseline's accuracy on the same items.
- ``paired``: the reference control (``full``) vs each other control of a model, on the items answered under
  both: exact McNemar with the discordant counts, the accuracy change with a cluster-bootstrap CI,
  the flip rate, and for counterfactual controls the tracking rate and its test.
- ``cochran``: Cochran's Q across the reference and every non-counterfactual control of a model.
- ``pairwise``: model vs model (exact McNemar, change with a cluster-bootstrap CI) on shared items.
- ``scores``: continuous scores of open items, reference vs control (cluster sign-flip test).

Records whose ``error`` is set are excluded from accuracy and from every paired test (counted in
``n_error``); a pair missing one side for that reason is counted in ``n_error_excluded``.
All p-values form one family adjusted by Holm (or Benjamini–Hochberg).
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
from volprobe.stats.power import mde_binomial, mde_from_se, mde_mcnemar
from volprobe.stats.rows import BootstrapColumns
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
    family_size: int = 0
    notes: list[str] = field(default_factory=list)

    def tables(self) -> dict[str, pd.DataFrame]:
        return {"accuracy": self.accuracy, "paired": self.paired, "cochran": self.cochran,
                "pairwise": self.pairwise, "scores": self.scores}


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
    boot = BootstrapColumns(groups)
    a.accuracy = accuracy_table(panel, groups, roles, s)
    a.paired = paired_table(panel, groups, roles, s, boot, a.notes)
    a.pairwise = pairwise_table(panel, groups, roles, s, boot, a.notes)
    a.scores = scores_table(panel, groups, roles, s, boot)
    a.cochran = cochran_table(panel, groups, roles, s)
    boot.fill(s.n_boot, s.seed, s.alpha, s.n_perm)
    _adjust(a)
    _minimum_detectable(a)
    return a


# --------------------------------------------------------------------------- family of tests


#: (table, p-value column) of every test in a report; adjusted together.
P_COLUMNS = (("accuracy", "p_chance"), ("accuracy", "p_baseline"), ("paired", "p_mcnemar"),
             ("paired", "p_tracking"), ("cochran", "p_cochran"), ("pairwise", "p_mcnemar"), ("scores", "p"))


def _adjust(a: Analysis) -> None:
    tables = a.tables()
    parts = [(name, col) for name, col in P_COLUMNS if col in tables[name]]
    values = np.concatenate([tables[name][col].to_numpy(dtype=float) for name, col in parts]) if parts else np.zeros(0)
    adjusted, reject = adjust_pvalues(values, a.settings.correction, a.settings.alpha)
    a.family_size = int((~np.isnan(values)).sum())
    start = 0
    for name, col in parts:
        n = len(tables[name])
        tables[name][f"{col}_adj"] = adjusted[start:start + n]
        tables[name][f"{col}_significant"] = reject[start:start + n]
        start += n


def _mde_paired(table: pd.DataFrame, s: ReportSettings) -> list[float]:
    """The larger of the exact McNemar MDE at the observed discordance and the cluster-bootstrap
    MDE (z_{1-α/2} + z_power)·SE, for rows whose McNemar test is not significant."""
    return [float(np.fmax(mde_mcnemar(n, (lo + ga) / n, s.alpha, s.power), mde_from_se(se, s.alpha, s.power)))
            if not sig else np.nan
            for n, lo, ga, se, sig in zip(table["n"], table["lost"], table["gained"], table["se_boot"],
                                          table["p_mcnemar_significant"])]


def _minimum_detectable(a: Analysis) -> None:
    """Minimum detectable effects (fractions) beside every test that is not significant."""
    s = a.settings
    if not a.paired.empty:
        a.paired["mde"] = _mde_paired(a.paired, s)
        if "p_tracking" in a.paired:
            a.paired["mde_tracking"] = [
                mde_mcnemar(int(n), (f + g) / n, s.alpha, s.power, "greater") if n > 0 and not sig else np.nan
                for n, f, g, sig in zip(a.paired["n_changed"].fillna(0), a.paired["followed"].fillna(0),
                                        a.paired["against"].fillna(0), a.paired["p_tracking_significant"])]
    if not a.pairwise.empty:
        a.pairwise["mde"] = _mde_paired(a.pairwise, s)
    if not a.scores.empty:
        se = a.scores["se_boot"].to_numpy(dtype=float)
        a.scores["mde"] = np.where(a.scores["p_significant"] | (se == 0), np.nan, mde_from_se(se, s.alpha, s.power))
    if not a.accuracy.empty:
        a.accuracy["mde_chance"] = [
            mde_binomial(int(n), p0, s.alpha, s.power, s.chance_alternative)
            if n > 0 and not sig and not np.isnan(p0) else np.nan
            for n, p0, sig in zip(a.accuracy["n_chance"], a.accuracy["chance"], a.accuracy["p_chance_significant"])]
        if "p_baseline" in a.accuracy:
            a.accuracy["mde_baseline"] = [
                mde_binomial(int(n), p0, s.alpha, s.power, "greater")
                if n > 0 and not sig and not np.isnan(p0) else np.nan
                for n, p0, sig in zip(a.accuracy["n_baseline_shared"].fillna(0), a.accuracy["baseline_accuracy"],
                                      a.accuracy["p_baseline_significant"])]
