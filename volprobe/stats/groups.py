"""Groups of items for reports (``--by``) and the cluster-robust tests inside each group.

Every item belongs to one pool of the grouping ``all`` and to exactly one group of each grouping in ``by``.
The pool is ``all`` when the items are all closed (options, yes/no) or all open; a report with both has
the pools ``closed`` and ``open`` (open: free text and measurements, scored by text or number match)
instead, so that no headline number mixes the two kinds of scoring. The groupings:

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
from volprobe.stats.clustered import ClusterPaired, cluster_paired
from volprobe.stats.load import OPEN_TYPES

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

    def cluster_tests(self, num: np.ndarray, den: np.ndarray, alpha: float, alternatives) -> list[ClusterPaired]:
        """Cluster-robust paired comparisons (:func:`~volprobe.stats.clustered.cluster_paired`) of J
        item-level columns (items × J: paired differences ``num``, paired-item indicators ``den``) inside
        every group, over the clusters of that group's items; one result per group."""
        out = []
        for t in range(len(self.labels)):
            items = self.items_of(t)
            codes = np.unique(self.clusters[items], return_inverse=True)[1]
            k = int(codes.max()) + 1 if items.size else 0
            to_clusters = sparse.csr_matrix((np.ones(items.size), (codes, np.arange(items.size))), shape=(k, items.size))
            out.append(cluster_paired(to_clusters @ num[items], to_clusters @ den[items], alpha, alternatives))
        return out


def pool_labels(answer_types: pd.Series) -> np.ndarray:
    """The pool of each item: ``all`` when every item is closed or every item open, else ``closed``/``open``."""
    is_open = answer_types.astype(object).isin(OPEN_TYPES).to_numpy()
    if is_open.all() or not is_open.any():
        return np.full(is_open.size, "all", dtype=object)
    return np.where(is_open, "open", "closed").astype(object)


def build_groups(items: pd.DataFrame, by: tuple[str, ...]) -> Groups:
    """The pools of ``all`` (see the module docstring) plus every group of each grouping in ``by``."""
    n = len(items)
    pools, pool_code = np.unique(pool_labels(items["answer_type"]), return_inverse=True)  # all | closed, open
    labels = [("all", str(p)) for p in pools]
    rows, cols = [np.arange(n)], [pool_code]
    for grouping in check_groupings(by):
        values = items[grouping].astype(object).where(items[grouping].notna(), "(none)").astype(str).to_numpy()
        names, codes = np.unique(values, return_inverse=True)
        rows.append(np.arange(n))
        cols.append(codes + len(labels))
        labels += [(grouping, str(v)) for v in names]
    r, c = np.concatenate(rows), np.concatenate(cols)
    membership = sparse.csr_matrix((np.ones(r.size), (r, c)), shape=(n, len(labels)))
    return Groups(labels=labels, membership=membership, clusters=items["cluster"].to_numpy(), groupings=by)
