"""Controls: each one's contract, in RAS, LPS, permuted and oblique geometries."""

from __future__ import annotations

import math

import numpy as np
import pytest

from volprobe.controls import (CONTROLS, Control, ControlContext, ControlError, ExcludedItem, get_control,
                               list_controls, register_control)
from volprobe.controls.builtin import axis_angle_deg, slice_permutation
from volprobe.errors import FormatError
from volprobe.items import Item
from volprobe.segmentation.volume import LPS_TO_RAS, Volume

SHAPE = (24, 20, 16)


def rotation_z(deg: float) -> np.ndarray:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])


def affine(kind: str) -> np.ndarray:
    """Voxel→RAS affines: plain RAS; LPS (i→left, j→posterior); 'permuted' (i→S, j→R, k→A);
    'oblique' (RAS rotated 20° about S and 10° about R)."""
    aff = np.eye(4)
    spacing = np.diag([1.5, 1.2, 2.0])
    if kind == "ras":
        aff[:3, :3] = spacing
    elif kind == "lps":
        aff = LPS_TO_RAS @ np.diag([1.5, 1.2, 2.0, 1.0])
    elif kind == "permuted":
        aff[:3, :3] = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0.0]]) @ spacing
    elif kind == "oblique":
        c, s = math.cos(math.radians(10)), math.sin(math.radians(10))
        rot_x = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        aff[:3, :3] = rot_x @ rotation_z(20) @ spacing
    aff[:3, 3] = (-17.0, 12.0, 40.0)
    return aff


GEOMETRIES = ("ras", "lps", "permuted", "oblique")


def two_blob_volume(kind: str) -> tuple[Volume, np.ndarray, np.ndarray]:
    """A volume with two blobs at distinct array positions; returns it and the two blobs' voxel boxes as masks."""
    arr = np.full(SHAPE, -1000, dtype=np.int16)
    a = np.zeros(SHAPE, bool)
    b = np.zeros(SHAPE, bool)
    a[3:7, 3:6, 2:5] = True
    b[15:20, 12:16, 9:14] = True
    arr[a] = 300
    arr[b] = 600
    arr += np.arange(SHAPE[2], dtype=np.int16)[None, None, :]  # slices along k differ
    arr += np.arange(SHAPE[0], dtype=np.int16)[:, None, None] * 20  # and along i
    return Volume(arr, affine(kind), patient="p"), a, b


def ramp(flip_axis: int | None = None) -> np.ndarray:
    """The intensity ramps added by :func:`two_blob_volume` (flipped along ``flip_axis`` if given)."""
    r = np.broadcast_to(np.arange(SHAPE[2])[None, None, :] + np.arange(SHAPE[0])[:, None, None] * 20, SHAPE)
    return r if flip_axis is None else np.flip(r, axis=flip_axis)


def centroid(vol: Volume, value: int, flip_axis: int | None = None) -> np.ndarray:
    """Patient RAS mm centroid of the blob whose value (ramps removed) is ``value``."""
    return vol.voxel_to_patient(np.argwhere(vol.array - ramp(flip_axis) == value)).mean(axis=0)


def item(**kw) -> Item:
    base = dict(id="i1", question="Which side?", answer="left", options=["left", "right"], case="c1", patient="p1")
    base.update(kw)
    return Item(**base)


CTX = ControlContext(seed=7)


# -- registry and specs -------------------------------------------------------------------------

def test_every_builtin_has_a_statement_and_a_distinct_name():
    names = [c.name for c in list_controls()]
    for expected in ("full", "text_only", "blank", "single_slice", "shuffled_slices", "swapped_volume",
                     "mirror_lr", "flip_si", "flip_ap"):
        assert expected in names
    assert all(c.statement and len(c.statement.splitlines()) == 1 for c in list_controls())
    assert {c.name for c in list_controls() if c.changes_gold} >= {"mirror_lr", "flip_si", "flip_ap"}
    assert not get_control("full").changes_gold and not get_control("shuffled_slices").changes_gold


def test_specs_parse_and_bad_specs_are_named():
    assert get_control("single_slice:evidence").params["mode"] == "evidence"
    assert get_control("single_slice:evidence").label == "single_slice:evidence"
    assert get_control("single_slice").label == "single_slice"
    assert get_control("single_slice", mode="outside").label == "single_slice:outside"
    assert get_control("single_slice:middle", mode="outside").params["mode"] == "middle"  # spec wins
    assert get_control("blank:hu=-1024").params["hu"] == -1024.0
    with pytest.raises(ControlError, match="unknown control 'mirror'.*mirror_lr"):
        get_control("mirror")
    with pytest.raises(ControlError, match="no parameter"):
        get_control("full:x=1")
    with pytest.raises(ControlError, match="not one of"):
        get_control("single_slice:diagonal")
    with pytest.raises(ControlError, match="not a float"):
        get_control("blank:air")


def test_a_user_control_registers_in_a_few_lines_and_runs():
    @register_control
    class Noise(Control):
        name = "test_noise"
        statement = "adds Gaussian noise (sd 50 HU); anatomy and geometry kept"

        def apply(self, volume, item, ctx):
            seed = ctx.seed_for(self, item)
            noisy = volume.array + np.random.default_rng(seed).normal(0, 50, volume.shape)
            return self.output(item, volume.with_array(noisy), seed=seed)

    try:
        vol, _, _ = two_blob_volume("ras")
        ctl = get_control("test_noise")
        out1, out2 = ctl.apply(vol, item(), CTX), ctl(vol, item(id="i2"), CTX)
        assert out1.key == out2.key and out1.seed == out2.seed  # one input per case
        np.testing.assert_array_equal(out1.volume.array, out2.volume.array)
        assert np.std(out1.volume.array - vol.array) == pytest.approx(50, rel=0.1)
        assert ctl.gold(item()) == "left"
        with pytest.raises(ControlError, match="registered twice"):
            register_control(type("Other", (Control,), {"name": "test_noise", "statement": "x"}))
    finally:
        CONTROLS.unregister("test_noise")


# -- full, text_only, blank ---------------------------------------------------------------------

def test_full_blank_and_text_only():
    vol, _, _ = two_blob_volume("lps")
    full = get_control("full").apply(vol, item(), CTX)
    assert full.volume is vol
    blank = get_control("blank").apply(vol, item(), CTX).volume
    assert blank.shape == vol.shape and np.array_equal(blank.affine, vol.affine)
    assert np.all(blank.array == -1000)
    text = get_control("text_only")
    a, b = text.apply(None, item(), CTX), text.apply(None, item(case="other", id="i9"), CTX)
    assert a.volume is None and a.key == b.key  # no image: one input for the whole run
    assert not text.needs_volume


def test_keys_name_case_control_and_parameters():
    vol, _, _ = two_blob_volume("ras")
    full = get_control("full")
    assert full.apply(vol, item(), CTX).key == full.apply(vol, item(id="i2"), CTX).key
    assert full.apply(vol, item(), CTX).key != full.apply(vol, item(case="c2"), CTX).key
    assert full.apply(vol, item(), CTX).key != get_control("blank").apply(vol, item(), CTX).key


# -- shuffled_slices --------------------------------------------------------------------------

@pytest.mark.parametrize("kind", GEOMETRIES)
def test_shuffled_slices_permutes_whole_axial_slices(kind):
    vol, _, _ = two_blob_volume(kind)
    ctl = get_control("shuffled_slices")
    out = ctl.apply(vol, item(), CTX)
    axis = vol.axial_axis
    assert out.params["axial_axis"] == axis
    assert kind != "permuted" or axis == 0  # i runs superior there
    before = [np.take(vol.array, k, axis=axis).tobytes() for k in range(vol.shape[axis])]
    after = [np.take(out.volume.array, k, axis=axis).tobytes() for k in range(vol.shape[axis])]
    assert sorted(before) == sorted(after)  # the multiset of slices is kept
    assert after != before  # and really permuted
    order = slice_permutation(out.seed, vol.shape[axis])  # the recorded seed reproduces it
    assert after == [before[k] for k in order]
    assert np.array_equal(out.volume.affine, vol.affine)
    again = ctl.apply(vol, item(id="other item, same case"), CTX)
    assert again.seed == out.seed and np.array_equal(again.volume.array, out.volume.array)
    assert ctl.apply(vol, item(case="c2"), CTX).seed != out.seed
    assert ctl.apply(vol, item(), ControlContext(seed=8)).seed != out.seed


def test_slice_permutation_is_never_the_identity():
    for seed in range(300):
        order = slice_permutation(seed, 2)
        assert sorted(order) == [0, 1] and list(order) == [1, 0]


# -- counterfactual flips ---------------------------------------------------------------------

@pytest.mark.parametrize("kind", GEOMETRIES)
@pytest.mark.parametrize("name,axis", [("mirror_lr", 0), ("flip_ap", 1), ("flip_si", 2)])
def test_flip_reverses_order_along_its_patient_axis_only(kind, name, axis):
    vol, _, _ = two_blob_volume(kind)
    out = get_control(name).apply(vol, item(), CTX)
    flipped = out.volume
    assert np.array_equal(flipped.affine, vol.affine)  # the affine is kept: anatomy appears mirrored
    assert out.params["array_axis"] == vol.array_axis(("lr", "ap", "si")[axis])
    a0, b0 = centroid(vol, 300), centroid(vol, 600)
    a1, b1 = (centroid(flipped, v, flip_axis=out.params["array_axis"]) for v in (300, 600))
    assert np.sign(a0[axis] - b0[axis]) == -np.sign(a1[axis] - b1[axis]) != 0  # order along the axis reversed
    if kind != "oblique":
        for other in {0, 1, 2} - {axis}:  # positions along the other patient axes unchanged
            assert a1[other] == pytest.approx(a0[other]) and b1[other] == pytest.approx(b0[other])
        assert out.params["axis_angle_deg"] == pytest.approx(0)
    else:
        assert 0 < out.params["axis_angle_deg"] < 45  # documented approximation: nearest array axis


def test_mirror_lr_puts_the_left_structure_at_larger_x_in_ras_and_lps():
    for kind in ("ras", "lps"):
        vol, _, _ = two_blob_volume(kind)
        left_value = 300 if centroid(vol, 300)[0] < centroid(vol, 600)[0] else 600
        right_value = 900 - left_value
        twice = get_control("mirror_lr").apply(get_control("mirror_lr").apply(vol, item(), CTX).volume, item(), CTX)
        np.testing.assert_array_equal(twice.volume.array, vol.array)  # mirror twice = identity
        once = get_control("mirror_lr").apply(vol, item(), CTX).volume
        x = {v: centroid(once, v, flip_axis=vol.array_axis("lr"))[0] for v in (300, 600)}
        assert x[left_value] > x[right_value]


@pytest.mark.parametrize("name", ["mirror_lr", "flip_si", "flip_ap"])
@pytest.mark.parametrize("kind", GEOMETRIES)
def test_flip_twice_is_identity(name, kind):
    vol, _, _ = two_blob_volume(kind)
    ctl = get_control(name)
    back = ctl.apply(ctl.apply(vol, item(), CTX).volume, item(), CTX).volume
    np.testing.assert_array_equal(back.array, vol.array)
    assert not np.array_equal(ctl.apply(vol, item(), CTX).volume.array, vol.array)


def test_axis_angle_of_an_oblique_affine():
    vol = Volume(np.zeros(SHAPE), np.block([[rotation_z(25) * 2.0, np.zeros((3, 1))], [np.zeros((1, 3)), 1]]))
    assert axis_angle_deg(vol.affine, vol.array_axis("lr"), "lr") == pytest.approx(25)
    assert axis_angle_deg(vol.affine, vol.array_axis("si"), "si") == pytest.approx(0)


# -- gold under counterfactuals -----------------------------------------------------------------

def test_laterality_gold_is_mirrored_and_untransformable_items_are_excluded():
    mirror, flip_si = get_control("mirror_lr"), get_control("flip_si")
    lat = item(evidence={"axes": ["lr"]}, counterfactual={"mirror_lr": "right"})
    assert mirror.gold(lat) == "right"
    assert flip_si.gold(lat) == "left"  # answer does not depend on SI: unchanged
    assert get_control("full").gold(lat) == get_control("shuffled_slices").gold(lat) == "left"
    with pytest.raises(ExcludedItem, match="not transformable"):
        mirror.gold(item(counterfactual={"mirror_lr": None}))
    with pytest.raises(ExcludedItem, match="depends on the lr axis"):
        mirror.gold(item(evidence={"axes": ["lr", "si"]}))
    with pytest.raises(ExcludedItem, match="no evidence axes"):
        mirror.gold(item())
    assert mirror.gold(item(evidence={"axes": []})) == "left"
    with pytest.raises(FormatError, match="not one of its options"):
        mirror.gold(item(counterfactual={"mirror_lr": "center"}))


# -- single_slice -----------------------------------------------------------------------------

@pytest.mark.parametrize("kind", GEOMETRIES)
def test_single_slice_modes_pick_the_tagged_range_and_keep_patient_position(kind):
    vol, _, _ = two_blob_volume(kind)
    axis = vol.axial_axis
    n = vol.shape[axis]
    tagged = item(evidence={"axial_slices": [4, 8], "structures": ["a"]})
    for mode, expected in (("middle", n // 2), ("evidence", 6), ("outside", None)):
        ctl = get_control(f"single_slice:{mode}")
        out = ctl.apply(vol, tagged, CTX)
        index = out.params["slice"]
        if expected is not None:
            assert index == expected
        else:
            assert not 4 <= index <= 8 and 0 <= index < n
        one = out.volume
        assert one.shape[axis] == 1
        assert [s for a, s in enumerate(one.shape) if a != axis] == [s for a, s in enumerate(vol.shape) if a != axis]
        np.testing.assert_array_equal(np.take(one.array, 0, axis=axis), np.take(vol.array, index, axis=axis))
        # the 1-slice volume's voxels sit where that slice's voxels were, in patient mm
        ijk = np.array([[0, 0, 0], [2, 3, 0], [5, 1, 0]])
        ijk = np.roll(ijk, axis - 2, axis=1)  # put the zero on the axial axis
        ijk_src = ijk.copy()
        ijk_src[:, axis] = index
        np.testing.assert_allclose(one.voxel_to_patient(ijk), vol.voxel_to_patient(ijk_src))
    assert get_control("single_slice:evidence").item_dependent and not get_control("single_slice").item_dependent


def test_single_slice_excludes_what_it_cannot_do():
    vol, _, _ = two_blob_volume("ras")
    n = vol.shape[vol.axial_axis]
    with pytest.raises(ExcludedItem, match="axial_slices"):
        get_control("single_slice:evidence").apply(vol, item(), CTX)
    with pytest.raises(ExcludedItem, match="axial_slices"):  # decided from the item alone, before any volume
        get_control("single_slice:outside").gold(item())
    assert get_control("single_slice").gold(item()) == "left"
    with pytest.raises(ExcludedItem, match="every axial slice"):
        get_control("single_slice:outside").apply(vol, item(evidence={"axial_slices": [0, n - 1]}), CTX)
    with pytest.raises(ExcludedItem, match="outside the volume"):
        get_control("single_slice:evidence").apply(vol, item(evidence={"axial_slices": [3, n + 4]}), CTX)
    above = get_control("single_slice:outside").apply(vol, item(evidence={"axial_slices": [0, 5]}), CTX)
    assert above.params["slice"] == (6 + n - 1) // 2


def test_single_slice_items_with_the_same_range_share_an_input():
    vol, _, _ = two_blob_volume("ras")
    ctl = get_control("single_slice:evidence")
    a = ctl.apply(vol, item(evidence={"axial_slices": [4, 8]}), CTX)
    b = ctl.apply(vol, item(id="i2", evidence={"axial_slices": [5, 7]}), CTX)
    c = ctl.apply(vol, item(id="i3", evidence={"axial_slices": [9, 12]}), CTX)
    assert a.key == b.key != c.key


# -- swapped_volume ---------------------------------------------------------------------------

def test_swapped_volume_never_picks_the_same_patient():
    cases = {"a": "p1", "b": "p1", "c": "p2", "d": "p3", "e": "p3", "f": "p4"}
    loaded = []

    def load(case):
        loaded.append(case)
        return Volume(np.full((2, 2, 2), ord(case), dtype=np.int16), np.eye(4), patient=cases[case])

    ctl = get_control("swapped_volume")
    sources = set()
    for seed in range(150):
        ctx = ControlContext(seed=seed, cases=cases, load_case=load)
        for case, patient in cases.items():
            it = item(id=f"{case}-q", case=case, patient=patient)
            out = ctl.apply(None, it, ctx)
            assert out.params["source_patient"] != patient and cases[out.params["source_case"]] != patient
            assert out.volume.array[0, 0, 0] == ord(out.params["source_case"])
            assert ctl.apply(None, item(id="other", case=case, patient=patient), ctx).key == out.key
            sources.add((case, out.params["source_case"]))
    assert len(sources) > 12  # the draw really varies with the seed


def test_swapped_volume_falls_back_to_case_and_errors_without_another_patient():
    ctl = get_control("swapped_volume")
    cases = {"a": "a", "b": "b"}
    ctx = ControlContext(seed=1, cases=cases, load_case=lambda c: Volume(np.zeros((2, 2, 2)), np.eye(4)))
    assert ctl.apply(None, item(case="a", patient=None), ctx).params["source_case"] == "b"
    with pytest.raises(ControlError, match="at least two different patients"):
        ctl.check(ControlContext(cases={"a": "p", "b": "p"}))
    with pytest.raises(ControlError, match="no case of a patient other than"):
        ctl.apply(None, item(case="a", patient="p"), ControlContext(cases={"a": "p", "b": "p"}))
