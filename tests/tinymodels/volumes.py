"""Small CT phantoms in patient space, storable in any orientation (for the adapter tests)."""

from __future__ import annotations

import numpy as np

from volprobe.segmentation.volume import Volume

SHAPE_RAS = (16, 20, 12)  # x (R), y (A), z (S) voxels
SPACING = (1.5, 1.2, 2.5)  # mm


def phantom_ras(shape=SHAPE_RAS, spacing=SPACING) -> np.ndarray:
    """HU array indexed ``[x, y, z]`` with +x = patient Right, +y = Anterior, +z = Superior.

    Air (-1000) around a soft-tissue box (40 HU) and one bone block (700 HU) in the patient's
    LEFT (small x), ANTERIOR (large y), SUPERIOR (large z) corner, plus a gradient so every voxel differs.
    """
    nx, ny, nz = shape
    arr = np.full(shape, -1000.0, dtype=np.float32)
    arr[2:-2, 2:-2, 1:-1] = 40.0
    arr[2:5, ny - 6:ny - 2, nz - 4:nz - 1] = 700.0
    x, y, z = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    return arr + (x + 3 * y + 7 * z).astype(np.float32) * 0.01


def stored(codes: str, array_ras: np.ndarray | None = None, spacing=SPACING, oblique_deg: float = 0.0) -> Volume:
    """The same anatomy stored with axis codes ``codes`` (e.g. ``"RAS"``, ``"LPS"``, ``"SAR"``).

    ``oblique_deg`` tilts the affine about the S axis (the voxels stay put; nearest axes are unchanged
    for small angles), for oblique acquisitions.
    """
    import nibabel as nib
    from nibabel.orientations import apply_orientation, axcodes2ornt, inv_ornt_aff, ornt_transform

    array_ras = phantom_ras() if array_ras is None else array_ras
    affine_ras = np.diag([*spacing, 1.0])
    affine_ras[:3, 3] = [-20.0, 15.0, -100.0]
    transform = ornt_transform(axcodes2ornt("RAS"), axcodes2ornt(tuple(codes)))
    array = apply_orientation(array_ras, transform)
    affine = affine_ras @ inv_ornt_aff(transform, array_ras.shape)
    if oblique_deg:
        t = np.deg2rad(oblique_deg)
        rot = np.eye(4)
        rot[:2, :2] = [[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]
        affine = rot @ affine
    vol = Volume(np.ascontiguousarray(array), affine)
    assert "".join(nib.aff2axcodes(vol.affine)) == codes
    return vol


def single_axial_slice(volume: Volume, index: int | None = None) -> Volume:
    """The volume cut to one axial slice (as the ``single_slice`` control gives it), affine kept."""
    axis = volume.axial_axis
    k = volume.shape[axis] // 2 if index is None else index
    array = np.take(volume.array, [k], axis=axis)
    shift = np.zeros(4)
    shift[axis] = k
    affine = volume.affine.copy()
    affine[:3, 3] = (volume.affine @ shift)[:3] + volume.affine[:3, 3]
    return Volume(np.ascontiguousarray(array), affine)
