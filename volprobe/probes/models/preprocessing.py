"""Model-specific preprocessing of a CT in patient space, with MONAI transforms.

Every function takes a :class:`~volprobe.segmentation.volume.Volume` (voxels + voxel→RAS affine), first
reorients it with MONAI ``Orientation`` (driven by the affine, never by array order) to one fixed
patient orientation, then resizes and scales it for one model family. The same anatomy stored RAS,
LPS or any other way therefore gives the same model input.

Fixed orientation (:data:`CANONICAL_AXCODES` = ``"LPS"``): array axes ``(x, y, z)`` run towards the
patient's Left, Posterior and Superior. That is the order of an ITK/DICOM image with identity direction,
and, viewed as ``[z, y, x]`` slices, the radiological display convention these models were trained on
(M3D and RadFM on Radiopaedia image stacks, Med3DVLM on NIfTI read with SimpleITK):

* image rows run anterior → posterior (anterior at the top),
* image columns run patient right → left (the patient's right on the viewer's left),
* slices run inferior → superior.

Functions (one per model family): :func:`m3d_volume` (M3D-LaMed, M3D-RAD, Med3DVLM), :func:`radfm_volume`
(RadFM), :func:`slice_images` (2D VLMs such as MedGemma and Qwen-VL). Each returns the model input and a
small JSON-able ``info`` dict recorded with every result.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

CANONICAL_AXCODES = "LPS"
#: Labels of the negative/positive ends of RAS x, y, z (MONAI's ``Orientation(labels=...)``).
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
ORIENTATION_NOTE = "rows anterior->posterior, columns patient right->left, slices inferior->superior"
#: MedGemma's CT windows (HU) for the red, green and blue channels.
MEDGEMMA_WINDOWS: tuple[tuple[float, float], ...] = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))
#: RadFM's depths: a multiple of 4 from 4 to 64 (its ``stack_images`` picks the one nearest the scan's depth).
RADFM_DEPTHS = tuple(range(4, 65, 4))


def reorient(volume) -> tuple[np.ndarray, np.ndarray]:
    """The volume's voxels as float32 ``[x, y, z]`` towards patient Left, Posterior, Superior, and the new affine.

    Uses MONAI ``Orientation`` on a ``MetaTensor`` carrying the volume's voxel→RAS affine (oblique
    volumes go to the nearest axes, as nibabel's ``io_orientation`` does; no resampling).
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    data = MetaTensor(torch.as_tensor(np.asarray(volume.array, dtype=np.float32))[None],
                      affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    out = Orientation(axcodes=CANONICAL_AXCODES, labels=RAS_LABELS)(data)
    return out[0].numpy(), np.asarray(out.affine, dtype=float)


def _intensity_unit(array: np.ndarray, window: Sequence[float] | None) -> np.ndarray:
    """Scale to [0, 1]: min-max (MONAI ``ScaleIntensity``) or a clipped HU window (``ScaleIntensityRange``)."""
    from monai.transforms import ScaleIntensity, ScaleIntensityRange

    if window is None:
        return np.asarray(ScaleIntensity(minv=0.0, maxv=1.0)(array), dtype=np.float32)
    lo, hi = float(window[0]), float(window[1])
    return np.asarray(ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=1.0, clip=True)(array), dtype=np.float32)


def _resize(array_cdhw: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """MONAI ``Resize`` (mode ``area``: averaging when shrinking, replication when growing)."""
    from monai.transforms import Resize

    return np.asarray(Resize(spatial_size=tuple(int(s) for s in size), mode="area")(array_cdhw), dtype=np.float32)


def _geometry_info(array: np.ndarray, window) -> dict[str, Any]:
    depth = int(array.shape[2])
    return {"orientation": f"{CANONICAL_AXCODES} ({ORIENTATION_NOTE})", "source_depth": depth,
            "intensity": "min-max to [0, 1]" if window is None else f"HU window {list(window)} to [0, 1]"}


def m3d_volume(volume, size: Sequence[int] = (32, 256, 256), window: Sequence[float] | None = None):
    """M3D-style input: float32 tensor ``(1, 1, D, H, W)`` in [0, 1].

    ``D, H, W`` = slices (inferior→superior), rows (anterior→posterior), columns (right→left).
    Min-max scaled over the whole volume (M3D: "normalized to 0-1, Min-Max"; no HU window unless
    ``window`` is given), then resized with MONAI ``Resize`` (area). M3D's own data preparation also
    cropped the foreground; that is not done here, because a crop would differ between controls (a blank
    volume has no foreground). A volume with one axial slice is replicated to ``D`` (``info["replicated_depth"]``).
    """
    import torch

    array, _ = reorient(volume)
    info = _geometry_info(array, window)
    scaled = _intensity_unit(array, window)
    dhw = np.transpose(scaled, (2, 1, 0))[None]  # (1, z, y, x) = (C, D, H, W)
    resized = np.clip(_resize(dhw, size), 0.0, 1.0)
    info.update(shape=[1, 1, *(int(s) for s in size)], replicated_depth=info["source_depth"] < int(size[0]))
    return torch.from_numpy(np.ascontiguousarray(resized[None])), info


def radfm_depth(depth: int) -> int:
    """RadFM's target depth: the multiple of 4 in 4..64 nearest ``depth`` (the smaller one on a tie)."""
    return min(RADFM_DEPTHS, key=lambda d: (abs(d - depth), d))


def radfm_volume(volume, size: int = 512, window: Sequence[float] | None = None):
    """RadFM input for one scan: float32 tensor ``(1, H, W, D)`` in [0, 1] (one grey channel).

    RadFM takes ``B x S x 3 x H x W x D``; the adapter replicates the grey channel to 3 and adds the
    batch and scan axes when it builds a batch. ``H, W`` = rows (anterior→posterior), columns
    (right→left), ``D`` = slices (inferior→superior) resized to the multiple of 4 (4..64) nearest the
    scan's depth, as RadFM's ``stack_images`` does. A single slice becomes 4 identical slices.
    """
    import torch

    array, _ = reorient(volume)
    info = _geometry_info(array, window)
    depth = radfm_depth(info["source_depth"])
    scaled = _intensity_unit(array, window)
    hwd = np.transpose(scaled, (1, 0, 2))[None]  # (1, y, x, z) = (C, H, W, D)
    resized = np.clip(_resize(hwd, (size, size, depth)), 0.0, 1.0)
    info.update(shape=[1, 1, 3, int(size), int(size), depth], replicated_depth=info["source_depth"] < depth)
    return torch.from_numpy(np.ascontiguousarray(resized)), info


def slice_positions(depth: int, count: int) -> list[int]:
    """``min(count, depth)`` evenly spaced slice indices: the centre of each of ``count`` equal bins.

    All slices when ``count >= depth``; the middle slice when ``count == 1``.
    """
    n = max(1, min(int(count), int(depth)))
    return [int(i) for i in np.floor((np.arange(n) + 0.5) * depth / n).astype(int)]


def slice_images(volume, count: int = 16, windows: Sequence[Sequence[float]] = MEDGEMMA_WINDOWS,
                 size: int | None = None):
    """Axial slices as RGB ``uint8`` arrays ``(H, W, 3)``, one HU window per channel (MedGemma's recipe).

    Slices are evenly spaced (:func:`slice_positions`) and ordered inferior → superior; each image has
    rows anterior→posterior and columns patient right→left. Channel ``c`` is the CT clipped to
    ``windows[c]`` and scaled to 0..255 (MONAI ``ScaleIntensityRange``). ``size`` resizes each slice to
    ``size x size`` (MONAI ``Resize``, area) before windowing; None keeps the scan's in-plane grid.

    Returns:
        (list of arrays, info) where ``info["slice_z_mm"]`` gives each slice's patient z (RAS, mm).
    """
    from monai.transforms import ScaleIntensityRange

    if len(windows) != 3:
        raise ValueError(f"slice_images needs 3 windows (R, G, B), got {len(windows)}")
    array, affine = reorient(volume)
    info = _geometry_info(array, None)
    picks = slice_positions(array.shape[2], count)
    images = []
    for k in picks:
        sl = np.ascontiguousarray(array[:, :, k].T)  # (y, x): rows A->P, columns R->L
        if size is not None:
            sl = _resize(sl[None], (size, size))[0]
        channels = [ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0.0, b_max=255.0, clip=True)(sl) for lo, hi in windows]
        images.append(np.rint(np.stack([np.asarray(c) for c in channels], axis=-1)).astype(np.uint8))
    centre = (np.array(array.shape[:2]) - 1) / 2.0
    z_mm = [float((affine @ np.array([centre[0], centre[1], k, 1.0]))[2]) for k in picks]
    info.update(intensity=f"RGB = HU windows {[list(w) for w in windows]} to 0..255", slices=len(picks),
                slice_indices=picks, slice_z_mm=[round(z, 2) for z in z_mm], image_shape=list(images[0].shape))
    return images, info
