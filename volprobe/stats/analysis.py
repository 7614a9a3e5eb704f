"""Every number of a report, as tables (pandas DataFrames), from a :class:`Panel`.

Tables (one row per model × control × group unless stated):

- ``accuracy``: n, accuracy with a Wilson CI, error/unparseable/refusal counts, the test against
  chance (exact binomial, or Poisson-binomial when chance varies) and, for evaluated models, the
  one-sided binomial test against the strongest blind baseline's accuracy on the same items.
- ``paired``: reference (``full``) vs each other control of a model, on the items answered under
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

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from volprobe.errors import FormatError
from volprobe.stats.binomial import chance_levels, poisson_binomial_from_levels, wilson_interval
from volprobe.stats.groups import Groups, build_groups
from volprobe.stats.multiple import adjust_pvalues, check_correction
from volprobe.stats.paired import cochrans_q_test, mcnemar_pvalues
from volprobe.stats.panel import Panel, is_baseline_name, is_random_name
from volprobe.stats.power import mde_binomial, mde_from_se, mde_mcnemar
from volprobe.stats.result import check_alternative

NO_IMAGE_CONTROLS = ("text_only", "blank")
ROLES = ("model", "baseline", "random")


@dataclass
class ReportSettings:
    """Options of a report (all recorded in its JSON and manifest).

    Attributes:
        alpha: significance level; CIs are (1 − alpha).
        correction: ``holm`` or ``fdr_bh`` over every test in the report.
        reference: the control every other control is compared with.
        by: groupings (see :mod:`volprobe.stats.groups`); the group ``all`` is always there.
        baselines: extra blind-baseline model names (``prior`` and ``prior:*`` always are).
        pairwise_controls: controls under which models are compared with each other (default: reference).
        chance_alternative: sidedness of the test against chance.
        n_boot, n_perm, seed: bootstrap resamples, permutations, and their seed.
        intersect: compare shared items when a non-counterfactual control lacks items of the
            reference (instead of failing).
        power: power for minimum detectable effects.
    """

    alpha: float = 0.05
    correction: str = "holm"
    reference: str = "full"
    by: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    pairwise_controls: tuple[str, ...] = ()
    chance_alternative: str = "two-sided"
    n_boot: int = 2000
    n_perm: int = 10000
    seed: int = 0
    intersect: bool = False
    power: float = 0.8

    def __post_init__(self) -> None:
        check_correction(self.correction)
        check_alternative(self.chance_alternative)
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        self.by, self.baselines, self.pairwise_controls = tuple(self.by), tuple(self.baselines), \
            tuple(self.pairwise_controls)

    def to_dict(self) -> dict:
        return asdict(self)


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


def model_roles(models: list[str], baselines=()) -> dict[str, str]:
    """``baseline`` (blind: ``prior``, ``prior:*``, or named), ``random`` (``random``, ``random:*``) or ``model``."""
    roles = {}
    for m in models:
        if is_baseline_name(m) or m in baselines:
            roles[m] = "baseline"
        elif is_random_name(m):
            roles[m] = "random"
        else:
            roles[m] = "model"
    return roles


def analyse(panel: Panel, settings: ReportSettings) -> Analysis:
    """Compute every table of the report (see the module docstring)."""
    s = settings
    roles = model_roles(panel.models, s.baselines)
    unknown = [b for b in s.baselines if b not in panel.models]
    if unknown:
        raise FormatError(f"--baseline {unknown}: no records of such a model (models: {panel.models})")
    groups = build_groups(panel.items, s.by)
    a = Analysis(settings=s, panel=panel, groups=groups, roles=roles, accuracy=pd.DataFrame(),
                 paired=pd.DataFrame(), cochran=pd.DataFrame(), pairwise=pd.DataFrame(), scores=pd.DataFrame())
    if s.reference not in panel.controls:
        a.notes.append(f"no records under the reference control {s.reference!r}: no paired tests")
    boot = _BootstrapColumns(groups)
    a.accuracy = _accuracy(panel, groups, roles, s)
    a.paired = _paired(panel, groups, roles, s, boot, a.notes)
    a.pairwise = _pairwise(panel, groups, roles, s, boot, a.notes)
    a.scores = _scores(panel, groups, roles, s, boot)
    a.cochran = _cochran(panel, groups, roles, s)
    boot.fill(s)
    _adjust(a)
    _minimum_detectable(a)
    return a


# --------------------------------------------------------------------------- shared pieces


def _label_columns(groups: Groups) -> pd.DataFrame:
    return pd.DataFrame(groups.labels, columns=["grouping", "group"])


def _rows(groups: Groups, counts: np.ndarray, names: list[str], keep: np.ndarray, **fixed) -> pd.DataFrame:
    """Rows of one comparison: fixed columns, grouping/group, and the named count columns."""
    frame = _label_columns(groups)
    for j, name in enumerate(names):
        frame[name] = counts[:, j].round().astype(np.int64)
    frame = frame[keep].reset_index(drop=True)
    for k, v in reversed(list(fixed.items())):
        frame.insert(0, k, v)
    return frame


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class _BootstrapColumns:
    """Collects ratio statistics (per item: numerator and denominator columns) from every table and
    bootstraps them together, group by group, so each group's resamples are drawn once."""

    def __init__(self, groups: Groups):
        self.groups = groups
        self.num: list[np.ndarray] = []
        self.den: list[np.ndarray] = []
        self.permute: list[bool] = []
        self.targets: list[tuple[str, np.ndarray, np.ndarray]] = []  # (table, row indices, group index t)
        self.tables: dict[str, pd.DataFrame] = {}

    def add(self, num: np.ndarray, den: np.ndarray, permute: bool = False) -> int:
        self.num.append(np.asarray(num, dtype=np.float64))
        self.den.append(np.asarray(den, dtype=np.float64))
        self.permute.append(permute)
        return len(self.num) - 1

    def register(self, name: str, frame: pd.DataFrame) -> None:
        """``frame`` has columns ``_col`` (this object's column) and ``_t`` (group index)."""
        self.tables[name] = frame

    def fill(self, s: ReportSettings) -> None:
        if not self.num:
            return
        low, high, se, p = self.groups.bootstrap(np.column_stack(self.num), np.column_stack(self.den), s.n_boot,
                                                 s.seed, s.alpha, permute=np.array(self.permute), n_perm=s.n_perm)
        for frame in self.tables.values():
            if frame.empty:
                continue
            t, col = frame.pop("_t").to_numpy(), frame.pop("_col").to_numpy()
            frame["ci_low"], frame["ci_high"], frame["se_boot"] = low[t, col], high[t, col], se[t, col]
            if self.permute[col[0]]:
                frame["p"] = p[t, col]


def _keep_rows(counts_n: np.ndarray) -> np.ndarray:
    return counts_n > 0


# --------------------------------------------------------------------------- accuracy


def _baseline_control(panel: Panel, m: int, control: str, reference: str) -> int | None:
    """A blind baseline's records for ``control``: its own if it ran it, else those under the
    reference, else text_only, else its first control."""
    have = [c for c in range(len(panel.controls)) if panel.present[m, c].any()]
    for name in (control, reference, "text_only"):
        if name in panel.controls and panel.controls.index(name) in have:
            return panel.controls.index(name)
    return have[0] if have else None


def _accuracy(panel: Panel, groups: Groups, roles, s: ReportSettings) -> pd.DataFrame:
    chance = panel.items["chance"].to_numpy()
    has_chance = ~np.isnan(chance)
    level_code = np.unique(np.round(chance[has_chance], 12), return_inverse=True)[1]
    levels = chance_levels(chance[has_chance])[0]
    onehot = np.zeros((len(chance), len(levels)), dtype=bool)
    onehot[np.flatnonzero(has_chance), level_code] = True
    baselines = [m for m, name in enumerate(panel.models) if roles[name] == "baseline"]
    frames = []
    for m, model in enumerate(panel.models):
        for c, control in enumerate(panel.controls):
            present = panel.present[m, c]
            if not present.any():
                continue
            valid = panel.valid(m, c)
            correct = panel.correct[m, c] & valid
            cols = [valid, correct, present & panel.error[m, c], panel.unparseable[m, c] & valid,
                    panel.refused[m, c] & valid, correct & has_chance]
            counts = groups.counts(np.column_stack(cols + [valid[:, None] & onehot]))
            keep = _keep_rows(counts[:, 0] + counts[:, 2])
            frame = _rows(groups, counts[:, :6], ["n", "correct", "n_error", "unparseable", "refused", "correct_chance"],
                          keep, model=model, role=roles[model], control=control)
            _chance_tests(frame, levels, counts[keep, 6:].round().astype(np.int64), s)
            if roles[model] == "model" and baselines:
                _baseline_tests(frame, panel, groups, m, c, valid, correct, baselines, s, keep)
            frames.append(frame)
    table = _concat(frames)
    if table.empty:
        return table
    with np.errstate(invalid="ignore", divide="ignore"):
        table["accuracy"] = table["correct"] / table["n"]
        table["ci_low"], table["ci_high"] = wilson_interval(table["correct"], table["n"], s.alpha)
        table["unparseable_rate"] = table["unparseable"] / table["n"]
        table["refusal_rate"] = table["refused"] / table["n"]
    return table


def _chance_tests(frame: pd.DataFrame, levels: np.ndarray, by_level: np.ndarray, s: ReportSettings) -> None:
    n_chance = by_level.sum(axis=1)
    frame["n_chance"] = n_chance
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["chance"] = (by_level * levels).sum(axis=1) / n_chance
    p = np.full(len(frame), np.nan)
    for r in np.flatnonzero(n_chance > 0):
        dist = poisson_binomial_from_levels(levels, by_level[r])
        p[r] = dist.pvalue(frame["correct_chance"].iat[r], s.chance_alternative)
    frame["chance_levels"] = (by_level > 0).sum(axis=1)
    frame["p_chance"] = p


def _baseline_tests(frame, panel: Panel, groups: Groups, m, c, valid, correct, baselines, s, keep) -> None:
    """Against the strongest blind baseline (highest accuracy on the shared items) of each group."""
    best: dict[str, np.ndarray] | None = None
    for b in baselines:
        cb = _baseline_control(panel, b, panel.controls[c], s.reference)
        if cb is None:
            continue
        shared = valid & panel.valid(b, cb)
        counts = groups.counts(np.column_stack([shared, correct & shared, panel.correct[b, cb] & shared]))[keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = counts[:, 2] / counts[:, 0]
        cand = {"baseline": np.full(len(acc), panel.models[b], dtype=object),
                "baseline_control": np.full(len(acc), panel.controls[cb], dtype=object),
                "n_baseline_shared": counts[:, 0].round().astype(np.int64),
                "correct_shared": counts[:, 1].round().astype(np.int64), "baseline_accuracy": acc}
        if best is None:
            best = cand
            continue
        better = np.nan_to_num(acc, nan=-1) > np.nan_to_num(best["baseline_accuracy"], nan=-1)
        for col in best:
            best[col] = np.where(better, cand[col], best[col])
    if best is None:
        return
    p = np.full(len(frame), np.nan)
    for r in np.flatnonzero(best["n_baseline_shared"] > 0):
        p[r] = stats.binomtest(int(best["correct_shared"][r]), int(best["n_baseline_shared"][r]),
                               float(best["baseline_accuracy"][r]), alternative="greater").pvalue
    for col, values in best.items():
        frame[col] = values
    frame["p_baseline"] = p


# --------------------------------------------------------------------------- paired: reference vs controls


def control_kind(control: str, panel: Panel) -> str:
    if control in panel.counterfactual:
        return "counterfactual"
    if control in NO_IMAGE_CONTROLS:
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


def _paired(panel: Panel, groups: Groups, roles, s: ReportSettings, boot: _BootstrapColumns, notes) -> pd.DataFrame:
    if s.reference not in panel.controls:
        return pd.DataFrame()
    r = panel.controls.index(s.reference)
    gold_ref = panel.items["gold"].to_numpy()
    frames = []
    for m, model in enumerate(panel.models):
        if roles[model] != "model":
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
            counts = groups.counts(np.column_stack(list(cols.values())))
            keep = _keep_rows(counts[:, 0])
            frame = _rows(groups, counts, list(cols), keep, model=model, control=control,
                          kind=control_kind(control, panel))
            frame["_t"] = np.flatnonzero(keep)
            frame["_col"] = boot.add(cc.astype(float) - cr.astype(float), pairs)
            frames.append(frame)
    table = _concat(frames)
    if table.empty:
        return table
    boot.register("paired", table)
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
            p = mcnemar_pvalues(table["followed"].fillna(0), table["against"].fillna(0), "greater")
            table["p_tracking"] = np.where(changed > 0, p, np.nan)
    table["n_clusters"] = _clusters_per_row(groups, table)
    return table


def _clusters_per_row(groups: Groups, table: pd.DataFrame) -> np.ndarray:
    """Number of clusters in each row's group (those the bootstrap resamples)."""
    per_group = {lab: np.unique(groups.clusters[groups.items_of(t)]).size for t, lab in enumerate(groups.labels)}
    return np.array([per_group[(g, v)] for g, v in zip(table["grouping"], table["group"])], dtype=np.int64)


# --------------------------------------------------------------------------- model vs model


def _pairwise(panel: Panel, groups: Groups, roles, s: ReportSettings, boot: _BootstrapColumns, notes) -> pd.DataFrame:
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
                cb = _baseline_control(panel, m, control, s.reference)
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
                counts = groups.counts(np.column_stack(list(cols.values())))
                keep = _keep_rows(counts[:, 0])
                frame = _rows(groups, counts, list(cols), keep, control=control, model_a=panel.models[ma],
                              model_b=panel.models[mb])
                frame["_t"] = np.flatnonzero(keep)
                frame["_col"] = boot.add(xb.astype(float) - xa.astype(float), shared)
                frames.append(frame)
    table = _concat(frames)
    if table.empty:
        return table
    boot.register("pairwise", table)
    table["acc_a"] = table["correct_a"] / table["n"]
    table["acc_b"] = table["correct_b"] / table["n"]
    table["change"] = table["acc_b"] - table["acc_a"]
    table["p_mcnemar"] = mcnemar_pvalues(table["lost"], table["gained"])
    return table


# --------------------------------------------------------------------------- continuous scores


def _scores(panel: Panel, groups: Groups, roles, s: ReportSettings, boot: _BootstrapColumns) -> pd.DataFrame:
    if s.reference not in panel.controls or not panel.scores:
        return pd.DataFrame()
    r = panel.controls.index(s.reference)
    frames = []
    for m, model in enumerate(panel.models):
        if roles[model] != "model":
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
                counts = groups.counts(np.column_stack([ok, xs, ys]))
                keep = _keep_rows(counts[:, 0])
                frame = _label_columns(groups)[keep].reset_index(drop=True)
                for k, v in reversed([("model", model), ("control", control), ("score", score)]):
                    frame.insert(0, k, v)
                frame["n"] = counts[keep, 0].round().astype(np.int64)
                frame["mean_ref"] = counts[keep, 1] / frame["n"]
                frame["mean_control"] = counts[keep, 2] / frame["n"]
                frame["change"] = frame["mean_control"] - frame["mean_ref"]
                frame["_t"] = np.flatnonzero(keep)
                frame["_col"] = boot.add(ys - xs, ok, permute=True)
                frames.append(frame)
    table = _concat(frames)
    if not table.empty:
        boot.register("scores", table)
    return table


# --------------------------------------------------------------------------- Cochran's Q


def _cochran(panel: Panel, groups: Groups, roles, s: ReportSettings) -> pd.DataFrame:
    rows = []
    for m, model in enumerate(panel.models):
        if roles[model] != "model":
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
        a.scores["mde"] = np.where(a.scores["p_significant"], np.nan, mde_from_se(a.scores["se_boot"], s.alpha, s.power))
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
