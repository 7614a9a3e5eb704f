"""The anatomy relation graph: where structures lie relative to each other, in patient RAS+ mm.

For every structure: :class:`~volprobe.segmentation.anatomy.StructureStats`. For every pair:
direction along each patient axis (by centroids, and by separation of extents), contact,
containment, minimum surface distance and volume ratio. Every relation comes with its margin in
mm and is ``indeterminate`` when that margin is under a threshold (:class:`RelationThresholds`):
nothing is guessed.

Conventions: axes are ``'lr'`` (x, + = patient's right), ``'ap'`` (y, + = anterior), ``'si'``
(z, + = superior). ``graph.direction('liver', 'spleen', 'lr')`` answers "where is the liver
relative to the spleen along left–right?" → ``Relation('right', 98.2)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterator

import numpy as np

from volprobe.errors import FormatError, MaskError
from volprobe.jsonio import read_json, write_json_atomic
from volprobe.segmentation.anatomy import StructureStats, boundary_points, find_runs, structure_stats
from volprobe.segmentation.audit import LateralityAudit, Midline, body_centre_x, estimate_midline, laterality_audit
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.names import mirror_name
from volprobe.segmentation.relations.geometry import containment, surface_distances
from volprobe.segmentation.volume import NEGATIVE_SIDE, PATIENT_AXES, POSITIVE_SIDE, Volume, content_hash

RELATIONS_FORMAT = "volprobe.relations"
RELATIONS_VERSION = 1
INDETERMINATE = "indeterminate"


@dataclass(frozen=True)
class RelationThresholds:
    """Margins under which a relation is ``indeterminate`` (all in mm unless stated).

    Attributes:
        centroid_margin_mm: centroids must differ by more than this along an axis (default 5).
        extent_margin_mm: "entirely above" needs a gap between extents larger than this; "overlap"
            needs an overlap deeper than this (default 3; voxel centres, so adjacent slices differ by
            one spacing).
        contact_tolerance_mm: two structures touch when the gap between their surfaces is at most
            this. The gap is the centre distance of the nearest boundary voxels minus the largest
            voxel spacing, so face-adjacent voxels have gap 0 (default 1.5).
        contact_margin_mm: "not in contact" needs a gap larger than tolerance + this (default 3).
        distance_cutoff_mm: exact surface distances are computed for pairs whose bounding boxes are
            nearer than this; farther pairs get the box distance as a lower bound (default 20).
        midline_margin_mm: side of the midline / crossing it needs this margin (default 5).
        audit_margin_mm: laterality audit ignores structures nearer the midline than this (default 10).
        contained_share / not_contained_share: share of A inside B (B with its cavities filled) above
            which A is inside B, and below which it is not (defaults 0.95 / 0.05).
        size_ratio_margin: "larger" needs a volume ratio above 1 + this (default 0.10).
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
    size_ratio_margin: float = 0.10
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


@dataclass
class RelationGraph:
    """Structures and pairwise measurements of one case, with relation queries.

    Attributes:
        case: case id; structures: name → stats; pairs: (a, b) with a < b → geometry.
        midline: the body's midline (RAS x); audit: the laterality audit.
        grid: shape, affine, spacing and axial axis of the label map; max_spacing_mm.
        labels_hash / ct_hash: content hashes of the label map and CT (CT None when not given).
        fov_min_mm / fov_max_mm: extent of the scan (voxel centres) along x, y, z, for mirroring.
    """

    case: str
    structures: dict[str, StructureStats]
    pairs: dict[tuple[str, str], PairGeometry]
    midline: Midline
    audit: LateralityAudit
    thresholds: RelationThresholds
    grid: dict
    labels_hash: str
    ct_hash: str | None = None
    source: dict = field(default_factory=dict)
    mirrored_axes: tuple[str, ...] = ()

    # -- lookups -----------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.structures

    def names(self) -> list[str]:
        return sorted(self.structures)

    def _s(self, name: str) -> StructureStats:
        try:
            return self.structures[name]
        except KeyError:
            raise KeyError(f"{self.case}: no structure {name!r}") from None

    def geometry(self, a: str, b: str) -> PairGeometry:
        """Pair measurements (shares oriented so ``share_a_in_b`` is a inside b)."""
        if a == b:
            raise ValueError("a pair needs two different structures")
        if (a, b) in self.pairs:
            return self.pairs[(a, b)]
        g = self.pairs[(b, a)]
        return replace(g, share_a_in_b=g.share_b_in_a, share_b_in_a=g.share_a_in_b)

    @property
    def max_spacing_mm(self) -> float:
        return float(max(self.grid["spacing"]))

    # -- relations -----------------------------------------------------------------------
    def direction(self, a: str, b: str, axis: str) -> Relation:
        """Where a's centroid lies relative to b's along ``axis`` ('lr', 'ap', 'si')."""
        k = PATIENT_AXES.index(axis)
        d = self._s(a).centroid_mm[k] - self._s(b).centroid_mm[k]
        if abs(d) <= self.thresholds.centroid_margin_mm:
            return Relation(INDETERMINATE, abs(d))
        return Relation(POSITIVE_SIDE[axis] if d > 0 else NEGATIVE_SIDE[axis], abs(d))

    def extent_relation(self, a: str, b: str, axis: str) -> Relation:
        """'superior' when a lies entirely above b (a's lowest point above b's highest), etc.;
        'overlap' when their extents overlap; margin = gap or overlap depth in mm."""
        k = PATIENT_AXES.index(axis)
        sa, sb = self._s(a), self._s(b)
        above = sa.min_mm[k] - sb.max_mm[k]
        below = sb.min_mm[k] - sa.max_mm[k]
        m = self.thresholds.extent_margin_mm
        if above > m:
            return Relation(POSITIVE_SIDE[axis], above)
        if below > m:
            return Relation(NEGATIVE_SIDE[axis], below)
        overlap = -max(above, below)
        if overlap > m:
            return Relation("overlap", overlap)
        return Relation(INDETERMINATE, abs(max(above, below)))

    def extends_beyond(self, a: str, b: str, axis: str, side: str) -> Relation:
        """Does a extend past b's extreme point on ``side`` of ``axis`` (e.g. below b's lowest point:
        axis='si', side='inferior')? Indeterminate when either is cut by the field of view."""
        k = PATIENT_AXES.index(axis)
        sa, sb = self._s(a), self._s(b)
        if sa.touches_border or sb.touches_border:
            return Relation(INDETERMINATE, 0.0)
        if side == POSITIVE_SIDE[axis]:
            d = sa.max_mm[k] - sb.max_mm[k]
        elif side == NEGATIVE_SIDE[axis]:
            d = sb.min_mm[k] - sa.min_mm[k]
        else:
            raise ValueError(f"side {side!r} is not on axis {axis!r}")
        if abs(d) <= self.thresholds.extent_margin_mm:
            return Relation(INDETERMINATE, abs(d))
        return Relation("yes" if d > 0 else "no", abs(d))

    def contact(self, a: str, b: str) -> Relation:
        """Do a and b touch? margin = surface gap in mm."""
        g = self.geometry(a, b)
        gap = max(0.0, g.surface_distance_mm - self.max_spacing_mm)
        t = self.thresholds
        if not g.distance_is_lower_bound and gap <= t.contact_tolerance_mm:
            return Relation("yes", gap)
        if gap > t.contact_tolerance_mm + t.contact_margin_mm:
            return Relation("no", gap)
        return Relation(INDETERMINATE, gap)

    def surface_distance(self, a: str, b: str) -> tuple[float, bool]:
        """(distance in mm, is_lower_bound)."""
        g = self.geometry(a, b)
        return g.surface_distance_mm, g.distance_is_lower_bound

    def inside(self, a: str, b: str) -> Relation:
        """Is a inside b? margin = share of a's voxels inside b (b's cavities filled)."""
        share = self.geometry(a, b).share_a_in_b
        t = self.thresholds
        if share >= t.contained_share:
            return Relation("yes", share)
        if share <= t.not_contained_share:
            return Relation("no", share)
        return Relation(INDETERMINATE, share)

    def midline_offset(self, name: str) -> float:
        """Centroid x − midline x in mm (negative: patient's left)."""
        return self._s(name).centroid_mm[0] - self.midline.x_mm

    def side(self, name: str) -> Relation:
        """Which side of the body's midline the structure's centroid lies on."""
        off = self.midline_offset(name)
        if abs(off) <= self.thresholds.midline_margin_mm:
            return Relation(INDETERMINATE, abs(off))
        return Relation("right" if off > 0 else "left", abs(off))

    def crosses_midline(self, name: str) -> Relation:
        """Does the structure extend across the midline? margin = how far its shorter side reaches."""
        s = self._s(name)
        left_reach = self.midline.x_mm - s.min_mm[0]
        right_reach = s.max_mm[0] - self.midline.x_mm
        m = self.thresholds.midline_margin_mm
        reach = min(left_reach, right_reach)
        if reach > m:
            return Relation("yes", reach)
        if reach < -m:
            return Relation("no", -reach)
        return Relation(INDETERMINATE, abs(reach))

    def closer_to_midline(self, a: str, b: str) -> Relation:
        """Which of a and b has its centroid nearer the midline (value: a name)."""
        da, db = abs(self.midline_offset(a)), abs(self.midline_offset(b))
        if abs(da - db) <= self.thresholds.centroid_margin_mm:
            return Relation(INDETERMINATE, abs(da - db))
        return Relation(a if da < db else b, abs(da - db))

    def larger(self, a: str, b: str) -> Relation:
        """Which of a and b has the larger volume (value: a name; margin: volume ratio ≥ 1).
        Indeterminate when either is cut by the field of view."""
        sa, sb = self._s(a), self._s(b)
        if sa.touches_border or sb.touches_border:
            return Relation(INDETERMINATE, 1.0)
        ratio = max(sa.volume_ml, sb.volume_ml) / max(min(sa.volume_ml, sb.volume_ml), 1e-9)
        if ratio <= 1.0 + self.thresholds.size_ratio_margin:
            return Relation(INDETERMINATE, ratio)
        return Relation(a if sa.volume_ml > sb.volume_ml else b, ratio)

    def volume_ratio(self, a: str, b: str) -> float:
        return self._s(a).volume_ml / max(self._s(b).volume_ml, 1e-9)

    def iter_pairs(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    # -- counterfactuals --------------------------------------------------------------------
    def mirrored(self, axis: str) -> "RelationGraph":
        """The graph of the image mirrored along ``axis`` (voxel data flipped, affine kept).

        Coordinates are reflected about the centre of the field of view. Mirroring left–right also
        renames side-named structures, because a reader names them by the side they appear on
        (``kidney_left`` is then the kidney on the image's left). Distances, contact, containment
        and sizes are unchanged.
        """
        k = PATIENT_AXES.index(axis)
        c2 = self.grid["fov_min_mm"][k] + self.grid["fov_max_mm"][k]
        rename = mirror_name if axis == "lr" else (lambda n: n)

        def reflect(s: StructureStats) -> StructureStats:
            cen, lo, hi = list(s.centroid_mm), list(s.min_mm), list(s.max_mm)
            cen[k] = c2 - cen[k]
            lo[k], hi[k] = c2 - s.max_mm[k], c2 - s.min_mm[k]
            return replace(s, name=rename(s.name), centroid_mm=tuple(cen), min_mm=tuple(lo), max_mm=tuple(hi))

        structures = {rename(n): reflect(s) for n, s in self.structures.items()}
        pairs = {}
        for (a, b), g in self.pairs.items():
            ra, rb = rename(a), rename(b)
            pairs[(ra, rb) if ra < rb else (rb, ra)] = g if ra < rb else replace(
                g, share_a_in_b=g.share_b_in_a, share_b_in_a=g.share_a_in_b)
        midline = Midline(c2 - self.midline.x_mm, self.midline.source) if axis == "lr" else self.midline
        audit = laterality_audit(structures, midline, self.thresholds.audit_margin_mm)
        return replace(self, structures=structures, pairs=pairs, midline=midline, audit=audit,
                       mirrored_axes=self.mirrored_axes + (axis,))

    # -- serialisation --------------------------------------------------------------------------
    def pair_summary(self, a: str, b: str) -> dict:
        """Every relation of a relative to b, as plain JSON values."""
        def rel(r: Relation) -> list:
            return [r.value, round(float(r.margin), 3)]

        g = self.geometry(a, b)
        return {
            "a": a, "b": b,
            "direction": {ax: rel(self.direction(a, b, ax)) for ax in PATIENT_AXES},
            "extent": {ax: rel(self.extent_relation(a, b, ax)) for ax in PATIENT_AXES},
            "surface_distance_mm": g.surface_distance_mm,
            "distance_is_lower_bound": g.distance_is_lower_bound,
            "contact": rel(self.contact(a, b)),
            "share_a_in_b": g.share_a_in_b, "share_b_in_a": g.share_b_in_a,
            "inside": rel(self.inside(a, b)),
            "volume_ratio": round(self.volume_ratio(a, b), 4),
        }

    def to_dict(self, include_relations: bool = True) -> dict:
        out = {
            "format": RELATIONS_FORMAT, "version": RELATIONS_VERSION, "case": self.case,
            "grid": self.grid, "labels_hash": self.labels_hash, "ct_hash": self.ct_hash, "source": self.source,
            "thresholds": asdict(self.thresholds), "midline": self.midline.to_dict(), "audit": self.audit.to_dict(),
            "mirrored_axes": list(self.mirrored_axes),
            "structures": {n: s.to_dict() for n, s in sorted(self.structures.items())},
            "pairs": [],
        }
        for (a, b), g in sorted(self.pairs.items()):
            entry = self.pair_summary(a, b) if include_relations else {
                "a": a, "b": b, "surface_distance_mm": g.surface_distance_mm,
                "distance_is_lower_bound": g.distance_is_lower_bound,
                "share_a_in_b": g.share_a_in_b, "share_b_in_a": g.share_b_in_a}
            out["pairs"].append(entry)
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "relations") -> "RelationGraph":
        if d.get("format") != RELATIONS_FORMAT:
            raise FormatError(f"{where}: not a volprobe relations file (format {d.get('format')!r})")
        if d.get("version") != RELATIONS_VERSION:
            raise FormatError(f"{where}: relations format version {d.get('version')}, this volprobe reads "
                              f"version {RELATIONS_VERSION}; recompute it with `probe relations`")
        try:
            structures = {n: StructureStats.from_dict(n, s) for n, s in d["structures"].items()}
            pairs = {(p["a"], p["b"]): PairGeometry(float(p["surface_distance_mm"]), bool(p["distance_is_lower_bound"]),
                                                    float(p["share_a_in_b"]), float(p["share_b_in_a"]))
                     for p in d["pairs"]}
            return cls(case=d["case"], structures=structures, pairs=pairs,
                       midline=Midline(d["midline"]["x_mm"], d["midline"]["source"]),
                       audit=LateralityAudit.from_dict(d["audit"]), thresholds=RelationThresholds(**d["thresholds"]),
                       grid=d["grid"], labels_hash=d["labels_hash"], ct_hash=d.get("ct_hash"),
                       source=d.get("source", {}), mirrored_axes=tuple(d.get("mirrored_axes", ())))
        except (KeyError, TypeError) as exc:
            raise FormatError(f"{where}: malformed relations file ({type(exc).__name__}: {exc})") from exc

    def save(self, path: str | Path) -> Path:
        return write_json_atomic(path, self.to_dict(), indent=None)


def load_relation_graph(path: str | Path) -> RelationGraph:
    """Read a relations JSON written by :meth:`RelationGraph.save` (or ``probe relations``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"relations file not found: {path}")
    return RelationGraph.from_dict(read_json(path), str(path))


# -- construction -----------------------------------------------------------------------------

def build_relation_graph(label_map: LabelMap, volume: Volume | None = None, *, case: str | None = None,
                         thresholds: RelationThresholds | None = None) -> RelationGraph:
    """Compute the relation graph of a label map (and optionally its CT, for the body midline).

    Raises:
        MaskError: empty label map, or a CT on another grid.
    """
    t = thresholds or RelationThresholds()
    labels = np.ascontiguousarray(label_map.labels)
    affine = np.asarray(label_map.affine, dtype=float)
    if volume is not None and not volume.same_grid(labels.shape, affine):
        from volprobe.segmentation.masks import check_same_grid

        check_same_grid(labels.shape, affine, volume, "label map")
    runs = find_runs(labels)
    if len(runs.label) == 0:
        raise MaskError(f"{label_map.source or 'label map'}: empty (no labelled voxel); nothing to relate")
    boundary = boundary_points(labels, runs)
    stats = structure_stats(labels, affine, dict(label_map.names), connectivity=t.connectivity,
                            runs=runs, boundary=boundary)
    names = sorted(stats)
    dist = surface_distances(names, stats, boundary, affine, t.distance_cutoff_mm)
    contained = containment(labels, runs, names, stats, boundary)
    pairs = {(a, b): PairGeometry(d, lb, contained.get((a, b), 0.0), contained.get((b, a), 0.0))
             for (a, b), (d, lb) in dist.items()}
    body_x = body_centre_x(volume) if volume is not None else None
    midline = estimate_midline(stats, body_x)
    audit = laterality_audit(stats, midline, t.audit_margin_mm)
    corners = np.array([[i, j, k] for i in (0, labels.shape[0] - 1) for j in (0, labels.shape[1] - 1)
                        for k in (0, labels.shape[2] - 1)], float) @ affine[:3, :3].T + affine[:3, 3]
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    directions = affine[:3, :3] / spacing
    grid = {"shape": list(labels.shape), "affine": affine.tolist(),
            "spacing": [round(float(s), 6) for s in spacing],
            "axial_axis": int(np.argmax(np.abs(directions[2]))),
            "fov_min_mm": [float(v) for v in corners.min(axis=0)],
            "fov_max_mm": [float(v) for v in corners.max(axis=0)]}
    source = {"labels": label_map.source, "ct": volume.source if volume is not None else None}
    return RelationGraph(case=case or _case_from(label_map.source), structures=stats, pairs=pairs, midline=midline,
                         audit=audit, thresholds=t, grid=grid, labels_hash=content_hash(labels, affine),
                         ct_hash=volume.content_hash if volume is not None else None, source=source)


def _case_from(source: str | None) -> str:
    if not source:
        return "case"
    name = Path(source).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".mha"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name.removesuffix("_seg")


def summarize(graph: RelationGraph, max_pairs: int = 12) -> str:
    """A readable terminal summary: structures, audit, and a few clear relations."""
    lines = [f"case {graph.case}: {len(graph.structures)} structures, {len(graph.pairs)} pairs; "
             f"midline x = {graph.midline.x_mm:.1f} mm RAS (from {graph.midline.source})",
             graph.audit.summary()]
    cut = [n for n, s in graph.structures.items() if s.touches_border]
    if cut:
        lines.append(f"cut by the field of view (no size/extent claims): {', '.join(sorted(cut))}")
    lines.append(f"{'structure':32s} {'mL':>9s} {'side':>6s}  centroid RAS mm")
    for n in sorted(graph.structures, key=lambda n: -graph.structures[n].volume_ml):
        s = graph.structures[n]
        side = graph.side(n).value
        lines.append(f"{n:32s} {s.volume_ml:9.1f} {side[:6]:>6s}  "
                     f"({s.centroid_mm[0]:.1f}, {s.centroid_mm[1]:.1f}, {s.centroid_mm[2]:.1f})")
    touching = sorted(((a, b) for a, b in graph.pairs if graph.contact(a, b).value == "yes"))
    lines.append(f"{len(touching)} touching pairs" + (": " + ", ".join(f"{a}–{b}" for a, b in touching[:max_pairs])
                                                     + (" ..." if len(touching) > max_pairs else "") if touching else ""))
    return "\n".join(lines)


def relations_for_case(ct: str | Path, masks: str | Path, out: str | Path, *, resample_masks: bool = False,
                       thresholds: RelationThresholds | None = None, case: str | None = None) -> RelationGraph:
    """Read a CT and its masks, build the relation graph, write it as JSON with a manifest beside it."""
    from volprobe.manifest import write_manifest
    from volprobe.segmentation.masks import load_masks
    from volprobe.segmentation.volume import load_volume

    volume = load_volume(ct)
    label_map = load_masks(masks, volume, resample=resample_masks)
    graph = build_relation_graph(label_map, volume, case=case or _case_from(str(ct)), thresholds=thresholds)
    graph.save(out)
    write_manifest(out, "probe relations", inputs=[ct, masks],
                   input_hashes={"ct_content": graph.ct_hash or "", "labels_content": graph.labels_hash},
                   parameters={"resample_masks": resample_masks, "thresholds": asdict(graph.thresholds)},
                   extra={"laterality_audit_passed": graph.audit.passed, "masks_reoriented": label_map.reoriented})
    return graph
