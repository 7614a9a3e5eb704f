"""Tables for people: formatted (percent, CIs, p-values with their sidedness and correction) and
written as Markdown, LaTeX (booktabs) and CSV. The CSV files hold the raw numbers, every column."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from volprobe.stats.accuracy import RULE_N_PREFIX, RULE_PREFIX
from volprobe.stats.analysis import Analysis
from volprobe.stats.clustered import MIN_CLUSTERS, clusters_text
from volprobe.stats.multiple import correction_label
from volprobe.stats.result import format_p


def _num(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x)) and not pd.isna(x)


def pct(x, digits: int = 1) -> str:
    return f"{100 * x:.{digits}f}" if _num(x) else "–"


def interval(lo, hi) -> str:
    return f"[{pct(lo)}, {pct(hi)}]" if _num(lo) and _num(hi) else ""


def signed(x) -> str:
    return f"{100 * x:+.1f}" if _num(x) else "–"


def p_cell(p, significant=False, mde=None) -> str:
    """Adjusted p-value, ``*`` when significant after the correction, the MDE when not."""
    if not _num(p):
        return "–"
    text = format_p(p) + (" *" if significant else "")
    if not significant and _num(mde):
        text += f" (MDE {100 * mde:.1f})"
    return text


def group_label(grouping: str, group: str) -> str:
    if grouping != "all":
        return f"{grouping}: {group}"
    return "all" if group == "all" else f"all {group} items"


def _groups(t: pd.DataFrame) -> list[str]:
    return [group_label(g, v) for g, v in zip(t["grouping"], t["group"])]


def change_cell(x, lo, hi, exact, n_clusters) -> str:
    """A change with its interval, or why it has none (too few clusters)."""
    if _num(x) and bool(exact):
        return f"{signed(x)} (no CI: {clusters_text(n_clusters)})"
    return f"{signed(x)} {interval(lo, hi)}".rstrip()


def test_cell(exact, df, n_clusters) -> str:
    """The test that decided a row: ``t, 11.0 df`` or ``sign-flip, 6 clusters``."""
    if not _num(df) and not bool(exact):
        return "–"
    return f"sign-flip, {clusters_text(n_clusters)}" if bool(exact) else f"t, {df:.1f} df"


def _changes(t: pd.DataFrame, prefix: str = "", value: str = "change") -> list[str]:
    return [change_cell(x, lo, hi, ex, k) for x, lo, hi, ex, k in
            zip(t[value], t[f"{prefix}ci_low"], t[f"{prefix}ci_high"], t[f"{prefix}exact"], t[f"{prefix}n_clusters"])]


def _tests(t: pd.DataFrame, prefix: str = "") -> list[str]:
    return [test_cell(ex, df, k) for ex, df, k in zip(t[f"{prefix}exact"], t[f"{prefix}df"], t[f"{prefix}n_clusters"])]


def _pcells(t: pd.DataFrame, col: str, mde: str | None = None) -> list[str]:
    mdes = t[mde] if mde else [None] * len(t)
    return [p_cell(p, sig, m) for p, sig, m in zip(t[f"{col}_adj"], t[f"{col}_significant"], mdes)]


def families(a: Analysis) -> tuple[str, str, str]:
    """(primary family, secondary family, MDE level) in words, for table captions."""
    s, corr = a.settings, correction_label(a.settings.correction)
    return (f"{corr} over the {a.family_size:,} primary tests",
            f"{corr} over the {a.secondary_family_size:,} secondary tests",
            f"{s.power:.0%} power at alpha/{a.family_size:,} = {a.mde_level:.2g}")


def display_tables(a: Analysis, verdicts: pd.DataFrame) -> dict[str, tuple[str, pd.DataFrame]]:
    """name → (caption, formatted table) for every non-empty table of the report."""
    s = a.settings
    primary, secondary, mde_at = families(a)
    level = f"{1 - s.alpha:.0%}"
    ci = f"{level} CI: t interval with the CR2 cluster-robust SE; none below {MIN_CLUSTERS} clusters"
    out: dict[str, tuple[str, pd.DataFrame]] = {}
    if not verdicts.empty:
        out["verdicts"] = ("Volume reliance per model and group, with the test that decided each verdict", pd.DataFrame({
            "Model": verdicts["model"], "Group": _groups(verdicts), "Verdict": verdicts["summary"],
            "Decided by": verdicts["decided_by"], "Text-only vs chance": verdicts["leakage_text"],
            "Blind baseline": verdicts["baseline_text"], "Other controls": verdicts["other_controls"]}))
    t = a.accuracy
    if not t.empty:
        d = pd.DataFrame({
            "Model": t["model"], "Control": t["control"], "Group": _groups(t), "n": t["n"],
            f"Accuracy % [{level} CI]": [f"{pct(x)} {interval(lo, hi)}" for x, lo, hi in
                                         zip(t["accuracy"], t["ci_low"], t["ci_high"])]})
        show_subtasks = _subtask_rows(a)
        if show_subtasks.any():
            d["Subtask mean %"] = [f"{pct(x)} ({k})" if show else "–" for x, k, show in
                                   zip(t["subtask_mean"], t["n_subtasks"], show_subtasks)]
        rules = [c[len(RULE_PREFIX):] for c in t.columns if c.startswith(RULE_PREFIX)]
        for name in rules:
            d[f"{name} % (items), secondary"] = [f"{pct(x)} ({int(k):,})" if k else "–" for x, k in
                                                 zip(t[RULE_PREFIX + name], t[RULE_N_PREFIX + name])]
        d["Errors"], d["Unparseable %"] = t["n_error"], t["unparseable_rate"].map(pct)
        d["Refused %"] = t["refusal_rate"].map(pct)
        d["Chance % (items)"] = [pct(c) if k == n else f"{pct(c)} ({k:,})" if k else "–"
                                 for c, k, n in zip(t["chance"], t["n_chance"], t["n"])]
        d[f"p vs chance ({s.chance_alternative})"] = _pcells(t, "p_chance", "mde_chance")
        if "p_baseline" in t:
            d["Blind baseline %"] = [f"{pct(x)} ({b})" if _num(x) else "–" for x, b in
                                     zip(t["baseline_accuracy"], t["baseline"])]
            d[f"Change vs baseline [{level} CI]"] = [c if _num(x) else "–" for c, x in
                                                     zip(_changes(t, "baseline_", "baseline_change"), t["baseline_change"])]
            d["p vs baseline (one-sided)"] = _pcells(t, "p_baseline", "mde_baseline")
            d["McNemar p vs baseline"] = _pcells(t, "p_baseline_mcnemar")
        caption = (f"Accuracy per model, control and group (Wilson {level} CI; exact binomial or Poisson-binomial "
                   f"test against chance on the items that have a chance level, their number in brackets when not "
                   f"all; p-values {primary}, MDE at {mde_at}")
        if show_subtasks.any():
            caption += ("; subtask mean: unweighted mean of the per-subtask accuracies (the 3D-RAD paper's task "
                        "score), number of subtasks in brackets, for rows of one task")
        if rules:
            caption += (f"; {', '.join(rules)}: the benchmark's own scoring rule as the records carry it, the way "
                        "its published numbers are scored (secondary and descriptive, no test; `probe score` says "
                        "what it counts), over the items in brackets")
        if "p_baseline" in t:
            caption += (f"; vs the strongest blind baseline on the items both answered: change in points, {ci}; "
                        f"cluster-robust test, one-sided; exact McNemar, one-sided, {secondary}")
        out["accuracy"] = (caption + ")", d)
    t = a.paired
    if not t.empty:
        out["paired"] = (f"{s.reference} vs each control on the same items (change = control − {s.reference}, points, "
                         f"{ci}; p: cluster-robust test, two-sided, {primary}, `*` significant, MDE = minimum "
                         f"detectable drop at {mde_at}; McNemar p: exact, items as independent, secondary, "
                         f"{secondary})", pd.DataFrame({
                             "Model": t["model"], "Control": t["control"], "Group": _groups(t), "n": t["n"],
                             "Clusters": t["n_clusters"],
                             f"{s.reference} %": t["acc_ref"].map(pct), "control %": t["acc_control"].map(pct),
                             f"Change [{level} CI]": _changes(t), "p": _pcells(t, "p_cluster", "mde"),
                             "Test": _tests(t),
                             "Lost / gained": [f"{lo} / {ga}" for lo, ga in zip(t["lost"], t["gained"])],
                             "McNemar p": _pcells(t, "p_mcnemar"),
                             "Flip %": t["flip_rate"].map(pct),
                             "Excluded": [_excluded(r) for r in t.itertuples()],
                         }))
        if "n_changed" in t:
            cf = t[t["n_changed"].fillna(0) > 0]
            if not cf.empty:
                out["tracking"] = (f"Counterfactual controls: on items whose gold answer changes, the share answered "
                                   f"with the transformed gold (tracking), with the original gold, and the share of "
                                   f"{s.reference} answers already equal to the transformed gold; gain = tracking − "
                                   f"that share, points, {ci}; p: cluster-robust test of the gain, one-sided, "
                                   f"{primary}, MDE at {mde_at}; McNemar p: exact, one-sided, {secondary}; "
                                   "w/o name swaps: tracking over the changed items left when those whose gold "
                                   "changes only because left/right names swap are set aside", pd.DataFrame({
                                       "Model": cf["model"], "Control": cf["control"], "Group": _groups(cf),
                                       "n changed": cf["n_changed"].astype(int),
                                       "Tracking %": cf["tracking_rate"].map(pct),
                                       # name_swap_only tag: tracking without the items whose gold changes only
                                       # because left/right names swap, and how many are left
                                       "Tracking % w/o name swaps (n)": [
                                           f"{pct(r)} ({int(k)})" for r, k in
                                           zip(cf["tracking_geometry_rate"], cf["n_changed_geometry"])],
                                       "Kept original %": cf["kept_original_rate"].map(pct),
                                       f"{s.reference} = transformed %": cf["ref_tracking_rate"].map(pct),
                                       f"Gain [{level} CI]": _changes(cf, "tracking_", "tracking_gain"),
                                       "p": _pcells(cf, "p_tracking", "mde_tracking"), "Test": _tests(cf, "tracking_"),
                                       "Followed / against": [f"{int(f)} / {int(g)}" for f, g in
                                                              zip(cf["followed"], cf["against"])],
                                       "McNemar p": _pcells(cf, "p_tracking_mcnemar"),
                                   }))
    t = a.cochran
    if not t.empty:
        out["cochran"] = (f"Cochran's Q across the non-counterfactual controls of each model (items as independent; "
                          f"secondary, {secondary})", pd.DataFrame({
                              "Model": t["model"], "Group": _groups(t), "Controls": t["controls"], "n": t["n"],
                              "Q": t["q"].map(lambda q: f"{q:.2f}"), "df": t["df"], "p": _pcells(t, "p_cochran")}))
    t = a.pairwise
    if not t.empty:
        out["pairwise"] = (f"Model vs model on shared items (change = B − A, points, {ci}; p: cluster-robust test, "
                           f"two-sided, {primary}, MDE at {mde_at}; McNemar p: exact, secondary, {secondary})",
                           pd.DataFrame({
                               "Control": t["control"], "Model A": t["model_a"], "Model B": t["model_b"],
                               "Group": _groups(t), "n": t["n"], "Clusters": t["n_clusters"],
                               "A %": t["acc_a"].map(pct), "B %": t["acc_b"].map(pct),
                               f"Change [{level} CI]": _changes(t), "p": _pcells(t, "p_cluster", "mde"),
                               "Test": _tests(t),
                               "Lost / gained": [f"{lo} / {ga}" for lo, ga in zip(t["lost"], t["gained"])],
                               "McNemar p": _pcells(t, "p_mcnemar")}))
    t = a.scores
    if not t.empty:
        out["scores"] = (f"Continuous scores of open items, {s.reference} vs control (change = control − "
                         f"{s.reference}, ×100, {ci}; p: cluster-robust test, two-sided, {primary}, MDE at {mde_at})",
                         pd.DataFrame({
                             "Model": t["model"], "Control": t["control"], "Score": t["score"], "Group": _groups(t),
                             "n": t["n"], "Clusters": t["n_clusters"], f"{s.reference}": t["mean_ref"].map(pct),
                             "control": t["mean_control"].map(pct), f"Change [{level} CI]": _changes(t),
                             "p": _pcells(t, "p_cluster", "mde"), "Test": _tests(t)}))
    t = a.sensitivity
    if not t.empty:
        out["sensitivity"] = (f"Answer sensitivity of models without controls: pairs of items with the same "
                              f"question text on different volumes; the share whose answers differ where the golds "
                              f"differ and where they agree (pooled); sensitivity = their difference within each "
                              f"question text that has pairs of both kinds (Compared), Mantel-Haenszel weighted, "
                              f"points, {level} CI cluster-robust over those texts (none below {MIN_CLUSTERS}); p: "
                              f"answers permuted among the volumes of each text ({s.n_perm:,} permutations), "
                              f"one-sided, {primary}", pd.DataFrame({
                                  "Model": t["model"], "Answers": t["answers"],
                                  "Texts": _ints(t, "n_texts"), "Compared": _ints(t, "n_compared"),
                                  "Volumes": _ints(t, "n_volumes"),
                                  "Golds differ: pairs, changed %": _pairs_cells(t, "pairs_differ", "rate_differ"),
                                  "Golds agree: pairs, changed %": _pairs_cells(t, "pairs_agree", "rate_agree"),
                                  f"Sensitivity [{level} CI]": [f"{signed(x)} {interval(lo, hi)}".rstrip() for x, lo, hi
                                                                in zip(_col(t, "sensitivity"), _col(t, "ci_low"),
                                                                       _col(t, "ci_high"))],
                                  "p": _pcells(t, "p_sensitivity") if "p_sensitivity_adj" in t else "–",
                                  "Note": t["note"].fillna(""),
                              }))
    return out


def _col(t: pd.DataFrame, name: str) -> pd.Series:
    return t[name] if name in t else pd.Series(np.nan, index=t.index)


def _ints(t: pd.DataFrame, name: str) -> list[str]:
    return [f"{int(x):,}" if _num(x) else "–" for x in _col(t, name)]


def _pairs_cells(t: pd.DataFrame, pairs: str, rate: str) -> list[str]:
    return [f"{int(n):,}, {pct(r)}" if _num(n) and n > 0 else "–" for n, r in zip(_col(t, pairs), _col(t, rate))]


def _subtask_rows(a: Analysis) -> np.ndarray:
    """Accuracy rows that get the subtask mean: their items are of one task and span two or more subtasks."""
    t = a.accuracy
    items = a.panel.items
    one_task = {}
    for g, (grouping, group) in enumerate(a.groups.labels):
        tasks = items["task"].iloc[a.groups.items_of(g)].dropna().unique()
        one_task[(grouping, group)] = len(tasks) <= 1
    return np.array([one_task[(g, v)] and k >= 2 for g, v, k in zip(t["grouping"], t["group"], t["n_subtasks"])],
                    dtype=bool)


def _excluded(row) -> str:
    parts = []
    if row.n_not_in_control:
        parts.append(f"{row.n_not_in_control} not in control")
    if row.n_not_in_ref:
        parts.append(f"{row.n_not_in_ref} not in reference")
    if row.n_error_excluded:
        parts.append(f"{row.n_error_excluded} model errors")
    return ", ".join(parts) or "0"


def to_markdown(table: pd.DataFrame) -> str:
    return table.to_markdown(index=False, disable_numparse=True)


_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                  "<": r"\textless{}", ">": r"\textgreater{}"}
_LATEX_ASCII = {"−": "-", "–": "--", "×": "x", "·": "-", "≥": r"\textgreater{}=", "≤": r"\textless{}="}


def latex_escape(text: str) -> str:
    """Text for LaTeX: special characters escaped, signs pdfLaTeX lacks in UTF-8 input spelled out."""
    out = "".join(_LATEX_SPECIAL.get(ch, ch) for ch in str(text))
    for sign, ascii_text in _LATEX_ASCII.items():
        out = out.replace(sign, ascii_text)
    return out


def to_latex(caption: str, table: pd.DataFrame, label: str) -> str:
    """A booktabs table (``\\usepackage{booktabs}``), every cell, header and the caption escaped."""
    clean = table.map(latex_escape)
    clean.columns = [latex_escape(c) for c in table.columns]
    return clean.style.hide(axis="index").to_latex(hrules=True, caption=latex_escape(caption), label=f"tab:{label}",
                                                   column_format="l" * table.shape[1], position="htbp")


def write_tables(a: Analysis, verdicts: pd.DataFrame, errors: pd.DataFrame, folder: Path) -> dict[str, list[Path]]:
    """``folder/<name>.csv`` (raw numbers) and ``folder/<name>.tex`` (formatted) for every table."""
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {}
    raw = {**a.tables(), "verdicts": verdicts, "errors": errors}
    for name, frame in raw.items():
        if frame is None or frame.empty:
            continue
        path = folder / f"{name}.csv"
        frame.to_csv(path, index=False)
        written.setdefault(name, []).append(path)
    for name, (caption, table) in display_tables(a, verdicts).items():
        path = folder / f"{name}.tex"
        path.write_text(to_latex(caption, table, name), encoding="utf-8")
        written.setdefault(name, []).append(path)
    return written


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Model errors counted per model and control."""
    if errors is None or errors.empty:
        return pd.DataFrame(columns=["model", "control", "errors"])
    return errors.groupby(["model", "control"]).size().rename("errors").reset_index()
