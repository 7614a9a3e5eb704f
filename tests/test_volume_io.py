"""CT input: every format lands in the same patient RAS+ space, and bad input gets a specific error.

The NRRD, MHA and DICOM files are written by SimpleITK from the NIfTI file (SimpleITK's own
NIfTI→LPS conversion), so they do not share volprobe's reading code.
"""

from __future__ import annotations

import gzip
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk

from volprobe.errors import VolprobeWarning, VolumeReadError
from volprobe.segmentation.volume import Volume, load_volume, save_nifti, save_volume

SHAPE = (9, 8, 7)
MARKER_IJK = (2, 5, 4)  # one voxel at 3000 HU, the only one above 2000
SPACING = (0.8, 0.9, 2.5)
ORIGIN = np.array([10.0, -20.0, 30.0])


def _rotation(ax: float, ay: float, az: float) -> np.ndarray:
    def rot(axis: int, deg: float) -> np.ndarray:
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        m = np.eye(3)
        a, b = [n for n in range(3) if n != axis]
        m[a, a], m[a, b], m[b, a], m[b, b] = c, -s, s, c
        return m
    return rot(2, az) @ rot(1, ay) @ rot(0, ax)


#: voxel→RAS linear part for each stored orientation
LINEAR = {
    "RAS": np.diag(SPACING),
    "LPS": np.diag(SPACING) * np.array([-1.0, -1.0, 1.0])[:, None],  # i runs to the patient's left, j posterior
    "oblique": _rotation(20, -10, 35) @ np.diag(SPACING),
}


def make_ct(orientation: str = "RAS", seed: int = 0) -> Volume:
    rng = np.random.default_rng(seed)
    arr = rng.integers(-1000, 1500, size=SHAPE).astype(np.int16)
    arr[0] = -1000  # air
    arr[MARKER_IJK] = 3000
    affine = np.eye(4)
    affine[:3, :3] = LINEAR[orientation]
    affine[:3, 3] = ORIGIN
    return Volume(arr, affine, source="memory")


def write_dicom_series(img: sitk.Image, folder: Path, uid: str = "1.2.826.0.1.3680043.2.1125.7",
                       skip: tuple[int, ...] = ()) -> Path:
    """One CT slice file per k, with position/orientation tags taken from the 3D image (oblique included)."""
    folder.mkdir(parents=True, exist_ok=True)
    d = img.GetDirection()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for k in range(img.GetDepth()):
        if k in skip:
            continue
        sl = img[:, :, k]
        tags = {
            "0008|0060": "CT", "0008|0016": "1.2.840.10008.5.1.4.1.1.2", "0008|0018": f"{uid}.{k + 1}",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1", "0020|000e": uid, "0020|0013": str(k + 1),
            "0020|0037": "\\".join(map(str, (d[0], d[3], d[6], d[1], d[4], d[7]))),
            "0020|0032": "\\".join(map(str, img.TransformIndexToPhysicalPoint((0, 0, k)))),
            "0018|0050": str(img.GetSpacing()[2]), "0008|103e": f"series {uid[-1]}",
        }
        for tag, value in tags.items():
            sl.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"slice{k:03d}.dcm"))
        writer.Execute(sl)
    return folder


def write_nrrd_ras(vol: Volume, path: Path) -> Path:
    """A NRRD whose header declares RAS space (as some tools write), built by hand."""
    def vec(v):
        return "(" + ",".join(f"{x:.10g}" for x in v) + ")"
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: right-anterior-superior\n"
        f"sizes: {' '.join(map(str, vol.shape))}\n"
        f"space directions: {' '.join(vec(vol.affine[:3, n]) for n in range(3))}\n"
        f"kinds: domain domain domain\nendian: little\nencoding: raw\nspace origin: {vec(vol.affine[:3, 3])}\n\n"
    )
    data = np.ascontiguousarray(vol.array.astype("<i2").transpose(2, 1, 0)).tobytes()  # i varies fastest
    path.write_bytes(header.encode() + data)
    return path


def all_formats(ref: Volume, tmp: Path) -> dict[str, Path]:
    nii = save_nifti(ref, tmp / "ct.nii.gz")
    img = sitk.ReadImage(str(nii))  # SimpleITK's own reading of the NIfTI
    paths = {"nii.gz": nii, "nii": save_nifti(ref, tmp / "ct.nii")}
    for ext in ("nrrd", "mha"):
        sitk.WriteImage(img, str(tmp / f"ct.{ext}"))
        paths[ext] = tmp / f"ct.{ext}"
    paths["dicom"] = write_dicom_series(img, tmp / "dicom")
    paths["nrrd-ras"] = write_nrrd_ras(ref, tmp / "ct_ras.nrrd")
    return paths


def assert_same_patient_space(vol: Volume, ref: Volume) -> None:
    """Every voxel of ``vol`` sits at a voxel centre of ``ref`` in patient mm, with the same value."""
    ijk = np.indices(vol.shape).reshape(3, -1).T
    in_ref = ref.patient_to_voxel(vol.voxel_to_patient(ijk))
    assert np.allclose(in_ref, np.rint(in_ref), atol=1e-3), "voxel centres do not coincide"
    idx = np.rint(in_ref).astype(int)
    assert ((idx >= 0) & (idx < np.array(ref.shape))).all(), "voxels fall outside the reference grid"
    np.testing.assert_array_equal(vol.array[tuple(ijk.T)], ref.array[tuple(idx.T)])


def marker_ras(vol: Volume) -> np.ndarray:
    ijk = np.argwhere(vol.array > 2000)
    assert len(ijk) == 1
    return vol.voxel_to_patient(ijk)[0]


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_every_format_lands_in_the_same_patient_space(tmp_path, orientation):
    ref = make_ct(orientation)
    expected = ORIGIN + LINEAR[orientation] @ np.array(MARKER_IJK, float)
    for fmt, path in all_formats(ref, tmp_path).items():
        vol = load_volume(path)
        assert vol.shape == SHAPE, fmt
        assert np.allclose(vol.spacing, SPACING, atol=1e-4), (fmt, vol.spacing)
        assert_same_patient_space(vol, ref)
        np.testing.assert_allclose(marker_ras(vol), expected, atol=1e-3, err_msg=fmt)


def test_lps_marker_is_on_the_patients_left_of_origin_by_hand(tmp_path):
    """Hand-computed: LPS-stored i runs to the patient's left, so x = 10 - 0.8*i (RAS)."""
    vol = load_volume(all_formats(make_ct("LPS"), tmp_path)["mha"])
    assert vol.axcodes == ("L", "P", "S")
    np.testing.assert_allclose(marker_ras(vol), [10 - 0.8 * 2, -20 - 0.9 * 5, 30 + 2.5 * 4], atol=1e-4)


def test_dicom_meta_and_content_hash_independent_of_format(tmp_path):
    ref = make_ct("RAS")
    paths = all_formats(ref, tmp_path)
    hashes = {fmt: load_volume(paths[fmt]).content_hash for fmt in ("nii.gz", "nii", "mha", "nrrd")}
    assert len(set(hashes.values())) == 1, hashes
    assert load_volume(paths["dicom"]).meta["dicom_series"] == "1.2.826.0.1.3680043.2.1125.7"
    other = ref.with_array(ref.array + 1)
    assert other.content_hash != ref.content_hash


@pytest.mark.parametrize("ext", ["nrrd", "mha", "nii.gz"])
def test_save_volume_round_trip_and_itk_sees_lps(tmp_path, ext):
    ref = make_ct("oblique")
    path = save_volume(ref, tmp_path / f"out.{ext}")
    assert_same_patient_space(load_volume(path), ref)
    itk = sitk.ReadImage(str(path))  # ITK's physical space is LPS: x and y negated
    lps = np.array(itk.TransformIndexToPhysicalPoint(MARKER_IJK))
    np.testing.assert_allclose(lps * [-1, -1, 1], marker_ras(ref), atol=1e-3)


# -- errors ---------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.nii.gz"):
        load_volume(tmp_path / "nope.nii.gz")


@pytest.mark.parametrize("name", ["junk.nii.gz", "junk.nii", "junk.nrrd", "junk.mha", "junk.xyz"])
def test_unreadable_file(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"this is not an image\n" * 20)
    with pytest.raises(VolumeReadError, match="cannot read"):
        load_volume(path)


@pytest.mark.parametrize("ext", ["nii.gz", "nii", "mha"])
def test_truncated_file(tmp_path, ext):
    rng = np.random.default_rng(1)
    vol = Volume(rng.integers(-1000, 1000, size=(40, 40, 40)).astype(np.int16), np.eye(4))
    path = save_volume(vol, tmp_path / f"ct.{ext}")
    if ext == "mha":  # an uncompressed MHA, so cutting it removes voxels, not a zip stream
        sitk.WriteImage(sitk.ReadImage(str(path)), str(path), False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VolumeReadError, match="truncated"):
        load_volume(path)


def test_gzip_stream_cut_inside_header(tmp_path):
    path = tmp_path / "ct.nii.gz"
    path.write_bytes(gzip.compress(b"\x5c\x01" + b"\0" * 50)[:30])
    with pytest.raises(VolumeReadError, match=str(path.name)):
        load_volume(path)


@pytest.mark.parametrize("shape", [(10, 12), (10, 12, 1), (1, 10, 12)])
def test_2d_image(tmp_path, shape):
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(shape, np.int16), np.eye(4)), str(path))
    with pytest.raises(VolumeReadError, match="2D image"):
        load_volume(path)


def test_single_dicom_slice_is_2d(tmp_path):
    img = sitk.ReadImage(str(save_nifti(make_ct(), tmp_path / "ct.nii.gz")))
    folder = write_dicom_series(img, tmp_path / "one", skip=tuple(range(1, SHAPE[2])))
    with pytest.raises(VolumeReadError, match="2D image"):
        load_volume(folder)


def test_4d_nifti_names_the_extra_axis(tmp_path):
    path = tmp_path / "dyn.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 6, 6, 3), np.int16), np.eye(4)), str(path))
    with pytest.raises(VolumeReadError, match=r"4D image.*axis 3 \(t\) has 3 entries"):
        load_volume(path)


def test_4d_mha_names_the_extra_axis(tmp_path):
    path = tmp_path / "dyn.mha"
    frames = [sitk.GetImageFromArray(np.zeros((5, 6, 7), np.int16)) for _ in range(4)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(path))
    with pytest.raises(VolumeReadError, match=r"axis 3 \(t\) has 4 entries"):
        load_volume(path)


def test_trailing_singleton_axis_is_accepted(tmp_path):
    path = tmp_path / "ct.nii.gz"
    arr = make_ct().array
    nib.save(nib.Nifti1Image(arr[..., None], np.eye(4)), str(path))
    assert load_volume(path).shape == SHAPE


def test_nifti_without_orientation(tmp_path):
    path = tmp_path / "ct.nii.gz"
    img = nib.Nifti1Image(make_ct().array, None)  # qform and sform codes 0
    nib.save(img, str(path))
    with pytest.raises(VolumeReadError, match="neither sform nor qform"):
        load_volume(path)


def test_several_dicom_series_are_listed_with_how_to_choose(tmp_path):
    img = sitk.ReadImage(str(save_nifti(make_ct(), tmp_path / "ct.nii.gz")))
    folder = tmp_path / "mixed"
    write_dicom_series(img, folder, uid="1.2.826.0.1.3680043.2.1125.7")
    img2 = sitk.ReadImage(str(save_nifti(make_ct(seed=5), tmp_path / "ct2.nii.gz")))
    write_dicom_series(img2, tmp_path / "tmp2", uid="1.2.826.0.1.3680043.2.1125.8")
    for f in (tmp_path / "tmp2").iterdir():
        f.rename(folder / f"b_{f.name}")
    with pytest.raises(VolumeReadError) as err:
        load_volume(folder)
    msg = str(err.value)
    assert "2 DICOM series" in msg and "1.2.826.0.1.3680043.2.1125.7" in msg and "1.2.826.0.1.3680043.2.1125.8" in msg
    assert "series=" in msg and "--series" in msg and "7 files" in msg
    chosen = load_volume(folder, series="1.2.826.0.1.3680043.2.1125.8")
    assert_same_patient_space(chosen, make_ct(seed=5))
    with pytest.raises(VolumeReadError, match="matches several series"):
        load_volume(folder, series="1.2.826")
    with pytest.raises(VolumeReadError, match="matches no series"):
        load_volume(folder, series="9.9")


def test_dicom_missing_slice(tmp_path):
    img = sitk.ReadImage(str(save_nifti(make_ct(), tmp_path / "ct.nii.gz")))
    folder = write_dicom_series(img, tmp_path / "gap", skip=(3,))
    with pytest.raises(VolumeReadError, match="unevenly spaced slices.*missing"):
        load_volume(folder)


def test_folder_without_dicom_points_to_subfolders(tmp_path):
    img = sitk.ReadImage(str(save_nifti(make_ct(), tmp_path / "ct.nii.gz")))
    write_dicom_series(img, tmp_path / "study" / "series_a")
    with pytest.raises(VolumeReadError, match="no readable DICOM series.*series_a"):
        load_volume(tmp_path / "study")


def test_npy_has_no_geometry(tmp_path):
    np.save(tmp_path / "ct.npy", np.zeros(SHAPE))
    with pytest.raises(VolumeReadError, match="no voxel-to-patient geometry"):
        load_volume(tmp_path / "ct.npy")


@pytest.mark.parametrize("array, reason", [
    (np.random.default_rng(0).random(SHAPE).astype(np.float32), "normalised"),
    (np.random.default_rng(0).integers(0, 256, SHAPE).astype(np.uint8), "8-bit"),
    (np.full(SHAPE, np.nan, np.float32), "non-finite"),
])
def test_non_ct_intensities_warn_but_load(tmp_path, array, reason):
    path = save_nifti(Volume(array, np.eye(4)), tmp_path / "x.nii.gz")
    with pytest.warns(VolprobeWarning, match=reason):
        vol = load_volume(path)
    assert vol.shape == SHAPE
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_volume(path, check_ct=False)


def test_ct_intensities_do_not_warn(tmp_path, totalseg_fixture):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        vol = load_volume(totalseg_fixture[0], patient="p1")
    assert vol.patient == "p1" and vol.axcodes == ("R", "A", "S") and vol.spacing == (3.0, 3.0, 3.0)
