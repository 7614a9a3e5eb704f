"""Synthetic phantoms: anatomy in patient space, variation, situs inversus, files, threshold segmenter."""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pytest

from volprobe.segmentation.masks import load_masks, read_label_names_from_header, totalsegmentator_class_map
from volprobe.segmentation.phantoms.generate import (
    ORIENTATIONS, PhantomError, generate_phantoms, make_phantom, segment_phantom_by_threshold, write_phantom,
)
from volprobe.segmentation.volume import Volume, load_volume

MAIN_ORGANS = ("liver", "spleen", "kidney_left", "kidney_right", "stomach", "heart", "aorta", "inferior_vena_cava",
               "gallbladder", "pancreas", "urinary_bladder", "lung_upper_lobe_left", "lung_lower_lobe_left",
               "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus", "trachea",
               "spinal_cord", "duodenum", "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right")


@lru_cache(maxsize=None)
def phantom(seed: int = 0, orientation: str = "RAS", situs: bool = False, variation: float = 1.0):
    return make_phantom(seed, orientation=orientation, situs_inversus=situs, variation=variation)


def structure_stats(labels: np.ndarray, affine: np.ndarray, names: dict[int, str], only=None) -> dict[str, dict]:
    """Centroid, min, max (RAS mm) and voxel count per label, computed here from the voxels and the affine."""
    out = {}
    for i, name in names.items():
        if only is not None and name not in only:
            continue
        ijk = np.argwhere(labels == i).astype(float)
        if len(ijk):
            ras = ijk @ affine[:3, :3].T + affine[:3, 3]
            out[name] = {"c": ras.mean(axis=0), "lo": ras.min(axis=0), "hi": ras.max(axis=0), "n": len(ijk)}
    return out


def stats_of(ph, only=None) -> dict[str, dict]:
    return structure_stats(ph.labels.labels, ph.labels.affine, dict(ph.labels.names), only)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * float((a & b).sum()) / max(float(a.sum() + b.sum()), 1.0)


def touches_border(mask: np.ndarray) -> bool:
    return any(np.take(mask, idx, axis=ax).any() for ax in range(3) for idx in (0, mask.shape[ax] - 1))


# -- contents and naming ----------------------------------------------------------------------

def test_structures_present_named_as_totalsegmentator_and_inside_the_scan():
    ph = phantom(0)
    class_map = totalsegmentator_class_map("total")
    present = ph.labels.present()
    for i, name in present.items():
        assert class_map[i] == name, f"label {i} is {name!r}, TotalSegmentator calls it {class_map[i]!r}"
    names = set(present.values())
    expected = set(MAIN_ORGANS) | {f"vertebrae_{lv}" for lv in ("T8", "T12", "L1", "L3")} | {
        f"rib_{s}_{k}" for s in ("left", "right") for k in range(1, 13)} | {"sacrum", "sternum"}
    assert expected <= names, f"missing: {sorted(expected - names)}"
    assert set(ph.layout) == names
    cut_by_design = {"spinal_cord", "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right",
                     "trachea", "esophagus"}
    for name in names:
        touching = touches_border(ph.labels.mask(name))
        assert touching == (name in cut_by_design), f"{name}: touches the scan border = {touching}"
        assert ph.layout[name].cut_by_fov == touching
    assert ph.volume.array.dtype == np.int16 and ph.volume.shape == (96, 80, 84)


def test_hu_values_follow_the_codebook():
    ph = phantom(0)
    a = ph.volume.array
    assert abs(float(np.median(a[ph.labels.mask("liver")])) - 125) <= 2
    assert abs(float(np.median(a[ph.labels.mask("kidney_left")])) - 180) <= 2
    assert float(np.median(a[ph.labels.mask("lung_lower_lobe_left")])) < -700
    assert float(np.median(a[ph.labels.mask("vertebrae_L1")])) > 250
    assert float(a[0, 0, 0]) < -950  # air in the corner
    noise = a[ph.labels.mask("liver")].std()
    assert 1.0 < noise < 4.0


# -- patient space ------------------------------------------------------------------------------

def test_same_anatomy_in_patient_space_in_every_orientation():
    ref = stats_of(phantom(1, "RAS"))
    codes = {"RAS": ("R", "A", "S"), "LPS": ("L", "P", "S"), "LAS": ("L", "A", "S")}
    for orientation in ORIENTATIONS[1:]:
        ph = phantom(1, orientation)
        if orientation in codes:
            assert ph.volume.axcodes == codes[orientation]
        else:
            assert not np.allclose(np.abs(ph.volume.affine[:3, :3]), np.diag(np.abs(np.diag(ph.volume.affine[:3, :3]))))
        other = stats_of(ph)
        assert set(other) == set(ref), orientation
        voxel = max(ph.volume.spacing)
        for name, s in ref.items():
            if orientation == "oblique" and ph.layout[name].cut_by_fov:
                continue  # a rotated field of view cuts it elsewhere
            shift = np.abs(other[name]["c"] - s["c"])
            assert np.all(shift <= voxel), f"{orientation} {name}: centroid moved {shift} mm"
            if s["n"] > 500:
                assert abs(other[name]["n"] / s["n"] - 1) < 0.1, f"{orientation} {name}: volume changed"


def test_arrays_differ_between_orientations_but_not_anatomy():
    ras, lps = phantom(1, "RAS"), phantom(1, "LPS")
    assert not np.array_equal(ras.labels.labels, lps.labels.labels)
    flipped = lps.labels.labels[::-1, ::-1, :]  # LPS grid centred on the same point: flip i and j
    assert dice(flipped == 5, ras.labels.labels == 5) > 0.97  # 5 = liver


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_normal_anatomy_sides_and_situs_inversus_mirrors_them(orientation):
    for situs in (False, True):
        s = stats_of(phantom(2, orientation, situs))
        right = 1.0 if not situs else -1.0  # sign of x on the side where the liver belongs
        for organ in ("liver", "gallbladder", "inferior_vena_cava"):
            assert s[organ]["c"][0] * right > 10, (orientation, situs, organ)
        for organ in ("spleen", "stomach", "heart"):
            assert s[organ]["c"][0] * right < -10, (orientation, situs, organ)
        assert (s["aorta"]["c"][0] - s["inferior_vena_cava"]["c"][0]) * right < 0
        for paired in ("kidney", "autochthon", "iliopsoas", "lung_upper_lobe", "rib"):
            left = paired + ("_left_7" if paired == "rib" else "_left")
            rgt = paired + ("_right_7" if paired == "rib" else "_right")
            assert s[left]["c"][0] < -10 < 10 < s[rgt]["c"][0], (orientation, situs, paired)
        trilobed = "lung_middle_lobe_right" in s
        assert trilobed == (not situs)


# -- variation ----------------------------------------------------------------------------------

VARYING = ("kidney_left", "kidney_right", "liver", "stomach", "spleen", "heart", "lung_upper_lobe_left",
           "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right")


def realised_relations(ph) -> dict:
    s = stats_of(ph, VARYING)
    lung = {side: sum(v["n"] for k, v in s.items() if k.startswith("lung") and k.endswith(side))
            for side in ("left", "right")}
    kidney = ph.variants["liver_below_kidney"]["kidney"]
    return {
        "higher_kidney": max(("kidney_left", "kidney_right"), key=lambda k: s[k]["c"][2]),
        "larger_kidney": max(("kidney_left", "kidney_right"), key=lambda k: s[k]["n"]),
        "larger_lung": max(lung, key=lung.get),
        "liver_lower": bool(s["liver"]["lo"][2] < s[kidney]["lo"][2] - 5),
        "stomach_anterior": bool(s["stomach"]["c"][1] > s["spleen"]["c"][1]),
        "fixed": (s["liver"]["c"][0] > 0, s["spleen"]["c"][0] < 0, s["heart"]["c"][2] > s["liver"]["c"][2],
                  s["kidney_left"]["c"][2] < s["lung_lower_lobe_left"]["c"][2]),
        "kidney_ratio": max(s["kidney_left"]["n"], s["kidney_right"]["n"]) / min(s["kidney_left"]["n"],
                                                                                 s["kidney_right"]["n"]),
        "lung_ratio": max(lung.values()) / min(lung.values()),
        "kidney_gap": abs(s["kidney_left"]["c"][2] - s["kidney_right"]["c"][2]),
    }


def test_variation_varies_relations_across_seeds_and_keeps_normal_anatomy():
    seen: dict[str, set] = {k: set() for k in ("higher_kidney", "larger_kidney", "larger_lung", "liver_lower",
                                               "stomach_anterior")}
    for seed in range(30):
        ph = make_phantom(seed)
        r = realised_relations(ph)
        v = ph.variants
        assert r["fixed"] == (True, True, True, True), seed
        assert r["higher_kidney"] == v["higher_kidney"] and r["kidney_gap"] > 8, seed
        assert r["larger_kidney"] == v["larger_kidney"] and r["kidney_ratio"] > 1.15, seed
        assert r["larger_lung"] == v["larger_lung"] and r["lung_ratio"] > 1.05, seed
        assert r["liver_lower"] == v["liver_below_kidney"]["liver_lower"], seed
        assert r["stomach_anterior"] == v["stomach_anterior_to_spleen"], seed
        for k in seen:
            seen[k].add(r[k])
    assert all(len(outcomes) == 2 for outcomes in seen.values()), seen


def test_no_variation_gives_the_canonical_anatomy_for_every_seed():
    a, b = make_phantom(0, variation=0.0), make_phantom(7, variation=0.0)
    assert np.array_equal(a.labels.labels, b.labels.labels)
    assert not np.array_equal(a.volume.array, b.volume.array)  # noise still follows the seed
    assert a.variants["higher_kidney"] == "kidney_left" and a.variants["larger_lung"] == "right"


def test_same_seed_gives_identical_arrays_and_another_seed_does_not():
    a, b, c = make_phantom(5), make_phantom(5), make_phantom(6)
    assert np.array_equal(a.volume.array, b.volume.array)
    assert np.array_equal(a.labels.labels, b.labels.labels)
    assert np.array_equal(a.volume.affine, b.volume.affine)
    assert not np.array_equal(a.labels.labels, c.labels.labels)


def test_situs_inversus_keeps_side_names_on_their_side_and_mirrors_the_variants():
    normal, situs = phantom(3), phantom(3, situs=True)
    assert situs.variants["higher_kidney"] != normal.variants["higher_kidney"]
    assert situs.variants["liver_below_kidney"]["kidney"] == "kidney_left"
    # the mirrored right kidney becomes the kidney_left, with the same size
    assert abs(situs.layout["kidney_left"].voxels / normal.layout["kidney_right"].voxels - 1) < 0.05
    assert situs.layout["liver"].centre_mm[0] == pytest.approx(-normal.layout["liver"].centre_mm[0])


@pytest.mark.parametrize("bad", [dict(orientation="RAI"), dict(shape=(1, 80, 84)), dict(spacing=(4, 0, 5)),
                                 dict(variation=-1.0), dict(noise_hu=float("nan"))])
def test_bad_parameters_are_refused(bad):
    with pytest.raises(PhantomError):
        make_phantom(0, **bad)


# -- threshold segmenter ---------------------------------------------------------------------------

def organ_dice(found, truth_labels, truth_names, names=MAIN_ORGANS, rename=lambda n: n) -> dict[str, float]:
    out = {}
    for name in names:
        ids = [i for i, n in truth_names.items() if n == name]
        truth = np.isin(truth_labels, ids)
        got = found.mask(rename(name)) if rename(name) in found.names.values() else np.zeros_like(truth)
        out[name] = dice(got, truth)
    return out


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_threshold_segmenter_recovers_the_main_organs_with_correct_sides(orientation):
    ph = phantom(4, orientation)
    found = segment_phantom_by_threshold(ph.volume)
    scores = organ_dice(found, ph.labels.labels, ph.labels.names)
    assert min(scores.values()) > 0.8, {k: round(v, 3) for k, v in scores.items() if v <= 0.8}
    vertebrae = np.isin(ph.labels.labels, [i for i, n in ph.labels.names.items() if n.startswith("vertebrae_")])
    assert dice(found.mask("vertebrae"), vertebrae) > 0.8
    ribs = [f"rib_{s}_{k}" for s in ("left", "right") for k in (1, 6, 12)]
    assert min(organ_dice(found, ph.labels.labels, ph.labels.names, ribs).values()) > 0.8


def test_threshold_segmenter_reads_the_image_it_is_given_when_mirrored():
    ph = phantom(4, "LPS")
    lr = ph.volume.array_axis("lr")
    mirrored = Volume(np.flip(ph.volume.array, axis=lr).copy(), ph.volume.affine)
    found = segment_phantom_by_threshold(mirrored)
    truth = np.flip(ph.labels.labels, axis=lr)
    swap = {"left": "right", "right": "left"}

    def seen_side(name: str) -> str:  # the name a reader gives the mirrored structure
        for a, b in swap.items():
            if name.endswith("_" + a):
                return name[: -len(a)] + b
        return name

    paired = ("kidney_left", "kidney_right", "lung_lower_lobe_left", "lung_lower_lobe_right", "autochthon_left",
              "iliopsoas_right")
    scores = organ_dice(found, truth, ph.labels.names, paired, rename=seen_side)
    assert min(scores.values()) > 0.8, scores
    s = structure_stats(found.labels, found.affine, dict(found.names))
    assert s["liver"]["c"][0] < 0 < s["spleen"]["c"][0]  # the liver now appears on the left
    assert s["kidney_left"]["c"][0] < 0 < s["kidney_right"]["c"][0]
    # the middle lobe, now on the left, has no TotalSegmentator name and joins the left upper lobe
    assert "lung_middle_lobe_right" not in found.names.values()


def test_threshold_segmenter_on_blank_and_shuffled_volumes():
    ph = phantom(4, "RAS")
    blank = Volume(np.full(ph.volume.shape, -1000, dtype=np.int16), ph.volume.affine)
    empty = segment_phantom_by_threshold(blank)
    assert empty.present() == {} and not empty.labels.any()

    axial = ph.volume.axial_axis
    order = np.random.default_rng(0).permutation(ph.volume.shape[axial])
    shuffled = Volume(np.take(ph.volume.array, order, axis=axial), ph.volume.affine)
    found = segment_phantom_by_threshold(shuffled)
    truth = np.take(ph.labels.labels, order, axis=axial)
    scores = organ_dice(found, truth, ph.labels.names, ("liver", "kidney_left", "kidney_right", "spleen", "heart"))
    assert min(scores.values()) > 0.8, scores
    s = structure_stats(found.labels, found.affine, dict(found.names))
    assert s["kidney_left"]["c"][0] < 0 < s["kidney_right"]["c"][0]


# -- files ------------------------------------------------------------------------------------------

def test_written_phantom_loads_back_through_the_readers(tmp_path):
    ph = phantom(0, "oblique")
    paths = write_phantom(ph, tmp_path, "case0")
    vol = load_volume(paths["ct"])
    assert np.array_equal(vol.array, ph.volume.array) and np.allclose(vol.affine, ph.volume.affine, atol=1e-4)
    masks = load_masks(paths["seg"], vol)
    assert np.array_equal(masks.labels, ph.labels.labels)
    assert masks.present() == ph.labels.present()

    import nibabel as nib

    header_names = read_label_names_from_header(nib.load(str(paths["seg"])))
    assert header_names is not None and header_names[3] == "kidney_left" and header_names[5] == "liver"
    layout = json.loads(paths["layout"].read_text())
    assert layout["params"]["orientation"] == "oblique" and layout["params"]["seed"] == 0
    assert layout["structures"]["liver"]["voxels"] == int(ph.labels.mask("liver").sum())
    assert layout["variants"] == json.loads(json.dumps(ph.variants))


def test_generate_phantoms_writes_cases_and_manifest_and_resumes(tmp_path):
    cases = generate_phantoms(tmp_path, 2, seed=7, orientation="mixed", progress=False)
    assert [c["case_id"] for c in cases] == ["phantom_s7_000", "phantom_s7_001"]
    assert [c["orientation"] for c in cases] == ["RAS", "LPS"]
    assert len({c["patient"] for c in cases}) == 2 and cases[0]["seed"] != cases[1]["seed"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["parameters"]["n"] == 2
    from volprobe.manifest import sha256_file

    for case in manifest["cases"]:
        for f in case["files"].values():
            assert sha256_file(tmp_path / f["path"]) == f["sha256"]
    ct = tmp_path / "phantom_s7_001.nii.gz"
    before = ct.stat().st_mtime_ns
    again = generate_phantoms(tmp_path, 2, seed=7, orientation="mixed", progress=False)
    assert ct.stat().st_mtime_ns == before and again == cases  # kept, not rewritten
    with pytest.raises(PhantomError, match="other settings"):  # items made from them would point at new volumes
        generate_phantoms(tmp_path, 2, seed=7, orientation="mixed", noise_hu=0.0, progress=False)
    assert ct.stat().st_mtime_ns == before
    generate_phantoms(tmp_path, 2, seed=7, orientation="mixed", noise_hu=0.0, progress=False, overwrite=True)
    assert ct.stat().st_mtime_ns != before  # other parameters, asked to overwrite: rewritten
    assert json.loads((tmp_path / "phantom_s7_001_layout.json").read_text())["patient"] == "phantom_patient_s7_001"
    with pytest.raises(PhantomError):
        generate_phantoms(tmp_path / "bad", 1, orientation="sideways", progress=False)


def test_cli_phantom(tmp_path):
    from click.testing import CliRunner

    from volprobe.cli import main

    out = tmp_path / "ph"
    result = CliRunner().invoke(main, ["phantom", "--out", str(out), "--n", "1", "--seed", "3", "--shape", "64", "56",
                                       "60", "--spacing", "6", "6", "7", "--orientation", "LAS", "--situs-inversus"])
    assert result.exit_code == 0, result.output
    vol = load_volume(out / "phantom_s3_000.nii.gz")
    assert vol.shape == (64, 56, 60) and vol.axcodes == ("L", "A", "S")
    masks = load_masks(out / "phantom_s3_000_seg.nii.gz", vol)
    liver = np.argwhere(masks.mask("liver")) @ vol.affine[:3, :3].T + vol.affine[:3, 3]
    assert liver[:, 0].mean() < 0  # situs inversus: liver on the patient's left
    bad = CliRunner().invoke(main, ["phantom", "--out", str(tmp_path / "x"), "--spacing", "0", "1", "1"])
    assert bad.exit_code == 2 and "spacing" in bad.output


# -- the relation graph agrees with the generator's layout ------------------------------------------

@pytest.mark.parametrize("orientation", ORIENTATIONS)
@pytest.mark.parametrize("seed,situs", [(3, False), (8, True)])
def test_relation_graph_agrees_with_the_known_layout(orientation, seed, situs):
    from volprobe.segmentation.relations.graph import build_relation_graph

    ph = phantom(seed, orientation, situs)
    graph = build_relation_graph(ph.labels, ph.volume)
    assert graph.audit.mismatches == [] and graph.audit.checked > 20
    sides = {"lr": ("right", "left"), "ap": ("anterior", "posterior"), "si": ("superior", "inferior")}
    organs = sorted(n for n, s in ph.layout.items() if s.kind == "ellipsoid" and not s.cut_by_fov)
    checked = 0
    for a in organs:
        for b in organs:
            for k, axis in enumerate(("lr", "ap", "si")):
                d = ph.layout[a].centre_mm[k] - ph.layout[b].centre_mm[k]
                if a < b and abs(d) > 12:
                    assert graph.direction(a, b, axis).value == sides[axis][0 if d > 0 else 1], (a, b, axis, d)
                    checked += 1
    assert checked > 50
    v = ph.variants
    liver_side, spleen_side = ("left", "right") if situs else ("right", "left")
    assert graph.direction("liver", "spleen", "lr").value == liver_side
    assert graph.side("gallbladder").value == liver_side and graph.side("spleen").value == spleen_side
    other = {"kidney_left": "kidney_right", "kidney_right": "kidney_left"}
    assert graph.direction(v["higher_kidney"], other[v["higher_kidney"]], "si").value == "superior"
    assert graph.larger("kidney_left", "kidney_right").value == v["larger_kidney"]
    below = graph.extends_beyond("liver", v["liver_below_kidney"]["kidney"], "si", "inferior").value
    assert below == ("yes" if v["liver_below_kidney"]["liver_lower"] else "no")
    ap = graph.direction("stomach", "spleen", "ap").value
    assert ap == ("anterior" if v["stomach_anterior_to_spleen"] else "posterior")
