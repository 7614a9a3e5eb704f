"""Model preprocessing (MONAI): orientation from the affine, anatomy placement, windows, depth handling."""

from __future__ import annotations

import numpy as np
import pytest
from tinymodels.volumes import SHAPE_RAS, phantom_ras, single_axial_slice, stored

from volprobe.probes.models import preprocessing as pp
from volprobe.segmentation.volume import Volume

STORAGES = ["RAS", "LPS", "LAS", "SAR", "PIL"]


@pytest.fixture(scope="module")
def reference():
    vol = stored("RAS")
    return {"m3d": pp.m3d_volume(vol, size=(8, 16, 16))[0], "radfm": pp.radfm_volume(vol, size=16)[0],
            "slices": pp.slice_images(vol, count=4)[0]}


@pytest.mark.parametrize("codes", STORAGES)
def test_same_anatomy_any_storage_gives_the_same_model_input(codes, reference):
    vol = stored(codes)
    assert np.array_equal(pp.m3d_volume(vol, size=(8, 16, 16))[0], reference["m3d"])
    assert np.array_equal(pp.radfm_volume(vol, size=16)[0], reference["radfm"])
    assert all(np.array_equal(a, b) for a, b in zip(pp.slice_images(vol, count=4)[0], reference["slices"]))


def test_oblique_affine_maps_to_nearest_axes(reference):
    vol = stored("LPS", oblique_deg=12.0)
    assert np.array_equal(pp.m3d_volume(vol, size=(8, 16, 16))[0], reference["m3d"])


def test_reorient_puts_patient_left_posterior_superior_on_increasing_indices():
    arr, affine = pp.reorient(stored("RAS"))
    centre = affine @ np.array([0, 0, 0, 1.0])
    step = affine[:3, :3] @ np.ones(3)
    assert step[0] < 0 and step[1] < 0 and step[2] > 0  # +i: towards Left (smaller x); +j: Posterior; +k: Superior
    assert np.array_equal(arr, phantom_ras()[::-1, ::-1, :])
    assert np.isfinite(centre).all()


def bone_centre(mask: np.ndarray) -> np.ndarray:
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("codes", ["RAS", "LPS"])
def test_m3d_tensor_axes_are_slices_rows_columns_in_display_convention(codes):
    tensor, info = pp.m3d_volume(stored(codes), size=tuple(np.array(SHAPE_RAS)[[2, 1, 0]]))
    d, h, w = bone_centre(tensor[0, 0].numpy() > 0.8)  # the bone block: left, anterior, superior
    D, H, W = tensor.shape[2:]
    assert d > D / 2  # superior slices come last
    assert h < H / 2  # anterior rows on top
    assert w > W / 2  # patient's left on the image's right
    assert tensor.shape == (1, 1, 12, 20, 16) and tensor.dtype.is_floating_point
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == pytest.approx(1.0)
    assert info["replicated_depth"] is False and info["source_depth"] == 12


def test_radfm_tensor_is_rows_columns_slices_grey():
    tensor, info = pp.radfm_volume(stored("LPS"), size=20)
    assert tensor.shape == (1, 20, 20, 12)  # D: nearest multiple of 4 to 12
    h, w, d = bone_centre(tensor[0].numpy() > 0.8)
    assert h < 10 and w > 10 and d > 6
    assert info["shape"] == [1, 1, 3, 20, 20, 12]


def test_slice_images_window_values_and_placement():
    vol = stored("LPS")
    images, info = pp.slice_images(vol, count=3)
    assert info["slices"] == 3 and info["slice_z_mm"] == sorted(info["slice_z_mm"])  # inferior -> superior
    top = images[-1]  # most superior slice holds the bone block
    assert top.dtype == np.uint8 and top.shape == (SHAPE_RAS[1], SHAPE_RAS[0], 3)  # rows = y, columns = x
    rows, cols = np.nonzero(top[..., 2] == 255)  # 700 HU saturates the 0..80 window
    assert rows.mean() < top.shape[0] / 2 and cols.mean() > top.shape[1] / 2  # anterior top, patient left on the right
    hu_grid = pp.reorient(vol)[0][:, :, info["slice_indices"][-1]].T
    for row, col in [(0, 0), (top.shape[0] // 2, 5), (rows[0], cols[0])]:  # air, soft tissue, bone
        hu = hu_grid[row, col]
        expected = [round(float(np.clip((hu - lo) / (hi - lo), 0, 1) * 255)) for lo, hi in pp.MEDGEMMA_WINDOWS]
        assert np.abs(top[row, col].astype(int) - expected).max() <= 1, (row, col, hu)
    assert list(top[0, 0]) == [3, 0, 0]  # air: (-1000 + 1024) / 2048 * 255


def test_slice_positions_evenly_spaced():
    assert pp.slice_positions(10, 20) == list(range(10))
    assert pp.slice_positions(9, 1) == [4]
    assert pp.slice_positions(100, 4) == [12, 37, 62, 87]


@pytest.mark.parametrize("depth,expected", [(1, 4), (10, 8), (14, 12), (37, 36), (300, 64)])
def test_radfm_depth_rule(depth, expected):
    assert pp.radfm_depth(depth) == expected


def test_single_axial_slice_is_replicated_and_recorded():
    one = single_axial_slice(stored("LPS"))
    m3d, info = pp.m3d_volume(one, size=(32, 16, 16))
    assert m3d.shape == (1, 1, 32, 16, 16) and info["replicated_depth"] and info["source_depth"] == 1
    assert all(np.array_equal(m3d[0, 0, 0], m3d[0, 0, k]) for k in range(32))
    radfm, rinfo = pp.radfm_volume(one, size=16)
    assert radfm.shape == (1, 16, 16, 4) and rinfo["replicated_depth"]
    images, sinfo = pp.slice_images(one, count=16)
    assert len(images) == 1 and sinfo["slices"] == 1


def test_blank_volume_scales_to_zero_not_nan():
    blank = Volume(np.full((8, 8, 6), -1000.0, dtype=np.float32), np.eye(4))
    tensor, _ = pp.m3d_volume(blank, size=(4, 8, 8))
    assert np.isfinite(tensor.numpy()).all() and float(tensor.abs().max()) == 0.0


def test_hu_window_option_clips():
    tensor, info = pp.m3d_volume(stored("RAS"), size=(12, 20, 16), window=(-100, 100))
    assert float(tensor.max()) == 1.0 and "window" in info["intensity"]
    assert float((tensor == 1.0).float().mean()) > 0.005  # the bone block (1% of voxels) saturates
