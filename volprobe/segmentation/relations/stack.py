"""The relation queries of many cases at once: :class:`RelationStack`.

A stack holds the structure statistics of many :class:`~volprobe.segmentation.relations.RelationGraph`
as arrays (case × structure) and answers the graph's relation queries for every case in one numpy
operation. Values, thresholds and margins are exactly those of the graph methods (same float64
arithmetic, each case with its own thresholds); tests compare the two on every pair of real and phantom
graphs. It exists for speed: question generation asks the same few hundred relations of thousands of
cases.

Every query returns a :class:`StackRelation`: ``code`` per case (+1, -1, or 0 where the relation is
indeterminate or the case lacks a structure or pair) and ``margin`` (float64; meaningless where
``code`` is 0). What +1 and -1 stand for is stated per method, e.g. ``direction``: +1 the positive side
of the axis (right, anterior, superior).
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from volprobe.segmentation.relations.graph import RelationGraph
from volprobe.segmentation.volume import PATIENT_AXES, POSITIVE_SIDE, NEGATIVE_SIDE


class StackRelation(NamedTuple):
    """Per case: ``code`` (int8: +1, -1, 0 = undecided) and ``margin`` (mm, share or ratio, as the graph method)."""

    code: np.ndarray
    margin: np.ndarray


def _decide(positive: np.ndarray, negative: np.ndarray, margin: np.ndarray, ok: np.ndarray) -> StackRelation:
    code = np.where(positive, 1, np.where(negative, -1, 0)).astype(np.int8)
    code[~ok] = 0
    return StackRelation(code, margin)


class RelationStack:
    """The graphs' structures as arrays; queries answer for all cases at once (see the module docstring).

    Attributes:
        graphs: the graphs, in the given order (row i is graph i); cases: their case ids.
        names: every structure name of any graph; ``index`` maps a name to its column.
        present: (cases, names) bool; centroid, lo, hi: (cases, names, 3) RAS+ mm (NaN where absent);
        volume_ml: (cases, names); border: (cases, names) bool, the field of view cuts the structure.
    """

    def __init__(self, graphs: Sequence[RelationGraph]):
        self.graphs = list(graphs)
        self.cases = [g.case for g in self.graphs]
        self.names = sorted(set().union(*(g.structures for g in self.graphs)))
        self.index = {n: j for j, n in enumerate(self.names)}
        n, m = len(self.graphs), len(self.names)
        rows = np.full((n, m, 11), np.nan)
        at_i, at_j, values = [], [], []
        for i, g in enumerate(self.graphs):
            for name, s in g.structures.items():
                at_i.append(i)
                at_j.append(self.index[name])
                values.append((*s.centroid_mm, *s.min_mm, *s.max_mm, s.volume_ml, s.touches_border))
        if values:
            rows[at_i, at_j] = np.array(values, dtype=float)
        self.present = ~np.isnan(rows[:, :, 9])
        self.centroid, self.lo, self.hi = rows[:, :, 0:3], rows[:, :, 3:6], rows[:, :, 6:9]
        self.volume_ml = rows[:, :, 9]
        self.border = rows[:, :, 10] == 1.0
        t = [g.thresholds for g in self.graphs]
        self.centroid_margin = np.array([x.centroid_margin_mm for x in t])
        self.extent_margin = np.array([x.extent_margin_mm for x in t])
        self.contact_tolerance = np.array([x.contact_tolerance_mm for x in t])
        self.contact_margin = np.array([x.contact_margin_mm for x in t])
        self.midline_margin = np.array([x.midline_margin_mm for x in t])
        self.contained_share = np.array([x.contained_share for x in t])
        self.not_contained_share = np.array([x.not_contained_share for x in t])
        self.size_ratio_margin = np.array([x.size_ratio_margin for x in t])
        self.midline_x = np.array([g.midline.x_mm for g in self.graphs])
        self.max_spacing = np.array([g.max_spacing_mm for g in self.graphs])
        self._pair_columns: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}

    def __len__(self) -> int:
        return len(self.cases)

    def _col(self, name: str) -> int | None:
        return self.index.get(name)

    def _both(self, a: str, b: str) -> tuple[int, int, np.ndarray] | None:
        ia, ib = self._col(a), self._col(b)
        if ia is None or ib is None:
            return None
        return ia, ib, self.present[:, ia] & self.present[:, ib]

    def _none(self) -> StackRelation:
        n = len(self.cases)
        return StackRelation(np.zeros(n, np.int8), np.zeros(n))

    def _pair(self, a: str, b: str) -> tuple[np.ndarray, ...]:
        """(present, surface distance, is lower bound, share a in b, share b in a) of the stored pair a < b."""
        got = self._pair_columns.get((a, b))
        if got is None:
            nan = (np.nan, np.nan, np.nan, np.nan)
            rows = np.array([nan if geo is None else (geo.surface_distance_mm, geo.distance_is_lower_bound,
                                                      geo.share_a_in_b, geo.share_b_in_a)
                             for geo in (g.pairs.get((a, b)) for g in self.graphs)], dtype=float).reshape(-1, 4)
            got = self._pair_columns[(a, b)] = (~np.isnan(rows[:, 0]), rows[:, 0], rows[:, 1] == 1.0,
                                                rows[:, 2], rows[:, 3])
        return got

    # -- queries (each mirrors the RelationGraph method of the same name) --------------------------------

    def direction(self, a: str, b: str, axis: str) -> StackRelation:
        """+1: a's centroid lies toward the positive side of ``axis`` from b's (right, anterior, superior)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        d = self.centroid[:, ia, k] - self.centroid[:, ib, k]
        margin = np.abs(d)
        ok = ok & ~(margin <= self.centroid_margin)
        return _decide(d > 0, d <= 0, margin, ok)

    def extends_beyond(self, a: str, b: str, axis: str, side: str) -> StackRelation:
        """+1 (yes): a extends past b's extreme point on ``side`` of ``axis``; undecided when either is cut."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        if side == POSITIVE_SIDE[axis]:
            d = self.hi[:, ia, k] - self.hi[:, ib, k]
        elif side == NEGATIVE_SIDE[axis]:
            d = self.lo[:, ib, k] - self.lo[:, ia, k]
        else:
            raise ValueError(f"side {side!r} is not on axis {axis!r}")
        margin = np.abs(d)
        ok = ok & ~self.border[:, ia] & ~self.border[:, ib] & ~(margin <= self.extent_margin)
        return _decide(d > 0, d <= 0, margin, ok)

    def contact(self, a: str, b: str) -> StackRelation:
        """+1: a and b touch; -1: verified apart. margin: surface gap in mm."""
        key = (a, b) if a < b else (b, a)
        present, dist, lower, _, _ = self._pair(*key)
        gap = np.maximum(0.0, dist - self.max_spacing)
        tol = self.contact_tolerance
        yes = ~lower & (gap <= tol)
        no = ~yes & (gap > tol + self.contact_margin)
        return _decide(yes, no, gap, present)

    def inside(self, a: str, b: str) -> StackRelation:
        """+1: a is inside b; -1: it is not. margin: share of a's voxels inside b."""
        if a < b:
            present, _, _, share, _ = self._pair(a, b)
        else:
            present, _, _, _, share = self._pair(b, a)
        yes = share >= self.contained_share
        no = ~yes & (share <= self.not_contained_share)
        return _decide(yes, no, share, present)

    def midline_offset(self, name: str) -> np.ndarray:
        """Centroid x − midline x in mm (NaN where absent)."""
        j = self._col(name)
        return np.full(len(self.cases), np.nan) if j is None else self.centroid[:, j, 0] - self.midline_x

    def side(self, name: str) -> StackRelation:
        """+1: the centroid lies on the patient's right of the midline; -1: left."""
        j = self._col(name)
        if j is None:
            return self._none()
        off = self.midline_offset(name)
        margin = np.abs(off)
        return _decide(off > 0, off <= 0, margin, self.present[:, j] & ~(margin <= self.midline_margin))

    def crosses_midline(self, name: str) -> StackRelation:
        """+1: the structure extends across the midline; -1: it stays on one side."""
        j = self._col(name)
        if j is None:
            return self._none()
        left_reach = self.midline_x - self.lo[:, j, 0]
        right_reach = self.hi[:, j, 0] - self.midline_x
        reach = np.minimum(left_reach, right_reach)
        m = self.midline_margin
        yes, no = reach > m, reach < -m
        margin = np.where(yes, reach, np.where(no, -reach, np.abs(reach)))
        return _decide(yes, no, margin, self.present[:, j])

    def closer_to_midline(self, a: str, b: str) -> StackRelation:
        """+1: a's centroid is nearer the midline; -1: b's."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        da, db = np.abs(self.midline_offset(a)), np.abs(self.midline_offset(b))
        margin = np.abs(da - db)
        return _decide(da < db, da >= db, margin, both[2] & ~(margin <= self.centroid_margin))

    def larger(self, a: str, b: str) -> StackRelation:
        """+1: a has the larger volume; -1: b. margin: volume ratio ≥ 1; undecided when either is cut."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        va, vb = self.volume_ml[:, ia], self.volume_ml[:, ib]
        ratio = np.maximum(va, vb) / np.maximum(np.minimum(va, vb), 1e-9)
        ok = ok & ~self.border[:, ia] & ~self.border[:, ib] & ~(ratio <= 1.0 + self.size_ratio_margin)
        return _decide(va > vb, va <= vb, ratio, ok)
