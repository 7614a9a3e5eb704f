"""CT volumes in patient space.

Frame used everywhere in volprobe: **patient RAS+, millimetres** — the NIfTI/nibabel
world frame. +x points to the patient's Right, +y Anterior, +z Superior. So a
structure on the patient's *left* has a *smaller* x than one on the right.
DICOM/ITK images (LPS+) are converted on reading: RAS = diag(-1, -1, 1) · LPS.

A :class:`Volume` keeps the voxel array exactly as stored (no reorientation) and
the 4×4 affine that maps a voxel index ``(i, j, k, 1)`` to RAS+ mm. Anything that
speaks of left/right/up/down must go through the affine, never array indices.
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from volprobe.errors import VolprobeWarning, VolumeReadError

#: Patient axes in RAS+ order, with the direction a *positive* coordinate points to.
PATIENT_AXES = ("lr", "ap", "si")
POSITIVE_SIDE = {"lr": "right", "ap": "anterior", "si": "superior"}
NEGATIVE_SIDE = {"lr": "left", "ap": "posterior", "si": "inferior"}

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image in patient space.

    Attributes:
        array: voxel values indexed ``[i, j, k]`` (HU for CT), as stored on disk.
        affine: 4×4 float array, voxel index ``(i, j, k, 1)`` → patient RAS+ mm.
        source: the file or folder it was read from (None if made in memory).
        patient: optional patient identifier (used to keep controls from pairing a patient with itself).
    """

    array: np.ndarray
    affine: np.ndarray
    source: str | None = None
    patient: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.array.ndim != 3:
            raise VolumeReadError(f"a Volume needs a 3D array, got shape {self.array.shape}")
        aff = np.asarray(self.affine, dtype=float)
        if aff.shape != (4, 4) or not np.all(np.isfinite(aff)) or abs(np.linalg.det(aff[:3, :3])) < 1e-9:
            raise VolumeReadError(f"invalid voxel-to-patient affine:\n{aff}")
        object.__setattr__(self, "affine", aff)

    # -- geometry ---------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.array.shape)  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size along array axes i, j, k in mm."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def axcodes(self) -> tuple[str, str, str]:
        """nibabel orientation codes, e.g. ``('R', 'A', 'S')`` or ``('L', 'P', 'S')``."""
        return orientation_codes(self.affine)

    @property
    def axial_axis(self) -> int:
        """Array axis (0, 1 or 2) that runs closest to the patient's superior–inferior axis."""
        return array_axis_for(self.affine, "si")

    def array_axis(self, patient_axis: str) -> int:
        """Array axis closest to ``patient_axis`` ('lr', 'ap' or 'si')."""
        return array_axis_for(self.affine, patient_axis)

    def voxel_to_patient(self, ijk: np.ndarray) -> np.ndarray:
        """Map voxel indices (N×3) to patient RAS+ mm (N×3)."""
        ijk = np.asarray(ijk, dtype=float)
        return ijk @ self.affine[:3, :3].T + self.affine[:3, 3]

    def patient_to_voxel(self, xyz: np.ndarray) -> np.ndarray:
        """Map patient RAS+ mm (N×3) to (fractional) voxel indices (N×3)."""
        inv = np.linalg.inv(self.affine)
        xyz = np.asarray(xyz, dtype=float)
        return xyz @ inv[:3, :3].T + inv[:3, 3]

    def same_grid(self, other_shape: tuple[int, ...], other_affine: np.ndarray, atol_mm: float = 1e-3) -> bool:
        """True when another image has this shape and (within ``atol_mm``) this affine."""
        return tuple(other_shape) == self.shape and np.allclose(other_affine, self.affine, atol=atol_mm)

    def describe_grid(self) -> str:
        """One line naming the geometry, for error messages."""
        return describe_grid(self.shape, self.affine)

    # -- identity ---------------------------------------------------------------
    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the voxel data, dtype, shape and affine (independent of file format)."""
        return content_hash(self.array, self.affine)

    def with_array(self, array: np.ndarray, **meta) -> "Volume":
        """A new Volume on the same grid with different voxel data."""
        return Volume(array=array, affine=self.affine, source=self.source, patient=self.patient,
                      meta={**self.meta, **meta})


def content_hash(array: np.ndarray, affine: np.ndarray) -> str:
    h = hashlib.sha256()
    a = np.ascontiguousarray(array)
    h.update(f"{a.dtype.str}|{a.shape}|".encode())
    h.update(np.round(np.asarray(affine, dtype=float), 4).tobytes())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def orientation_codes(affine: np.ndarray) -> tuple[str, str, str]:
    import nibabel as nib

    return tuple(nib.aff2axcodes(affine))  # type: ignore[return-value]


def array_axis_for(affine: np.ndarray, patient_axis: str) -> int:
    """Array axis whose direction has the largest component along ``patient_axis``."""
    row = PATIENT_AXES.index(patient_axis)
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return int(np.argmax(np.abs(directions[row])))


def describe_grid(shape: tuple[int, ...], affine: np.ndarray) -> str:
    aff = np.asarray(affine, dtype=float)
    spacing = np.linalg.norm(aff[:3, :3], axis=0)
    codes = "".join(orientation_codes(aff))
    origin = ", ".join(f"{v:.2f}" for v in aff[:3, 3])
    return (f"shape {tuple(int(s) for s in shape)}, spacing "
            f"{tuple(round(float(s), 3) for s in spacing)} mm, orientation {codes}, origin ({origin}) mm RAS")


# -- reading --------------------------------------------------------------------

def load_volume(path: str | Path, *, series: str | None = None, patient: str | None = None,
                check_ct: bool = True) -> Volume:
    """Read a CT from NIfTI (.nii, .nii.gz), NRRD/MHA/MHD, or a folder holding one DICOM series.

    Args:
        path: file or DICOM folder.
        series: DICOM SeriesInstanceUID to read when the folder holds several series.
        patient: patient id to attach (for controls that must not pair a patient with itself).
        check_ct: warn (:class:`VolprobeWarning`) when intensities do not look like HU.

    Raises:
        FileNotFoundError: the path does not exist.
        VolumeReadError: unreadable/truncated file, 2D or 4D image, several DICOM series, ...
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"CT not found: {p} (no such file or folder)")
    if p.is_dir():
        vol = _read_dicom_folder(p, series)
    elif p.name.lower().endswith(NIFTI_SUFFIXES):
        vol = _read_nifti(p)
    elif p.name.lower().endswith(ITK_SUFFIXES):
        vol = _read_itk_file(p)
    elif p.suffix.lower() == ".npy":
        raise VolumeReadError(
            f"{p}: a .npy array has no voxel-to-patient geometry, so left/right cannot be known; "
            "convert it to NIfTI with its affine (or use the benchmark loaders, which accept .npy for text-only use)"
        )
    else:
        vol = _read_itk_file(p)  # let ITK try any other format it knows
    if patient is not None:
        vol = Volume(vol.array, vol.affine, vol.source, patient, vol.meta)
    if check_ct:
        warn_if_not_ct(vol)
    return vol


def _check_dims(shape: tuple[int, ...], path: Path, axis_names: tuple[str, ...] = ("i", "j", "k", "t", "u")) -> tuple[int, ...]:
    """Squeeze trailing singleton axes; reject 2D and true 4D+ images with a specific message."""
    dims = list(shape)
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if len(dims) < 3 or (len(dims) == 3 and dims[2] == 1):
        raise VolumeReadError(
            f"{path}: this is a 2D image (shape {tuple(shape)}); volprobe needs a 3D CT volume "
            "(for a single slice use the single_slice control on the full volume instead)"
        )
    if len(dims) > 3:
        extra = [f"axis {n} ({axis_names[n] if n < len(axis_names) else n}) has {dims[n]} entries"
                 for n in range(3, len(dims)) if dims[n] > 1]
        raise VolumeReadError(
            f"{path}: this is a {len(dims)}D image (shape {tuple(shape)}): {'; '.join(extra)}. "
            "volprobe needs one 3D CT; extract one time point or channel first, "
            "e.g. nibabel.Nifti1Image(img.dataobj[..., 0], img.affine)"
        )
    return tuple(dims)


def _read_nifti(p: Path) -> Volume:
    import nibabel as nib

    try:
        img = nib.load(str(p))
        shape = _check_dims(img.shape, p)
        data = np.asanyarray(img.dataobj)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel raises many types for corrupt/truncated files
        raise VolumeReadError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {exc}); "
                              "the file may be truncated or not a NIfTI image") from exc
    data = np.asarray(data).reshape(shape)
    affine = img.affine
    if affine is None:
        raise VolumeReadError(f"{p}: NIfTI has no usable sform/qform, so patient orientation is unknown")
    return Volume(array=data, affine=np.asarray(affine, dtype=float), source=str(p))


def _sitk_to_volume(img, source: str) -> Volume:
    """Convert a SimpleITK image (LPS+) to a Volume (RAS+), keeping the voxel order i, j, k = x, y, z."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)  # axes reversed: (k, j, i)
    arr = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(img.GetSpacing(), dtype=float)
    origin = np.array(img.GetOrigin(), dtype=float)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = origin
    return Volume(array=arr, affine=LPS_TO_RAS @ lps, source=source)


def _read_itk_file(p: Path) -> Volume:
    import SimpleITK as sitk

    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(p))
        reader.ReadImageInformation()
        size = reader.GetSize()
        ncomp = reader.GetNumberOfComponents()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: cannot read as an image ({_first_line(exc)}); "
                              "the file may be truncated or in a format ITK does not know") from exc
    if ncomp > 1:
        raise VolumeReadError(f"{p}: the image has {ncomp} components per voxel (colour or vector image); "
                              "a CT has one")
    _check_dims(tuple(size), p, ("x", "y", "z", "t"))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: cannot read voxel data ({_first_line(exc)}); the file may be truncated") from exc
    return _sitk_to_volume(img, str(p))


def list_dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """SeriesInstanceUID → sorted file list for every DICOM series in ``folder`` (not recursive)."""
    import SimpleITK as sitk

    folder = str(folder)
    uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ()
    return {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)) for uid in uids}


def _read_dicom_folder(p: Path, series: str | None) -> Volume:
    import SimpleITK as sitk

    all_series = list_dicom_series(p)
    if not all_series:
        raise VolumeReadError(f"{p}: folder holds no readable DICOM series "
                              "(give a NIfTI/NRRD/MHA file, or a folder of .dcm files of one series)")
    if series is None:
        if len(all_series) > 1:
            listing = "\n".join(f"  {uid}  ({len(files)} files, e.g. {Path(files[0]).name})"
                                for uid, files in all_series.items())
            raise VolumeReadError(
                f"{p}: folder holds {len(all_series)} DICOM series:\n{listing}\n"
                "choose one with series='<SeriesInstanceUID>' (CLI: --series UID) or move it to its own folder"
            )
        series = next(iter(all_series))
    if series not in all_series:
        raise VolumeReadError(f"{p}: no DICOM series {series!r}; present: {', '.join(all_series)}")
    files = all_series[series]
    if len(files) < 2:
        raise VolumeReadError(f"{p}: DICOM series {series} has a single file: a 2D image, not a 3D CT volume")
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: cannot read DICOM series {series} ({_first_line(exc)})") from exc
    vol = _sitk_to_volume(img, str(p))
    return Volume(vol.array, vol.affine, vol.source, None, {"dicom_series": series})


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with a file:line prefix; the useful text is usually last
    return lines[-1] if lines else type(exc).__name__


def warn_if_not_ct(vol: Volume) -> None:
    """Warn when intensities do not look like Hounsfield units (no air near −1000, or a [0, 1]/[0, 255] range)."""
    arr = vol.array
    sample = arr[:: max(1, arr.shape[0] // 64), :: max(1, arr.shape[1] // 64), :: max(1, arr.shape[2] // 64)]
    lo, hi = float(np.min(sample)), float(np.max(sample))
    reasons = []
    if lo > -500:
        reasons.append(f"no air-like values (minimum {lo:g}; CT air is about -1000 HU)")
    if hi - lo <= 1.0 + 1e-6:
        reasons.append(f"values span only [{lo:g}, {hi:g}] (looks normalised)")
    elif lo >= 0 and hi <= 255:
        reasons.append(f"values span [{lo:g}, {hi:g}] (looks like an 8-bit image)")
    if reasons:
        warnings.warn(f"{vol.source or 'volume'}: intensities do not look like CT in HU: {'; '.join(reasons)}. "
                      "Check rescale slope/intercept; HU-based steps (windowing, thresholds) may be wrong.",
                      VolprobeWarning, stacklevel=3)


def save_nifti(vol: Volume, path: str | Path) -> Path:
    """Write a Volume as NIfTI (affine stored as sform and qform, RAS+)."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(np.asarray(vol.array), vol.affine)
    img.set_qform(vol.affine, code=1)
    img.set_sform(vol.affine, code=1)
    nib.save(img, str(path))
    return path
