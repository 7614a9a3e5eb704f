"""Building table rows per group, and the cluster-robust tests shared by every table's paired comparisons."""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.stats.groups import Groups


def group_rows(groups: Groups, counts: np.ndarray, names: list[str], keep: np.ndarray,
               integer: np.ndarray | None = None, **fixed) -> pd.DataFrame:
    """Rows of one comparison (the groups where ``keep``): fixed columns, grouping/group, the named
    per-group sums (as integers where ``integer``, default all) and ``_t``, the group index (removed by
    :meth:`ClusterColumns.fill`: register the table)."""
    labels = np.array(groups.labels, dtype=object).reshape(-1, 2)[keep]
    columns = {k: np.full(len(labels), v, dtype=object) for k, v in fixed.items()}
    columns["grouping"], columns["group"] = labels[:, 0], labels[:, 1]
    for j, name in enumerate(names):
        values = counts[keep, j]
        columns[name] = values.round().astype(np.int64) if integer is None or integer[j] else values
    columns["_t"] = np.flatnonzero(keep)
    return pd.DataFrame(columns)


def comparison_rows(groups: Groups, columns: dict[str, np.ndarray], tests: "ClusterColumns",
                    comparisons: dict[str, tuple], **fixed) -> pd.DataFrame:
    """Rows (groups with a non-zero first column) of the per-group sums of item-level ``columns``
    (bool columns become counts), with each comparison ``prefix → (num, den, alternative)`` queued for
    the cluster-robust tests (see :class:`ClusterColumns`)."""
    counts = groups.counts(np.column_stack(list(columns.values())))
    keep = counts[:, 0] > 0
    integer = np.array([v.dtype == bool for v in columns.values()])
    frame = group_rows(groups, counts, list(columns), keep, integer, **fixed)
    for prefix, (num, den, alternative) in comparisons.items():
        frame[f"_col:{prefix}"] = tests.add(num, den, alternative)
    return frame


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


#: Columns :meth:`ClusterColumns.fill` writes per comparison (after its prefix), from ClusterPaired fields.
TEST_COLUMNS = {"ci_low": "ci_low", "ci_high": "ci_high", "se": "se", "df": "df", "n_clusters": "n_clusters",
                "exact": "exact", "p": "pvalue"}


def p_column(prefix: str) -> str:
    """The p-value column of a comparison: ``p_cluster`` (no prefix), ``p_tracking`` (``tracking_``), ..."""
    return f"p_{prefix.rstrip('_') or 'cluster'}"


class ClusterColumns:
    """Collects the paired comparisons of every table and runs their cluster-robust tests together,
    group by group (:meth:`Groups.cluster_tests`), so each group's clusters are summed once.

    A table adds one item-level (paired difference, paired-item indicator) column per comparison with
    :meth:`add`; :func:`comparison_rows` keeps the returned index in the column ``_col:<prefix>`` and the
    group index in ``_t``; the table registers itself. :meth:`fill` then replaces those columns, in place,
    by ``<prefix>ci_low``, ``<prefix>ci_high``, ``<prefix>se``, ``<prefix>df``, ``<prefix>n_clusters``,
    ``<prefix>exact`` (the exact sign-flip test decided: too few clusters) and the p-value :func:`p_column`.
    """

    def __init__(self, groups: Groups):
        self.groups = groups
        self.num: list[np.ndarray] = []
        self.den: list[np.ndarray] = []
        self.alternatives: list[str] = []
        self.tables: list[pd.DataFrame] = []

    def add(self, num: np.ndarray, den: np.ndarray, alternative: str = "two-sided") -> int:
        self.num.append(np.asarray(num, dtype=np.float64))
        self.den.append(np.asarray(den, dtype=np.float64))
        self.alternatives.append(alternative)
        return len(self.num) - 1

    def register(self, frame: pd.DataFrame) -> None:
        if not frame.empty:
            self.tables.append(frame)

    def fill(self, alpha: float) -> None:
        fields = {}
        if self.num:
            results = self.groups.cluster_tests(np.column_stack(self.num), np.column_stack(self.den), alpha,
                                                self.alternatives)
            fields = {out: np.stack([getattr(r, name) for r in results]) for out, name in TEST_COLUMNS.items()}
        for frame in self.tables:
            t = frame.pop("_t").to_numpy()
            for key in [c for c in frame.columns if c.startswith("_col:")]:
                col = frame.pop(key).to_numpy(dtype=float)
                has = ~np.isnan(col)
                prefix = key[len("_col:"):]
                for out, values in fields.items():
                    column = np.full(len(frame), np.nan if values.dtype.kind == "f" else 0, dtype=values.dtype)
                    column[has] = values[t[has], col[has].astype(np.int64)]
                    frame[p_column(prefix) if out == "p" else prefix + out] = column
