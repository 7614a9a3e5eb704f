"""The accuracy table: per model × control × group, accuracy with a Wilson CI, the mean of the
per-subtask accuracies (the 3D-RAD paper's task score), outcome counts, the test against chance and,
for evaluated models, the paired comparison with the strongest blind baseline on the items both answered
(cluster-robust test, one-sided, columns ``baseline_*`` and ``p_baseline``; exact McNemar as the
secondary item-level test, ``p_baseline_mcnemar``). Where the records carry a benchmark's own scoring rule
for closed items (3D-RAD's substring rule, as its published numbers use), its rate is a secondary,
descriptive column, ``rule:<name>``, over the ``rule_n:<name>`` items that have it (no test)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.scoring_rules import mean_of_group_accuracies
from volprobe.stats.binomial import chance_level_codes, poisson_binomial_from_levels, wilson_interval
from volprobe.stats.groups import Groups
from volprobe.stats.panel import Panel
from volprobe.stats.paired import mcnemar_pvalues
from volprobe.stats.rows import ClusterColumns, concat, group_rows
from volprobe.stats.settings import ReportSettings

#: Column prefixes of a benchmark's own rule: its rate, and the number of items it was computed on.
RULE_PREFIX, RULE_N_PREFIX = "rule:", "rule_n:"


def baseline_control(panel: Panel, m: int, control: str, reference: str) -> int | None:
    """A blind baseline's records for ``control``: its own if it ran it, else those under the
    reference, else under a control without the image, else its first control."""
    have = [c for c in range(len(panel.controls)) if panel.present[m, c].any()]
    for name in (control, reference, *panel.no_image):
        if name in panel.controls and panel.controls.index(name) in have:
            return panel.controls.index(name)
    return have[0] if have else None


def accuracy_table(panel: Panel, groups: Groups, roles: dict[str, str], s: ReportSettings,
                   tests: ClusterColumns) -> pd.DataFrame:
    """One row per model × control × group (see the module docstring); rates are fractions."""
    subtask = pd.Categorical(panel.items["subtask"].astype(object).where(panel.items["subtask"].notna(), "(none)"))
    by_subtask = np.zeros((len(subtask), len(subtask.categories)), dtype=bool)
    by_subtask[np.arange(len(subtask)), subtask.codes] = True
    chance = panel.items["chance"].to_numpy()
    has_chance = ~np.isnan(chance)
    levels, level_code = chance_level_codes(chance[has_chance])
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
            keep = counts[:, 0] + counts[:, 2] > 0
            names = ["n", "correct", "n_error", "unparseable", "refused", "correct_chance"]
            frame = group_rows(groups, counts[:, :6], names, keep, model=model, role=roles[model], control=control)
            _chance_tests(frame, levels, counts[keep, 6:].round().astype(np.int64), s)
            sub_n = groups.counts(valid[:, None] & by_subtask)[keep]
            frame["subtask_mean"] = mean_of_group_accuracies(groups.counts(correct[:, None] & by_subtask)[keep], sub_n)
            frame["n_subtasks"] = (sub_n > 0).sum(axis=1)
            for name, values in panel.rules.items():  # a benchmark's own rule on closed items: rate and items
                v = values[m, c]
                has = valid & ~np.isnan(v)
                sums = groups.counts(np.column_stack([has, np.where(has, v, 0.0)]))[keep]
                with np.errstate(invalid="ignore", divide="ignore"):
                    frame[RULE_PREFIX + name] = np.where(sums[:, 0] > 0, sums[:, 1] / sums[:, 0], np.nan)
                frame[RULE_N_PREFIX + name] = sums[:, 0].round().astype(np.int64)
            if roles[model] == "model" and baselines:
                _baseline_tests(frame, panel, groups, m, c, valid, correct, baselines, s, keep, tests)
            frames.append(frame)
    table = concat(frames)
    if table.empty:
        return table
    tests.register(table)
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


def _baseline_tests(frame, panel: Panel, groups: Groups, m, c, valid, correct, baselines, s, keep,
                    tests: ClusterColumns) -> None:
    """Paired comparison with the strongest blind baseline (highest accuracy on the shared items) of each
    group: queued for the cluster-robust test (one-sided: the model above the baseline), with the counts
    of the exact McNemar test."""
    best: dict[str, np.ndarray] | None = None
    for b in baselines:
        cb = baseline_control(panel, b, panel.controls[c], s.reference)
        if cb is None:
            continue
        shared = valid & panel.valid(b, cb)
        right_b = panel.correct[b, cb] & shared
        counts = groups.counts(np.column_stack([shared, correct & shared, right_b, right_b & ~correct,
                                                correct & shared & ~right_b]))[keep]
        with np.errstate(invalid="ignore", divide="ignore"):
            acc = counts[:, 2] / counts[:, 0]
        column = tests.add((correct & shared).astype(float) - right_b.astype(float), shared, "greater")
        cand = {"baseline": np.full(len(acc), panel.models[b], dtype=object),
                "baseline_control": np.full(len(acc), panel.controls[cb], dtype=object),
                "n_baseline_shared": counts[:, 0].round().astype(np.int64),
                "correct_shared": counts[:, 1].round().astype(np.int64), "baseline_accuracy": acc,
                "baseline_only": counts[:, 3].round().astype(np.int64),
                "model_only": counts[:, 4].round().astype(np.int64),
                "_col:baseline_": np.where(counts[:, 0] > 0, float(column), np.nan)}
        if best is None:
            best = cand
            continue
        better = np.nan_to_num(acc, nan=-1) > np.nan_to_num(best["baseline_accuracy"], nan=-1)
        for col in best:
            best[col] = np.where(better, cand[col], best[col])
    if best is None:
        return
    for col, values in best.items():
        frame[col] = values
    with np.errstate(invalid="ignore", divide="ignore"):
        frame["baseline_change"] = frame["correct_shared"] / frame["n_baseline_shared"] - frame["baseline_accuracy"]
    frame["p_baseline_mcnemar"] = np.where(frame["n_baseline_shared"] > 0,
                                           mcnemar_pvalues(frame["baseline_only"], frame["model_only"], "less"), np.nan)
