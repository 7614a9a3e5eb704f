"""The small types every relation module shares: thresholds, a relation's value and margin, pair measurements.

- :class:`RelationThresholds` — the margins under which a relation is ``indeterminate``;
- :class:`Relation` — one relation's value (``'left'``, ``'yes'``, a structure name, ``indeterminate``)
  and its margin;
- :class:`PairGeometry` — what is measured on the label map for a pair of structures (surface
  distance, containment shares) rather than derived from per-structure statistics;
- :data:`INDETERMINATE` — the value of a relation whose margin is under its threshold.

The rules that turn measurements into relations live in :mod:`.stack` (one implementation, for one
case or many); :mod:`.graph` holds a case's measurements and asks the stack.
"""

from __future__ import annotations

from dataclasses import dataclass

INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class RelationThresholds:
    """Margins under which a relation is ``indeterminate`` (all in mm unless stated).

    The mm defaults are floors for a fine grid. Every threshold along a patient axis is also at least
    ``voxel_multiple`` voxel widths along that axis (the width of one voxel projected on the axis: the
    spacing of the array axis along it for axis-aligned grids), so no relation rests on a difference the
    image cannot show; see :mod:`volprobe.segmentation.relations.stack` for each rule.

    Attributes:
        centroid_margin_mm: centroids must differ by more than this along an axis (default 5).
        extent_margin_mm: "entirely above" needs a gap between extents larger than this; "overlap"
            needs an overlap deeper than this; "reaches further" a difference of extreme points larger
            than this (default 3; voxel centres, so adjacent slices differ by one spacing).
        contact_tolerance_mm: two structures touch when the gap between their surfaces is at most
            this. The gap is the centre distance of the nearest boundary voxels minus the largest
            voxel spacing, so face-adjacent voxels have gap 0 (default 1.5). Because the surfaces lie
            somewhere within their boundary voxels, "touch" needs gap 0 (nothing between them in the
            image) or a gap plus one voxel diagonal still within the tolerance.
        contact_margin_mm: "not in contact" needs a gap larger than tolerance + this, and larger than
            one voxel diagonal (default 3).
        distance_cutoff_mm: exact surface distances are computed for pairs whose bounding boxes are
            nearer than this; farther pairs get the box distance as a lower bound (default 20).
        midline_margin_mm: side of the midline / crossing it needs this margin beyond the midline's
            uncertainty (default 5).
        audit_margin_mm: laterality audit ignores structures nearer the midline than this (default 10).
        contained_share / not_contained_share: share of A inside B (B with its cavities filled) above
            which A is inside B, and below which it is not (defaults 0.95 / 0.05).
        size_ratio_margin: "larger" needs a volume ratio above 1 + this (default 0.25: a difference a
            reader can see; 10% asked about 3.6 vs 4.1 mL).
        size_min_difference_ml: "larger" also needs the volumes to differ by at least this (default 5 mL,
            about a 1.7 cm cube: small structures are not compared by size at all).
        voxel_multiple: every threshold along a patient axis is at least this many voxel widths along
            that axis (default 1: extents one voxel apart are adjacent voxels, not a gap).
        partner_margin_mm / partner_voxel_multiple: a structure compared with its left/right partner
            (``kidney_left`` with ``kidney_right``) needs max(this, this many voxel widths) (defaults
            10 mm and 2): normal left/right asymmetries are a few mm, and a reader answers "same
            level" for them.
        max_cross_share: a structure lies on one side of the midline when at most this share of its
            voxels lies across it (default 0.05), besides its centroid and extent (see ``side``).
        connectivity: 26 or 6 for connected components (default 26).
    """

    centroid_margin_mm: float = 5.0
    extent_margin_mm: float = 3.0
    contact_tolerance_mm: float = 1.5
    contact_margin_mm: float = 3.0
    distance_cutoff_mm: float = 20.0
    midline_margin_mm: float = 5.0
    audit_margin_mm: float = 10.0
    contained_share: float = 0.95
    not_contained_share: float = 0.05
    size_ratio_margin: float = 0.25
    size_min_difference_ml: float = 5.0
    voxel_multiple: float = 1.0
    partner_margin_mm: float = 10.0
    partner_voxel_multiple: float = 2.0
    max_cross_share: float = 0.05
    connectivity: int = 26


@dataclass(frozen=True)
class Relation:
    """A relation's value ('left', 'yes', 'indeterminate', a structure name ...) and its margin."""

    value: str
    margin: float  # mm, except shares/ratios for containment and size

    @property
    def determinate(self) -> bool:
        return self.value != INDETERMINATE


@dataclass(frozen=True)
class PairGeometry:
    """Measurements of an unordered pair that cannot be derived from per-structure statistics."""

    surface_distance_mm: float  # centre distance of nearest boundary voxels (or a lower bound)
    distance_is_lower_bound: bool
    share_a_in_b: float  # share of a's voxels inside b (b's cavities filled); a < b by name
    share_b_in_a: float
