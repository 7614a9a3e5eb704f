"""Segmentation masks on a CT's grid: import TotalSegmentator output, check geometry.

A :class:`LabelMap` is one integer array on the CT's voxel grid plus the name of each
label id (TotalSegmentator class names such as ``kidney_left``). Names are what count:
ids differ between TotalSegmentator versions and tasks.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from volprobe.errors import MaskError, VolprobeWarning, VolumeReadError
from volprobe.fileio import existing_path
from volprobe.segmentation.volume import (NIFTI_SUFFIXES, Volume, describe_grid, nifti_orientation_known,
                                          orientation_codes, read_nifti_image)


@dataclass(frozen=True, eq=False)
class LabelMap:
    """Integer labels on a voxel grid.

    Attributes:
        labels: integer array ``[i, j, k]``; 0 is background.
        affine: 4×4 voxel → patient RAS+ mm (same convention as :class:`Volume`).
        names: label id → structure name (TotalSegmentator class names).
        source: where it was read from.
        reoriented: how the stored array was put on the CT's grid without resampling (an axis order and/or
            flip, e.g. ``LAS -> LPS``), or None when it was stored on that grid already.
    """

    labels: np.ndarray
    affine: np.ndarray
    names: Mapping[int, str]
    source: str | None = None
    reoriented: str | None = None

    def __post_init__(self) -> None:
        if self.labels.ndim != 3:
            raise MaskError(f"a label map needs a 3D array, got shape {self.labels.shape}")
        if not np.issubdtype(self.labels.dtype, np.integer):
            raise MaskError(f"a label map needs integer labels, got {self.labels.dtype}")
        object.__setattr__(self, "affine", np.asarray(self.affine, dtype=float))

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.labels.shape)  # type: ignore[return-value]

    def present(self) -> dict[int, str]:
        """Label id → name for the labels that have at least one voxel."""
        ids = np.flatnonzero(np.bincount(self.labels.ravel().astype(np.int64, copy=False)))
        return {int(i): self.names.get(int(i), f"label_{int(i)}") for i in ids if i != 0}

    def mask(self, name: str) -> np.ndarray:
        """Boolean mask of one structure by name."""
        ids = [i for i, n in self.names.items() if n == name]
        if not ids:
            raise MaskError(f"no structure named {name!r}; known: {', '.join(sorted(self.names.values()))}")
        return np.isin(self.labels, ids)

    def as_volume_grid(self) -> Volume:
        return Volume(array=self.labels, affine=self.affine, source=self.source)


def totalsegmentator_class_map(task: str = "total") -> dict[int, str]:
    """TotalSegmentator's id → name map for ``task`` (from the installed package)."""
    from totalsegmentator.map_to_binary import class_map

    return dict(class_map[task])


def read_label_names_from_header(img) -> dict[int, str] | None:
    """Label names stored by TotalSegmentator in a NIfTI header extension, or None if absent."""
    import xml.etree.ElementTree as ET

    for ext in img.header.extensions:
        try:
            content = ext.get_content()
            text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else str(content)
        except Exception:
            continue
        if "<LabelTable>" not in text:
            continue
        start = text.find("<?xml")
        try:
            root = ET.fromstring(text[start if start >= 0 else 0:].strip())
        except ET.ParseError:
            continue
        names = {int(lab.get("Key")): (lab.text or "").strip() for lab in root.iter("Label") if lab.get("Key")}
        if names:
            return names
    return None


def check_same_grid(labels_shape, labels_affine, volume: Volume, what: str, atol_mm: float = 1e-3) -> None:
    """Raise :class:`MaskError` naming both geometries when a mask is not on its CT's grid."""
    if not volume.same_grid(labels_shape, labels_affine, atol_mm):
        raise MaskError(
            f"{what} is not on the CT's voxel grid.\n  mask: {describe_grid(labels_shape, labels_affine)}\n"
            f"  CT:   {volume.describe_grid()}\n"
            "Pass resample=True (CLI: --resample-masks) to resample the mask to the CT by nearest neighbour "
            "in patient mm, or segment this CT itself (probe segment)."
        )


def reorient_to_grid(labels: np.ndarray, affine: np.ndarray, reference: Volume,
                     atol_mm: float = 1e-3) -> tuple[np.ndarray, str] | None:
    """The labels on ``reference``'s grid when they are stored on the same lattice in another axis order
    and/or direction (e.g. TotalSegmentator's LAS masks of a DICOM series volprobe reads as LPS): the array
    transposed and flipped, no value changed; with a note like ``'LAS -> LPS'``. None when the voxel centres
    do not coincide after such a reordering (then only resampling helps)."""
    from nibabel.orientations import apply_orientation, inv_ornt_aff, io_orientation, ornt_transform

    transform = ornt_transform(io_orientation(affine), io_orientation(reference.affine))
    if sorted(labels.shape) != sorted(reference.shape):  # no axis order can make the shapes agree
        return None
    moved = apply_orientation(labels, transform)
    moved_affine = np.asarray(affine, float) @ inv_ornt_aff(transform, labels.shape)
    if not reference.same_grid(moved.shape, moved_affine, atol_mm):
        return None
    note = f"{''.join(orientation_codes(affine))} -> {''.join(reference.axcodes)}"
    return np.ascontiguousarray(moved), note


def resample_labels_nearest(labels: np.ndarray, affine: np.ndarray, reference: Volume) -> np.ndarray:
    """Resample an integer label array onto ``reference``'s grid by nearest neighbour (in patient mm).

    Each CT voxel takes the label of the mask voxel whose centre is nearest to it in the mask's
    index space; CT voxels outside the mask's field of view get 0.
    """
    from scipy import ndimage

    # mask voxel index of each reference voxel: inv(A_mask) @ A_ref
    mapping = np.linalg.inv(np.asarray(affine, float)) @ reference.affine
    out = ndimage.affine_transform(labels, mapping[:3, :3], offset=mapping[:3, 3], output_shape=reference.shape,
                                   order=0, mode="constant", cval=0)
    return out.astype(labels.dtype, copy=False)


def load_masks(path: str | Path, reference: Volume | None = None, *, resample: bool = False,
               task: str = "total") -> LabelMap:
    """Import masks: a TotalSegmentator multilabel NIfTI or a folder of per-class ``<name>.nii.gz`` files.

    Label names come from the NIfTI header extension TotalSegmentator writes when present,
    else from TotalSegmentator's class map for ``task``. In a folder each file is one structure
    named after the file; ids follow TotalSegmentator's class map where the name is known.
    With ``reference`` (the CT) the grid is checked: masks on the same lattice stored in another
    axis order or direction are reoriented losslessly (noted in :attr:`LabelMap.reoriented`); others
    are refused, or resampled by nearest neighbour in patient mm if ``resample``.

    Raises:
        FileNotFoundError: missing path.
        MaskError: unreadable, corrupt (a gzip CRC that fails), empty, mis-shaped, non-integer or off-grid
            masks (naming both grids); a symlink loop.
    """
    p = existing_path(path, "masks", MaskError)
    if p.is_dir():
        labels, affine, names = _read_mask_folder(p)
    else:
        labels, affine, names = _read_multilabel(p, task)
    if not labels.any():
        raise MaskError(f"{p}: masks are empty (every voxel is 0, no structure labelled); "
                        "TotalSegmentator writes empty masks when a structure is outside the scan")
    reoriented = None
    if reference is not None and not reference.same_grid(labels.shape, affine):
        same_lattice = reorient_to_grid(labels, affine, reference)
        if same_lattice is not None:
            (labels, reoriented), affine = same_lattice, reference.affine
        else:
            if not resample:
                check_same_grid(labels.shape, affine, reference, f"mask {p}")
            labels, affine = _resample_checked(labels, affine, reference, names, p)
    return LabelMap(labels=labels, affine=np.asarray(affine, float), names=names, source=str(p),
                    reoriented=reoriented)


def _resample_checked(labels: np.ndarray, affine: np.ndarray, reference: Volume, names: Mapping[int, str],
                      p: Path) -> tuple[np.ndarray, np.ndarray]:
    before = set(np.unique(labels).tolist()) - {0}
    out = resample_labels_nearest(labels, affine, reference)
    lost = before - set(np.unique(out).tolist())
    if lost == before:
        raise MaskError(f"{p}: after resampling onto the CT's grid no structure is left: the mask does not "
                        f"overlap the CT in patient space.\n  mask: {describe_grid(labels.shape, affine)}\n"
                        f"  CT:   {reference.describe_grid()}")
    if lost:
        warnings.warn(f"{p}: structures lost when resampling onto the CT's grid (outside the CT or smaller than "
                      f"its voxels): {', '.join(sorted(names.get(i, str(i)) for i in lost))}",
                      VolprobeWarning, stacklevel=3)
    return out, reference.affine


def _nib_load(path: Path):
    try:
        img = read_nifti_image(path, MaskError)
        data = np.asanyarray(img.dataobj)
    except MaskError:
        raise
    except Exception as exc:
        raise MaskError(f"{path}: cannot read mask ({type(exc).__name__}: {exc}); "
                        "the file may be truncated or not NIfTI") from exc
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise MaskError(f"{path}: mask has shape {data.shape}; a 3D label image is needed")
    if not nifti_orientation_known(img):
        raise MaskError(f"{path}: mask has neither sform nor qform, so its orientation is unknown")
    return img, np.asarray(data)


def _as_labels(data: np.ndarray, path: Path) -> np.ndarray:
    if np.issubdtype(data.dtype, np.integer):
        labels = data
    else:
        rounded = np.rint(data)
        if not np.allclose(rounded, data, equal_nan=False):
            raise MaskError(f"{path}: mask holds non-integer values (a probability map?); threshold it first")
        labels = rounded.astype(np.int32 if rounded.max() > 255 else np.uint8)
    if labels.size and labels.min() < 0:
        raise MaskError(f"{path}: mask holds negative labels (minimum {labels.min()}); labels are ids >= 0")
    return labels


def _read_multilabel(p: Path, task: str) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    img, data = _nib_load(p)
    labels = _as_labels(data, p)
    names = read_label_names_from_header(img)
    origin = "its NIfTI header extension"
    if names is None:
        names, origin = totalsegmentator_class_map(task), f"TotalSegmentator's '{task}' class map"
    unknown = sorted(set(np.unique(labels).tolist()) - set(names) - {0})
    if unknown:
        raise MaskError(f"{p}: label ids {unknown[:10]} have no name in {origin}; the masks are not from "
                        "TotalSegmentator's 'total' task: give a folder of per-structure <name>.nii.gz files "
                        "instead (TotalSegmentator writes one without --ml)")
    return labels, img.affine, dict(names)


def _mask_name(f: Path) -> str:
    return f.name[: -len(".nii.gz")] if f.name.lower().endswith(".nii.gz") else f.name[: -len(".nii")]


def _read_mask_folder(p: Path) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    files = sorted(f for f in p.iterdir() if f.is_file() and f.name.lower().endswith(NIFTI_SUFFIXES))
    if not files:
        raise MaskError(f"{p}: folder holds no .nii/.nii.gz mask files")
    known = {name: i for i, name in totalsegmentator_class_map("total").items()}
    next_id = max(known.values()) + 1
    labels = affine = None
    names: dict[int, str] = {}
    overlaps = []
    for f in files:
        img, data = _nib_load(f)
        data = _as_labels(data, f)
        name = _mask_name(f)
        if labels is None:
            labels = np.zeros(data.shape, dtype=np.uint16)
            affine = img.affine
        elif data.shape != labels.shape or not np.allclose(img.affine, affine, atol=1e-3):
            raise MaskError(f"{f}: not on the same grid as {files[0].name}:\n"
                            f"  {f.name}: {describe_grid(data.shape, img.affine)}\n"
                            f"  {files[0].name}: {describe_grid(labels.shape, affine)}")
        values = np.unique(data)
        if len(values[values != 0]) > 1:
            raise MaskError(f"{f}: holds {len(values[values != 0])} different labels, so it is a multilabel map, "
                            "not one structure; pass the file itself instead of the folder")
        binary = data != 0
        if not binary.any():
            continue  # TotalSegmentator writes empty files for absent classes
        if name in known:
            label_id = known[name]
        else:
            label_id, next_id = next_id, next_id + 1
        clash = binary & (labels > 0)
        if clash.any():
            overlaps.append((name, int(clash.sum())))
        labels[binary] = label_id
        names[label_id] = name
    assert labels is not None and affine is not None
    if overlaps:
        warnings.warn(f"{p}: overlapping masks; later files (alphabetical) win: "
                      + ", ".join(f"{nm} ({v} voxels)" for nm, v in overlaps[:5]), VolprobeWarning, stacklevel=3)
    if labels.max() <= 255:
        labels = labels.astype(np.uint8)
    return labels, affine, names


def save_label_map(label_map: LabelMap, path: str | Path, names: Mapping[int, str] | None = None) -> Path:
    """Write a label map as a NIfTI multilabel file with its label names in the header extension, as
    TotalSegmentator writes them (``names``, default the map's own), so :func:`load_masks` reads the names back."""
    from totalsegmentator.nifti_ext_header import add_label_map_to_nifti

    from volprobe.segmentation.volume import nifti_image, save_nifti_image

    img = nifti_image(label_map.labels, label_map.affine)
    return save_nifti_image(add_label_map_to_nifti(img, dict(label_map.names if names is None else names)), path)


def label_map_from_volume(volume: Volume, labels: np.ndarray, names: Mapping[int, str]) -> LabelMap:
    """A LabelMap on ``volume``'s grid (raises when shapes differ)."""
    if tuple(labels.shape) != volume.shape:
        raise MaskError(f"labels shape {labels.shape} differs from the CT's {volume.shape}")
    return LabelMap(labels=labels, affine=volume.affine, names=dict(names), source=volume.source)


__all__ = ["LabelMap", "load_masks", "save_label_map", "check_same_grid", "resample_labels_nearest",
           "read_label_names_from_header",
           "totalsegmentator_class_map", "label_map_from_volume", "VolumeReadError"]
