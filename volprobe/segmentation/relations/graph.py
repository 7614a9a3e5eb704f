"""The anatomy relation graph of one case: where structures lie relative to each other, in patient RAS+ mm.

For every structure: :class:`~volprobe.segmentation.anatomy.StructureStats`. For every pair: the
minimum surface distance and the containment shares (:class:`PairGeometry`). From these, the graph
answers relation queries: direction along each patient axis (by centroids, and by separation of
extents), contact, containment, side of the midline, size. Every relation comes with its margin
(mm, or a share or ratio) and is ``indeterminate`` when that margin is under a threshold
(:class:`RelationThresholds`, never finer than the voxels), when it would rest on what the field of
view cuts off, or when the midline's uncertainty could change it: nothing is guessed.

The rules themselves are written once, in :class:`~volprobe.segmentation.relations.stack.RelationStack`,
which answers a query for many rows at once; each query method here reads row 0 of the graph's own
stack of one (:attr:`RelationGraph.stack`, built on first use), and the relations file
(:meth:`RelationGraph.to_dict`) asks a stack whose rows are the graph's pairs
(:meth:`RelationGraph.pair_summaries`). A graph is treated as read-only once queried:
:meth:`RelationGraph.renamed` and ``dataclasses.replace`` make new graphs, with new stacks.

A graph may carry :class:`CounterfactualGraph` s: the graphs of its label map under named transforms of
the image (the geometric controls, computed by :mod:`volprobe.controls.counterfactuals`), stored in the
same relations file, from which counterfactual gold answers are read.

Conventions: axes are ``'lr'`` (x, + = patient's right), ``'ap'`` (y, + = anterior), ``'si'``
(z, + = superior). ``graph.direction('liver', 'spleen', 'lr')`` answers "where is the liver
relative to the spleen along left–right?" → ``Relation('right', 98.2)``. A query about a structure
the graph does not have raises ``KeyError``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Sequence

import numpy as np

from volprobe.errors import FormatError, MaskError
from volprobe.jsonio import read_json, write_json_atomic
from volprobe.segmentation.anatomy import StructureStats, boundary_points, find_runs, side_counts, structure_stats
from volprobe.segmentation.audit import (LateralityAudit, Midline, body_centre_x, estimate_midline,
                                         labels_span_mm, laterality_audit)
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.relations.geometry import containment, surface_distances
from volprobe.segmentation.relations.rules import INDETERMINATE, PairGeometry, Relation, RelationThresholds
from volprobe.segmentation.relations.stack import OVERLAP, RelationStack, StackRelation
from volprobe.segmentation.volume import NEGATIVE_SIDE, PATIENT_AXES, POSITIVE_SIDE, Volume, content_hash

__all__ = ["INDETERMINATE", "RELATIONS_FORMAT", "RELATIONS_VERSION", "CounterfactualGraph", "PairGeometry", "Relation",
           "RelationGraph", "RelationThresholds", "build_relation_graph", "case_from_path", "load_relation_graph",
           "summarize"]

RELATIONS_FORMAT = "volprobe.relations"
#: 3: per-axis field-of-view cuts, side shares and the midline's uncertainty per structure, and the graphs
#: of the masks under every geometric control stored with the graph (2 had one or the other).
RELATIONS_VERSION = 3
_YES_NO = ("yes", "no")


def _values(r: StackRelation, positive: str, negative: str) -> list[str]:
    """A stack query's values per row: code +1 → ``positive``, -1 → ``negative``,
    :data:`~volprobe.segmentation.relations.stack.OVERLAP` → 'overlap', 0 → indeterminate."""
    table = {1: positive, -1: negative, OVERLAP: "overlap", 0: INDETERMINATE}
    return [table[c] for c in r.code.tolist()]


def _read(r: StackRelation, positive: str, negative: str) -> Relation:
    """Row 0 of a stack query as a :class:`Relation` (values as :func:`_values`)."""
    return Relation(_values(r, positive, negative)[0], float(r.margin[0]))


class _PairRow(NamedTuple):
    """One pair of a graph as a row of a stack: structures ``'a'`` and ``'b'``, their geometry oriented
    a → b, and the graph's thresholds, midline and voxel sizes (what a stack reads of a graph)."""

    case: str
    structures: dict[str, StructureStats]
    pairs: dict[tuple[str, str], PairGeometry]
    thresholds: RelationThresholds
    midline: Midline
    max_spacing_mm: float
    voxel_widths_mm: tuple[float, float, float]
    voxel_diagonal_mm: float
    aliases: dict[str, str]


def voxel_widths(affine: np.ndarray) -> tuple[float, float, float]:
    """Width (mm) of one voxel along each patient axis (x, y, z): the extent of the voxel's box projected
    on the axis, sum over array axes of |affine[k, a]|; the spacing of the array axis along it for
    axis-aligned grids, wider for oblique ones."""
    m = np.abs(np.asarray(affine, dtype=float)[:3, :3])
    return tuple(float(v) for v in m.sum(axis=1))


def voxel_diagonal(affine: np.ndarray) -> float:
    """The longest diagonal of one voxel (mm): √(sx² + sy² + sz²) for orthogonal grids, exact for sheared ones."""
    m = np.asarray(affine, dtype=float)[:3, :3]
    signs = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]], float)
    return float(np.linalg.norm(signs @ m.T, axis=1).max())


@dataclass
class RelationGraph:
    """Structures and pairwise measurements of one case, with relation queries (answered by :attr:`stack`).

    Attributes:
        case: case id; structures: name → stats; pairs: (a, b) with a < b → geometry.
        midline: the body's midline (RAS x); audit: the laterality audit.
        grid: shape, affine, spacing and axial axis of the label map; max_spacing_mm.
        labels_hash / ct_hash: SHA-256 content hashes (voxel data, dtype, shape, affine) of the label map on
            the CT's grid and of the CT (None when not given); grid['fov_min_mm'] / ['fov_max_mm']: extent of
            the scan (voxel centres) along x, y, z.
        counterfactuals: transform (a geometric control's label) → :class:`CounterfactualGraph`.
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
    counterfactuals: dict[str, "CounterfactualGraph"] = field(default_factory=dict)

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

    def _need(self, *names: str) -> None:
        """Raise ``KeyError`` for a name the graph does not have (the stack would answer undecided)."""
        for name in names:
            self._s(name)

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

    @cached_property
    def voxel_widths_mm(self) -> tuple[float, float, float]:
        """Width of one voxel along patient x, y, z (mm; :func:`voxel_widths`)."""
        return voxel_widths(np.asarray(self.grid["affine"]))

    @cached_property
    def voxel_diagonal_mm(self) -> float:
        """The longest diagonal of one voxel (mm; :func:`voxel_diagonal`)."""
        return voxel_diagonal(np.asarray(self.grid["affine"]))

    @cached_property
    def stack(self) -> RelationStack:
        """This graph as a :class:`~volprobe.segmentation.relations.stack.RelationStack` of one case: the
        relation rules. Built on first use and kept; copies (``replace``, :meth:`renamed`) build their own."""
        return RelationStack([self])

    # -- relations (row 0 of the stack; see RelationStack for each rule) ---------------------------------
    def direction(self, a: str, b: str, axis: str) -> Relation:
        """Where a's centroid lies relative to b's along ``axis`` ('lr', 'ap', 'si'); margin: mm."""
        self._need(a, b)
        return _read(self.stack.direction(a, b, axis), POSITIVE_SIDE[axis], NEGATIVE_SIDE[axis])

    def extent_relation(self, a: str, b: str, axis: str) -> Relation:
        """'superior' when a lies entirely above b (a's lowest point above b's highest), etc.;
        'overlap' when their extents overlap; margin = gap or overlap depth in mm."""
        self._need(a, b)
        return _read(self.stack.extent_relation(a, b, axis), POSITIVE_SIDE[axis], NEGATIVE_SIDE[axis])

    def extends_beyond(self, a: str, b: str, axis: str, side: str) -> Relation:
        """Does a extend past b's extreme point on ``side`` of ``axis`` (e.g. below b's lowest point:
        axis='si', side='inferior')? Indeterminate (margin 0) when either is cut by the field of view."""
        self._need(a, b)
        return _read(self.stack.extends_beyond(a, b, axis, side), *_YES_NO)

    def contact(self, a: str, b: str) -> Relation:
        """Do a and b touch? margin = surface gap in mm."""
        self.geometry(a, b)
        return _read(self.stack.contact(a, b), *_YES_NO)

    def surface_distance(self, a: str, b: str) -> tuple[float, bool]:
        """(distance in mm, is_lower_bound)."""
        self.geometry(a, b)
        dist, lower = self.stack.surface_distance(a, b)
        return float(dist[0]), bool(lower[0])

    def inside(self, a: str, b: str) -> Relation:
        """Is a inside b? margin = share of a's voxels inside b (b's cavities filled)."""
        self.geometry(a, b)
        return _read(self.stack.inside(a, b), *_YES_NO)

    def midline_offset(self, name: str) -> float:
        """Centroid x − midline x in mm (negative: patient's left)."""
        self._need(name)
        return float(self.stack.midline_offset(name)[0])

    def side(self, name: str) -> Relation:
        """Which side of the body's midline the structure's centroid lies on."""
        self._need(name)
        return _read(self.stack.side(name), "right", "left")

    def crosses_midline(self, name: str) -> Relation:
        """Does the structure extend across the midline? margin = how far its shorter side reaches."""
        self._need(name)
        return _read(self.stack.crosses_midline(name), *_YES_NO)

    def closer_to_midline(self, a: str, b: str) -> Relation:
        """Which of a and b has its centroid nearer the midline (value: a name)."""
        self._need(a, b)
        return _read(self.stack.closer_to_midline(a, b), a, b)

    def larger(self, a: str, b: str) -> Relation:
        """Which of a and b has the larger volume (value: a name; margin: volume ratio ≥ 1).
        Indeterminate (margin 1) when either is cut by the field of view."""
        self._need(a, b)
        return _read(self.stack.larger(a, b), a, b)

    def volume_ratio(self, a: str, b: str) -> float:
        self._need(a, b)
        return float(self.stack.volume_ratio(a, b)[0])

    def iter_pairs(self) -> Iterator[tuple[str, str]]:
        return iter(self.pairs)

    # -- names ------------------------------------------------------------------------------------
    def renamed(self, mapping: Mapping[str, str]) -> "RelationGraph":
        """This graph with structures renamed (``mapping``: name → new name; other names kept), pair keys and
        containment shares reordered to match, the laterality audit redone; no counterfactual graphs.

        Raises:
            ValueError: two structures would get one name.
        """
        def rename(n: str) -> str:
            return mapping.get(n, n)

        structures = {rename(n): replace(s, name=rename(n)) for n, s in self.structures.items()}
        if len(structures) != len(self.structures):
            raise ValueError(f"{self.case}: renaming would give two structures one name")
        pairs = {}
        for (a, b), g in self.pairs.items():
            ra, rb = rename(a), rename(b)
            pairs[(ra, rb) if ra < rb else (rb, ra)] = g if ra < rb else replace(
                g, share_a_in_b=g.share_b_in_a, share_b_in_a=g.share_a_in_b)
        audit = laterality_audit(structures, self.midline, self.thresholds.audit_margin_mm)
        return replace(self, structures=structures, pairs=pairs, audit=audit, counterfactuals={})

    # -- serialisation --------------------------------------------------------------------------
    def pair_summary(self, a: str, b: str) -> dict:
        """Every relation of a relative to b, as plain JSON values."""
        return self.pair_summaries([(a, b)])[0]

    def pair_summaries(self, pairs: Sequence[tuple[str, str]]) -> list[dict]:
        """:meth:`pair_summary` of each pair (a, b), all at once: the pairs are the rows of one stack
        (row i holds the i-th pair's structures as ``'a'`` and ``'b'``, with this graph's thresholds and
        midline), so each relation is one stack query for every pair, by the same rules as the queries above."""
        pairs = list(pairs)
        geometry = [self.geometry(a, b) for a, b in pairs]
        sizes = (self.max_spacing_mm, self.voxel_widths_mm, self.voxel_diagonal_mm)
        rows = RelationStack([_PairRow(f"{a}|{b}", {"a": self._s(a), "b": self._s(b)}, {("a", "b"): g},
                                       self.thresholds, self.midline, *sizes, {"a": a, "b": b})
                              for (a, b), g in zip(pairs, geometry)])

        def rel(r: StackRelation, positive: str, negative: str) -> list[list]:
            return [[v, round(m, 3)] for v, m in zip(_values(r, positive, negative), r.margin.tolist())]

        sides = {ax: (POSITIVE_SIDE[ax], NEGATIVE_SIDE[ax]) for ax in PATIENT_AXES}
        direction = {ax: rel(rows.direction("a", "b", ax), *sides[ax]) for ax in PATIENT_AXES}
        extent = {ax: rel(rows.extent_relation("a", "b", ax), *sides[ax]) for ax in PATIENT_AXES}
        contact, inside = rel(rows.contact("a", "b"), *_YES_NO), rel(rows.inside("a", "b"), *_YES_NO)
        ratio = rows.volume_ratio("a", "b").tolist()
        out = []
        for i, ((a, b), g) in enumerate(zip(pairs, geometry)):
            out.append({
                "a": a, "b": b,
                "direction": {ax: direction[ax][i] for ax in PATIENT_AXES},
                "extent": {ax: extent[ax][i] for ax in PATIENT_AXES},
                "surface_distance_mm": g.surface_distance_mm,
                "distance_is_lower_bound": g.distance_is_lower_bound,
                "contact": contact[i],
                "share_a_in_b": g.share_a_in_b, "share_b_in_a": g.share_b_in_a,
                "inside": inside[i],
                "volume_ratio": round(ratio[i], 4),
            })
        return out

    def to_dict(self, include_relations: bool = True) -> dict:
        out = {
            "format": RELATIONS_FORMAT, "version": RELATIONS_VERSION, "case": self.case,
            "grid": self.grid, "labels_hash": self.labels_hash, "ct_hash": self.ct_hash, "source": self.source,
            "thresholds": asdict(self.thresholds), "midline": self.midline.to_dict(), "audit": self.audit.to_dict(),
            "structures": {n: s.to_dict() for n, s in sorted(self.structures.items())},
            "pairs": [],
            "counterfactuals": {name: cf.to_dict() for name, cf in self.counterfactuals.items()},
        }
        pairs = sorted(self.pairs.items())
        if include_relations:
            out["pairs"] = self.pair_summaries([key for key, _ in pairs])
        else:
            out["pairs"] = [{"a": a, "b": b, "surface_distance_mm": g.surface_distance_mm,
                             "distance_is_lower_bound": g.distance_is_lower_bound,
                             "share_a_in_b": g.share_a_in_b, "share_b_in_a": g.share_b_in_a}
                            for (a, b), g in pairs]
        return out

    @classmethod
    def from_dict(cls, d: dict, where: str = "relations") -> "RelationGraph":
        graph = cls._from_dict(d, where)
        try:
            graph.counterfactuals = {name: CounterfactualGraph.from_dict(cf, graph, f"{where}: counterfactual {name}")
                                     for name, cf in d.get("counterfactuals", {}).items()}
        except (KeyError, TypeError, AttributeError) as exc:
            raise FormatError(f"{where}: malformed counterfactual graph ({type(exc).__name__}: {exc})") from exc
        return graph

    @classmethod
    def _from_dict(cls, d: dict, where: str) -> "RelationGraph":
        if d.get("format") != RELATIONS_FORMAT:
            raise FormatError(f"{where}: not a volprobe relations file (format {d.get('format')!r})")
        if d.get("version") != RELATIONS_VERSION:
            raise FormatError(f"{where}: relations format version {d.get('version')}, this volprobe reads "
                              f"version {RELATIONS_VERSION} (it records where the field of view cuts each "
                              f"structure and the midline's uncertainty); recompute it with `probe relations`")
        try:
            structures = {n: StructureStats.from_dict(n, s) for n, s in d["structures"].items()}
            midline = Midline.from_dict(d["midline"])
            if midline.source == "labels":  # files written before a guessed midline got the labels' span
                midline = replace(midline, uncertainty_mm=max(midline.uncertainty_mm, labels_span_mm(structures)))
            pairs = {(p["a"], p["b"]): PairGeometry(float(p["surface_distance_mm"]), bool(p["distance_is_lower_bound"]),
                                                    float(p["share_a_in_b"]), float(p["share_b_in_a"]))
                     for p in d["pairs"]}
            return cls(case=d["case"], structures=structures, pairs=pairs,
                       midline=midline,
                       audit=LateralityAudit.from_dict(d["audit"]), thresholds=RelationThresholds(**d["thresholds"]),
                       grid=d["grid"], labels_hash=d["labels_hash"], ct_hash=d.get("ct_hash"),
                       source=d.get("source", {}))
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


@dataclass
class CounterfactualGraph:
    """The relation graph of a case's label map under a named transform of its image (a geometric control).

    Attributes:
        transform: the control's label (``item.counterfactual`` keys).
        params: the transform's parameters on this case's grid (e.g. which array axis was flipped and its
            angle to the patient axis).
        graph: the relation graph of the transformed label map (and CT), built by :func:`build_relation_graph`
            with the original's thresholds; structures named as a reader of the transformed image names them.
        renamed: name in :attr:`graph` → the original name of that structure, for the names that differ.
        pairs_reused: the pair geometry was taken over from the original graph (renamed) because the
            transform is an isometry of patient space (distances, contact, containment unchanged).
    """

    transform: str
    params: dict
    graph: RelationGraph
    renamed: dict[str, str] = field(default_factory=dict)
    pairs_reused: bool = False

    @cached_property
    def geometry_only(self) -> RelationGraph:
        """:attr:`graph` with every structure under its original name: what the transform does to the anatomy
        alone, without the renaming (a relation whose outcome here equals the original's changed only by name)."""
        return self.graph.renamed(self.renamed) if self.renamed else self.graph

    def to_dict(self) -> dict:
        graph = self.graph.to_dict(include_relations=False)
        graph.pop("counterfactuals")
        if self.pairs_reused:  # the original's pairs, renamed: not stored twice
            graph.pop("pairs")
        return {"transform": self.transform, "params": self.params, "renamed": dict(sorted(self.renamed.items())),
                "pairs_reused": self.pairs_reused, "graph": graph}

    @classmethod
    def from_dict(cls, d: dict, original: RelationGraph, where: str) -> "CounterfactualGraph":
        g = dict(d["graph"])
        renamed = dict(d.get("renamed", {}))
        reused = bool(d.get("pairs_reused", False))
        if reused:
            g["pairs"] = []
        graph = RelationGraph._from_dict(g, where)
        if reused:
            graph.pairs = original.renamed({old: new for new, old in renamed.items()}).pairs
        return cls(d["transform"], dict(d.get("params", {})), graph, renamed, reused)


# -- construction -----------------------------------------------------------------------------

def build_relation_graph(label_map: LabelMap, volume: Volume | None = None, *, case: str | None = None,
                         thresholds: RelationThresholds | None = None,
                         pair_geometry: Mapping[tuple[str, str], PairGeometry] | None = None) -> RelationGraph:
    """Compute the relation graph of a label map (and optionally its CT, for the body midline).

    ``pair_geometry``: the pairs' surface distances and containment when they are known not to differ from
    what this label map gives (a transform that is an isometry of patient space, see
    :meth:`volprobe.controls.Control.keeps_distances`; keys (a, b) with a < b under this map's names). They
    dominate the cost, so they are then not measured again.

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
    if pair_geometry is None:
        dist = surface_distances(names, stats, boundary, affine, t.distance_cutoff_mm)
        contained = containment(labels, runs, names, stats, boundary)
        pairs = {(a, b): PairGeometry(d, lb, contained.get((a, b), 0.0), contained.get((b, a), 0.0))
                 for (a, b), (d, lb) in dist.items()}
    else:
        pairs = {(a, b): g for (a, b), g in pair_geometry.items() if a in stats and b in stats}
    body_x = body_centre_x(volume) if volume is not None else None
    midline = estimate_midline(stats, body_x)
    by_label = sorted((s.label, n) for n, s in stats.items())
    left, right = side_counts(runs, labels.shape, affine, midline.x_mm, np.array([lab for lab, _ in by_label]))
    for (_, n), nl, nr in zip(by_label, left.tolist(), right.tolist()):
        stats[n] = replace(stats[n], left_share=nl / stats[n].voxels, right_share=nr / stats[n].voxels)
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
    return RelationGraph(case=case or case_from_path(label_map.source), structures=stats, pairs=pairs, midline=midline,
                         audit=audit, thresholds=t, grid=grid, labels_hash=content_hash(labels, affine),
                         ct_hash=volume.content_hash if volume is not None else None, source=source)


def case_from_path(source: str | None) -> str:
    """The case id a file names: its name without the image suffix and a ``_seg`` ending ('case' for none)."""
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
    cut = {n: ",".join(f"{ax}:{s.cut(ax)}" for ax in PATIENT_AXES if s.cut(ax))
           for n, s in graph.structures.items() if s.touches_border}
    if cut:
        lines.append("cut by the field of view (no size claims; no centroid along a cut axis, no extreme point at "
                     "a cut end): " + ", ".join(f"{n} ({c})" for n, c in sorted(cut.items())))
    lines.append(f"midline uncertainty {graph.midline.uncertainty_mm:.1f} mm ("
                 + ", ".join(f"{k} {v:.1f}" for k, v in graph.midline.estimates.items()) + ")")
    lines.append(f"{'structure':32s} {'mL':>9s} {'side':>6s}  centroid RAS mm")
    for n in sorted(graph.structures, key=lambda n: -graph.structures[n].volume_ml):
        s = graph.structures[n]
        side = graph.side(n).value
        lines.append(f"{n:32s} {s.volume_ml:9.1f} {side[:6]:>6s}  "
                     f"({s.centroid_mm[0]:.1f}, {s.centroid_mm[1]:.1f}, {s.centroid_mm[2]:.1f})")
    for name, cf in graph.counterfactuals.items():
        params = ", ".join(f"{k} {v}" for k, v in cf.params.items())
        lines.append(f"graph under {name}{f' ({params})' if params else ''}: {len(cf.renamed)} structures renamed"
                     + ("; pair geometry reused (an isometry)" if cf.pairs_reused else ""))
    touching = sorted(((a, b) for a, b in graph.pairs if graph.contact(a, b).value == "yes"))
    lines.append(f"{len(touching)} touching pairs" + (": " + ", ".join(f"{a}–{b}" for a, b in touching[:max_pairs])
                                                     + (" ..." if len(touching) > max_pairs else "") if touching else ""))
    return "\n".join(lines)
