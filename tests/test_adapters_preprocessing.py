"""Model preprocessing presets: orientation from the affine, and each family's training recipe reproduced.

The reference recipes below are written out in numpy/PyTorch from the authors' code (not from volprobe's):
M3D's ``m3d_cap_data_prepare.py`` (8-bit slices / 255, min-max, ``CropForeground``, trilinear ``Resize``),
RadFM's ``stack_images`` (``F.interpolate`` default nearest, depth rule) and MedGemma's CT notebook
(slice sampling, three windows rounded to uint8).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from tinymodels.volumes import SHAPE_RAS, phantom_ras, single_axial_slice, stored

from volprobe.errors import InvalidValueError
from volprobe.probes.models import preprocessing as pp
from volprobe.segmentation.volume import Volume

STORAGES = ["RAS", "LPS", "LAS", "SAR", "PIL"]
SMALL_M3D = pp.M3D_PRESET.with_options({"size": "8,16,16"})
SMALL_RADFM = pp.RADFM_PRESET.with_options({"size": "16,16"})
FOUR = pp.GENERIC_SLICES.with_options({"slices": 4})


@pytest.fixture(scope="module")
def reference():
    vol = stored("RAS")
    return {"m3d": pp.m3d_volume(vol, SMALL_M3D)[0], "radfm": pp.radfm_volume(vol, SMALL_RADFM)[0],
            "slices": pp.slice_images(vol, FOUR)[0]}


def lps_dhw(array_ras: np.ndarray) -> np.ndarray:
    """RAS-indexed ``[x, y, z]`` → ``[z, y, x]`` with x towards Left, y towards Posterior (display convention)."""
    return np.transpose(array_ras[::-1, ::-1, :], (2, 1, 0)).astype(np.float32)


def authors_intensity(hu: np.ndarray, window=(-160.0, 240.0)) -> np.ndarray:
    """The display export (window, 8 bits) then the authors' ``image - image.min(); image / image.max()``."""
    unit = np.clip((hu - window[0]) / (window[1] - window[0]), 0, 1)
    image = np.round(unit * 255).astype(np.uint8).astype(np.float32) / 255.0
    image = image - image.min()
    return image / np.clip(image.max(), 1e-8, None)


@pytest.mark.parametrize("codes", STORAGES)
def test_same_anatomy_any_storage_gives_the_same_model_input(codes, reference):
    vol = stored(codes)
    assert np.array_equal(pp.m3d_volume(vol, SMALL_M3D)[0], reference["m3d"])
    assert np.array_equal(pp.radfm_volume(vol, SMALL_RADFM)[0], reference["radfm"])
    assert all(np.array_equal(a, b) for a, b in zip(pp.slice_images(vol, FOUR)[0], reference["slices"]))


def test_oblique_affine_maps_to_nearest_axes(reference):
    vol = stored("LPS", oblique_deg=12.0)
    assert np.array_equal(pp.m3d_volume(vol, SMALL_M3D)[0], reference["m3d"])


def test_reorient_puts_patient_left_posterior_superior_on_increasing_indices():
    arr, affine = pp.reorient(stored("RAS"))
    step = affine[:3, :3] @ np.ones(3)
    assert step[0] < 0 and step[1] < 0 and step[2] > 0  # +i: towards Left (smaller x); +j: Posterior; +k: Superior
    assert np.array_equal(arr, phantom_ras()[::-1, ::-1, :])


def test_m3d_preset_is_the_authors_recipe_on_a_display_window():
    """Window W400/L40 to 8 bits, min-max, crop to voxels > 0, trilinear resize: equal to the recipe written
    out with numpy and ``F.interpolate``; soft tissue (40 HU) lands at 128/255, bone at 1, air is cropped."""
    hu = lps_dhw(phantom_ras())
    image = authors_intensity(hu)
    z, y, x = np.nonzero(image > 0)
    box = image[z.min():z.max() + 1, y.min():y.max() + 1, x.min():x.max() + 1]
    expected = F.interpolate(torch.from_numpy(box)[None, None], size=(32, 256, 256), mode="trilinear",
                             align_corners=False)
    got, info = pp.m3d_volume(stored("LPS"))
    assert got.shape == (1, 1, 32, 256, 256) and info["shape"] == [1, 1, 32, 256, 256]
    assert torch.allclose(got, expected.clamp(0, 1), atol=1e-6)
    assert box.shape == (10, 16, 12) and info["crop"] == "foreground [12, 20, 16] -> [10, 16, 12]"
    assert float(got.min()) == pytest.approx(128 / 255, abs=1e-3) and float(got.max()) == pytest.approx(1.0)
    assert info["preset"] == "m3d" and "window [-160.0, 240.0]" in info["intensity"]


def test_med3dvlm_preset_is_128_deep():
    got, info = pp.m3d_volume(stored("RAS"), pp.MED3DVLM_PRESET)
    assert got.shape == (1, 1, 128, 256, 256) and info["preset"] == "med3dvlm" and info["crop"].startswith("foreground")


def test_radfm_preset_is_stack_images_nearest_resize():
    hu = lps_dhw(phantom_ras())
    image = np.transpose(authors_intensity(hu), (1, 2, 0))  # (H, W, D)
    expected = F.interpolate(torch.from_numpy(image)[None, None], size=(20, 20, 12))[0]  # RadFM: default nearest
    got, info = pp.radfm_volume(stored("LPS"), pp.RADFM_PRESET.with_options({"size": "20,20"}))
    assert got.shape == (1, 20, 20, 12) and info["shape"] == [1, 1, 3, 20, 20, 12] and info["crop"] == "none"
    assert torch.equal(got, expected)
    h, w, d = np.argwhere(got[0].numpy() > 0.99).mean(axis=0)  # the bone block: left, anterior, superior
    assert h < 10 and w > 10 and d > 6


@pytest.mark.parametrize("codes", ["RAS", "LPS"])
def test_m3d_tensor_axes_are_slices_rows_columns_in_display_convention(codes):
    preset = pp.M3D_PRESET.with_options({"size": list(np.array(SHAPE_RAS)[[2, 1, 0]]), "crop": "none"})
    tensor, info = pp.m3d_volume(stored(codes), preset)
    d, h, w = np.argwhere(tensor[0, 0].numpy() > 0.99).mean(axis=0)  # the bone block: left, anterior, superior
    D, H, W = tensor.shape[2:]
    assert d > D / 2 and h < H / 2 and w > W / 2  # superior last; anterior on top; patient's left on the right
    assert tensor.shape == (1, 1, 12, 20, 16) and info["replicated_depth"] is False and info["source_depth"] == 12


def test_slice_order_option_reverses_the_depth_axis():
    preset = SMALL_M3D.with_options({"crop": "none"})
    up, _ = pp.m3d_volume(stored("RAS"), preset)
    down, info = pp.m3d_volume(stored("RAS"), preset.with_options({"slice_order": "superior_to_inferior"}))
    assert torch.equal(down, up.flip(2)) and "superior_to_inferior" in info["orientation"]


def test_overrides_are_parsed_recorded_and_checked():
    preset = pp.M3D_PRESET.with_options({"window": "-1000,1000", "resample": "area", "crop": "none", "quantize": "false"})
    record = preset.record()
    assert record["window"] == [-1000.0, 1000.0] and record["resample"] == "area" and record["crop"] == "none"
    assert record["quantize_8bit"] is False and preset.name == "m3d+crop+quantize+resample+window"
    assert pp.M3D_PRESET.with_options({"window": "none"}).window is None
    assert pp.M3D_PRESET.with_options({}) is pp.M3D_PRESET
    for bad in ({"window": "100,-100"}, {"resample": "cubic"}, {"crop": "center"}, {"size": "32,256"}, {"colour": 1}):
        with pytest.raises(InvalidValueError):
            pp.M3D_PRESET.with_options(bad)


def test_minmax_of_raw_values_when_asked():
    """``window=none``: min-max of raw HU (what volprobe did before presets): soft tissue sits near 0.6 here
    (about 0.25-0.30 on a real CT with metal or bone near 3000 HU), instead of 0.5 in the display window."""
    preset = pp.M3D_PRESET.with_options({"window": "none", "quantize": "false", "crop": "none", "size": "12,20,16"})
    tensor, info = pp.m3d_volume(stored("RAS"), preset)
    hu = lps_dhw(phantom_ras())
    assert info["intensity"].startswith("min-max")
    assert torch.allclose(tensor[0, 0], torch.from_numpy((hu - hu.min()) / (hu.max() - hu.min())), atol=1e-6)


def test_medgemma_slices_follow_the_notebook():
    """85 slices: ``round(i / 85 * (N - 1))`` for i = 1..85 (first slice never, last always); fewer slices: all."""
    picks = pp.slice_positions(200, 85, "notebook")
    assert len(picks) == 85 and picks[:3] == [2, 5, 7] and picks[-1] == 199 and 0 not in picks
    assert pp.slice_positions(60, 85, "notebook") == list(range(60))
    assert pp.slice_positions(100, 4) == [12, 37, 62, 87] and pp.slice_positions(9, 1) == [4]


def test_slice_images_windows_rounding_and_placement():
    vol = stored("LPS")
    images, info = pp.slice_images(vol, pp.GENERIC_SLICES.with_options({"slices": 3}))
    assert info["slices"] == 3 and info["slice_z_mm"] == sorted(info["slice_z_mm"])  # inferior -> superior
    top = images[-1]  # most superior slice holds the bone block
    assert top.dtype == np.uint8 and top.shape == (SHAPE_RAS[1], SHAPE_RAS[0], 3)  # rows = y, columns = x
    rows, cols = np.nonzero(top[..., 2] == 255)  # 700 HU saturates the 0..80 window
    assert rows.mean() < top.shape[0] / 2 and cols.mean() > top.shape[1] / 2  # anterior top, patient left on the right
    hu_grid = pp.reorient(vol)[0][:, :, info["slice_indices"][-1]].T
    for row, col in [(0, 0), (top.shape[0] // 2, 5), (rows[0], cols[0])]:  # air, soft tissue, bone
        hu = hu_grid[row, col]
        expected = [round(float(np.clip((hu - lo) / (hi - lo), 0, 1) * 255)) for lo, hi in pp.MEDGEMMA_WINDOWS]
        assert list(top[row, col]) == expected, (row, col, hu)
    assert list(top[0, 0]) == [3, 0, 0]  # air: (-1000 + 1024) / 2048 * 255 = 2.99


def test_medgemma_preset_sends_jpeg_like_the_notebook():
    vol = stored("LPS")
    raw, _ = pp.slice_images(vol, pp.MEDGEMMA_SLICES.with_options({"image_format": "raw"}))
    jpeg, info = pp.slice_images(vol, pp.MEDGEMMA_SLICES)
    assert info["slices"] == 12 and info["image_format"] == "jpeg"  # 12 slices < 85: all of them
    diff = [np.abs(a.astype(int) - b.astype(int)) for a, b in zip(raw, jpeg)]
    assert any(d.max() > 0 for d in diff) and np.mean([d.mean() for d in diff]) < 8  # lossy, but close


@pytest.mark.parametrize("depth,expected", [(1, 4), (10, 8), (14, 12), (37, 36), (300, 64)])
def test_radfm_depth_rule(depth, expected):
    assert pp.radfm_depth(depth) == expected


def test_single_axial_slice_is_replicated_and_recorded():
    one = single_axial_slice(stored("LPS"))
    m3d, info = pp.m3d_volume(one, pp.M3D_PRESET.with_options({"size": "32,16,16"}))
    assert m3d.shape == (1, 1, 32, 16, 16) and info["replicated_depth"] and info["source_depth"] == 1
    assert all(np.array_equal(m3d[0, 0, 0], m3d[0, 0, k]) for k in range(32))
    radfm, rinfo = pp.radfm_volume(one, SMALL_RADFM)
    assert radfm.shape == (1, 16, 16, 4) and rinfo["replicated_depth"]
    images, sinfo = pp.slice_images(one, pp.GENERIC_SLICES)
    assert len(images) == 1 and sinfo["slices"] == 1


def test_blank_volume_scales_to_zero_and_is_not_cropped():
    blank = Volume(np.full((8, 8, 6), -1000.0, dtype=np.float32), np.eye(4))
    tensor, info = pp.m3d_volume(blank, pp.M3D_PRESET.with_options({"size": "4,8,8"}))
    assert np.isfinite(tensor.numpy()).all() and float(tensor.abs().max()) == 0.0
    assert info["crop"] == "none (no foreground)"
    tensor, _ = pp.m3d_volume(blank, pp.M3D_PRESET.with_options({"size": "4,8,8", "window": "none"}))
    assert float(tensor.abs().max()) == 0.0  # constant volume: min-max gives zeros, not NaN
