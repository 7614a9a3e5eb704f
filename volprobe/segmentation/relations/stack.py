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

Every query returns a :class:`StackRelation`: per case a ``code``, a ``margin`` (float64) and a ``reason``.

``code``
    +1 and -1 are the relation's two determinate values, stated per method (``direction``: +1 the
    positive side of the axis: right, anterior, superior; ``contact``: +1 yes, -1 no; ``larger``: +1
    a, -1 b ...); ``extent_relation`` has a third, :data:`OVERLAP`. 0: undecided (``indeterminate``).
``margin``
    mm, except the share of a inside b (``inside``) and the volume ratio (``larger``): the measurement,
    given for undecided relations too (relations files record it). Meaningless where the case lacks a
    structure or pair.
``reason``
    why a row is undecided: an index into :data:`REASONS` (0, ``decided``, where it is decided).

What a reader can see decides (the rules below, per method):

**Thresholds that respect the image.** A threshold along patient axis k is the larger of its mm
default and ``voxel_multiple`` voxel widths along k (the width of one voxel projected on k). A
structure compared with its left/right partner (``kidney_left`` with ``kidney_right``: tiny normal
asymmetries) needs max(``partner_margin_mm``, ``partner_voxel_multiple`` voxel widths) on any axis.
Relations to the midline hold for every midline position within its uncertainty
(:class:`~volprobe.segmentation.audit.Midline`): the side and crossing margins are added to it, and
"closer to the midline" must hold, by its margin, at both ends of the band.

**Cuts by the field of view** (``StructureStats.cut_low`` / ``cut_high``, per patient axis and end).
A centroid along an axis where the scan cuts a structure is the centroid of what is visible, not of
the structure: ``direction``, ``side`` and ``closer_to_midline`` refuse it (``cut_centroid``). An
extreme point at a cut end is only a bound: ``extent_relation`` and ``extends_beyond`` decide only what
the visible parts prove ("a lies entirely above b" needs a's lowest point above b's highest, a not cut
at its bottom and b not cut at its top; an overlap of the visible parts is an overlap); the rest is
``cut_extent``. ``larger`` refuses any cut structure (``cut_size``); ``crosses_midline`` answers "no"
only for a structure the scan does not cut (the hidden part may cross).

A graph's query raises ``KeyError`` for a structure it does not have; the stack, asked about many
cases, answers 0 (``missing``) for the cases that lack it instead.
"""

from __future__ import annotations

from functools import lru_cache
from typing import NamedTuple, Sequence

import numpy as np

from volprobe.segmentation.names import mirror_name
from volprobe.segmentation.volume import NEGATIVE_SIDE, PATIENT_AXES, POSITIVE_SIDE

#: ``extent_relation``'s code for extents that overlap by more than the margin.
OVERLAP = 2

#: Why a relation is undecided, in rising order of how fundamental the reason is (a relation asked of
#: several pairs, such as an extreme of four structures, reports the most fundamental of its pairs'):
#: ``under_margin`` — the difference is under the threshold's mm default;
#: ``under_voxel_margin`` — over the mm default but within the voxel widths the image resolves;
#: ``partner_margin`` — a left/right partner pair under the partner margin;
#: ``midline_uncertainty`` — the answer changes within the midline's uncertainty;
#: ``contact_within_voxel`` — a surface gap within one voxel diagonal: neither surely touching nor apart;
#: ``small_volume_difference`` — volumes differ by less than ``size_min_difference_ml``;
#: ``no_single_answer`` — every pair decided, but no structure is the one answer (none or several touch);
#: ``crosses_midline`` — a side asked of a structure that does not lie on one side;
#: ``cut_size``, ``cut_extent``, ``cut_centroid`` — see the module docstring;
#: ``missing`` — the case lacks a structure or pair.
REASONS = ("decided", "under_margin", "under_voxel_margin", "partner_margin", "midline_uncertainty",
           "contact_within_voxel", "small_volume_difference", "no_single_answer", "crosses_midline", "cut_size",
           "cut_extent", "cut_centroid", "missing")
(DECIDED, UNDER_MARGIN, UNDER_VOXEL, PARTNER, MIDLINE, WITHIN_VOXEL, SMALL_VOLUME, NO_SINGLE, CROSSES, CUT_SIZE,
 CUT_EXTENT, CUT_CENTROID, MISSING) = range(len(REASONS))
#: Gaps (mm) up to this are zero: face-adjacent voxels (their centre distance is one spacing, up to rounding).
_FACE_GAP_MM = 1e-3


class StackRelation(NamedTuple):
    """Per case: ``code`` (int8: +1, -1, 0 = undecided; :data:`OVERLAP` for extents), ``margin`` (float64)
    and ``reason`` (int8 index into :data:`REASONS`; 0 where decided)."""

    code: np.ndarray
    margin: np.ndarray
    reason: np.ndarray


def _result(positive: np.ndarray, negative: np.ndarray, margin: np.ndarray, reason: np.ndarray) -> StackRelation:
    """+1 where ``positive``, else -1 where ``negative``, else 0; 0 wherever ``reason`` is not 0."""
    reason = np.asarray(reason, dtype=np.int8)
    code = np.where(positive, 1, np.where(negative, -1, 0)).astype(np.int8)
    code[reason != DECIDED] = 0
    return StackRelation(code, margin, reason)


def _first(default, *cases: tuple[np.ndarray, int]) -> np.ndarray:
    """Per row the reason of the first true condition in ``cases`` ((condition, reason), ...), else ``default``."""
    out = np.asarray(default, dtype=np.int8)
    for cond, reason in reversed(cases):
        out = np.where(cond, np.int8(reason), out)
    return out.astype(np.int8)


def _margin_reason(margin: np.ndarray, base: np.ndarray, voxel: np.ndarray,
                   partner: np.ndarray | None) -> np.ndarray:
    """Where ``margin`` is at most max(base, voxel, partner): which threshold stops it (``under_margin``
    first, then ``partner_margin``, then ``under_voxel_margin``); 0 where it clears them all."""
    cases = [(margin <= base, UNDER_MARGIN)]
    if partner is not None:
        cases.append((margin <= partner, PARTNER))
    cases.append((margin <= voxel, UNDER_VOXEL))
    return _first(np.zeros(margin.shape, np.int8), *cases)


@lru_cache(maxsize=65536)
def is_partner(a: str, b: str) -> bool:
    """a and b are a left/right pair (``kidney_left``, ``kidney_right``)."""
    return a != b and mirror_name(a) == b


class RelationStack:
    """Relation graphs as arrays; every query answers for all cases at once (see the module docstring).

    Attributes:
        cases: the graphs' case ids, in the given order (row i is graph i).
        names: every structure name of any graph; ``index`` maps a name to its column.
        present: (cases, names) bool; centroid, lo, hi: (cases, names, 3) RAS+ mm (NaN where absent);
        volume_ml: (cases, names); border: (cases, names) bool, the field of view cuts the structure;
        cut_low, cut_high: (cases, names, 3) bool, it cuts it at the negative / positive end of each
        patient axis; left_share, right_share: (cases, names), share of its voxels on each side of the midline.
        midline_x, midline_uncertainty, max_spacing, voxel_diagonal: per case (mm); voxel_width: (cases,
        3), the width of one voxel along each patient axis (mm); the thresholds per case: centroid_margin,
        extent_margin, contact_tolerance, contact_margin, midline_margin, contained_share,
        not_contained_share, size_ratio_margin, size_min_difference, voxel_multiple, partner_margin,
        partner_voxel_multiple, max_cross_share.

    A stack reads of each graph its ``case``, ``structures``, ``pairs``, ``thresholds``, ``midline``,
    ``max_spacing_mm``, ``voxel_widths_mm`` and ``voxel_diagonal_mm``, and where it has them its
    ``aliases`` (structure key → the structure's name, for rows whose structures are keyed otherwise,
    such as the ``'a'`` and ``'b'`` of a relations file's pair rows; the rules look up partners by name).
    It keeps the pair dictionaries (read on first use of a pair), not the graphs, so a graph's own stack
    does not refer back to the graph.
    """

    def __init__(self, graphs: Sequence["RelationGraph"]):
        graphs = list(graphs)
        self.cases = [g.case for g in graphs]
        self.names = sorted(set().union(*(g.structures for g in graphs)))
        self.index = {n: j for j, n in enumerate(self.names)}
        n, m = len(graphs), len(self.names)
        rows = np.full((n, m, 19), np.nan)
        at_i, at_j, values = [], [], []
        for i, g in enumerate(graphs):
            for name, s in g.structures.items():
                at_i.append(i)
                at_j.append(self.index[name])
                values.append((*s.centroid_mm, *s.min_mm, *s.max_mm, s.volume_ml, s.touches_border,
                               *s.cut_low, *s.cut_high, s.left_share, s.right_share))
        if values:
            rows[at_i, at_j] = np.array(values, dtype=float)
        self.present = ~np.isnan(rows[:, :, 9])
        self.centroid, self.lo, self.hi = rows[:, :, 0:3], rows[:, :, 3:6], rows[:, :, 6:9]
        self.volume_ml = rows[:, :, 9]
        self.border = rows[:, :, 10] == 1.0
        self.cut_low, self.cut_high = rows[:, :, 11:14] == 1.0, rows[:, :, 14:17] == 1.0
        self.left_share, self.right_share = rows[:, :, 17], rows[:, :, 18]
        t = [g.thresholds for g in graphs]
        self.centroid_margin = np.array([x.centroid_margin_mm for x in t])
        self.extent_margin = np.array([x.extent_margin_mm for x in t])
        self.contact_tolerance = np.array([x.contact_tolerance_mm for x in t])
        self.contact_margin = np.array([x.contact_margin_mm for x in t])
        self.midline_margin = np.array([x.midline_margin_mm for x in t])
        self.contained_share = np.array([x.contained_share for x in t])
        self.not_contained_share = np.array([x.not_contained_share for x in t])
        self.size_ratio_margin = np.array([x.size_ratio_margin for x in t])
        self.size_min_difference = np.array([x.size_min_difference_ml for x in t])
        self.voxel_multiple = np.array([x.voxel_multiple for x in t])
        self.partner_margin = np.array([x.partner_margin_mm for x in t])
        self.partner_voxel_multiple = np.array([x.partner_voxel_multiple for x in t])
        self.max_cross_share = np.array([x.max_cross_share for x in t])
        self.midline_x = np.array([g.midline.x_mm for g in graphs], dtype=float)
        self.midline_uncertainty = np.array([g.midline.uncertainty_mm for g in graphs], dtype=float)
        self.max_spacing = np.array([g.max_spacing_mm for g in graphs], dtype=float)
        self.voxel_width = np.array([g.voxel_widths_mm for g in graphs], dtype=float).reshape(n, 3)
        self.voxel_diagonal = np.array([g.voxel_diagonal_mm for g in graphs], dtype=float)
        self._pairs = [g.pairs for g in graphs]
        self._pair_columns: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}
        aliases = [getattr(g, "aliases", None) or {} for g in graphs]
        self._aliases = aliases if any(aliases) else None

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
        return StackRelation(np.zeros(n, np.int8), np.zeros(n), np.full(n, MISSING, np.int8))

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

    def _partners(self, a: str, b: str) -> np.ndarray | None:
        """Per case: are a and b a left/right pair (:func:`is_partner`, by the rows' ``aliases`` if any)?
        None where they are not in any case."""
        if self._aliases is None:
            return np.ones(len(self.cases), bool) if is_partner(a, b) else None
        got = np.array([is_partner(al.get(a, a), al.get(b, b)) for al in self._aliases], dtype=bool)
        return got if got.any() else None

    def _thresholds(self, base: np.ndarray, k: int, a: str, b: str) -> tuple[np.ndarray, tuple]:
        """(threshold, (base, voxel floor, partner floor or None)) along patient axis k per case, for structures
        a and b (the partner floor is 0 where they are not left/right partners, None where they never are)."""
        width = self.voxel_width[:, k]
        voxel = self.voxel_multiple * width
        thr = np.maximum(base, voxel)
        partners = self._partners(a, b)
        if partners is None:
            return thr, (base, voxel, None)
        part = np.where(partners, np.maximum(self.partner_margin, self.partner_voxel_multiple * width), 0.0)
        return np.maximum(thr, part), (base, voxel, part)

    def _cut(self, j: int, k: int) -> np.ndarray:
        """The field of view cuts structure column j along axis k (at either end)."""
        return self.cut_low[:, j, k] | self.cut_high[:, j, k]

    # -- by centroids and extents --------------------------------------------------------------------

    def direction(self, a: str, b: str, axis: str) -> StackRelation:
        """Where a's centroid lies relative to b's along ``axis`` ('lr', 'ap', 'si'): +1 toward the positive
        side (right, anterior, superior), -1 the negative side; undecided when the centroids differ by at
        most the centroid threshold along the axis (``centroid_margin_mm``, voxel widths, partner margin)
        or the field of view cuts either structure along the axis. margin: the centroid difference in mm
        (absolute)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        d = self.centroid[:, ia, k] - self.centroid[:, ib, k]
        margin = np.abs(d)
        _, parts = self._thresholds(self.centroid_margin, k, a, b)
        reason = _first(_margin_reason(margin, *parts), (~ok, MISSING),
                        (self._cut(ia, k) | self._cut(ib, k), CUT_CENTROID))
        return _result(d > 0, d <= 0, margin, reason)

    def extent_relation(self, a: str, b: str, axis: str) -> StackRelation:
        """+1: a lies entirely toward the positive side of b along ``axis`` (a's lowest point beyond b's
        highest by more than the extent threshold along the axis, a not cut at its low end and b not at
        its high end: 'superior' for 'si'); -1: entirely toward the negative side (the same, mirrored);
        :data:`OVERLAP`: their visible extents overlap by more than the threshold; else undecided. margin:
        the gap or the overlap depth in mm (undecided: the absolute value of the larger of the two gaps)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        k = PATIENT_AXES.index(axis)
        above = self.lo[:, ia, k] - self.hi[:, ib, k]
        below = self.lo[:, ib, k] - self.hi[:, ia, k]
        m, parts = self._thresholds(self.extent_margin, k, a, b)
        gap = np.maximum(above, below)  # > 0: apart by this much; < 0: overlapping by -gap
        seen_above = above > m
        seen_below = ~seen_above & (below > m)
        overlap = ~seen_above & ~seen_below & (-gap > m)
        above_proved = ~self.cut_low[:, ia, k] & ~self.cut_high[:, ib, k]
        below_proved = ~self.cut_low[:, ib, k] & ~self.cut_high[:, ia, k]
        margin = np.where(seen_above, above, np.where(seen_below, below, np.where(overlap, -gap, np.abs(gap))))
        reason = _first(np.where(seen_above | seen_below | overlap, np.int8(DECIDED), _margin_reason(margin, *parts)),
                        (~ok, MISSING), ((seen_above & ~above_proved) | (seen_below & ~below_proved), CUT_EXTENT))
        code = np.where(seen_above, 1, np.where(seen_below, -1, np.where(overlap, OVERLAP, 0))).astype(np.int8)
        code[reason != DECIDED] = 0
        return StackRelation(code, margin, reason)

    def extends_beyond(self, a: str, b: str, axis: str, side: str) -> StackRelation:
        """+1 (yes): a extends past b's extreme point on ``side`` of ``axis`` (e.g. below b's lowest point:
        axis 'si', side 'inferior') by more than the extent threshold along the axis; -1 (no): b's extreme
        point lies beyond a's by more than that. What the visible parts prove: "yes" needs b not cut at
        that end (a's hidden part can only reach further), "no" needs a not cut there. margin: the
        difference of the extreme points in mm (absolute).

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
        if lo_side:
            d = self.lo[:, ib, k] - self.lo[:, ia, k]
            cut_a, cut_b = self.cut_low[:, ia, k], self.cut_low[:, ib, k]
        else:
            d = self.hi[:, ia, k] - self.hi[:, ib, k]
            cut_a, cut_b = self.cut_high[:, ia, k], self.cut_high[:, ib, k]
        margin = np.abs(d)
        m, parts = self._thresholds(self.extent_margin, k, a, b)
        yes, no = d > m, d < -m
        reason = _first(np.where(yes | no, np.int8(DECIDED), _margin_reason(margin, *parts)),
                        (~ok, MISSING), ((yes & cut_b) | (no & cut_a), CUT_EXTENT))
        return _result(yes, no, margin, reason)

    # -- by pair measurements ----------------------------------------------------------------------------

    def contact(self, a: str, b: str) -> StackRelation:
        """+1: a and b touch; -1: they are apart; else undecided. The gap is the surface distance minus the
        largest voxel spacing (0 for face-adjacent voxels). The surfaces lie somewhere within their boundary
        voxels, so "touch" needs the distance exact, the gap within ``contact_tolerance_mm``, and the gap
        0 (nothing between them in the image) or the gap plus one voxel diagonal within the tolerance; "apart" needs the gap beyond both
        tolerance + ``contact_margin_mm`` and one voxel diagonal. margin: the gap in mm. Symmetric."""
        key = (a, b) if a < b else (b, a)
        present, dist, lower, _, _ = self._pair(*key)
        gap = np.maximum(0.0, dist - self.max_spacing)
        tol, diag = self.contact_tolerance, self.voxel_diagonal
        yes = ~lower & (gap <= tol) & ((gap <= _FACE_GAP_MM) | (gap + diag <= tol))
        no = ~yes & (gap > tol + self.contact_margin) & (gap > diag)
        old_rule = (~lower & (gap <= tol)) | (gap > tol + self.contact_margin)  # decided without voxel sizes
        reason = _first(np.where(old_rule, np.int8(WITHIN_VOXEL), np.int8(UNDER_MARGIN)),
                        (~present, MISSING), (yes | no, DECIDED))
        return _result(yes, no, gap, reason)

    def inside(self, a: str, b: str) -> StackRelation:
        """+1: a is inside b (at least ``contained_share`` of a's voxels inside b with its cavities filled);
        -1: it is not (at most ``not_contained_share``). margin: the share of a inside b."""
        if a < b:
            present, _, _, share, _ = self._pair(a, b)
        else:
            present, _, _, _, share = self._pair(b, a)
        yes = share >= self.contained_share
        no = ~yes & (share <= self.not_contained_share)
        reason = _first(np.full(len(share), UNDER_MARGIN, np.int8), (~present, MISSING), (yes | no, DECIDED))
        return _result(yes, no, share, reason)

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

    def _midline_reason(self, margin: np.ndarray) -> np.ndarray:
        """Why a distance from the midline of ``margin`` mm is not enough: the mm default, the voxel width
        along x, or else the midline's uncertainty (thresholds: max(default, voxels) + uncertainty)."""
        voxel = self.voxel_multiple * self.voxel_width[:, 0]
        return _first(np.int8(MIDLINE), (margin <= self.midline_margin, UNDER_MARGIN), (margin <= voxel, UNDER_VOXEL))

    def side(self, name: str) -> StackRelation:
        """+1: the structure lies on the patient's right of the body midline; -1: on the left. Decided when
        its centroid lies more than max(``midline_margin_mm``, voxel widths along x) + the midline's
        uncertainty from the midline, at most ``max_cross_share`` of its voxels lie across the midline,
        its extent reaches across it by at most max(``midline_margin_mm``, voxel widths), and the field of
        view does not cut it along left–right. margin: the centroid's distance from the midline in mm."""
        j = self._col(name)
        if j is None:
            return self._none()
        off = self.midline_offset(name)
        margin = np.abs(off)
        side_margin = np.maximum(self.midline_margin, self.voxel_multiple * self.voxel_width[:, 0])
        right = off > 0
        across_share = np.where(right, self.left_share[:, j], self.right_share[:, j])
        across_reach = np.where(right, self.midline_x - self.lo[:, j, 0], self.hi[:, j, 0] - self.midline_x)
        one_side = (across_share <= self.max_cross_share) & (across_reach <= side_margin)
        reason = _first(np.where(margin > side_margin + self.midline_uncertainty, np.int8(DECIDED),
                                 self._midline_reason(margin)),
                        (~self.present[:, j], MISSING), (self._cut(j, 0), CUT_CENTROID), (~one_side, CROSSES))
        return _result(right, ~right, margin, reason)

    def crosses_midline(self, name: str) -> StackRelation:
        """+1: the structure reaches across the midline on both sides by more than max(``midline_margin_mm``,
        voxel widths along x) + the midline's uncertainty; -1: its nearer side stays more than that short
        of it, and the field of view does not cut it (a hidden part may cross). margin: how far its shorter
        side reaches (mm, absolute)."""
        j = self._col(name)
        if j is None:
            return self._none()
        left_reach = self.midline_x - self.lo[:, j, 0]
        right_reach = self.hi[:, j, 0] - self.midline_x
        reach = np.minimum(left_reach, right_reach)
        m = np.maximum(self.midline_margin, self.voxel_multiple * self.voxel_width[:, 0]) + self.midline_uncertainty
        yes, no = reach > m, reach < -m
        margin = np.where(yes, reach, np.where(no, -reach, np.abs(reach)))
        reason = _first(np.where(yes | no, np.int8(DECIDED), self._midline_reason(margin)),
                        (~self.present[:, j], MISSING), (no & self.border[:, j], CUT_EXTENT))
        return _result(yes, no, margin, reason)

    def closer_to_midline(self, a: str, b: str) -> StackRelation:
        """+1: a's centroid is nearer the midline; -1: b's. Decided when the difference of the two distances
        exceeds the centroid threshold along x (partners: the partner margin) for every midline within the
        midline's uncertainty, and the field of view cuts neither along left–right. margin: the smallest
        difference over that band where decided, else the difference at the midline, in mm."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        xa, xb = self.centroid[:, ia, 0], self.centroid[:, ib, 0]
        lo, hi = self.midline_x - self.midline_uncertainty, self.midline_x + self.midline_uncertainty
        # |xb − x| − |xa − x| is piecewise linear in the midline x, kinks at xa and xb: extremes over the
        # band are at its ends or at a kink inside it (a kink outside clips to an end)
        band = np.stack([lo, hi, np.clip(xa, lo, hi), np.clip(xb, lo, hi)])
        closer = np.abs(xb - band) - np.abs(xa - band)
        worst_for_a, worst_for_b = closer.min(axis=0), closer.max(axis=0)
        nominal = np.abs(np.abs(xb - self.midline_x) - np.abs(xa - self.midline_x))
        thr, parts = self._thresholds(self.centroid_margin, 0, a, b)
        positive, negative = worst_for_a > thr, worst_for_b < -thr
        margin = np.where(positive, worst_for_a, np.where(negative, -worst_for_b, nominal))
        reason = _first(np.where(positive | negative, np.int8(DECIDED),
                                 np.where(nominal > thr, np.int8(MIDLINE), _margin_reason(nominal, *parts))),
                        (~ok, MISSING), (self._cut(ia, 0) | self._cut(ib, 0), CUT_CENTROID))
        return _result(positive, negative, margin, reason)

    # -- size ------------------------------------------------------------------------------------------

    def larger(self, a: str, b: str) -> StackRelation:
        """+1: a has the larger volume; -1: b. Decided when the volume ratio exceeds 1 + ``size_ratio_margin``,
        the volumes differ by at least ``size_min_difference_ml`` and the field of view cuts neither.
        margin: the volume ratio (≥ 1)."""
        both = self._both(a, b)
        if both is None:
            return self._none()
        ia, ib, ok = both
        va, vb = self.volume_ml[:, ia], self.volume_ml[:, ib]
        ratio = np.maximum(va, vb) / np.maximum(np.minimum(va, vb), 1e-9)
        reason = _first(np.int8(DECIDED), (~ok, MISSING), (self.border[:, ia] | self.border[:, ib], CUT_SIZE),
                        (ratio <= 1.0 + self.size_ratio_margin, UNDER_MARGIN),
                        (np.abs(va - vb) < self.size_min_difference, SMALL_VOLUME))
        return _result(va > vb, va <= vb, ratio, reason)

    def volume_ratio(self, a: str, b: str) -> np.ndarray:
        """a's volume over b's (b's at least 1e-9 mL; NaN where a case lacks either)."""
        both = self._both(a, b)
        if both is None:
            return np.full(len(self.cases), np.nan)
        ia, ib, _ = both
        return self.volume_ml[:, ia] / np.maximum(self.volume_ml[:, ib], 1e-9)
