"""Per-structure statistics of a label map, computed in patient RAS+ mm.

Everything comes from a few vectorised passes over the label array:

* **runs** — maximal stretches of one label along the last array axis. Counts, centroids,
  bounding boxes and connected components (a union of touching runs, via
  ``scipy.sparse.csgraph``) follow from the runs alone, with no per-structure loop over voxels.
* **boundary voxels** — labelled voxels with a 6-neighbour of another label (or the scan edge).
  Extremes of any linear function (such as a patient coordinate) over a structure are attained
  on its boundary, so extents along patient axes are exact for any affine, oblique included;
  boundary points also feed the surface distances in :mod:`volprobe.segmentation.relations.graph`.
* **cuts by the field of view** — per patient axis and end, from the array faces a structure touches
  (:func:`face_cuts`): the parts of it a reader cannot see, so that no relation rests on them.
* **side counts** — voxels on each side of a sagittal plane, counted per run without visiting voxels
  (:func:`side_counts`): along a run patient x changes linearly, for any affine.

Extents are voxel *centres* in mm (a structure one voxel thick has zero extent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from volprobe.errors import MaskError

#: A face of the array also cuts along every patient axis its outward normal makes an angle of at most
#: 60° with (normal component ≥ cos 60° = 0.5), besides the axis it is closest to; see :func:`face_cuts`.
FACE_AXIS_MIN_COSINE = 0.5
#: Voxel centres closer than this (mm) to a sagittal plane count on neither side of it (:func:`side_counts`).
ON_PLANE_MM = 1e-6


@dataclass(frozen=True)
class StructureStats:
    """One structure of a label map.

    Attributes:
        name: TotalSegmentator class name.
        label: label id in the map.
        voxels: number of voxels.
        volume_ml: volume in millilitres (voxels × voxel volume).
        centroid_mm: centre of mass, patient RAS+ mm.
        min_mm, max_mm: smallest and largest voxel-centre coordinate along x (R), y (A), z (S), in mm.
        components: number of connected components (26- or 6-connectivity, see ``connectivity``).
        touches_border: the structure reaches the edge of the scan, so the field of view may cut it
            (never use it for size claims).
        axial_slices: first and last index along the volume's axial array axis that contain it.
        cut_low, cut_high: per patient axis ('lr', 'ap', 'si'), the field of view cuts the structure at
            that axis's negative end (patient's left, posterior, inferior) / positive end (right, anterior,
            superior): it touches an array face that lies at that end (:func:`face_cuts`). A centroid
            along a cut axis, and an extreme point at a cut end, are not the structure's.
        left_share, right_share: share of its voxels whose centres lie on the patient's left / right of
            the body midline (voxels on the midline count on neither side); NaN until the midline is
            known (:func:`~volprobe.segmentation.relations.graph.build_relation_graph` fills them in).
    """

    name: str
    label: int
    voxels: int
    volume_ml: float
    centroid_mm: tuple[float, float, float]
    min_mm: tuple[float, float, float]
    max_mm: tuple[float, float, float]
    components: int
    touches_border: bool
    axial_slices: tuple[int, int]
    cut_low: tuple[bool, bool, bool] = (False, False, False)
    cut_high: tuple[bool, bool, bool] = (False, False, False)
    left_share: float = float("nan")
    right_share: float = float("nan")

    def cut(self, axis: str) -> str | None:
        """Where the field of view cuts it along patient ``axis``: 'low', 'high', 'both' or None."""
        k = ("lr", "ap", "si").index(axis)
        return {(True, True): "both", (True, False): "low", (False, True): "high"}.get(
            (self.cut_low[k], self.cut_high[k]))

    def to_dict(self) -> dict:
        return {
            "label": self.label, "voxels": self.voxels, "volume_ml": self.volume_ml,
            "centroid_mm": list(self.centroid_mm), "min_mm": list(self.min_mm), "max_mm": list(self.max_mm),
            "components": self.components, "touches_border": self.touches_border,
            "axial_slices": list(self.axial_slices), "cut_low": list(self.cut_low), "cut_high": list(self.cut_high),
            "left_share": self.left_share, "right_share": self.right_share,
        }

    @classmethod
    def from_dict(cls, name: str, d: dict) -> "StructureStats":
        return cls(name=name, label=int(d["label"]), voxels=int(d["voxels"]), volume_ml=float(d["volume_ml"]),
                   centroid_mm=tuple(d["centroid_mm"]), min_mm=tuple(d["min_mm"]), max_mm=tuple(d["max_mm"]),
                   components=int(d["components"]), touches_border=bool(d["touches_border"]),
                   axial_slices=(int(d["axial_slices"][0]), int(d["axial_slices"][1])),
                   cut_low=tuple(bool(v) for v in d["cut_low"]), cut_high=tuple(bool(v) for v in d["cut_high"]),
                   left_share=float(d["left_share"]), right_share=float(d["right_share"]))


@dataclass
class Runs:
    """Runs of equal label along the last array axis, sorted by (label, row, start)."""

    label: np.ndarray  # label of each run
    row: np.ndarray  # flat row index i * J + j
    start: np.ndarray  # first k (inclusive)
    end: np.ndarray  # last k (inclusive)


@dataclass
class BoundaryPoints:
    """Boundary voxels grouped by label: ``ijk[offsets[n]:offsets[n+1]]`` belong to ``labels[n]``."""

    labels: np.ndarray
    offsets: np.ndarray
    ijk: np.ndarray  # (N, 3) int32 voxel indices

    def of(self, n: int) -> np.ndarray:
        return self.ijk[self.offsets[n]: self.offsets[n + 1]]


def _as_label_array(labels: np.ndarray) -> np.ndarray:
    if labels.ndim != 3:
        raise MaskError(f"label map must be 3D, got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise MaskError(f"label map must hold integers, got {labels.dtype}")
    if labels.dtype.kind == "i" and labels.size and labels.min() < 0:
        raise MaskError("label map holds negative labels")
    return np.ascontiguousarray(labels)


def find_runs(labels: np.ndarray) -> Runs:
    """All maximal runs of a non-zero label along the last axis, sorted by (label, row, start)."""
    lab = _as_label_array(labels)
    n_k = lab.shape[2]
    x = lab.reshape(-1, n_k)
    nonzero = x != 0
    change = np.empty_like(nonzero)
    np.not_equal(x[:, 1:], x[:, :-1], out=change[:, 1:])
    change[:, 0] = True
    starts = np.flatnonzero(change & nonzero)
    # a run ends where the next voxel starts a change (or at the end of the row)
    end_mask = np.empty_like(nonzero)
    end_mask[:, :-1] = change[:, 1:]
    end_mask[:, -1] = True
    ends = np.flatnonzero(end_mask & nonzero)
    run_label = x.ravel()[starts]
    order = np.argsort(run_label, kind="stable")  # keeps (row, start) order within a label
    starts, ends, run_label = starts[order], ends[order], run_label[order]
    row, start = np.divmod(starts, n_k)
    return Runs(label=run_label.astype(np.int64), row=row, start=start, end=ends - row * n_k)


def boundary_points(labels: np.ndarray, runs: Runs | None = None) -> BoundaryPoints:
    """Voxels that carry a label and have a 6-neighbour with another label or lie on the scan edge."""
    lab = _as_label_array(labels)
    n_i, n_j, n_k = lab.shape
    runs = runs if runs is not None else find_runs(lab)
    mark = np.zeros(lab.size, dtype=bool)
    rowk = runs.row * n_k
    mark[rowk + runs.start] = True  # changes along k (and the k-edges)
    mark[rowk + runs.end] = True
    d = np.not_equal(lab[1:], lab[:-1])  # along i
    p = np.flatnonzero(d)
    mark[p] = True
    mark[p + n_j * n_k] = True
    d = np.not_equal(lab[:, 1:], lab[:, :-1])  # along j
    i, rest = np.divmod(np.flatnonzero(d), (n_j - 1) * n_k)
    p = i * (n_j * n_k) + rest
    mark[p] = True
    mark[p + n_k] = True
    mark3 = mark.reshape(lab.shape)  # scan faces i=0/I-1 and j=0/J-1 are boundary too
    for ax, n in ((0, n_i), (1, n_j)):
        sl = [slice(None)] * 3
        for edge in (0, n - 1):
            sl[ax] = edge
            mark3[tuple(sl)] = True
    flat = lab.ravel()
    idx = np.flatnonzero(mark & (flat != 0))
    lab_b = flat[idx]
    order = np.argsort(lab_b, kind="stable")
    idx, lab_b = idx[order], lab_b[order]
    uniq, first = np.unique(lab_b, return_index=True)
    offsets = np.append(first, len(idx))
    ijk = np.stack(np.unravel_index(idx, lab.shape), axis=1).astype(np.int32)
    return BoundaryPoints(labels=uniq.astype(np.int64), offsets=offsets, ijk=ijk)


def count_components(runs: Runs, shape: tuple[int, int, int], connectivity: int = 26) -> dict[int, int]:
    """Connected components per label, by joining runs that touch in neighbouring rows."""
    if connectivity not in (6, 26):
        raise ValueError("connectivity must be 6 or 26")
    n_i, n_j, n_k = shape
    n = len(runs.label)
    if n == 0:
        return {}
    stride = np.int64(n_i) * n_j * n_k
    base = runs.label * stride + runs.row * n_k
    start_key = base + runs.start
    end_key = base + runs.end
    j = runs.row % n_j
    i = runs.row // n_j
    grow = 1 if connectivity == 26 else 0
    offsets = [(0, 1), (1, -1), (1, 0), (1, 1)] if connectivity == 26 else [(0, 1), (1, 0)]
    src_parts, dst_parts = [], []
    for di, dj in offsets:
        ok = (i + di < n_i) & (j + dj >= 0) & (j + dj < n_j)
        a = np.flatnonzero(ok)
        if not len(a):
            continue
        target = runs.label[a] * stride + (runs.row[a] + di * n_j + dj) * n_k
        lo_k = np.maximum(runs.start[a] - grow, 0)
        hi_k = np.minimum(runs.end[a] + grow, n_k - 1)
        lo = np.searchsorted(end_key, target + lo_k, side="left")
        hi = np.searchsorted(start_key, target + hi_k, side="right")
        cnt = np.maximum(hi - lo, 0)
        total = int(cnt.sum())
        if not total:
            continue
        src = np.repeat(a, cnt)
        first = np.repeat(lo - np.cumsum(cnt) + cnt, cnt)
        dst = first + np.arange(total)
        src_parts.append(src)
        dst_parts.append(dst)
    if src_parts:
        src = np.concatenate(src_parts)
        dst = np.concatenate(dst_parts)
    else:
        src = dst = np.zeros(0, dtype=np.int64)
    graph = sparse.coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, comp = csgraph.connected_components(graph, directed=False)
    pairs = np.unique(runs.label * n + comp)
    lab_of_comp = pairs // n
    ids, counts = np.unique(lab_of_comp, return_counts=True)
    return {int(a): int(c) for a, c in zip(ids, counts)}


def face_cuts(affine: np.ndarray) -> np.ndarray:
    """Which patient axis and end each face of the array lies at: bool (3, 2, 3, 2), indexed
    [array axis, face (0: index 0, 1: last index), patient axis (lr, ap, si), end (0: low, 1: high)].

    A face's outward normal (patient frame) is the row of the inverse direction matrix for its array
    axis (orthogonal to the face's own two axes; exact for sheared grids too), negated for the index-0
    face. The face lies at the low or high end of the patient axis that normal is closest to, by the
    sign of its component there. On an oblique grid a face is tilted toward the other patient axes as
    well, and what lies beyond it reaches along them in proportion: the face also counts along every
    other patient axis whose normal component is at least :data:`FACE_AXIS_MIN_COSINE` (tilted by 30°
    or more toward it), so that a 45° face cuts along both axes it lies between. For axis-aligned grids
    and the tilts of ordinary scans (gantry tilt up to 30°) each face cuts along one patient axis.
    """
    m = np.asarray(affine, dtype=float)[:3, :3]
    normals = np.linalg.inv(m)  # row a: normal of the faces of array axis a (its dot with column a is 1)
    normals = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    out = np.zeros((3, 2, 3, 2), dtype=bool)
    for a in range(3):
        closest = int(np.argmax(np.abs(normals[a])))
        for face, sign in ((0, -1.0), (1, 1.0)):
            n = sign * normals[a]
            for k in range(3):
                if k == closest or abs(n[k]) >= FACE_AXIS_MIN_COSINE:
                    out[a, face, k, int(n[k] > 0)] = True
    return out


def side_counts(runs: Runs, shape: tuple[int, int, int], affine: np.ndarray, x_mm: float,
                labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(voxels left of, voxels right of) the sagittal plane at patient x = ``x_mm`` for each label in
    ``labels`` (ascending, as in ``runs``); voxel centres within :data:`ON_PLANE_MM` of it count on neither.

    Exact for any affine without visiting voxels: along a run (last array axis, k = start..end) the
    patient x of voxel centres is x0 + c·k, so the counts beyond the plane are index ranges.
    """
    m = np.asarray(affine, dtype=float)
    n_j = shape[1]
    i, j = runs.row // n_j, runs.row % n_j
    x0 = m[0, 0] * i + m[0, 1] * j + m[0, 3]
    c = m[0, 2]
    start, end = runs.start.astype(np.float64), runs.end.astype(np.float64)
    length = end - start + 1
    if abs(c) < 1e-12:
        right = np.where(x0 > x_mm + ON_PLANE_MM, length, 0.0)
        left = np.where(x0 < x_mm - ON_PLANE_MM, length, 0.0)
    else:
        hi_k = (x_mm + ON_PLANE_MM - x0) / c  # x > x_mm + eps beyond this k (on the side c points to)
        lo_k = (x_mm - ON_PLANE_MM - x0) / c  # x < x_mm - eps beyond this k (on the other side)
        if c > 0:
            right = np.clip(end - np.maximum(start, np.floor(hi_k) + 1) + 1, 0, None)
            left = np.clip(np.minimum(end, np.ceil(lo_k) - 1) - start + 1, 0, None)
        else:
            right = np.clip(np.minimum(end, np.ceil(hi_k) - 1) - start + 1, 0, None)
            left = np.clip(end - np.maximum(start, np.floor(lo_k) + 1) + 1, 0, None)
    where = np.searchsorted(labels, runs.label)
    n = len(labels)
    return (np.bincount(where, weights=left, minlength=n)[:n], np.bincount(where, weights=right, minlength=n)[:n])


def structure_stats(labels: np.ndarray, affine: np.ndarray, names: dict[int, str], *,
                    connectivity: int = 26, runs: Runs | None = None,
                    boundary: BoundaryPoints | None = None) -> dict[str, StructureStats]:
    """Statistics of every labelled structure, keyed by name (patient RAS+ mm)."""
    lab = _as_label_array(labels)
    shape = lab.shape
    affine = np.asarray(affine, dtype=float)
    runs = runs if runs is not None else find_runs(lab)
    boundary = boundary if boundary is not None else boundary_points(lab, runs)
    if len(runs.label) == 0:
        return {}
    n_j = shape[1]
    length = (runs.end - runs.start + 1).astype(np.float64)
    i = (runs.row // n_j).astype(np.float64)
    j = (runs.row % n_j).astype(np.float64)
    uniq, first = np.unique(runs.label, return_index=True)
    seg = np.append(first, len(runs.label))
    count = np.add.reduceat(length, first)
    sum_i = np.add.reduceat(i * length, first)
    sum_j = np.add.reduceat(j * length, first)
    sum_k = np.add.reduceat((runs.start + runs.end) * length / 2.0, first)
    centroid_ijk = np.stack([sum_i, sum_j, sum_k], axis=1) / count[:, None]
    centroid_mm = centroid_ijk @ affine[:3, :3].T + affine[:3, 3]
    # index bounding boxes (runs sorted by row within a label, so i is sorted)
    i_min, i_max = i[first], i[seg[1:] - 1]
    j_min = np.minimum.reduceat(j, first)
    j_max = np.maximum.reduceat(j, first)
    k_min = np.minimum.reduceat(runs.start, first)
    k_max = np.maximum.reduceat(runs.end, first)
    lo = np.stack([i_min, j_min, k_min], axis=1)
    hi = np.stack([i_max, j_max, k_max], axis=1)
    touches = np.any(lo == 0, axis=1) | np.any(hi == np.array(shape) - 1, axis=1)
    # faces touched (structure, array axis, face) → cut ends (structure, patient axis, end)
    on_face = np.stack([lo == 0, hi == np.array(shape) - 1], axis=2)
    cuts = np.einsum("naf,afke->nke", on_face.astype(np.int64), face_cuts(affine).astype(np.int64)) > 0
    voxel_ml = abs(np.linalg.det(affine[:3, :3])) / 1000.0
    components = count_components(runs, shape, connectivity)
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    axial = int(np.argmax(np.abs(directions[2])))
    bpos = {int(lab_id): n for n, lab_id in enumerate(boundary.labels)}
    out: dict[str, StructureStats] = {}
    for n, lab_id in enumerate(uniq.tolist()):
        pts = boundary.of(bpos[lab_id]).astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]
        name = names.get(lab_id, f"label_{lab_id}")
        if name in out:
            raise MaskError(f"two label ids share the name {name!r}")
        out[name] = StructureStats(
            name=name, label=int(lab_id), voxels=int(count[n]), volume_ml=float(count[n] * voxel_ml),
            centroid_mm=tuple(float(v) for v in centroid_mm[n]),
            min_mm=tuple(float(v) for v in pts.min(axis=0)), max_mm=tuple(float(v) for v in pts.max(axis=0)),
            components=components.get(lab_id, 0), touches_border=bool(touches[n]),
            axial_slices=(int(lo[n, axial]), int(hi[n, axial])),
            cut_low=tuple(bool(v) for v in cuts[n, :, 0]), cut_high=tuple(bool(v) for v in cuts[n, :, 1]),
        )
    return out
