"""Building table rows per group, and the one bootstrap shared by every table's ratio statistics."""

from __future__ import annotations

import numpy as np
import pandas as pd

from volprobe.stats.groups import Groups


def group_rows(groups: Groups, counts: np.ndarray, names: list[str], keep: np.ndarray,
               integer: np.ndarray | None = None, **fixed) -> pd.DataFrame:
    """Rows of one comparison (the groups where ``keep``): fixed columns, grouping/group, and the
    named per-group sums (as integers where ``integer``, default all)."""
    labels = np.array(groups.labels, dtype=object).reshape(-1, 2)[keep]
    columns = {k: np.full(len(labels), v, dtype=object) for k, v in fixed.items()}
    columns["grouping"], columns["group"] = labels[:, 0], labels[:, 1]
    for j, name in enumerate(names):
        values = counts[keep, j]
        columns[name] = values.round().astype(np.int64) if integer is None or integer[j] else values
    return pd.DataFrame(columns)


def comparison_rows(groups: Groups, columns: dict[str, np.ndarray], boot: "BootstrapColumns", num: np.ndarray,
                    den: np.ndarray, permute: bool = False, **fixed) -> pd.DataFrame:
    """Rows (groups with a non-zero first column) of the per-group sums of item-level ``columns``
    (bool columns become counts), with the ratio num/den queued for the bootstrap."""
    counts = groups.counts(np.column_stack(list(columns.values())))
    keep = counts[:, 0] > 0
    integer = np.array([v.dtype == bool for v in columns.values()])
    frame = group_rows(groups, counts, list(columns), keep, integer, **fixed)
    frame["_t"] = np.flatnonzero(keep)
    frame["_col"] = boot.add(num, den, permute)
    return frame


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


class BootstrapColumns:
    """Collects ratio statistics from every table and bootstraps them together, group by group, so
    each group's resamples are drawn once.

    A table adds one item-level (numerator, denominator) column per comparison with :meth:`add`,
    keeps the returned index in its column ``_col`` and the group index in ``_t``, and registers
    itself; :meth:`fill` then replaces those two columns by ``ci_low``, ``ci_high``, ``se_boot``
    (and ``p``, the sign-flip p-value, for columns added with ``permute``), in place.
    """

    def __init__(self, groups: Groups):
        self.groups = groups
        self.num: list[np.ndarray] = []
        self.den: list[np.ndarray] = []
        self.permute: list[bool] = []
        self.tables: list[pd.DataFrame] = []

    def add(self, num: np.ndarray, den: np.ndarray, permute: bool = False) -> int:
        self.num.append(np.asarray(num, dtype=np.float64))
        self.den.append(np.asarray(den, dtype=np.float64))
        self.permute.append(permute)
        return len(self.num) - 1

    def register(self, frame: pd.DataFrame) -> None:
        if not frame.empty:
            self.tables.append(frame)

    def fill(self, n_boot: int, seed: int, alpha: float, n_perm: int) -> None:
        if not self.num:
            return
        low, high, se, p = self.groups.bootstrap(np.column_stack(self.num), np.column_stack(self.den), n_boot, seed,
                                                 alpha, permute=np.array(self.permute), n_perm=n_perm)
        for frame in self.tables:
            t, col = frame.pop("_t").to_numpy(), frame.pop("_col").to_numpy()
            frame["ci_low"], frame["ci_high"], frame["se_boot"] = low[t, col], high[t, col], se[t, col]
            if self.permute[col[0]]:
                frame["p"] = p[t, col]
