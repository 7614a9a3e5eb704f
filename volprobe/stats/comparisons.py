"""Paired comparisons on the same items: reference vs each control of a model (change with its
cluster-robust test and CI, exact McNemar as the secondary item-level test, flips, counterfactual
tracking), model vs model, continuous scores, and Cochran's Q across controls.

Each comparison is queued on a :class:`~volprobe.stats.rows.ClusterColumns` (prefix ``""``: the change;
``tracking_``: the tracking gain of a counterfactual) and gets its cluster-robust columns when the
report fills them (:mod:`volprobe.stats.clustered`)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.errors import FormatError
from volprobe.stats.accuracy import baseline_control
from volprobe.stats.binomial import wilson_interval
from volprobe.stats.groups import Groups
from volprobe.stats.paired import cochrans_q_test, mcnemar_pvalues
from volprobe.stats.panel import Panel
from volprobe.stats.rows import ClusterColumns, comparison_rows, concat
from volprobe.stats.settings import ReportSettings


def control_kind(control: str, panel: Panel) -> str:
    if control in panel.counterfactual:
        return "counterfactual"
    if control in panel.no_image:
        return "no image"
    return "degraded image"


def _item_ids(panel: Panel, mask: np.ndarray, k: int = 3) -> str:
    ids = panel.items["item_id"].to_numpy()[np.flatnonzero(mask)[:k]]
    return ", ".join(ids) + (", ..." if mask.sum() > k else "")


def _check_item_sets(panel: Panel, m: int, r: int, c: int, intersect: bool) -> tuple[np.ndarray, np.ndarray]:
    """(items of the reference missing under c, items under c missing under the reference); raises
    unless the difference is allowed (counterfactual exclusions, or ``intersect``)."""
    ref, ctl = panel.present[m, r], panel.present[m, c]
    missing, extra = ref & ~ctl, ctl & ~ref
    control, reference, model = panel.controls[c], panel.controls[r], panel.models[m]
    cf = control in panel.counterfactual
    if not intersect and (extra.any() or (missing.any() and not cf)):
        parts = []
        if missing.any() and not cf:
            parts.append(f"{missing.sum():,} item(s) of {reference} are missing under {control} "
                         f"(e.g. {_item_ids(panel, missing)})")
        if extra.any():
            parts.append(f"{extra.sum():,} item(s) under {control} are missing under {reference} "
                         f"(e.g. {_item_ids(panel, extra)})")
        raise FormatError(
            f"model {model}: {control} and {reference} were run on different item sets: " + "; ".join(parts)
            + ". An unfinished run? Finish it (probe run resumes), or pass --intersect to compare the shared items only.")
    return missing, extra


def paired_table(panel: Panel, groups: Groups, roles, s: ReportSettings, tests: ClusterColumns, notes) -> pd.DataFrame:
    if s.reference not in panel.controls:
        return pd.DataFrame()
    r = panel.controls.index(s.reference)
    gold_ref = panel.items["gold"].to_numpy()
    frames = []
    for m, model in enumerate(panel.models):
        if not s.assessed(roles[model]):
            continue
        if not panel.present[m, r].any():
            notes.append(f"model {model} has no {s.reference} records: no paired tests for it")
            continue
        for c, control in enumerate(panel.controls):
            if c == r or not panel.present[m, c].any():
                continue
            missing, extra = _check_item_sets(panel, m, r, c, s.intersect)
            both = panel.present[m, r] & panel.present[m, c]
            pairs = panel.valid(m, r) & panel.valid(m, c)
            cr, cc = panel.correct[m, r] & pairs, panel.correct[m, c] & pairs
            ans_r, ans_c = panel.answer[m, r], panel.answer[m, c]
            cols = {"n": pairs, "correct_ref": cr, "correct_control": cc, "lost": cr & ~cc, "gained": ~cr & cc,
                    "flips": pairs & (ans_r != ans_c), "n_not_in_control": missing, "n_not_in_ref": extra,
                    "n_error_excluded": both & ~pairs}
            cf = control in panel.counterfactual
            if cf:
                gold_c = panel.gold[m, c]
                changed = pairs & (gold_c >= 0) & (gold_c != gold_ref)
                ref_tracks, cf_tracks = changed & (ans_r == gold_c), changed & (ans_c == gold_c)
                cols.update({"n_changed": changed, "tracking": cf_tracks, "kept_original": changed & (ans_c == gold_ref),
                             "ref_tracking": ref_tracks, "followed": cf_tracks & ~ref_tracks,
                             "against": ref_tracks & ~cf_tracks})
                # name_swap_only tag: tracking also over the changed items whose gold moves with the anatomy,
                # leaving out those whose gold changes only because left/right names swap
                geometry = changed & ~panel.name_swap_only[m, c]
                cols.update({"n_changed_geometry": geometry, "tracking_geometry": geometry & (ans_c == gold_c)})
            comparisons = {"": (cc.astype(float) - cr.astype(float), pairs, "two-sided")}
            if cf:  # answers equal the transformed gold with the counterfactual volume more than with the original
                comparisons["tracking_"] = (cf_tracks.astype(float) - ref_tracks.astype(float), changed, "greater")
            frames.append(comparison_rows(groups, cols, tests, comparisons, model=model, control=control,
                                          kind=control_kind(control, panel)))
    table = concat(frames)
    if table.empty:
        return table
    tests.register(table)
    with np.errstate(invalid="ignore", divide="ignore"):
        table["acc_ref"] = table["correct_ref"] / table["n"]
        table["acc_control"] = table["correct_control"] / table["n"]
        table["change"] = table["acc_control"] - table["acc_ref"]
        table["p_mcnemar"] = mcnemar_pvalues(table["lost"], table["gained"])
        table["flip_rate"] = table["flips"] / table["n"]
        table["flip_low"], table["flip_high"] = wilson_interval(table["flips"], table["n"], s.alpha)
        if "n_changed" in table:
            changed = table["n_changed"]
            for name in ("tracking", "kept_original", "ref_tracking"):
                table[f"{name}_rate"] = table[name] / changed
            table["tracking_gain"] = (table["followed"] - table["against"]) / changed
            table["tracking_geometry_rate"] = table["tracking_geometry"] / table["n_changed_geometry"]  # name_swap_only
            p = mcnemar_pvalues(table["followed"].fillna(0), table["against"].fillna(0), "greater")
            table["p_tracking_mcnemar"] = np.where(changed > 0, p, np.nan)
    return table


def pairwise_table(panel: Panel, groups: Groups, roles, s: ReportSettings, tests: ClusterColumns, notes) -> pd.DataFrame:
    frames = []
    for control in s.pairwise_controls or (s.reference,):
        if control not in panel.controls:
            notes.append(f"no records under {control!r}: no model-vs-model comparisons there")
            continue
        c = panel.controls.index(control)
        runs = []  # (model index, control index used)
        for m, model in enumerate(panel.models):
            if roles[model] == "random":
                continue
            if panel.present[m, c].any():
                runs.append((m, c))
            elif roles[model] == "baseline":
                cb = baseline_control(panel, m, control, s.reference)
                if cb is not None:
                    runs.append((m, cb))
        for i, (ma, ca) in enumerate(runs):
            for mb, cb in runs[i + 1:]:
                va, vb = panel.valid(ma, ca), panel.valid(mb, cb)
                shared = va & vb
                if not shared.any():
                    notes.append(f"{panel.models[ma]} and {panel.models[mb]} share no items under {control}")
                    continue
                xa, xb = panel.correct[ma, ca] & shared, panel.correct[mb, cb] & shared
                cols = {"n": shared, "correct_a": xa, "correct_b": xb, "lost": xa & ~xb, "gained": ~xa & xb,
                        "only_a": va & ~panel.present[mb, cb], "only_b": vb & ~panel.present[ma, ca]}
                frames.append(comparison_rows(groups, cols, tests, {"": (xb.astype(float) - xa.astype(float), shared,
                                                                          "two-sided")},
                                              control=control, model_a=panel.models[ma], model_b=panel.models[mb]))
    table = concat(frames)
    if table.empty:
        return table
    tests.register(table)
    table["acc_a"] = table["correct_a"] / table["n"]
    table["acc_b"] = table["correct_b"] / table["n"]
    table["change"] = table["acc_b"] - table["acc_a"]
    table["p_mcnemar"] = mcnemar_pvalues(table["lost"], table["gained"])
    return table


def scores_table(panel: Panel, groups: Groups, roles, s: ReportSettings, tests: ClusterColumns) -> pd.DataFrame:
    if s.reference not in panel.controls or not panel.scores:
        return pd.DataFrame()
    r = panel.controls.index(s.reference)
    frames = []
    for m, model in enumerate(panel.models):
        if not s.assessed(roles[model]):
            continue
        for c, control in enumerate(panel.controls):
            if c == r:
                continue
            pairs = panel.valid(m, r) & panel.valid(m, c)
            for score, values in panel.scores.items():
                x, y = values[m, r], values[m, c]
                ok = pairs & ~np.isnan(x) & ~np.isnan(y)
                if not ok.any():
                    continue
                xs, ys = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
                frames.append(comparison_rows(groups, {"n": ok, "sum_ref": xs, "sum_control": ys}, tests,
                                              {"": (ys - xs, ok, "two-sided")}, model=model, control=control,
                                              score=score))
    table = concat(frames)
    if table.empty:
        return table
    tests.register(table)
    table["mean_ref"] = table.pop("sum_ref") / table["n"]
    table["mean_control"] = table.pop("sum_control") / table["n"]
    table["change"] = table["mean_control"] - table["mean_ref"]
    return table


def cochran_table(panel: Panel, groups: Groups, roles, s: ReportSettings) -> pd.DataFrame:
    rows = []
    for m, model in enumerate(panel.models):
        if not s.assessed(roles[model]):
            continue
        conds = [c for c, name in enumerate(panel.controls)
                 if name not in panel.counterfactual and panel.present[m, c].any()]
        if len(conds) < 3:
            continue
        valid = np.all([panel.valid(m, c) for c in conds], axis=0)
        x = np.column_stack([panel.correct[m, c] for c in conds])
        for t, (grouping, group) in enumerate(groups.labels):
            items = groups.items_of(t)
            items = items[valid[items]]
            if items.size == 0:
                continue
            res = cochrans_q_test(x[items], [panel.controls[c] for c in conds])
            rows.append({"model": model, "grouping": grouping, "group": group, "controls": ", ".join(
                panel.controls[c] for c in conds), "k": len(conds), "n": items.size,
                "n_informative": res.counts["n_informative"], "q": res.statistic, "df": len(conds) - 1,
                "p_cochran": res.pvalue})
    return pd.DataFrame(rows)
