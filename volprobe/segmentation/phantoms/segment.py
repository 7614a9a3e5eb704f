"""A threshold segmenter for phantoms that reads only the image it is given.

:func:`segment_phantom_by_threshold` looks at nothing but the voxel intensities and the
affine of a :class:`~volprobe.segmentation.volume.Volume`: each voxel goes to the nearest HU
band of the phantom codebook (:data:`~volprobe.segmentation.phantoms.anatomy.CODEBOOK`),
specks are dropped, and paired structures (kidneys, lungs, ribs, back and psoas muscles)
are named by the side of the body midline *seen in the image* (the spinal cord's mean RAS
x, else the spine's, else the body's), ``_left`` being smaller x. So under a volume whose
voxel data were mirrored left–right with the affine kept, the kidney now on the image's
left is called ``kidney_left``, as a radiologist reading that image would call it. A blank
(air) volume gives an empty label map; shuffled slices give fragmented structures, each
fragment named by band and side.

Simplifications, stated: vertebrae come out as one group label ``vertebrae`` (id
:data:`VERTEBRAE_GROUP_ID`, not a TotalSegmentator class); ribs are numbered per side by
height (from the top when the top rib is whole, else from the bottom as rib 12); middle-lobe
intensity on the left (a mirrored image, no TotalSegmentator name) is called
``lung_upper_lobe_left``; the trachea is air enclosed by the body in an axial slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from volprobe.segmentation.masks import LabelMap, totalsegmentator_class_map
from volprobe.segmentation.phantoms.anatomy import CODEBOOK, TISSUE_CODE, TISSUE_HU
from volprobe.segmentation.volume import Volume

VERTEBRAE_GROUP = "vertebrae"
VERTEBRAE_GROUP_ID = 118
#: Side-named structures TotalSegmentator lacks, and the name used instead.
NO_TOTALSEG_NAME = {"lung_middle_lobe_left": "lung_upper_lobe_left"}
#: Widest band half-width (HU); narrower where neighbouring bands are closer.
MAX_HALF_WIDTH_HU = 30.0


def band_half_widths() -> np.ndarray:
    """Half-width (HU) of each codebook band: half the gap to the nearest neighbour, at most 30."""
    hu = TISSUE_HU.astype(float)
    gaps = np.abs(hu[:, None] - hu[None, :]) + np.eye(len(hu)) * 1e9
    return np.minimum(gaps.min(axis=1) / 2, MAX_HALF_WIDTH_HU)


def classify_bands(array: np.ndarray) -> np.ndarray:
    """Codebook tissue code of each voxel (int16), −1 where no band is within its half-width."""
    order = np.argsort(TISSUE_HU)
    centres = TISSUE_HU[order].astype(np.float32)
    mids = (centres[1:] + centres[:-1]) / 2
    a = np.asarray(array, dtype=np.float32)
    nearest = np.searchsorted(mids, a)
    code = order[nearest].astype(np.int16)
    code[np.abs(a - centres[nearest]) > band_half_widths()[order][nearest]] = -1
    return code


def segment_phantom_by_threshold(volume: Volume, *, min_component_voxels: int = 3) -> LabelMap:
    """Segment a phantom-like CT by HU bands; names follow TotalSegmentator (see module docstring).

    Args:
        volume: the CT as given (any orientation); only its array and affine are read.
        min_component_voxels: connected pieces (26-connectivity) smaller than this are noise.

    Returns:
        A LabelMap on the volume's grid, names = the structures found (may be empty).
    """
    from scipy import ndimage

    class_ids = {name: i for i, name in totalsegmentator_class_map("total").items()}
    class_ids[VERTEBRAE_GROUP] = VERTEBRAE_GROUP_ID
    code = classify_bands(volume.array)
    boxes = ndimage.find_objects(code + 1)  # bounding box of each band (code -1 -> 0 is ignored)
    x_mm = _patient_coordinate(volume, 0)
    z_mm = _patient_coordinate(volume, 2)
    out = np.zeros(volume.shape, dtype=np.uint8)

    pieces: dict[str, _Pieces] = {}
    for tissue in CODEBOOK:
        t = TISSUE_CODE[tissue.key]
        if tissue.structure is None or t >= len(boxes) or boxes[t] is None:
            continue
        box = boxes[t]
        mask = code[box] == t
        if tissue.key == "air":
            mask &= _inside_body(code, volume.axial_axis)[box]
        comps, n = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(comps.ravel(), minlength=n + 1)
        small = sizes < min_component_voxels
        small[0] = False
        if small.any():
            comps[small[comps]] = 0
        if comps.any():
            pieces[tissue.key] = _Pieces(box, comps, n)

    midline = _midline_x(pieces, x_mm, code)
    for tissue in CODEBOOK:
        if tissue.key not in pieces:
            continue
        piece = pieces[tissue.key]
        pattern = tissue.structure
        target = out[piece.box]
        if "{side}" not in pattern:
            name = VERTEBRAE_GROUP if pattern == "vertebrae_{level}" else pattern
            target[piece.comps > 0] = class_ids[name]
            continue
        count, mean_x, mean_z = _component_means(piece.comps, piece.n, x_mm[piece.box], z_mm[piece.box])
        keep = np.flatnonzero(count > 0)
        keep = keep[keep > 0]
        lut = np.zeros(piece.n + 1, dtype=np.uint8)
        for side, ids in (("left", keep[mean_x[keep] < midline]), ("right", keep[mean_x[keep] >= midline])):
            for cid, name in _names_for(pattern, side, ids, count, mean_z, piece, volume.shape).items():
                lut[cid] = class_ids[name]
        hit = lut[piece.comps]
        target[hit > 0] = hit[hit > 0]
    present = np.flatnonzero(np.bincount(out.ravel(), minlength=256))
    id_names = {i: n for n, i in class_ids.items()}
    names = {int(i): id_names[int(i)] for i in present if i != 0}
    return LabelMap(labels=out, affine=volume.affine, names=names, source=volume.source)


@dataclass(frozen=True)
class _Pieces:
    """Connected components of one band inside its bounding box."""

    box: tuple[slice, ...]
    comps: np.ndarray
    n: int

    def touches_array_border(self, component: int, shape: tuple[int, ...]) -> bool:
        """Whether one component reaches a face of the whole array (``shape``)."""
        idx = np.nonzero(self.comps == component)
        return any(int(i.min()) + b.start == 0 or int(i.max()) + b.start == n - 1
                   for i, b, n in zip(idx, self.box, shape))


def _patient_coordinate(volume: Volume, row: int) -> np.ndarray:
    """RAS coordinate ``row`` (0 = x, 2 = z) of every voxel centre (mm, float32)."""
    coef = volume.affine[row, :3].astype(np.float32)
    n0, n1, n2 = volume.shape
    return (np.arange(n0, dtype=np.float32)[:, None, None] * coef[0]
            + np.arange(n1, dtype=np.float32)[None, :, None] * coef[1]
            + np.arange(n2, dtype=np.float32)[None, None, :] * coef[2] + np.float32(volume.affine[row, 3]))


def _inside_body(code: np.ndarray, axial_axis: int) -> np.ndarray:
    """Voxels enclosed by the body within their own axial slice (holes of the non-air region)."""
    from scipy import ndimage

    solid = (code != TISSUE_CODE["air"]) & (code >= 0)
    plane = np.zeros((3, 3, 3), dtype=bool)
    index = [slice(None)] * 3
    index[axial_axis] = 1
    plane[tuple(index)] = True
    plane = plane & ndimage.generate_binary_structure(3, 1)
    pad = [(0, 0)] * 3
    pad[axial_axis] = (1, 1)  # so the first and last slices do not count as the array's border
    filled = ndimage.binary_fill_holes(np.pad(solid, pad), structure=plane)
    crop = [slice(None)] * 3
    crop[axial_axis] = slice(1, -1)
    return filled[tuple(crop)] & ~solid


def _component_means(comps: np.ndarray, n: int, x_mm: np.ndarray, z_mm: np.ndarray):
    flat = comps.ravel()
    count = np.bincount(flat, minlength=n + 1).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_x = np.bincount(flat, weights=x_mm.ravel(), minlength=n + 1) / count
        mean_z = np.bincount(flat, weights=z_mm.ravel(), minlength=n + 1) / count
    return count, mean_x, mean_z


def _midline_x(pieces: dict, x_mm: np.ndarray, code: np.ndarray) -> float:
    """Body midline in RAS x (mm): spinal cord, else spine, else the body's mean x, else 0."""
    for key in ("cord", "vertebra"):
        if key in pieces:
            piece = pieces[key]
            return float(np.median(x_mm[piece.box][piece.comps > 0]))
    body = (code != TISSUE_CODE["air"]) & (code >= 0)
    return float(x_mm[body].mean()) if body.any() else 0.0


def _names_for(pattern: str, side: str, ids: np.ndarray, count: np.ndarray, mean_z: np.ndarray,
               piece: _Pieces, shape: tuple[int, ...]) -> dict[int, str]:
    """Structure name of each component on one side."""
    if not ids.size:
        return {}
    if pattern != "rib_{side}_{n}":
        name = pattern.format(side=side)
        return {int(c): NO_TOTALSEG_NAME.get(name, name) for c in ids}
    if ids.size > 12:  # fragmented (e.g. shuffled slices): keep the 12 largest pieces
        ids = ids[np.argsort(count[ids])[::-1][:12]]
    ids = ids[np.argsort(mean_z[ids])[::-1]]  # superior first
    top_cut = piece.touches_array_border(int(ids[0]), shape)
    numbers = range(12 - ids.size + 1, 13) if top_cut else range(1, ids.size + 1)
    return {int(c): f"rib_{side}_{k}" for c, k in zip(ids, numbers)}


def touches_border(mask: np.ndarray) -> bool:
    """True when a mask has a voxel on any face of its array."""
    return bool(mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()
                or mask[:, :, 0].any() or mask[:, :, -1].any())
