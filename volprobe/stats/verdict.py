"""The volume-reliance verdict: a plain-language answer per model and group, with the test that decided it.

Rule (reference = the reference control, ``full``; "without the volume" = a control that removes the image
as its records state, preferring one with no image input at all, ``text_only``, over an empty image, ``blank``).
The deciding test is the cluster-robust paired test of :mod:`volprobe.stats.clustered` (a t test with
the CR2 variance; the exact sign-flip test when there are too few clusters), adjusted with every other
primary test of the report (:func:`decide`):

- **uses the volume** — the change in accuracy without the volume is significant and negative;
- **does better without the volume** — significant and positive;
- **inconclusive** — not significant, although the exact McNemar test, which treats questions on one
  patient as independent, is (in its own family of secondary tests): the difference rests on a few patients;
- **no evidence of volume use** — otherwise, stated with n and the minimum detectable drop;
- **not assessed** — no control without the image was paired with the reference (one line per model
  when the model ran no control at all).

Each verdict also reports leakage (accuracy without the volume against chance), the paired comparison of
the reference with the strongest blind baseline, and every other control with a significant change or
(for counterfactuals) significant tracking, each with the test that decided it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.stats.analysis import Analysis
from volprobe.stats.clustered import clusters_text, describe_test
from volprobe.stats.multiple import correction_label
from volprobe.stats.result import format_p
from volprobe.stats.tables import pct, signed

VERDICTS = ("uses the volume", "does better without the volume", "inconclusive", "no evidence of volume use",
            "not assessed")


def decide(significant, change, secondary_significant) -> np.ndarray:
    """The verdict rule (module docstring), vectorised: ``significant`` — the cluster-robust test after the
    report's correction; ``change`` — accuracy without the volume minus with it; ``secondary_significant`` —
    exact McNemar after its own correction. Rows with no test (NaN change) are ``not assessed``."""
    significant = np.atleast_1d(np.asarray(significant, dtype=bool))
    change = np.atleast_1d(np.asarray(change, dtype=float))
    secondary = np.atleast_1d(np.asarray(secondary_significant, dtype=bool))
    out = np.where(significant & (change < 0), VERDICTS[0],
                   np.where(significant & (change > 0), VERDICTS[1],
                            np.where(secondary, VERDICTS[2], VERDICTS[3]))).astype(object)
    out[np.isnan(change)] = VERDICTS[4]
    return out


def _pts(x: float, sign: bool = True) -> str:
    """Points (percent) for sentences: signed with a true minus sign, or unsigned."""
    return signed(x).replace("-", "−") if sign else pct(x)


def _p(p: float) -> str:
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _ci(row, prefix: str = "") -> str:
    """The interval of a comparison, or why there is none."""
    if getattr(row, f"{prefix}exact"):
        return f"(no CI: only {clusters_text(getattr(row, f'{prefix}n_clusters'))})"
    return f"[{_pts(getattr(row, f'{prefix}ci_low'))}, {_pts(getattr(row, f'{prefix}ci_high'))}]"


def _test(row, prefix: str = "") -> str:
    """Short name of the test that decided a comparison, for sentences."""
    return "exact sign-flip" if getattr(row, f"{prefix}exact") else "cluster-robust"


class _Rows:
    """The rows of a table by (model, control, grouping, group), looked up as pandas Series."""

    KEY = ("model", "control", "grouping", "group")

    def __init__(self, table: pd.DataFrame):
        self.table = table
        self.index = {} if table.empty else {key: i for i, key in enumerate(zip(*(table[k] for k in self.KEY)))}

    def get(self, model, control, grouping, group):
        i = self.index.get((model, control, grouping, group))
        return None if i is None else self.table.iloc[i]


def _main(row, corr: str, reference: str, paired: bool = True) -> tuple[str, str]:
    if row is None:
        what = "no control without the image" if paired else "no control"
        return VERDICTS[4], f"not assessed: {what} paired with {reference}"
    verdict = decide(row.p_cluster_significant, row.change, row.p_mcnemar_significant)[0]
    change = f"{_pts(row.change)} points {_ci(row)} without it"
    test = f"{_test(row)} {_p(row.p_cluster_adj)} ({corr})"
    if verdict in VERDICTS[:2]:
        return verdict, f"{verdict}: {change}, {test}"
    if verdict == VERDICTS[2]:
        return verdict, (f"inconclusive: {change}; exact McNemar {_p(row.p_mcnemar_adj)} treats the questions on one "
                         f"patient as independent, the {test} does not")
    if row.exact and np.isnan(row.mde):
        mde = f"not reachable with {clusters_text(row.n_clusters)}"
    else:
        mde = "not reachable with these items" if np.isnan(row.mde) else f"{_pts(row.mde, False)} points"
    return verdict, f"no evidence of volume use (n = {row.n:,}; minimum detectable drop {mde})"


def _leakage(acc, corr: str) -> tuple[object, str]:
    if acc is None or pd.isna(acc.get("p_chance")):
        return None, ""
    closed = acc.correct_chance / acc.n_chance  # the items that have a chance level
    where = (f"{acc.control} accuracy {_pts(closed, False)}% vs chance {_pts(acc.chance, False)}% on "
             f"{int(acc.n_chance):,} items with a chance level")
    if acc.p_chance_significant and closed > acc.chance:
        return True, f"leakage: {where}, {_p(acc.p_chance_adj)} ({corr})"
    if acc.p_chance_significant:
        return False, f"below chance without the volume: {where}, {_p(acc.p_chance_adj)} ({corr})"
    return False, f"no leakage detected: {where}, {_p(acc.p_chance_adj)} ({corr})"


def _baseline(acc, corr: str) -> str:
    if acc is None or pd.isna(acc.get("p_baseline", np.nan)):
        return ""
    where = (f"{acc.control} {_pts(acc.correct_shared / acc.n_baseline_shared, False)}% vs blind baseline "
             f"{acc.baseline} {_pts(acc.baseline_accuracy, False)}% on {int(acc.n_baseline_shared):,} shared items, "
             f"{_pts(acc.baseline_change)} points {_ci(acc, 'baseline_')}")
    test = f"{_test(acc, 'baseline_')} {_p(acc.p_baseline_adj)} ({corr}, one-sided)"
    if acc.p_baseline_significant:
        return f"beats the blind baseline: {where}, {test}"
    mde = "" if pd.isna(acc.get("mde_baseline")) else f"; minimum detectable gain {_pts(acc.mde_baseline, False)} points"
    return f"not shown above the blind baseline: {where}, {test}{mde}"


def _others(rows: pd.DataFrame, primary: str | None, corr: str) -> list[str]:
    out = []
    for row in rows.itertuples():
        if row.control == primary:
            continue
        if row.kind == "counterfactual" and getattr(row, "n_changed", 0) > 0:
            follows = (f"answers follow the transformed anatomy on {_pts(row.tracking_rate, False)}% of "
                       f"{int(row.n_changed):,} items whose answer changes ({_pts(row.ref_tracking_rate, False)}% with "
                       f"the original volume)")
            test = f"{_test(row, 'tracking_')} {_p(row.p_tracking_adj)}"
            if row.p_tracking_significant:
                out.append(f"{row.control}: {follows}, {test} ({corr}, one-sided)")
            else:
                mde = "" if pd.isna(row.mde_tracking) else f"; minimum detectable {_pts(row.mde_tracking, False)} points"
                out.append(f"{row.control}: no evidence of tracking ({follows}, {test}{mde})")
        elif row.p_cluster_significant:
            out.append(f"{row.control}: {_pts(row.change)} points {_ci(row)}, {_test(row)} {_p(row.p_cluster_adj)} "
                       f"({corr})")
    return out


def decided_by(row) -> str:
    """The test that decided a verdict row, in words."""
    if row is None:
        return ""
    return describe_test(bool(row.exact), float(row.df), int(row.n_clusters)) + ", two-sided"


def _basis(row, a: Analysis) -> str:
    if row is None:
        return ""
    s = a.settings
    excluded = f"; {row.n_error_excluded:,} excluded for model errors" if row.n_error_excluded else ""
    interval = ("no CI (too few clusters)" if row.exact
                else f"{1 - s.alpha:.0%} CI: t interval with the CR2 cluster-robust standard error")
    return (f"{s.reference} vs {row.control} on {row.n:,} items{excluded} in {row.n_clusters:,} clusters "
            f"({a.panel.cluster_level}); decided by the {decided_by(row)}, {correction_label(s.correction)} over "
            f"{a.family_size:,} tests; {interval}; exact McNemar (secondary, items as independent): {row.lost:,} right "
            f"only with the volume, {row.gained:,} right only without, {_p(row.p_mcnemar_adj)} "
            f"({correction_label(s.correction)} over {a.secondary_family_size:,} secondary tests)")


def verdicts(a: Analysis) -> pd.DataFrame:
    """One row per evaluated model and group: verdict, sentence, the test that decided it, the change in
    accuracy without the volume (``no_image_control`` − reference; the gain over text-only is its negative),
    leakage, the blind-baseline comparison, other controls, and the basis of the verdict. A model that ran
    no control paired with the reference gets one ``not assessed`` row (group ``all``)."""
    corr = correction_label(a.settings.correction)
    rows = []
    paired_models = a.paired_models()
    paired, accuracy = _Rows(a.paired), _Rows(a.accuracy)
    by_group = {} if a.paired.empty else {key: part for key, part in a.paired.groupby(["model", "grouping", "group"],
                                                                                      sort=False)}
    for model, role in a.roles.items():
        if not a.settings.assessed(role):
            continue
        if model not in paired_models:
            verdict, sentence = _main(None, corr, a.settings.reference, paired=False)
            rows.append({"model": model, "grouping": "all", "group": "all", "verdict": verdict, "summary": sentence,
                         "decided_by": "", "no_image_control": None, "change_without_volume": np.nan,
                         "ci_low": np.nan, "ci_high": np.nan, "leakage": None, "leakage_text": "",
                         "baseline_text": "", "other_controls": "", "basis": ""})
            continue
        controls = list(a.paired.loc[a.paired["model"] == model, "control"].unique())
        primary = next((c for c in a.panel.no_image if c in controls), None)
        for grouping, group in a.groups.labels:
            key = {"model": model, "grouping": grouping, "group": group}
            main = paired.get(model, primary, grouping, group) if primary else None
            reference = accuracy.get(model, a.settings.reference, grouping, group)
            if main is None and grouping != "all" and reference is None:
                continue
            verdict, sentence = _main(main, corr, a.settings.reference)
            leak, leak_text = _leakage(accuracy.get(model, primary, grouping, group) if primary else None, corr)
            group_rows = by_group.get((model, grouping, group), a.paired.iloc[:0])
            rows.append({
                **key, "verdict": verdict, "summary": sentence, "decided_by": decided_by(main),
                "no_image_control": primary,
                "change_without_volume": main.change if main is not None else np.nan,
                "ci_low": main.ci_low if main is not None else np.nan,
                "ci_high": main.ci_high if main is not None else np.nan,
                "leakage": leak, "leakage_text": leak_text,
                "baseline_text": _baseline(reference, corr),
                "other_controls": "; ".join(_others(group_rows, primary, corr)),
                "basis": _basis(main, a),
            })
    return pd.DataFrame(rows)
