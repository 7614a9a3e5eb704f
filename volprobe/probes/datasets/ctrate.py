"""CT-RATE volumes as users download them: Hounsfield units and geometry from CT-RATE's metadata CSV.

3D-RAD and CT-SpatialVQA use CT-RATE's chest CTs. CT-RATE's first NIfTI release stores the scanner's
raw values and relies on a metadata CSV per split (``dataset/metadata/train_metadata.csv``,
``validation_metadata.csv``; one row per ``VolumeName``) for the rescale to HU (``RescaleSlope``,
``RescaleIntercept``) and the geometry (``XYSpacing`` such as ``"[0.75, 0.75]"``, ``ZSpacing``,
``ImagePositionPatient``, ``ImageOrientationPatient``); its later "fixed" release writes them into the
files. :func:`apply_metadata` does what CT-RATE's own fix script does (HU = raw × slope + intercept;
spacing, origin and direction from the row, DICOM LPS converted to volprobe's RAS affine), and leaves a
file that is already in HU (air near -1000) unchanged, so passing the CSV for a fixed file is harmless.

:func:`uncorrected_reasons` tells when a CT-RATE-named volume looks uncorrected (no air-like values,
or the 1 x 1 x 1 mm spacing of a file without its spacing); the warning says what to pass.
``probe import 3drad|ctspatialvqa --ctrate-metadata CSV`` stores each volume's row in its items
(``metadata["ctrate_metadata"]``); ``probe run`` applies the rows (or ``--ctrate-metadata CSV`` given to
it) whenever it reads a volume (:func:`volume_reader_for`).
"""

from __future__ import annotations

import ast
import threading
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np

from volprobe.errors import FormatError, VolprobeWarning
from volprobe.probes.datasets.common import (first_few, header_key, iter_csv_rows, parse_ctrate_name,
                                             strip_volume_suffix)

REQUIRED_COLUMNS = ("VolumeName", "RescaleSlope", "RescaleIntercept", "XYSpacing", "ZSpacing")
GEOMETRY_COLUMNS = ("ImagePositionPatient", "ImageOrientationPatient")
#: Stored values below this (HU) mean the file is already rescaled: raw CT-RATE values start at 0.
AIR_BELOW_HU = -500.0
#: Item metadata key holding a volume's metadata row.
METADATA_KEY = "ctrate_metadata"


@dataclass(frozen=True)
class CtRateRow:
    """One volume's row of CT-RATE's metadata.

    Attributes:
        volume: volume name without file ending (``valid_1_a_1``).
        slope, intercept: HU = stored value × slope + intercept.
        spacing: (x, y, z) voxel size in mm (``XYSpacing`` then ``ZSpacing``).
        position: ``ImagePositionPatient`` (DICOM LPS mm) or None.
        orientation: ``ImageOrientationPatient`` (row and column direction cosines, LPS) or None.
    """

    volume: str
    slope: float
    intercept: float
    spacing: tuple[float, float, float]
    position: tuple[float, float, float] | None = None
    orientation: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "CtRateRow":
        def tup(v):
            return None if v is None else tuple(float(x) for x in v)

        return cls(volume=str(data["volume"]), slope=float(data["slope"]), intercept=float(data["intercept"]),
                   spacing=tup(data["spacing"]), position=tup(data.get("position")),  # type: ignore[arg-type]
                   orientation=tup(data.get("orientation")))


def _numbers(text: str, n: int, where: str, column: str) -> tuple[float, ...]:
    try:
        value = ast.literal_eval(text.strip()) if text.strip().startswith(("[", "(")) else [float(v) for v in text.split(",")]
        values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (ValueError, SyntaxError, TypeError) as exc:
        raise FormatError(f"{where}: {column} {text!r} is not a list of {n} numbers") from exc
    if len(values) != n or not all(np.isfinite(values)):
        raise FormatError(f"{where}: {column} {text!r}: expected {n} finite numbers")
    return values


def read_metadata(path: str | Path) -> dict[str, CtRateRow]:
    """CT-RATE's metadata CSV → rows by volume name (without ending).

    Raises:
        FileNotFoundError: no such file.
        FormatError: a missing column or a malformed value (file and line named).
    """
    header, rows = iter_csv_rows(path)
    col = {header_key(h): i for i, h in reversed(list(enumerate(header)))}
    missing = [c for c in REQUIRED_COLUMNS if header_key(c) not in col]
    if missing:
        raise FormatError(f"{path}:1: missing column(s) {', '.join(missing)}; a CT-RATE metadata CSV "
                          f"(dataset/metadata/*_metadata.csv) has {', '.join(REQUIRED_COLUMNS)}")
    out: dict[str, CtRateRow] = {}
    for line, row in rows:
        where = f"{path}:{line}"
        get = {c: row[col[header_key(c)]].strip() for c in REQUIRED_COLUMNS + GEOMETRY_COLUMNS if header_key(c) in col}
        name = strip_volume_suffix(get["VolumeName"])
        if not name:
            raise FormatError(f"{where}: empty VolumeName")
        (slope,), (intercept,) = (_numbers(get[c], 1, where, c) for c in ("RescaleSlope", "RescaleIntercept"))
        xy = _numbers(get["XYSpacing"], 2, where, "XYSpacing")
        (z,) = _numbers(get["ZSpacing"], 1, where, "ZSpacing")
        if min(*xy, z) <= 0 or slope == 0:
            raise FormatError(f"{where}: spacing must be positive and RescaleSlope non-zero")
        position = _numbers(get["ImagePositionPatient"], 3, where, "ImagePositionPatient") \
            if get.get("ImagePositionPatient") else None
        orientation = _numbers(get["ImageOrientationPatient"], 6, where, "ImageOrientationPatient") \
            if get.get("ImageOrientationPatient") else None
        out[name] = CtRateRow(name, slope, intercept, (xy[0], xy[1], z), position, orientation)  # type: ignore[arg-type]
    if not out:
        raise FormatError(f"{path}: no rows")
    return out


def metadata_affine(row: CtRateRow, current: np.ndarray | None = None) -> np.ndarray:
    """The voxel→RAS affine a row gives: from position and orientation when it has them (array axes = DICOM
    columns, rows, slices; direction = row cosine, column cosine, their cross product, as CT-RATE's fix
    script sets them), else ``current``'s directions and origin with the row's spacing."""
    spacing = np.asarray(row.spacing, dtype=float)
    if row.position is not None and row.orientation is not None:
        row_cos, col_cos = np.asarray(row.orientation[:3]), np.asarray(row.orientation[3:])
        direction = np.column_stack([row_cos, col_cos, np.cross(row_cos, col_cos)])
        lps = np.eye(4)
        lps[:3, :3] = direction * spacing
        lps[:3, 3] = row.position
        return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps
    if current is None:
        raise ValueError("a row without position and orientation needs the file's own affine")
    affine = np.array(current, dtype=float)
    affine[:3, :3] = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0) * spacing
    return affine


def apply_metadata(volume, row: CtRateRow):
    """``volume`` in HU with the row's geometry, and what was done (a dict recorded in ``volume.meta``).

    Values are rescaled only when they look raw (nothing below :data:`AIR_BELOW_HU`); a file already in HU
    keeps its values. Integer results are stored as int16 when they fit (as CT-RATE's fixed files).
    """
    from volprobe.segmentation.volume import Volume

    array = volume.array
    minimum = float(np.min(array))
    done: dict[str, Any] = {"metadata_row": row.volume}
    if (row.slope, row.intercept) == (1.0, 0.0):
        done["rescale"] = "none needed (slope 1, intercept 0)"
    elif minimum < AIR_BELOW_HU:
        done["rescale"] = f"not applied: values already in HU (minimum {minimum:g})"
    else:
        scaled = array.astype(np.float32) * np.float32(row.slope) + np.float32(row.intercept)
        if float(row.slope).is_integer() and float(row.intercept).is_integer() and \
                -32768 <= scaled.min() and scaled.max() <= 32767:
            scaled = scaled.astype(np.int16)
        array = scaled
        done["rescale"] = f"HU = raw x {row.slope:g} + {row.intercept:g}"
    affine = metadata_affine(row, volume.affine)
    done["geometry"] = ("position, orientation and spacing from the row" if row.position is not None and
                        row.orientation is not None else "spacing from the row")
    return Volume(np.ascontiguousarray(array), affine, volume.source, volume.patient,
                  {**volume.meta, METADATA_KEY: done}), done


def uncorrected_reasons(volume) -> list[str]:
    """Why a volume looks like an uncorrected CT-RATE file (empty when it does not)."""
    reasons = []
    minimum = float(np.min(volume.array))
    if minimum >= AIR_BELOW_HU:
        reasons.append(f"values start at {minimum:g}, with no air near -1000 HU (raw values before the rescale)")
    if np.allclose(volume.spacing, 1.0):
        reasons.append("spacing 1 x 1 x 1 mm (the file lacks CT-RATE's XYSpacing/ZSpacing)")
    return reasons


def header_reasons(path: str | Path) -> list[str]:
    """:func:`uncorrected_reasons` from a NIfTI header alone (cheap: no voxel data is read)."""
    import nibabel as nib

    try:
        img = nib.load(str(path))
    except Exception:  # an unreadable file is reported when it is read for a run
        return []
    reasons = []
    slope, inter = getattr(img.dataobj, "slope", 1.0), getattr(img.dataobj, "inter", 0.0)
    rescaled = (inter is not None and np.isfinite(inter) and inter != 0) or \
        (slope is not None and np.isfinite(slope) and slope != 1)
    if np.issubdtype(img.get_data_dtype(), np.unsignedinteger) and not rescaled:
        reasons.append(f"stored as {img.get_data_dtype()} without a rescale (raw values)")
    if np.allclose(img.header.get_zooms()[:3], 1.0):
        reasons.append("spacing 1 x 1 x 1 mm")
    return reasons


PASS_METADATA = ("pass CT-RATE's metadata CSV with --ctrate-metadata (dataset/metadata/train_metadata.csv or "
                 "validation_metadata.csv) or use the fixed release, or Hounsfield units and spacing will be wrong")


def missing_metadata_hint(names: list[str]) -> str:
    return f"{len(names)} CT-RATE volume(s) look uncorrected ({first_few(names)}); {PASS_METADATA}"


def attach_metadata(items: Iterable, rows: dict[str, CtRateRow]) -> list[str]:
    """Store each item's row in ``item.metadata["ctrate_metadata"]``; returns the cases with no row (sorted)."""
    missing = set()
    for item in items:
        row = rows.get(strip_volume_suffix(item.case or ""))
        if row is None:
            missing.add(item.case or item.id)
        else:
            item.metadata[METADATA_KEY] = row.to_dict()
    return sorted(missing)


def uncorrected_volumes(items: Iterable) -> list[str]:
    """CT-RATE-named volumes of items without a metadata row whose NIfTI header looks uncorrected."""
    seen: dict[str, bool] = {}
    for item in items:
        case = item.case or ""
        if case in seen or not item.volume_path or METADATA_KEY in item.metadata or parse_ctrate_name(case) is None:
            continue
        seen[case] = bool(header_reasons(item.volume_path))
    return sorted(c for c, bad in seen.items() if bad)


class CtRateReader:
    """The run engine's volume reader for CT-RATE volumes (``reader(path, case, patient) -> Volume``).

    A case with a metadata row (from the CSV, else from its items) is read and corrected by
    :func:`apply_metadata`; a row with position and orientation supplies the geometry, so the file's own
    header orientation is not needed. A CT-RATE-named case without a row that looks uncorrected gets one
    :class:`VolprobeWarning` (the first such volume; later ones are counted in ``uncorrected``).
    """

    def __init__(self, rows: dict[str, CtRateRow]):
        self.rows = rows
        self.uncorrected: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, path: Path, case: str, patient: str | None):
        from volprobe.segmentation.volume import load_volume

        row = self.rows.get(strip_volume_suffix(case))
        if row is None:
            ctrate = parse_ctrate_name(case) is not None
            volume = load_volume(path, patient=patient, check_ct=not ctrate)  # CT-RATE names get the warning below
            reasons = uncorrected_reasons(volume) if ctrate else []
            if reasons:
                with self._lock:
                    self.uncorrected.append(case)
                    first = len(self.uncorrected) == 1
                if first:
                    warnings.warn(f"{path}: looks like an uncorrected CT-RATE volume ({'; '.join(reasons)}); "
                                  f"{PASS_METADATA}", VolprobeWarning, stacklevel=2)
            return volume
        return apply_metadata(_read_for_row(path, row, patient), row)[0]


def _read_for_row(path: Path, row: CtRateRow, patient: str | None):
    """The stored volume; a NIfTI whose header lacks orientation is read anyway when the row has the geometry."""
    from volprobe.errors import VolumeReadError
    from volprobe.segmentation.volume import Volume, load_volume

    try:
        return load_volume(path, patient=patient, check_ct=False)
    except VolumeReadError:
        if row.position is None or row.orientation is None or not str(path).lower().endswith((".nii", ".nii.gz")):
            raise
    import nibabel as nib

    img = nib.load(str(path))
    data = np.asarray(np.asanyarray(img.dataobj))
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise VolumeReadError(f"{path}: expected a 3D CT, got shape {data.shape}")
    return Volume(data, metadata_affine(row), str(path), patient)


def volume_reader_for(items: Iterable, csv: str | Path | None) -> Callable | None:
    """The run's volume reader: a :class:`CtRateReader` over the CSV's rows (when given) and the rows stored
    in the items; None when there is neither a row nor a CT-RATE-named case (plain reading)."""
    items = list(items)
    rows: dict[str, CtRateRow] = {}
    for item in items:
        stored = item.metadata.get(METADATA_KEY)
        if stored:
            rows[strip_volume_suffix(item.case or "")] = CtRateRow.from_dict(stored)
    if csv is not None:
        rows.update(read_metadata(csv))
    if not rows and not any(parse_ctrate_name(it.case or "") for it in items):
        return None
    return CtRateReader(rows)


def add_to_import(result, csv: str | Path | None) -> None:
    """After ``probe import``: store the CSV's rows in the items (warning about cases without one), and warn
    about CT-RATE volumes whose headers look uncorrected and have no row."""
    if csv is not None:
        missing = attach_metadata(result.items, read_metadata(csv))
        if missing:
            result.warn(f"{len(missing)} of {len({it.case for it in result.items})} cases have no row in {csv} "
                        f"(first: {first_few(missing)}); their volumes are read as stored")
    bad = uncorrected_volumes(result.items)
    if bad:
        result.warn(missing_metadata_hint(bad))
