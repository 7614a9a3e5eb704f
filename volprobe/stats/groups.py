"""Groups of items for reports (``--by``) and the clusters resampled inside each group.

Every item belongs to the group ``all`` and to exactly one group of each grouping:

- ``task``, ``category``, ``subtask``: the item's label (``(none)`` when missing);
- ``evidence``: the exact set of patient axes the answer depends on, e.g. ``lr``, ``si``,
  ``lr+si``; ``none`` when it depends on no axis (or the records do not say);
- ``prior_fixed``: ``prior-fixed`` (normal anatomy fixes the answer), ``not prior-fixed``, ``unknown``.

Counts per group for many item masks at once are one sparse product ``membership.T @ X``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
from scipy import sparse

from volprobe.errors import InvalidValueError
from volprobe.seeding import seed_sequence
from volprobe.stats.bootstrap import RatioBootstrap, bootstrap_ratio, sign_flip_pvalues

GROUPINGS = ("task", "category", "subtask", "evidence", "prior_fixed")


def check_groupings(by) -> tuple[str, ...]:
    by = tuple(dict.fromkeys(by))
    unknown = [b for b in by if b not in GROUPINGS]
    if unknown:
        raise InvalidValueError(f"cannot group by {unknown}; choose from {GROUPINGS}")
    return by


@dataclass
class Groups:
    """The groups of a report: ``labels[t] = (grouping, group)``; ``membership`` is (items × groups)."""

    labels: list[tuple[str, str]]
    membership: sparse.csr_matrix
    clusters: np.ndarray  # cluster code per item
    groupings: tuple[str, ...]

    def counts(self, masks: np.ndarray) -> np.ndarray:
        """(groups × k) sums of k item-level columns (items × k, or one column)."""
        x = np.asarray(masks, dtype=np.float64)
        out = self.membership.T @ (x if x.ndim == 2 else x[:, None])
        return np.asarray(out)

    @cached_property
    def _by_group(self) -> sparse.csc_matrix:
        by_group = self.membership.tocsc()
        by_group.sort_indices()
        return by_group

    def items_of(self, t: int) -> np.ndarray:
        """Item indices of group t (ascending)."""
        return self._by_group.indices[self._by_group.indptr[t]:self._by_group.indptr[t + 1]]

    def bootstrap(self, num: np.ndarray, den: np.ndarray, n_boot: int, seed: int, alpha: float,
                  permute: np.ndarray | None = None, n_perm: int = 10000):
        """Cluster bootstrap, inside every group, of the ratios sum(num)/sum(den) of J item-level
        columns (items × J); returns (low, high, se, p) arrays (groups × J), where p holds two-sided
        cluster sign-flip p-values of ``num`` for the columns flagged in ``permute`` (NaN elsewhere).

        Each group resamples its own clusters with the seed :func:`~volprobe.seeding.seed_sequence` ``(seed, grouping, group)``,
        so its numbers do not depend on what else is in the report."""
        n_groups, n_cols = len(self.labels), num.shape[1]
        low, high, se, p = (np.full((n_groups, n_cols), np.nan) for _ in range(4))
        permute = np.zeros(n_cols, dtype=bool) if permute is None else np.asarray(permute, dtype=bool)
        for t, (grouping, group) in enumerate(self.labels):
            items = self.items_of(t)
            if items.size == 0 or n_cols == 0:
                continue
            codes = np.unique(self.clusters[items], return_inverse=True)[1]
            k = int(codes.max()) + 1
            to_clusters = sparse.csr_matrix((np.ones(items.size), (codes, np.arange(items.size))), shape=(k, items.size))
            cluster_num, cluster_den = to_clusters @ num[items], to_clusters @ den[items]
            key = seed_sequence(seed, grouping, group)
            boot: RatioBootstrap = bootstrap_ratio(cluster_num, cluster_den, n_boot=n_boot, seed=key, alpha=alpha)
            low[t], high[t], se[t] = boot.low, boot.high, boot.se
            if permute.any():
                p[t, permute] = sign_flip_pvalues(cluster_num[:, permute], n_perm=n_perm, seed=key)
        return low, high, se, p


def build_groups(items: pd.DataFrame, by: tuple[str, ...]) -> Groups:
    """Groups ``all`` plus every group of each grouping in ``by``."""
    n = len(items)
    labels = [("all", "all")]
    rows, cols = [np.arange(n)], [np.zeros(n, dtype=np.int64)]
    for grouping in check_groupings(by):
        values = items[grouping].astype(object).where(items[grouping].notna(), "(none)").astype(str).to_numpy()
        names, codes = np.unique(values, return_inverse=True)
        rows.append(np.arange(n))
        cols.append(codes + len(labels))
        labels += [(grouping, str(v)) for v in names]
    r, c = np.concatenate(rows), np.concatenate(cols)
    membership = sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(n, len(labels)))
    return Groups(labels=labels, membership=membership, clusters=items["cluster"].to_numpy(), groupings=by)
