"""Tables for people: formatted (percent, CIs, p-values with their sidedness and correction) and
written as Markdown, LaTeX (booktabs) and CSV. The CSV files hold the raw numbers, every column."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from volprobe.stats.analysis import Analysis
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
    return "all" if grouping == "all" else f"{grouping}: {group}"


def _groups(t: pd.DataFrame) -> list[str]:
    return [group_label(g, v) for g, v in zip(t["grouping"], t["group"])]


def display_tables(a: Analysis, verdicts: pd.DataFrame) -> dict[str, tuple[str, pd.DataFrame]]:
    """name → (caption, formatted table) for every non-empty table of the report."""
    s, corr = a.settings, correction_label(a.settings.correction)
    level = f"{1 - s.alpha:.0%}"
    out: dict[str, tuple[str, pd.DataFrame]] = {}
    if not verdicts.empty:
        out["verdicts"] = ("Volume reliance per model and group", pd.DataFrame({
            "Model": verdicts["model"], "Group": _groups(verdicts), "Verdict": verdicts["summary"],
            "Text-only vs chance": verdicts["leakage_text"], "Blind baseline": verdicts["baseline_text"],
            "Other controls": verdicts["other_controls"]}))
    t = a.accuracy
    if not t.empty:
        d = pd.DataFrame({
            "Model": t["model"], "Control": t["control"], "Group": _groups(t), "n": t["n"],
            f"Accuracy % [{level} CI]": [f"{pct(x)} {interval(lo, hi)}" for x, lo, hi in
                                         zip(t["accuracy"], t["ci_low"], t["ci_high"])],
            "Errors": t["n_error"], "Unparseable %": t["unparseable_rate"].map(pct),
            "Refused %": t["refusal_rate"].map(pct),
            "Chance % (items)": [pct(c) if k == n else f"{pct(c)} ({k:,})" if k else "–"
                                 for c, k, n in zip(t["chance"], t["n_chance"], t["n"])],
            f"p vs chance ({s.chance_alternative}, {corr})": [
                p_cell(p, sig, mde) for p, sig, mde in zip(t["p_chance_adj"], t["p_chance_significant"], t["mde_chance"])],
        })
        if "p_baseline" in t:
            d["Blind baseline %"] = [f"{pct(x)} ({b})" if _num(x) else "–" for x, b in
                                     zip(t["baseline_accuracy"], t["baseline"])]
            d[f"p vs baseline (one-sided, {corr})"] = [
                p_cell(p, sig, mde) for p, sig, mde in
                zip(t["p_baseline_adj"], t["p_baseline_significant"], t["mde_baseline"])]
        out["accuracy"] = (f"Accuracy per model, control and group (Wilson {level} CI; exact binomial or "
                           f"Poisson-binomial test against chance on the items that have a chance level, their "
                           f"number in brackets when not all; binomial test against the strongest blind "
                           f"baseline's accuracy on the same items)", d)
    t = a.paired
    if not t.empty:
        out["paired"] = (f"{s.reference} vs each control on the same items (change = control − {s.reference}, "
                         f"points, {level} cluster-bootstrap CI; exact McNemar, two-sided, {corr}; "
                         f"MDE = minimum detectable drop at {s.power:.0%} power)", pd.DataFrame({
                             "Model": t["model"], "Control": t["control"], "Group": _groups(t), "n": t["n"],
                             f"{s.reference} %": t["acc_ref"].map(pct), "control %": t["acc_control"].map(pct),
                             f"Change [{level} CI]": [f"{signed(x)} {interval(lo, hi)}"
                                                      for x, lo, hi in zip(t["change"], t["ci_low"], t["ci_high"])],
                             "Lost / gained": [f"{lo} / {ga}" for lo, ga in zip(t["lost"], t["gained"])],
                             "McNemar p": [p_cell(p, sig, mde) for p, sig, mde in
                                           zip(t["p_mcnemar_adj"], t["p_mcnemar_significant"], t["mde"])],
                             "Flip %": t["flip_rate"].map(pct),
                             "Excluded": [_excluded(r) for r in t.itertuples()],
                         }))
        if "n_changed" in t:
            cf = t[t["n_changed"].fillna(0) > 0]
            if not cf.empty:
                out["tracking"] = (f"Counterfactual controls: on items whose gold answer changes, the share answered "
                                   f"with the transformed gold (tracking), with the original gold, and the share of "
                                   f"{s.reference} answers already equal to the transformed gold; exact McNemar, "
                                   f"one-sided, {corr}; w/o name swaps: tracking over the changed items left when "
                                   "those whose gold changes only because left/right names swap are set aside",
                                   pd.DataFrame({
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
                                       "Followed / against": [f"{int(f)} / {int(g)}" for f, g in
                                                              zip(cf["followed"], cf["against"])],
                                       "p": [p_cell(p, sig, mde) for p, sig, mde in
                                             zip(cf["p_tracking_adj"], cf["p_tracking_significant"], cf["mde_tracking"])],
                                   }))
    t = a.cochran
    if not t.empty:
        out["cochran"] = (f"Cochran's Q across the non-counterfactual controls of each model ({corr})", pd.DataFrame({
            "Model": t["model"], "Group": _groups(t), "Controls": t["controls"], "n": t["n"],
            "Q": t["q"].map(lambda q: f"{q:.2f}"), "df": t["df"],
            "p": [p_cell(p, sig) for p, sig in zip(t["p_cochran_adj"], t["p_cochran_significant"])]}))
    t = a.pairwise
    if not t.empty:
        out["pairwise"] = (f"Model vs model on shared items (change = B − A, points, {level} cluster-bootstrap CI; "
                           f"exact McNemar, two-sided, {corr})", pd.DataFrame({
                               "Control": t["control"], "Model A": t["model_a"], "Model B": t["model_b"],
                               "Group": _groups(t), "n": t["n"], "A %": t["acc_a"].map(pct),
                               "B %": t["acc_b"].map(pct),
                               f"Change [{level} CI]": [f"{signed(x)} {interval(lo, hi)}" for x, lo, hi in
                                                        zip(t["change"], t["ci_low"], t["ci_high"])],
                               "Lost / gained": [f"{lo} / {ga}" for lo, ga in zip(t["lost"], t["gained"])],
                               "McNemar p": [p_cell(p, sig, mde) for p, sig, mde in
                                             zip(t["p_mcnemar_adj"], t["p_mcnemar_significant"], t["mde"])]}))
    t = a.scores
    if not t.empty:
        out["scores"] = (f"Continuous scores of open items, {s.reference} vs control (change = control − "
                         f"{s.reference}, ×100, {level} cluster-bootstrap CI; paired sign-flip permutation test "
                         f"over clusters, two-sided, {corr})", pd.DataFrame({
                             "Model": t["model"], "Control": t["control"], "Score": t["score"], "Group": _groups(t),
                             "n": t["n"], f"{s.reference}": t["mean_ref"].map(pct), "control": t["mean_control"].map(pct),
                             f"Change [{level} CI]": [f"{signed(x)} {interval(lo, hi)}" for x, lo, hi in
                                                      zip(t["change"], t["ci_low"], t["ci_high"])],
                             "p": [p_cell(p, sig, mde) for p, sig, mde in zip(t["p_adj"], t["p_significant"], t["mde"])]}))
    return out


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
        path.write_text(to_latex(caption, table, name))
        written.setdefault(name, []).append(path)
    return written


def error_summary(errors: pd.DataFrame) -> pd.DataFrame:
    """Model errors counted per model and control."""
    if errors is None or errors.empty:
        return pd.DataFrame(columns=["model", "control", "errors"])
    return errors.groupby(["model", "control"]).size().rename("errors").reset_index()
