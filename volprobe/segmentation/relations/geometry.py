"""Pair geometry of a label map that per-structure statistics cannot give: exact surface distances
(boundary to boundary, mm) and containment (share of one structure inside another with its cavities
filled). Both work on voxel runs and boundary points (:mod:`volprobe.segmentation.anatomy`); distances are
in patient mm through the affine.
"""

from __future__ import annotations

import numpy as np

from volprobe.segmentation.anatomy import BoundaryPoints, Runs, StructureStats


def _box_gaps(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Euclidean distance between axis-aligned boxes (N×3 lo/hi, mm) for all pairs (N×N)."""
    gap = np.maximum(0.0, np.maximum(lo[:, None, :] - hi[None, :, :], lo[None, :, :] - hi[:, None, :]))
    return np.sqrt((gap ** 2).sum(axis=2))


class _CellIndex:
    """Boundary points of every structure in mm, bucketed into cubic cells of side ``h`` mm.

    Cell centres bound point distances: a point lies within ``r = h·√3/2`` of its cell's centre,
    so two cells whose centres are D apart hold points between D − 2r and D + 2r apart.
    """

    def __init__(self, boundary: BoundaryPoints, affine: np.ndarray, h: float):
        self.h = h
        self.r = h * np.sqrt(3) / 2
        steps = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1) if (i, j, k) > (0, 0, 0)])
        self.min_step = float(np.linalg.norm(steps @ affine[:3, :3].T, axis=1).min())  # closest two voxel centres
        pts = boundary.ijk.astype(np.float64) @ affine[:3, :3].T + affine[:3, 3]
        cell = np.floor((pts - pts.min(axis=0)) / h).astype(np.int64)
        dims = cell.max(axis=0) + 1
        seg = np.repeat(np.arange(len(boundary.labels), dtype=np.int64), np.diff(boundary.offsets))
        key = ((seg * dims[0] + cell[:, 0]) * dims[1] + cell[:, 1]) * dims[2] + cell[:, 2]
        order = np.argsort(key)
        self.points = pts[order]
        key, seg = key[order], seg[order]
        new_cell = np.ones(len(key), dtype=bool)
        new_cell[1:] = (key[1:] != key[:-1]) | (seg[1:] != seg[:-1])
        self.cell_start = np.flatnonzero(new_cell)
        self.cell_end = np.append(self.cell_start[1:], len(key))
        cell_seg = seg[self.cell_start]
        self.cells_of = np.searchsorted(cell_seg, np.arange(len(boundary.labels) + 1))  # per structure
        self.centres = (cell[order][self.cell_start] + 0.5) * h + pts.min(axis=0)
        self.position = {int(lab): n for n, lab in enumerate(boundary.labels)}
        self._trees: dict[int, object] = {}
        self._point_trees: dict[int, object] = {}
        self._boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def cells(self, label: int) -> slice:
        n = self.position[label]
        return slice(int(self.cells_of[n]), int(self.cells_of[n + 1]))

    def box(self, label: int) -> tuple[np.ndarray, np.ndarray]:
        """Bounding box (mm) of the cell centres of ``label``."""
        if label not in self._boxes:
            c = self.centres[self.cells(label)]
            self._boxes[label] = (c.min(axis=0), c.max(axis=0))
        return self._boxes[label]

    def n_cells(self, label: int) -> int:
        n = self.position[label]
        return int(self.cells_of[n + 1] - self.cells_of[n])

    def tree(self, label: int):
        from scipy.spatial import cKDTree

        if label not in self._trees:
            self._trees[label] = cKDTree(self.centres[self.cells(label)])
        return self._trees[label]

    def points_in(self, cell_ids: np.ndarray) -> np.ndarray:
        starts, ends = self.cell_start[cell_ids], self.cell_end[cell_ids]
        counts = ends - starts
        idx = np.repeat(starts - np.cumsum(counts) + counts, counts) + np.arange(int(counts.sum()))
        return self.points[idx]

    def point_tree(self, label: int):
        from scipy.spatial import cKDTree

        if label not in self._point_trees:
            c = self.cells(label)
            pts = self.points[self.cell_start[c.start]: self.cell_end[c.stop - 1]]
            self._point_trees[label] = cKDTree(pts, balanced_tree=False, compact_nodes=False)
        return self._point_trees[label]

    def distance(self, a: int, b: int, cutoff: float) -> float | None:
        """Exact minimum distance between the boundary points of labels a and b, or None if ≥ cutoff.

        Branch and bound: a's cells are visited nearest-first (by centre distance to b's cells), each
        cell's points queried against b's points, until the next cell's lower bound (centre distance
        − 2r) cannot beat the best distance found.
        """
        ca = self.cells(a)
        reach = cutoff + 2 * self.r
        lo, hi = self.box(b)
        centres = self.centres[ca]
        near = np.flatnonzero(np.all((centres >= lo - reach) & (centres <= hi + reach), axis=1))
        if not len(near):
            return None
        d_cells = self.tree(b).query(centres[near], k=1, distance_upper_bound=reach)[0]
        by_distance = np.argsort(d_cells)
        order = near[by_distance]
        lower = d_cells[by_distance] - 2 * self.r
        best = cutoff
        tree_b = self.point_tree(b)
        n = 0
        while n < len(order) and lower[n] < best:
            # take every cell whose bound is within one cell-size of the current one as a batch
            m = int(np.searchsorted(lower, min(best, lower[n] + self.h), side="right"))
            m = max(m, n + 1)
            pts = self.points_in(order[n:m] + ca.start)
            d = tree_b.query(pts, k=1, distance_upper_bound=best)[0]
            best = min(best, float(d.min()))
            if best <= self.min_step + 1e-9:
                break  # no two voxel centres are closer
            n = m
        return best if best < cutoff else None


def surface_distances(names: list[str], stats: dict[str, StructureStats], boundary: BoundaryPoints,
                       affine: np.ndarray, cutoff: float) -> dict[tuple[str, str], tuple[float, bool]]:
    """Exact boundary-to-boundary distance for pairs whose boxes are nearer than ``cutoff`` mm;
    farther pairs get (box distance, True) as a lower bound."""
    lo = np.array([stats[n].min_mm for n in names])
    hi = np.array([stats[n].max_mm for n in names])
    box = _box_gaps(lo, hi)
    spacing = float(np.linalg.norm(affine[:3, :3], axis=0).max())
    cells = _CellIndex(boundary, affine, h=max(2.0, 2.0 * spacing))
    out = {}
    near = []
    for a in range(len(names)):
        for b in range(a + 1, len(names)):
            if box[a, b] < cutoff:
                near.append((a, b))
            else:
                out[(names[a], names[b])] = (float(box[a, b]), True)
    for n in {stats[names[i]].label for pair in near for i in pair}:
        cells.tree(n), cells.point_tree(n), cells.box(n)  # build shared indexes before the threads start

    def one(pair: tuple[int, int]) -> tuple[float, bool]:
        la, lb = stats[names[pair[0]]].label, stats[names[pair[1]]].label
        if cells.n_cells(la) > cells.n_cells(lb):
            la, lb = lb, la  # query the structure with fewer cells
        d = cells.distance(la, lb, cutoff)
        return (d, False) if d is not None else (float(max(box[pair], cutoff)), True)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:  # KD-tree queries release the GIL
        for (a, b), result in zip(near, pool.map(one, near)):
            out[(names[a], names[b])] = result
    return out


def _flanked_voxels(runs: Runs, a: int, b: int, n_k: int) -> int:
    """Voxels of label a that have label b on both sides along their row (last array axis).

    Filling b's cavities can only take in such voxels: from any other voxel a straight line reaches
    the scan edge without crossing b. So zero here means exactly zero containment.
    """
    ra = slice(*np.searchsorted(runs.label, [a, a + 1]))
    rb = slice(*np.searchsorted(runs.label, [b, b + 1]))
    if ra.start == ra.stop or rb.start == rb.stop:
        return 0
    b_start = runs.row[rb] * n_k + runs.start[rb]  # sorted (row, start)
    b_end = runs.row[rb] * n_k + runs.end[rb]  # sorted too (runs are disjoint within a row)
    row_a = runs.row[ra]
    nxt = np.searchsorted(b_start, row_a * n_k + runs.end[ra], side="right")
    prv = np.searchsorted(b_end, row_a * n_k + runs.start[ra], side="left") - 1
    ok_next = (nxt < len(b_start)) & (b_start[np.minimum(nxt, len(b_start) - 1)] // n_k == row_a)
    ok_prev = (prv >= 0) & (b_end[np.maximum(prv, 0)] // n_k == row_a)
    length = runs.end[ra] - runs.start[ra] + 1
    return int(length[ok_next & ok_prev].sum())


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """mask plus every background region not connected (6-connectivity) to the array's faces."""
    from scipy import ndimage

    background, _ = ndimage.label(np.pad(~mask, 1, constant_values=True))
    outside = background[0, 0, 0]
    return (background != outside)[1:-1, 1:-1, 1:-1]


def containment(labels: np.ndarray, runs: Runs, names: list[str], stats: dict[str, StructureStats],
                 boundary: BoundaryPoints) -> dict[tuple[str, str], float]:
    """Share of a inside b (b's cavities filled) for every pair where it is not exactly 0."""
    bpos = {int(lab): n for n, lab in enumerate(boundary.labels)}
    boxes = {}
    for n in names:
        ijk = boundary.of(bpos[stats[n].label])
        boxes[n] = (ijk.min(axis=0), ijk.max(axis=0))
    n_k = labels.shape[2]
    out: dict[tuple[str, str], float] = {}
    filled_cache: dict[str, np.ndarray] = {}
    for a in names:
        alo, ahi = boxes[a]
        for b in names:
            if a == b:
                continue
            blo, bhi = boxes[b]
            if np.any(alo < blo) or np.any(ahi > bhi):
                continue
            if _flanked_voxels(runs, stats[a].label, stats[b].label, n_k) == 0:
                continue
            sl = tuple(slice(int(l), int(h) + 1) for l, h in zip(blo, bhi))
            if b not in filled_cache:
                filled_cache[b] = _fill_holes(labels[sl] == stats[b].label)
            inside = np.count_nonzero(filled_cache[b] & (labels[sl] == stats[a].label))
            if inside:
                out[(a, b)] = inside / stats[a].voxels
    return out
