"""Mask import: TotalSegmentator multilabel files and per-class folders, grid checks, resampling."""

from __future__ import annotations

import warnings

import nibabel as nib
import numpy as np
import pytest

from volprobe.errors import MaskError, VolprobeWarning
from volprobe.segmentation.masks import LabelMap, load_masks, totalsegmentator_class_map
from volprobe.segmentation.volume import Volume, load_volume


@pytest.fixture(scope="module")
def fixture_ct(totalseg_fixture) -> Volume:
    return load_volume(totalseg_fixture[0])


@pytest.fixture(scope="module")
def fixture_seg(totalseg_fixture) -> nib.Nifti1Image:
    return nib.load(str(totalseg_fixture[1]))


def _save(array: np.ndarray, affine: np.ndarray, path) -> None:
    img = nib.Nifti1Image(array, affine)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))


def _centroids(lm: LabelMap) -> dict[str, np.ndarray]:
    out = {}
    for i, name in lm.present().items():
        ijk = np.argwhere(lm.labels == i)
        out[name] = (ijk @ lm.affine[:3, :3].T + lm.affine[:3, 3]).mean(axis=0)
    return out


def test_real_totalsegmentator_file_names_from_header(totalseg_fixture, fixture_ct):
    lm = load_masks(totalseg_fixture[1], fixture_ct)
    present = set(lm.present().values())
    assert len(present) == 41
    assert {"liver", "spleen", "kidney_left", "kidney_right", "gallbladder", "aorta", "inferior_vena_cava"} <= present
    assert np.allclose(lm.affine, fixture_ct.affine)
    # the liver is on the patient's right (larger x) of the spleen, from the affine
    c = _centroids(lm)
    assert c["liver"][0] > c["spleen"][0]


def test_multilabel_without_header_uses_class_map(tmp_path, fixture_seg, totalseg_fixture):
    with_header = load_masks(totalseg_fixture[1])
    plain = tmp_path / "seg.nii.gz"
    _save(np.asarray(fixture_seg.dataobj), fixture_seg.affine, plain)
    assert len(nib.load(str(plain)).header.extensions) == 0
    lm = load_masks(plain)
    assert lm.present() == with_header.present()
    assert lm.names == totalsegmentator_class_map("total")


def test_multilabel_header_names_win_over_class_map(tmp_path, fixture_seg):
    """A file whose header says label 1 is 'tumour' must not be read as TotalSegmentator's spleen."""
    from totalsegmentator.nifti_ext_header import add_label_map_to_nifti

    data = np.zeros(fixture_seg.shape, np.uint8)
    data[10:20, 10:20, 5:10] = 1
    img = add_label_map_to_nifti(nib.Nifti1Image(data, fixture_seg.affine), {1: "tumour"})
    nib.save(img, str(tmp_path / "t.nii.gz"))
    assert load_masks(tmp_path / "t.nii.gz").present() == {1: "tumour"}


def test_per_class_folder_equals_multilabel(tmp_path, fixture_seg, fixture_ct, totalseg_fixture):
    ml = load_masks(totalseg_fixture[1])
    data = np.asarray(fixture_seg.dataobj)
    folder = tmp_path / "masks"
    folder.mkdir()
    for i, name in ml.present().items():
        _save((data == i).astype(np.uint8), fixture_seg.affine, folder / f"{name}.nii.gz")
    _save(np.zeros(data.shape, np.uint8), fixture_seg.affine, folder / "brain.nii.gz")  # absent class: empty file
    _save((data == 5).astype(np.uint8), fixture_seg.affine, folder / "my_lesion.nii.gz")  # unknown name, = liver
    (folder / "statistics.json").write_text("{}")  # ignored
    with pytest.warns(VolprobeWarning, match="overlapping masks.*my_lesion"):
        lm = load_masks(folder, fixture_ct)
    names = set(lm.present().values())
    assert names == (set(ml.present().values()) - {"liver"}) | {"my_lesion"}  # alphabetical: my_lesion overwrote liver
    class_ids = {n: i for i, n in totalsegmentator_class_map("total").items()}
    for i, name in lm.present().items():
        if name in class_ids:
            assert i == class_ids[name]
            np.testing.assert_array_equal(lm.mask(name), ml.mask(name))
        else:
            assert i > max(class_ids.values())
    np.testing.assert_array_equal(lm.mask("my_lesion"), ml.mask("liver"))


def test_off_grid_mask_names_both_geometries(tmp_path, fixture_seg, fixture_ct):
    shifted = fixture_seg.affine.copy()
    shifted[:3, 3] += [1.5, 0, 0]
    _save(np.asarray(fixture_seg.dataobj), shifted, tmp_path / "seg.nii.gz")
    with pytest.raises(MaskError) as err:
        load_masks(tmp_path / "seg.nii.gz", fixture_ct)
    msg = str(err.value)
    assert "not on the CT's voxel grid" in msg and "resample" in msg
    assert "origin (-176.46" in msg and "origin (-177.96" in msg  # mask and CT origins


def test_resampling_a_coarse_shifted_lps_mask_keeps_patient_positions(tmp_path, fixture_seg, fixture_ct):
    """Write the real label map on a 6 mm LPS grid shifted by a fraction of a voxel; resampled back
    onto the CT, each structure's centroid stays where it was in patient mm."""
    original = load_masks_from(fixture_seg)
    coarse_affine = np.diag([-6.0, -6.0, 6.0, 1.0])
    ras_max = fixture_ct.voxel_to_patient(np.array(fixture_ct.shape) - 1)
    coarse_affine[:3, 3] = [ras_max[0] + 1.0, ras_max[1] - 2.0, fixture_ct.affine[2, 3] + 1.5]
    shape = (64, 54, 17)
    # sample the original labels at each coarse voxel centre (nearest neighbour)
    centres = np.indices(shape).reshape(3, -1).T @ coarse_affine[:3, :3].T + coarse_affine[:3, 3]
    src = np.rint(fixture_ct.patient_to_voxel(centres)).astype(int)
    inside = ((src >= 0) & (src < np.array(fixture_ct.shape))).all(axis=1)
    coarse = np.zeros(len(centres), np.uint8)
    coarse[inside] = original.labels[tuple(src[inside].T)]
    _save(coarse.reshape(shape), coarse_affine, tmp_path / "coarse.nii.gz")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", VolprobeWarning)  # tiny structures may vanish at 6 mm
        lm = load_masks(tmp_path / "coarse.nii.gz", fixture_ct, resample=True)
    assert lm.shape == fixture_ct.shape and np.allclose(lm.affine, fixture_ct.affine)
    before, after = _centroids(original), _centroids(lm)
    big = [n for i, n in original.present().items() if original.mask(n).sum() > 500]
    assert {"liver", "spleen", "kidney_left", "kidney_right"} <= set(big)
    for name in big:
        # double nearest-neighbour quantisation moves a centroid by at most about half a coarse voxel
        assert np.abs(after[name] - before[name]).max() < 3.5, (name, after[name] - before[name])
    dice = 2 * (lm.mask("liver") & original.mask("liver")).sum() / (lm.mask("liver").sum() + original.mask("liver").sum())
    assert dice > 0.85


def load_masks_from(img: nib.Nifti1Image) -> LabelMap:
    return LabelMap(np.asarray(img.dataobj), img.affine, totalsegmentator_class_map("total"))


def test_resampling_a_box_defined_in_patient_mm(tmp_path):
    """A box known in RAS mm, stored on an oblique 2 mm grid, lands on the CT's voxels inside the box."""
    ct = Volume(np.full((40, 40, 20), -1000, np.int16), np.diag([3.0, 3.0, 3.0, 1.0]))
    lo, hi = np.array([30.0, 40.0, 15.0]), np.array([60.0, 75.0, 40.0])
    c, s = np.cos(np.radians(30)), np.sin(np.radians(30))
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([-2.0, 2.0, 2.0])
    shape = (80, 80, 40)
    affine[:3, 3] = (lo + hi) / 2 + [0.3, -0.7, 0.5] - affine[:3, :3] @ np.array(shape) / 2  # box mid-field
    centres = np.indices(shape).reshape(3, -1).T @ affine[:3, :3].T + affine[:3, 3]
    box = ((centres >= lo) & (centres <= hi)).all(axis=1).reshape(shape).astype(np.uint8)
    _save(box, affine, tmp_path / "box.nii.gz")
    lm = load_masks(tmp_path / "box.nii.gz", ct, resample=True, task="total")
    ct_centres = ct.voxel_to_patient(np.indices(ct.shape).reshape(3, -1).T)
    labelled = lm.labels.reshape(-1) > 0
    margin = 2.0  # the mask's voxels are 2 mm: its surface is within ~1.8 mm of the true box
    deep_inside = ((ct_centres >= lo + margin) & (ct_centres <= hi - margin)).all(axis=1)
    far_outside = ((ct_centres < lo - margin) | (ct_centres > hi + margin)).any(axis=1)
    assert deep_inside.sum() > 100
    assert labelled[deep_inside].all()
    assert not labelled[far_outside].any()


def test_resampling_without_overlap_and_lost_structures(tmp_path):
    ct = Volume(np.zeros((10, 10, 10), np.int16), np.eye(4))
    far = np.diag([1.0, 1.0, 1.0, 1.0])
    far[:3, 3] = 500
    data = np.zeros((5, 5, 5), np.uint8)
    data[1:4, 1:4, 1:4] = 1
    _save(data, far, tmp_path / "far.nii.gz")
    with pytest.raises(MaskError, match="does not overlap the CT"):
        load_masks(tmp_path / "far.nii.gz", ct, resample=True)
    near = np.eye(4)
    near[:3, 3] = [8, 8, 8]  # label 1 inside the CT, label 2 beyond its edge
    data[4, 4, 4] = 2
    _save(data, near, tmp_path / "near.nii.gz")
    with pytest.warns(VolprobeWarning, match="lost when resampling.*kidney_right"):
        lm = load_masks(tmp_path / "near.nii.gz", ct, resample=True)
    assert set(lm.present().values()) == {"spleen"}


def test_empty_masks(tmp_path):
    _save(np.zeros((5, 5, 5), np.uint8), np.eye(4), tmp_path / "empty.nii.gz")
    with pytest.raises(MaskError, match="masks are empty"):
        load_masks(tmp_path / "empty.nii.gz")
    folder = tmp_path / "folder"
    folder.mkdir()
    for name in ("liver", "spleen"):
        _save(np.zeros((5, 5, 5), np.uint8), np.eye(4), folder / f"{name}.nii.gz")
    with pytest.raises(MaskError, match="masks are empty"):
        load_masks(folder)
    (tmp_path / "none").mkdir()
    with pytest.raises(MaskError, match="no .nii/.nii.gz mask files"):
        load_masks(tmp_path / "none")


def test_missing_and_unreadable(tmp_path, totalseg_fixture):
    with pytest.raises(FileNotFoundError, match="masks not found"):
        load_masks(tmp_path / "nope.nii.gz")
    data = totalseg_fixture[1].read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(MaskError, match="cut.nii.gz: corrupt gzip file: it is truncated"):
        load_masks(tmp_path / "cut.nii.gz")


@pytest.mark.parametrize("values, match", [
    (np.array([0.0, 0.3, 0.9]), "probability map"),
    (np.array([0, -1, 2], np.int16), "negative labels"),
    (np.array([0, 200, 201], np.uint8), r"label ids \[200, 201\] have no name"),
])
def test_bad_label_values(tmp_path, values, match):
    data = np.zeros((6, 6, 6), values.dtype)
    data[1, 1, 1:4] = values
    _save(data, np.eye(4), tmp_path / "m.nii.gz")
    with pytest.raises(MaskError, match=match):
        load_masks(tmp_path / "m.nii.gz")


def test_folder_rejects_multilabel_file_and_mixed_grids(tmp_path, fixture_seg):
    folder = tmp_path / "a"
    folder.mkdir()
    _save(np.asarray(fixture_seg.dataobj), fixture_seg.affine, folder / "ct.nii.gz")
    with pytest.raises(MaskError, match="multilabel map.*pass the file itself"):
        load_masks(folder)
    folder = tmp_path / "b"
    folder.mkdir()
    one = np.zeros((5, 5, 5), np.uint8)
    one[2, 2, 2] = 1
    _save(one, np.eye(4), folder / "liver.nii.gz")
    _save(one, np.diag([2.0, 2.0, 2.0, 1.0]), folder / "spleen.nii.gz")
    with pytest.raises(MaskError, match=r"spleen.nii.gz: not on the same grid as liver.nii.gz"):
        load_masks(folder)


def test_mask_without_orientation(tmp_path):
    one = np.zeros((5, 5, 5), np.uint8)
    one[2, 2, 2] = 1
    nib.save(nib.Nifti1Image(one, None), str(tmp_path / "m.nii.gz"))
    with pytest.raises(MaskError, match="orientation is unknown"):
        load_masks(tmp_path / "m.nii.gz")
