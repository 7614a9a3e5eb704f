"""The relation rules, for one case or many at once: :class:`RelationStack`.

A stack holds the structure statistics and pair measurements of one or more relation graphs
(:class:`~volprobe.segmentation.relations.RelationGraph`) as arrays (case × structure) and answers
every relation query for all its cases in one numpy operation, each case with its own
:class:`~volprobe.segmentation.relations.rules.RelationThresholds`. This is the only place the
relation rules are written: a graph's query methods (``graph.direction('liver', 'spleen', 'lr')`` →
``Relation('right', 98.2)``) read row 0 of the graph's own stack of one (``graph.stack``), a graph's
relations file asks a stack whose rows are its pairs (each row holding structures ``'a'`` and ``'b'``),
and question generation asks each relation of every case of a run at once, which is what the arrays
are for (the same few hundred relations are asked of thousands of cases).

Every query returns a :class:`StackRelation`: per case a ``code`` and a ``margin`` (float64).

``code``
    +1 and -1 are the relation's two determinate values, stated per method (``direction``: +1 the
    positive side of the axis: right, anterior, superior; ``contact``: +1 yes, -1 no; ``larger``: +1
    a, -1 b ...); ``extent_relation`` has a third, :data:`OVERLAP`. 0: undecided, because the margin
    is under its threshold (``indeterminate``) or the case lacks a structure or pair.
``margin``
    mm, except the share of a inside b (``inside``) and the volume ratio (``larger``). It is given
    for indeterminate relations too (relations files record it): the same measurement, except that
    ``extends_beyond`` gives 0.0 and ``larger`` 1.0 where the field of view cuts either structure
    (nothing was measured). Meaningless where the case lacks a structure or pair.

A graph's query raises ``KeyError`` for a structure it does not have; the stack, asked about many
cases, answers 0 for the cases that lack it instead.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np

from volprobe.segmentation.volume import NEGATIVE_SIDE, PATIENT_AXES, POSITIVE_SIDE

#: ``extent_relation``'s code for extents that overlap by more than the margin.
OVERLAP = 2


class StackRelation(NamedTuple):
    """Per case: ``code`` (int8: +1, -1, 0 = undecided; :data:`OVERLAP` for extents) and ``margin`` (float64)."""

    code: np.ndarray
    margin: np.ndarray


def _decide(positive: np.ndarray, negative: np.ndarray, margin: np.ndarray, ok: np.ndarray) -> StackRelation:
    """+1 where ``positive``, else -1 where ``negative``, else 0; 0 wherever not ``ok``."""
    code = np.where(positive, 1, np.where(negative, -1, 0)).astype(np.int8)
    code[~ok] = 0
    return StackRelation(code, margin)


class RelationStack:
    """Relation graphs as arrays; every query answers for all cases at once (see the module docstring).

    Attributes:
        cases: the graphs' case ids, in the given order (row i is graph i).
        names: every structure name of any graph; ``index`` maps a name to its column.
        present: (cases, names) bool; centroid, lo, hi: (cases, names, 3) RAS+ mm (NaN where absent);
        volume_ml: (cases, names); border: (cases, names) bool, the field of view cuts the structure.
        midline_x, max_spacing: per case, the body midline's x and the largest voxel spacing (mm);
        the thresholds per case: centroid_margin, extent_margin, contact_tolerance, contact_margin,
        midline_margin, contained_share, not_contained_share, size_ratio_margin.

    A stack reads of each graph its ``case``, ``structures``, ``pairs``, ``thresholds``, ``midline`` and
    ``max_spacing_mm``. It keeps the pair dictionaries (read on first use of a pair), not the graphs, so
    a graph's own stack does not refer back to the graph.
    """

    def __init__(self, graphs: Sequence["RelationGraph"]):
        graphs = list(graphs)
        self.cases = [g.case for g in graphs]
        self.names = sorted(set().union(*(g.structures for g in graphs)))
        self.index = {n: j for j, n in enumerate(self.names)}
        n, m = len(graphs), len(self.names)
        rows = np.full((n, m, 11), np.nan)
        at_i, at_j, values = [], [], []
        for i, g in enumerate(graphs):
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
        t = [g.thresholds for g in graphs]
        self.centroid_margin = np.array([x.centroid_margin_mm for x in t])
        self.extent_margin = np.array([x.extent_margin_mm for x in t])
        self.contact_tolerance = np.array([x.contact_tolerance_mm for x in t])
        self.contact_margin = np.array([x.contact_margin_mm for x in t])
        self.midline_margin = np.array([x.midline_margin_mm for x in t])
        self.contained_share = np.array([x.contained_share for x in t])
        self.not_contained_share = np.array([x.not_contained_share for x in t])
        self.size_ratio_margin = np.array([x.size_ratio_margin for x in t])
        self.midline_x = np.array([g.midline.x_mm for g in graphs], dtype=float)
        self.max_spacing = np.array([g.max_spacing_mm for g in graphs], dtype=float)
        self._pairs = [g.pairs for g in graphs]
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
                             for geo in (pairs.get((a, b)) for pairs in self._pairs)], dtype=float).reshape(-1, 4)
            got = self._pair_columns[(a, b)] = (~np.isnan(rows[:, 0]), rows[:, 0], rows[:, 1] == 1.0,
                                                rows[:, 2], rows[:, 3])
        return got

    # -- by centroids and extents --------------------------------------------------------------------

    def direction(self, a: str, b: str, axis: str) -> StackRelation:
        """Where a's centroid lies relative to b's along ``axis`` ('lr', 'ap', 'si'): +1 toward the positive
        side (right, anterior, superior), -1 the negative side; undecided when the centroids differ by
        at most ``centroid_margin_mm``. margin: the centroid difference in mm (absolute)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        d = self.centroid[:, ia, k] - self.centroid[:, ib, k]
        margin = np.abs(d)
        ok = ok & ~(margin <= self.centroid_margin)
        return _decide(d > 0, d <= 0, margin, ok)

    def extent_relation(self, a: str, b: str, axis: str) -> StackRelation:
        """+1: a lies entirely toward the positive side of b along ``axis`` (a's lowest point beyond b's
        highest by more than ``extent_margin_mm``: 'superior' for 'si'); -1: entirely toward the negative
        side; :data:`OVERLAP`: their extents overlap by more than the margin; else undecided. margin: the
        gap or the overlap depth in mm (undecided: the absolute value of the larger of the two gaps)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        above = self.lo[:, ia, k] - self.hi[:, ib, k]
        below = self.lo[:, ib, k] - self.hi[:, ia, k]
        m = self.extent_margin
        gap = np.maximum(above, below)  # > 0: apart by this much; < 0: overlapping by -gap
        positive = above > m
        negative = ~positive & (below > m)
        overlap = ~positive & ~negative & (-gap > m)
        margin = np.where(positive, above, np.where(negative, below, np.where(overlap, -gap, np.abs(gap))))
        code = np.where(positive, 1, np.where(negative, -1, np.where(overlap, OVERLAP, 0))).astype(np.int8)
        code[~ok] = 0
        return StackRelation(code, margin)

    def extends_beyond(self, a: str, b: str, axis: str, side: str) -> StackRelation:
        """+1 (yes): a extends past b's extreme point on ``side`` of ``axis`` (e.g. below b's lowest point:
        axis 'si', side 'inferior') by more than ``extent_margin_mm``; -1 (no): b's extreme point lies
        beyond a's by more than that. margin: the difference of the extreme points in mm (absolute);
        undecided, margin 0.0, where the field of view cuts either structure.

        Raises:
            ValueError: ``side`` is not a side of ``axis``.
        """
        if side == POSITIVE_SIDE[axis]:
            lo_side = False
        elif side == NEGATIVE_SIDE[axis]:
            lo_side = True
        else:
            raise ValueError(f"side {side!r} is not on axis {axis!r}")
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        d = self.lo[:, ib, k] - self.lo[:, ia, k] if lo_side else self.hi[:, ia, k] - self.hi[:, ib, k]
        cut = self.border[:, ia] | self.border[:, ib]
        margin = np.where(cut, 0.0, np.abs(d))
        ok = ok & ~cut & ~(margin <= self.extent_margin)
        return _decide(d > 0, d <= 0, margin, ok)

    # -- by pair measurements ----------------------------------------------------------------------------

    def contact(self, a: str, b: str) -> StackRelation:
        """+1: a and b touch (surface gap at most ``contact_tolerance_mm``, the distance exact); -1: they are
        apart by more than tolerance + ``contact_margin_mm``. The gap is the surface distance minus the
        largest voxel spacing (0 for face-adjacent voxels). margin: the gap in mm. Symmetric."""
        key = (a, b) if a < b else (b, a)
        present, dist, lower, _, _ = self._pair(*key)
        gap = np.maximum(0.0, dist - self.max_spacing)
        tol = self.contact_tolerance
        yes = ~lower & (gap <= tol)
        no = ~yes & (gap > tol + self.contact_margin)
        return _decide(yes, no, gap, present)

    def inside(self, a: str, b: str) -> StackRelation:
        """+1: a is inside b (at least ``contained_share`` of a's voxels inside b with its cavities filled);
        -1: it is not (at most ``not_contained_share``). margin: the share of a inside b."""
        if a < b:
            present, _, _, share, _ = self._pair(a, b)
        else:
            present, _, _, _, share = self._pair(b, a)
        yes = share >= self.contained_share
        no = ~yes & (share <= self.not_contained_share)
        return _decide(yes, no, share, present)

    def surface_distance(self, a: str, b: str) -> tuple[np.ndarray, np.ndarray]:
        """(distance in mm, is a lower bound) per case: the centre distance of the nearest boundary voxels,
        or a lower bound for pairs farther apart than the graph's distance cutoff (NaN / False where the
        case lacks the pair). Symmetric."""
        _, dist, lower, _, _ = self._pair(*((a, b) if a < b else (b, a)))
        return dist, lower

    # -- the midline -----------------------------------------------------------------------------------

    def midline_offset(self, name: str) -> np.ndarray:
        """Centroid x − midline x in mm (negative: patient's left; NaN where absent)."""
        j = self._col(name)
        return np.full(len(self.cases), np.nan) if j is None else self.centroid[:, j, 0] - self.midline_x

    def side(self, name: str) -> StackRelation:
        """+1: the centroid lies on the patient's right of the body midline; -1: left; undecided within
        ``midline_margin_mm``. margin: the distance from the midline in mm."""
        j = self._col(name)
        if j is None:
            return self._none()
        off = self.midline_offset(name)
        margin = np.abs(off)
        return _decide(off > 0, off <= 0, margin, self.present[:, j] & ~(margin <= self.midline_margin))

    def crosses_midline(self, name: str) -> StackRelation:
        """+1: the structure reaches more than ``midline_margin_mm`` across the midline on both sides; -1:
        its nearer side stays more than that short of it. margin: how far its shorter side reaches (mm,
        absolute)."""
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
        """+1: a's centroid is nearer the midline; -1: b's; undecided when the two distances differ by at
        most ``centroid_margin_mm``. margin: that difference in mm."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        da, db = np.abs(self.midline_offset(a)), np.abs(self.midline_offset(b))
        margin = np.abs(da - db)
        return _decide(da < db, da >= db, margin, both[2] & ~(margin <= self.centroid_margin))

    # -- size ------------------------------------------------------------------------------------------

    def larger(self, a: str, b: str) -> StackRelation:
        """+1: a has the larger volume; -1: b; undecided when the volume ratio is at most 1 +
        ``size_ratio_margin``. margin: the volume ratio (≥ 1); undecided, margin 1.0, where the field of
        view cuts either structure."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        va, vb = self.volume_ml[:, ia], self.volume_ml[:, ib]
        cut = self.border[:, ia] | self.border[:, ib]
        ratio = np.where(cut, 1.0, np.maximum(va, vb) / np.maximum(np.minimum(va, vb), 1e-9))
        ok = ok & ~cut & ~(ratio <= 1.0 + self.size_ratio_margin)
        return _decide(va > vb, va <= vb, ratio, ok)

    def volume_ratio(self, a: str, b: str) -> np.ndarray:
        """a's volume over b's (b's at least 1e-9 mL; NaN where a case lacks either)."""
        both = self._both(a, b)
        if both is None:
            return np.full(len(self.cases), np.nan)
        ia, ib, _ = both
        return self.volume_ml[:, ia] / np.maximum(self.volume_ml[:, ib], 1e-9)
