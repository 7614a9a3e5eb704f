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
import os
import warnings
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from volprobe.errors import VolprobeWarning, VolumeReadError
from volprobe.fileio import GZIP_MAGIC, existing_path, gunzip_checked, symlink_loops

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
    """Read a CT from NIfTI (.nii, .nii.gz), NRRD/MHA/MHD, or a folder holding a DICOM series.

    The result's affine maps voxel indices to patient RAS+ mm whatever the file's own
    convention (NIfTI is RAS+; ITK formats and DICOM are LPS+ and converted). The voxel
    array is kept in stored order.

    Args:
        path: file, or folder of DICOM files.
        series: DICOM SeriesInstanceUID (or a unique prefix of it) when the folder holds several series.
        patient: patient id to attach (for controls that must not pair a patient with itself).
        check_ct: warn (:class:`VolprobeWarning`) when intensities do not look like HU.

    Raises:
        FileNotFoundError: the path does not exist (or is a symlink to nothing).
        VolumeReadError: unreadable, truncated or corrupt file (a gzip CRC that fails); a symlink loop;
            a 2D image or a 4D image (names the extra axis); a NIfTI without orientation; a folder with no
            or several DICOM series, or with DICOM files that cannot be read (named); DICOM slices unevenly
            spaced (a missing slice; the files around the gap are named).
    """
    p = existing_path(path, "CT", VolumeReadError)
    if p.is_dir():
        vol = _read_dicom_folder(p, series)
    elif series is not None:
        raise VolumeReadError(f"{p}: series={series!r} selects a series in a DICOM folder; {p.name} is a file")
    elif p.name.lower().endswith(NIFTI_SUFFIXES):
        vol = _read_nifti(p)
    elif p.suffix.lower() == ".npy":
        raise VolumeReadError(
            f"{p}: a .npy array has no voxel-to-patient geometry, so left/right cannot be known; "
            "convert it to NIfTI with its affine (or use the benchmark loaders, which accept .npy for text-only use)"
        )
    else:
        vol = _read_itk_file(p)  # NRRD/MHA/MHD, or any other format ITK knows
    if patient is not None:
        vol = Volume(vol.array, vol.affine, vol.source, patient, vol.meta)
    if check_ct:
        warn_if_not_ct(vol)
    return vol


def _check_dims(shape: tuple[int, ...], path: Path, axis_names: tuple[str, ...] = ("i", "j", "k", "t", "u")) -> tuple[int, ...]:
    """Drop trailing singleton axes past the third; reject empty, 2D and true 4D+ images, saying why."""
    dims = [int(n) for n in shape]
    while len(dims) > 3 and dims[-1] == 1:
        dims.pop()
    if 0 in dims:
        raise VolumeReadError(f"{path}: the image holds no voxels (shape {tuple(shape)})")
    if len(dims) < 3 or min(dims[:3]) == 1:
        raise VolumeReadError(
            f"{path}: this is a 2D image (shape {tuple(shape)}); volprobe needs a 3D CT volume "
            "(a DICOM slice? give the folder holding the whole series; for single-slice experiments "
            "use the single_slice control on the full volume)"
        )
    if len(dims) > 3:
        extra = [f"axis {n} ({axis_names[n] if n < len(axis_names) else n}) has {dims[n]} entries"
                 for n in range(3, len(dims)) if dims[n] > 1]
        raise VolumeReadError(
            f"{path}: this is a {len(dims)}D image (shape {tuple(shape)}): {'; '.join(extra)}, "
            "beyond the three spatial axes. volprobe needs one 3D CT; extract one time point or channel "
            "first, e.g. nibabel.Nifti1Image(img.dataobj[..., 0], img.affine)"
        )
    return tuple(dims)


def read_nifti_image(p: Path, error: type[Exception] = VolumeReadError):
    """A nibabel image of a .nii or .nii.gz file. A gzip file is decompressed whole first, so that its CRC
    and length are checked (nibabel stops reading at the end of the voxel data and never sees a bad CRC):
    a corrupt or truncated file is ``error`` naming it."""
    import nibabel as nib

    with open(p, "rb") as fh:
        compressed = fh.read(2) == GZIP_MAGIC
    if not compressed:
        return nib.load(str(p))
    data = gunzip_checked(p.read_bytes(), p, error)
    nifti2 = 540 in (int.from_bytes(data[:4], "little"), int.from_bytes(data[:4], "big"))  # sizeof_hdr
    image_class = nib.Nifti2Image if nifti2 else nib.Nifti1Image
    return image_class.from_bytes(data)


def _read_nifti(p: Path) -> Volume:
    try:
        img = read_nifti_image(p)
        shape = _check_dims(img.shape, p)
        if not nifti_orientation_known(img):
            raise VolumeReadError(
                f"{p}: NIfTI has neither sform nor qform (both codes 0), so the patient's orientation "
                "(which side is left) is unknown; rewrite it with its true affine, e.g. with volprobe's save_nifti")
        data = np.asarray(np.asanyarray(img.dataobj)).reshape(shape)
    except VolumeReadError:
        raise
    except Exception as exc:  # nibabel raises many types (EOFError, zlib.error, ImageFileError, ...)
        raise VolumeReadError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {exc}); "
                              "the file may be truncated or not a NIfTI image") from exc
    return Volume(array=data, affine=np.asarray(img.affine, dtype=float), source=str(p))


def nifti_orientation_known(img) -> bool:
    """False when a NIfTI image has neither sform nor qform (nibabel then guesses an affine without orientation)."""
    header = img.header
    return not ("sform_code" in header and int(header["sform_code"]) == 0 and int(header["qform_code"]) == 0)


def _sitk_to_volume(img, source: str, meta: dict | None = None) -> Volume:
    """Convert a SimpleITK image (LPS+) to a Volume (RAS+), keeping the voxel order i, j, k = x, y, z."""
    import SimpleITK as sitk

    arr = sitk.GetArrayFromImage(img)  # axes reversed: (k, j, i)
    arr = np.ascontiguousarray(np.transpose(arr, (2, 1, 0)))
    direction = np.array(img.GetDirection(), dtype=float).reshape(3, 3)
    spacing = np.array(img.GetSpacing(), dtype=float)
    lps = np.eye(4)
    lps[:3, :3] = direction * spacing[None, :]
    lps[:3, 3] = np.array(img.GetOrigin(), dtype=float)
    return Volume(array=arr, affine=LPS_TO_RAS @ lps, source=source, meta=dict(meta or {}))


def to_sitk(vol: Volume):
    """The Volume as a SimpleITK image (LPS+ origin/direction/spacing), for ITK-format writing."""
    import SimpleITK as sitk

    lps = LPS_TO_RAS @ vol.affine  # diag(-1,-1,1) is its own inverse
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    img = sitk.GetImageFromArray(np.ascontiguousarray(np.transpose(vol.array, (2, 1, 0))))
    img.SetSpacing(tuple(float(s) for s in spacing))
    img.SetDirection(tuple(float(d) for d in (lps[:3, :3] / spacing[None, :]).ravel()))
    img.SetOrigin(tuple(float(o) for o in lps[:3, 3]))
    return img


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
                              "the file may be truncated or in a format ITK does not know "
                              "(volprobe reads NIfTI, NRRD, MHA/MHD and DICOM series folders)") from exc
    if ncomp > 1:
        raise VolumeReadError(f"{p}: the image has {ncomp} components per voxel (colour or vector image); "
                              "a CT has one")
    _check_dims(tuple(size), p, ("x", "y", "z", "t"))
    try:
        img = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: cannot read voxel data ({_first_line(exc)}); the file may be truncated") from exc
    return _sitk_to_volume(img, str(p))


class _quiet_itk:
    """Context: ITK's own warnings (printed on stderr by C++) off; volprobe reports the problems itself."""

    def __enter__(self):
        import SimpleITK as sitk

        self._was = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)

    def __exit__(self, *exc):
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalWarningDisplay(self._was)


def list_dicom_series(folder: str | Path) -> dict[str, list[str]]:
    """SeriesInstanceUID → file list (sorted by slice position) for every DICOM series in ``folder`` (not recursive)."""
    import SimpleITK as sitk

    folder = str(folder)
    with _quiet_itk():
        uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder) or ()
        return {uid: list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, uid)) for uid in uids}


#: File endings of DICOM files (many have none; those are recognised by the "DICM" marker).
DICOM_SUFFIXES = (".dcm", ".dicom", ".ima")


def _looks_like_dicom(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return False
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    try:
        with open(path, "rb") as fh:
            fh.seek(128)
            return fh.read(4) == b"DICM"
    except OSError:
        return False


def unreadable_dicom_files(folder: Path, series: dict[str, list[str]]) -> list[str]:
    """Names of the files in ``folder`` that look like DICOM (by ending or the "DICM" marker) but belong to
    no series GDCM could read: truncated or damaged slices, which GDCM leaves out without a word."""
    listed = {os.path.realpath(f) for files in series.values() for f in files}
    out = []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        try:
            if not entry.is_file() or entry.name.startswith("."):
                continue
        except OSError:
            continue
        if os.path.realpath(entry.path) not in listed and _looks_like_dicom(Path(entry.path)):
            out.append(entry.name)
    return out


def _describe_series(uid: str, files: list[str]) -> str:
    """``UID  (N files, CT, #3 'Abdomen 1.0 B30f')`` from the first file's header."""
    import SimpleITK as sitk

    bits = [f"{len(files)} file{'s' if len(files) != 1 else ''}"]
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(files[0])
        reader.ReadImageInformation()
        for tag, fmt in (("0008|0060", "{}"), ("0020|0011", "#{}"), ("0008|103e", "'{}'")):
            if reader.HasMetaDataKey(tag) and reader.GetMetaData(tag).strip():
                bits.append(fmt.format(reader.GetMetaData(tag).strip()))
    except RuntimeError:
        pass
    return f"{uid}  ({', '.join(bits)})"


def _choose_series(p: Path, all_series: dict[str, list[str]], series: str | None) -> str:
    listing = "\n".join(f"  {_describe_series(uid, files)}" for uid, files in all_series.items())
    if series is None:
        if len(all_series) == 1:
            return next(iter(all_series))
        raise VolumeReadError(
            f"{p}: folder holds {len(all_series)} DICOM series:\n{listing}\n"
            "choose one with series='<SeriesInstanceUID>' (CLI: --series UID; a unique prefix is enough) "
            "or move each series to its own folder"
        )
    matches = [uid for uid in all_series if uid == series] or [uid for uid in all_series if uid.startswith(series)]
    if len(matches) != 1:
        problem = "matches several series" if matches else "matches no series"
        raise VolumeReadError(f"{p}: series {series!r} {problem}; present:\n{listing}")
    return matches[0]


def _few(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _read_dicom_folder(p: Path, series: str | None) -> Volume:
    import SimpleITK as sitk

    loops = symlink_loops(p)
    if loops:
        raise VolumeReadError(f"{p}: symlink loop{'s' if len(loops) > 1 else ''} in the DICOM folder: "
                              f"{_few(loops)}; point the links at the real files or remove them")
    all_series = list_dicom_series(p)
    broken = unreadable_dicom_files(p, all_series)
    if broken:
        raise VolumeReadError(
            f"{p}: {len(broken)} DICOM file{'s' if len(broken) > 1 else ''} cannot be read (truncated or "
            f"damaged): {_few(broken)}; the series would miss those slices. Copy them again from the source, "
            "or move them out of the folder if they do not belong to it")
    if not all_series:
        inside = [d.name for d in sorted(p.iterdir()) if d.is_dir() and list_dicom_series(d)][:5]
        hint = (f"; these subfolders hold DICOM series: {', '.join(inside)} (pass one of them)" if inside else
                "; give a NIfTI/NRRD/MHA file, or a folder of the .dcm files of one series")
        raise VolumeReadError(f"{p}: folder holds no readable DICOM series{hint}")
    uid = _choose_series(p, all_series, series)
    files = all_series[uid]
    if len(files) == 1:  # a multi-frame file is a volume; a single slice is rejected as 2D
        vol = _read_itk_file(Path(files[0]))
        return Volume(vol.array, vol.affine, str(p), None, {"dicom_series": uid})
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    reader.MetaDataDictionaryArrayUpdateOn()
    try:
        with _quiet_itk():
            img = reader.Execute()
    except RuntimeError as exc:
        raise VolumeReadError(f"{p}: cannot read DICOM series {uid} ({_first_line(exc)})") from exc
    _check_slice_spacing(reader, img, p, uid)
    return _sitk_to_volume(img, str(p), {"dicom_series": uid, "dicom_files": len(files)})


def _check_slice_spacing(reader, img, p: Path, uid: str, rel_tol: float = 0.1) -> None:
    """Reject a series whose slices are not evenly spaced along the slice normal (missing or duplicate slices)."""
    tag = "0020|0032"  # ImagePositionPatient, LPS mm
    n = len(reader.GetFileNames())
    if not all(reader.HasMetaDataKey(i, tag) for i in range(n)):
        return
    positions = np.array([[float(v) for v in reader.GetMetaData(i, tag).split("\\")] for i in range(n)])
    normal = np.array(img.GetDirection(), dtype=float).reshape(3, 3)[:, 2]
    order = np.argsort(positions @ normal, kind="stable")
    along = (positions @ normal)[order]
    names = [Path(reader.GetFileNames()[i]).name for i in order]
    gaps = np.diff(along)
    median = float(np.median(gaps))
    bad = np.flatnonzero(np.abs(gaps - median) > max(0.05, rel_tol * median))
    if bad.size:
        where = ", ".join(f"{gaps[b]:.2f} mm between {names[b]} ({along[b]:.2f} mm) and {names[b + 1]}"
                          for b in bad[:3])
        raise VolumeReadError(
            f"{p}: DICOM series {uid} has unevenly spaced slices (usual gap {median:.2f} mm; {where}); "
            "a slice is missing or duplicated, so voxel positions would be wrong. Complete the series, or "
            "resample it to even spacing (e.g. with dcm2niix or 3D Slicer) and pass the NIfTI"
        )


def _first_line(exc: Exception) -> str:
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    # ITK messages start with a file:line prefix; the useful text is usually last
    return lines[-1] if lines else type(exc).__name__


def warn_if_not_ct(vol: Volume) -> None:
    """Warn when intensities do not look like Hounsfield units (no air near −1000, a [0, 1]/[0, 255] range, NaNs)."""
    arr = vol.array
    sample = arr[:: max(1, arr.shape[0] // 64), :: max(1, arr.shape[1] // 64), :: max(1, arr.shape[2] // 64)]
    reasons = []
    finite = np.isfinite(sample) if np.issubdtype(sample.dtype, np.floating) else None
    if finite is not None and not finite.all():
        reasons.append("non-finite values (NaN/inf)")
        sample = sample[finite]
    if sample.size:
        lo, hi = float(np.min(sample)), float(np.max(sample))
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


# -- writing --------------------------------------------------------------------

def save_nifti(vol: Volume, path: str | Path) -> Path:
    """Write a Volume as NIfTI (affine stored as sform and qform, RAS+)."""
    return save_nifti_image(nifti_image(vol.array, vol.affine), path)


def nifti_image(array: np.ndarray, affine: np.ndarray):
    """A nibabel NIfTI-1 image of ``array`` with ``affine`` stored as sform and qform (RAS+)."""
    import nibabel as nib

    img = nib.Nifti1Image(np.asarray(array), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    return img


def save_nifti_image(img, path: str | Path) -> Path:
    """Write a nibabel image to ``path`` (.nii or .nii.gz) through a temporary file, so a kill or a full disk
    keeps the old file."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = ".nii.gz" if path.name.lower().endswith(".gz") else ".nii"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp{suffix}")  # a kill or a full disk keeps the old file
    try:
        nib.save(img, str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def save_volume(vol: Volume, path: str | Path) -> Path:
    """Write a Volume as NIfTI (.nii, .nii.gz) or an ITK format (.nrrd, .mha, .mhd; stored LPS+ as ITK does)."""
    import SimpleITK as sitk

    path = Path(path)
    if path.name.lower().endswith(NIFTI_SUFFIXES):
        return save_nifti(vol, path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(to_sitk(vol), str(path), True)
    return path
