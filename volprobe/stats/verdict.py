"""The volume-reliance verdict: a plain-language answer per model and group, with its basis.

Rule (reference = the reference control, ``full``; "without the volume" = a control that removes the image
as its records state, preferring one with no image input at all, ``text_only``, over an empty image, ``blank``):

- **uses the volume** — accuracy is lower without the volume, the exact McNemar test is
  significant after the report's correction, *and* the cluster-bootstrap CI of the change
  (which resamples patients, so it respects questions sharing a volume) lies below 0;
- **does better without the volume** — the same, with the change above 0;
- **inconclusive** — McNemar is significant but the clustered CI includes 0;
- **no evidence of volume use** — otherwise, stated with n and the minimum detectable drop.

Each verdict also reports leakage (text-only accuracy against chance), the comparison of ``full``
with the strongest blind baseline, and every other control with a significant change or (for
counterfactuals) significant tracking.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.stats.analysis import Analysis
from volprobe.stats.multiple import correction_label
from volprobe.stats.result import format_p
from volprobe.stats.tables import pct, signed

VERDICTS = ("uses the volume", "does better without the volume", "inconclusive", "no evidence of volume use",
            "not assessed")


def _pts(x: float, sign: bool = True) -> str:
    """Points (percent) for sentences: signed with a true minus sign, or unsigned."""
    return signed(x).replace("-", "−") if sign else pct(x)


def _p(p: float) -> str:
    text = format_p(p)
    return f"p {text}" if text.startswith("<") else f"p = {text}"


def _ci(row) -> str:
    return f"[{_pts(row.ci_low)}, {_pts(row.ci_high)}]"


def _row(table: pd.DataFrame, **match):
    if table.empty:
        return None
    sel = np.ones(len(table), dtype=bool)
    for k, v in match.items():
        sel &= (table[k] == v).to_numpy()
    hits = table[sel]
    return None if hits.empty else hits.iloc[0]


def _main(row, corr: str, reference: str) -> tuple[str, str]:
    if row is None:
        return "not assessed", f"not assessed: no control without the image paired with {reference}"
    change = f"{_pts(row.change)} points {_ci(row)} without it"
    test = f"McNemar {_p(row.p_mcnemar_adj)} ({corr})"
    if row.p_mcnemar_significant and row.ci_high < 0:
        return "uses the volume", f"uses the volume: {change}, {test}"
    if row.p_mcnemar_significant and row.ci_low > 0:
        return "does better without the volume", f"does better without the volume: {change}, {test}"
    if row.p_mcnemar_significant:
        return "inconclusive", (f"inconclusive: {change}; {test} but the CI, which resamples "
                                "whole clusters, includes 0")
    mde = "not reachable with these items" if np.isnan(row.mde) else f"{_pts(row.mde, False)} points"
    return "no evidence of volume use", f"no evidence of volume use (n = {row.n:,}; minimum detectable drop {mde})"


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
             f"{acc.baseline} {_pts(acc.baseline_accuracy, False)}% on {int(acc.n_baseline_shared):,} shared items")
    if acc.p_baseline_significant:
        return f"beats the blind baseline: {where}, {_p(acc.p_baseline_adj)} ({corr}, one-sided)"
    mde = "" if pd.isna(acc.get("mde_baseline")) else f"; minimum detectable gain {_pts(acc.mde_baseline, False)} points"
    return f"not shown above the blind baseline: {where}, {_p(acc.p_baseline_adj)} ({corr}, one-sided){mde}"


def _others(rows: pd.DataFrame, primary: str | None, corr: str) -> list[str]:
    out = []
    for row in rows.itertuples():
        if row.control == primary:
            continue
        if row.kind == "counterfactual" and getattr(row, "n_changed", 0) > 0:
            follows = (f"answers follow the transformed anatomy on {_pts(row.tracking_rate, False)}% of "
                       f"{int(row.n_changed):,} items whose answer changes ({_pts(row.ref_tracking_rate, False)}% with "
                       f"the original volume)")
            if row.p_tracking_significant:
                out.append(f"{row.control}: {follows}, {_p(row.p_tracking_adj)} ({corr}, one-sided)")
            else:
                mde = "" if pd.isna(row.mde_tracking) else f"; minimum detectable {_pts(row.mde_tracking, False)} points"
                out.append(f"{row.control}: no evidence of tracking ({follows}, {_p(row.p_tracking_adj)}{mde})")
        elif row.p_mcnemar_significant:
            out.append(f"{row.control}: {_pts(row.change)} points {_ci(row)}, McNemar {_p(row.p_mcnemar_adj)} ({corr})")
    return out


def _basis(row, a: Analysis) -> str:
    if row is None:
        return ""
    s = a.settings
    excluded = f"; {row.n_error_excluded:,} excluded for model errors" if row.n_error_excluded else ""
    return (f"{s.reference} vs {row.control} on {row.n:,} items{excluded}, {row.n_clusters:,} clusters "
            f"({a.panel.cluster_level}); exact McNemar, two-sided: {row.lost:,} right only with the volume, "
            f"{row.gained:,} right only without; {1 - s.alpha:.0%} CI: cluster bootstrap, {s.n_boot:,} resamples, "
            f"seed {s.seed}; {correction_label(s.correction)} over {a.family_size:,} tests")


def verdicts(a: Analysis) -> pd.DataFrame:
    """One row per evaluated model and group: verdict, sentence, the change in accuracy without the
    volume (``no_image_control`` − reference; the gain over text-only is its negative), leakage,
    the blind-baseline comparison, other controls, and the basis of the verdict."""
    corr = correction_label(a.settings.correction)
    rows = []
    for model, role in a.roles.items():
        if not a.settings.assessed(role):
            continue
        controls = [] if a.paired.empty else list(a.paired.loc[a.paired["model"] == model, "control"].unique())
        primary = next((c for c in a.panel.no_image if c in controls), None)
        for grouping, group in a.groups.labels:
            key = {"model": model, "grouping": grouping, "group": group}
            main = _row(a.paired, control=primary, **key) if primary else None
            if main is None and grouping != "all" and _row(a.accuracy, **key) is None:
                continue
            verdict, sentence = _main(main, corr, a.settings.reference)
            leak, leak_text = _leakage(_row(a.accuracy, control=primary, **key) if primary else None, corr)
            group_rows = a.paired[(a.paired["model"] == model) & (a.paired["grouping"] == grouping)
                                  & (a.paired["group"] == group)] if not a.paired.empty else a.paired
            rows.append({
                **key, "verdict": verdict, "summary": sentence, "no_image_control": primary,
                "change_without_volume": main.change if main is not None else np.nan,
                "ci_low": main.ci_low if main is not None else np.nan,
                "ci_high": main.ci_high if main is not None else np.nan,
                "leakage": leak, "leakage_text": leak_text,
                "baseline_text": _baseline(_row(a.accuracy, control=a.settings.reference, **key), corr),
                "other_controls": "; ".join(_others(group_rows, primary, corr)),
                "basis": _basis(main, a),
            })
    return pd.DataFrame(rows)
