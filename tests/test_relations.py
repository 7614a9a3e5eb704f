"""The anatomy relation graph: real fixture facts in several orientations, exactness, audit, I/O."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner
from scipy import ndimage
from scipy.spatial.distance import cdist

from volprobe.cli import main
from volprobe.errors import FormatError, MaskError
from volprobe.segmentation.anatomy import structure_stats
from volprobe.segmentation.masks import LabelMap, load_masks, resample_labels_nearest
from volprobe.segmentation.relations.graph import (RelationGraph, RelationThresholds, build_relation_graph,
                                             load_relation_graph)
from volprobe.segmentation.volume import Volume, load_volume, save_nifti


# -- orientation helpers (nibabel's own orientation tools) -------------------------------------

def reorient(array: np.ndarray, affine: np.ndarray, codes: str) -> tuple[np.ndarray, np.ndarray]:
    """Same anatomy, voxel data and affine changed together, stored in orientation ``codes``."""
    start = nib.orientations.io_orientation(affine)
    transform = nib.orientations.ornt_transform(start, nib.orientations.axcodes2ornt(tuple(codes)))
    data = nib.orientations.apply_orientation(array, transform)
    new_affine = affine @ nib.orientations.inv_ornt_aff(transform, array.shape)
    return np.ascontiguousarray(data), new_affine


def rotation(deg_z: float, deg_x: float) -> np.ndarray:
    z, x = np.deg2rad(deg_z), np.deg2rad(deg_x)
    rz = np.array([[np.cos(z), -np.sin(z), 0], [np.sin(z), np.cos(z), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(x), -np.sin(x)], [0, np.sin(x), np.cos(x)]])
    return rz @ rx


def oblique_copy(labels: np.ndarray, affine: np.ndarray, deg_z=17.0, deg_x=9.0, spacing=2.0):
    """Resample the label map (nearest neighbour) onto a rotated grid covering the same field of view."""
    corners = np.array([[i, j, k, 1] for i in (0, labels.shape[0] - 1) for j in (0, labels.shape[1] - 1)
                        for k in (0, labels.shape[2] - 1)], float) @ affine.T
    centre = corners[:, :3].mean(axis=0)
    rot = rotation(deg_z, deg_x)
    local = (corners[:, :3] - centre) @ rot  # coordinates along the rotated axes
    half = np.abs(local).max(axis=0) + spacing
    shape = tuple(int(np.ceil(2 * h / spacing)) + 1 for h in half)
    new = np.eye(4)
    new[:3, :3] = rot * spacing
    new[:3, 3] = centre - rot @ (half)
    ref = Volume(np.zeros(shape, np.int16), new)
    return resample_labels_nearest(labels, affine, ref), new


@pytest.fixture(scope="module")
def fixture_labels(totalseg_fixture):
    ct, seg = totalseg_fixture
    lm = load_masks(seg, load_volume(ct))
    return lm


def graph_in(lm: LabelMap, orientation: str) -> RelationGraph:
    if orientation == "oblique":
        labels, affine = oblique_copy(lm.labels, lm.affine)
    else:
        labels, affine = reorient(lm.labels, lm.affine, orientation)
    return build_relation_graph(LabelMap(labels, affine, lm.names))


ORIENTATIONS = ["RAS", "LPS", "LAS", "PIR", "oblique"]


@pytest.mark.parametrize("orientation", ORIENTATIONS)
def test_real_fixture_anatomy_in_every_orientation(fixture_labels, orientation):
    g = graph_in(fixture_labels, orientation)
    if orientation != "oblique":
        assert "".join(nib.aff2axcodes(np.array(g.grid["affine"]))) == orientation
    for organ in ("liver", "gallbladder"):
        assert g.side(organ).value == "right", organ
    for organ in ("spleen", "stomach", "kidney_left"):
        assert g.side(organ).value == "left", organ
    assert g.direction("gallbladder", "kidney_right", "ap").value == "anterior"
    assert g.direction("kidney_right", "gallbladder", "ap").value == "posterior"
    assert g.direction("aorta", "inferior_vena_cava", "lr").value == "left"
    assert g.direction("liver", "spleen", "lr").value == "right"
    assert g.extent_relation("vertebrae_T11", "vertebrae_L2", "si").value == "superior"
    assert g.contact("liver", "gallbladder").value == "yes"
    assert g.contact("liver", "spleen").value == "no"
    assert g.audit.passed and not g.audit.mirrored_likely
    assert g.audit.checked >= 10
    assert g.midline.source == "spinal_cord"


def test_orientations_agree_numerically(fixture_labels):
    ras = graph_in(fixture_labels, "RAS")
    for orientation in ("LPS", "LAS", "PIR"):
        other = graph_in(fixture_labels, orientation)
        for name, s in ras.structures.items():
            assert np.allclose(s.centroid_mm, other.structures[name].centroid_mm, atol=1e-6)
            assert np.allclose(s.min_mm, other.structures[name].min_mm, atol=1e-6)
            assert s.voxels == other.structures[name].voxels
        for key, geo in ras.pairs.items():
            assert other.pairs[key].surface_distance_mm == pytest.approx(geo.surface_distance_mm, abs=1e-6)


def test_oblique_centroids_close_to_original(fixture_labels):
    ras, obl = graph_in(fixture_labels, "RAS"), graph_in(fixture_labels, "oblique")
    for name in ("liver", "spleen", "kidney_left", "kidney_right", "aorta", "stomach"):
        assert np.allclose(ras.structures[name].centroid_mm, obl.structures[name].centroid_mm, atol=2.5), name


@pytest.mark.parametrize("orientation", ["RAS", "LPS", "oblique"])
def test_audit_catches_mirrored_voxels_with_header_kept(fixture_labels, orientation):
    if orientation == "oblique":
        data, affine = oblique_copy(fixture_labels.labels, fixture_labels.affine)
    else:
        data, affine = reorient(fixture_labels.labels, fixture_labels.affine, orientation)
    lr_axis = int(np.argmax(np.abs(affine[0, :3])))
    corrupted = LabelMap(np.ascontiguousarray(np.flip(data, axis=lr_axis)), affine, fixture_labels.names)
    g = build_relation_graph(corrupted)
    assert not g.audit.passed and g.audit.mirrored_likely
    assert {"kidney_left", "kidney_right"} <= {c.name for c in g.audit.mismatches}
    assert g.side("liver").value == "left"  # what the corrupted file claims; the audit is what flags it
    assert "MIRRORED" in g.audit.summary()


def test_structure_stats_match_brute_force_on_oblique_random_map():
    rng = np.random.default_rng(3)
    labels = ndimage.zoom(rng.integers(0, 5, (6, 5, 4)), 3, order=0).astype(np.uint8)
    labels[rng.random(labels.shape) < 0.05] = 0  # holes and islands
    affine = np.eye(4)
    affine[:3, :3] = rotation(25, -12) @ np.diag([1.2, 0.8, 2.5])
    affine[:3, 3] = [-30, 12, 40]
    stats = structure_stats(labels, affine, {i: f"s{i}" for i in range(1, 5)})
    stats6 = structure_stats(labels, affine, {i: f"s{i}" for i in range(1, 5)}, connectivity=6)
    for lab in range(1, 5):
        m = labels == lab
        xyz = np.argwhere(m) @ affine[:3, :3].T + affine[:3, 3]
        s = stats[f"s{lab}"]
        assert s.voxels == m.sum()
        assert s.volume_ml == pytest.approx(m.sum() * abs(np.linalg.det(affine[:3, :3])) / 1000)
        assert np.allclose(s.centroid_mm, xyz.mean(axis=0))
        assert np.allclose(s.min_mm, xyz.min(axis=0)) and np.allclose(s.max_mm, xyz.max(axis=0))
        assert s.components == ndimage.label(m, np.ones((3, 3, 3)))[1]
        assert stats6[f"s{lab}"].components == ndimage.label(m)[1]
        idx = np.argwhere(m)
        axial = int(np.argmax(np.abs(affine[2, :3])))
        assert s.axial_slices == (idx[:, axial].min(), idx[:, axial].max())


def test_surface_distances_exact_on_real_fixture(fixture_labels):
    g = build_relation_graph(fixture_labels)
    aff = fixture_labels.affine

    def boundary(label):
        m = fixture_labels.labels == label
        return np.argwhere(m & ~ndimage.binary_erosion(m, border_value=0)) @ aff[:3, :3].T + aff[:3, 3]

    exact = [k for k, v in g.pairs.items() if not v.distance_is_lower_bound]
    bounded = [k for k, v in g.pairs.items() if v.distance_is_lower_bound]
    assert len(exact) > 50 and len(bounded) > 50
    rng = np.random.default_rng(0)
    for idx in rng.choice(len(exact), 40, replace=False):
        a, b = exact[idx]
        d = cdist(boundary(g.structures[a].label), boundary(g.structures[b].label)).min()
        assert g.pairs[(a, b)].surface_distance_mm == pytest.approx(d, abs=1e-6)
    for idx in rng.choice(len(bounded), 20, replace=False):
        a, b = bounded[idx]
        d = cdist(boundary(g.structures[a].label), boundary(g.structures[b].label)).min()
        assert d >= g.pairs[(a, b)].surface_distance_mm - 1e-6


def test_containment_contact_and_indeterminate_on_designed_shapes():
    grid = np.indices((40, 40, 40)).transpose(1, 2, 3, 0) - 20  # voxel offsets from the centre, 2 mm voxels
    r = np.linalg.norm(grid, axis=-1)
    x, y, z = grid[..., 0], grid[..., 1], grid[..., 2]
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[(r <= 12) & (r > 7)] = 1  # a shell ...
    labels[r <= 2] = 2  # ... with a ball in its cavity, 5 voxels (10 mm) from the wall
    labels[(np.abs(x - 15) <= 2) & (np.abs(y) <= 2) & (np.abs(z) <= 2)] = 3  # x 13..17: face-adjacent to the shell
    labels[(np.abs(x + 18) <= 1) & (np.abs(y - 1) <= 1) & (np.abs(z) <= 1)] = 4  # x -19..-17: 5 voxels away
    names = {1: "shell", 2: "core", 3: "touching_box", 4: "far_box"}
    g = build_relation_graph(LabelMap(labels, np.diag([2.0, 2.0, 2.0, 1.0]), names))
    assert g.inside("core", "shell").value == "yes" and g.geometry("core", "shell").share_a_in_b == 1.0
    assert g.inside("shell", "core").value == "no"
    assert g.inside("touching_box", "shell").value == "no"
    assert g.contact("touching_box", "shell") == g.contact("shell", "touching_box")
    assert g.contact("touching_box", "shell").value == "yes"
    assert g.surface_distance("touching_box", "shell") == (2.0, False)
    assert g.contact("core", "shell").value == "no"
    assert g.surface_distance("core", "shell")[0] == pytest.approx(2.0 * np.sqrt(26))  # (5, 1, 0) voxels apart
    assert g.contact("far_box", "shell").value == "no"
    # centroids 1 voxel (2 mm) apart along y: indeterminate, not guessed; 33 voxels apart along x: clear
    assert g.direction("touching_box", "far_box", "ap").value == "indeterminate"
    assert g.direction("touching_box", "far_box", "lr").value == "right"
    assert g.direction("far_box", "touching_box", "lr").value == "left"
    # adjacent extents (centres 2 mm apart, under the 3 mm margin) are not called "entirely right of"
    assert g.extent_relation("touching_box", "shell", "lr").value == "indeterminate"
    assert g.extent_relation("touching_box", "far_box", "lr").value == "right"
    assert g.extent_relation("core", "shell", "lr").value == "overlap"


def test_json_round_trip_and_bad_files(tmp_path, fixture_labels):
    g = build_relation_graph(fixture_labels, thresholds=RelationThresholds(centroid_margin_mm=7.0))
    path = g.save(tmp_path / "rel.json")
    back = load_relation_graph(path)
    assert back.thresholds.centroid_margin_mm == 7.0
    for a, b in list(g.pairs)[:100]:
        assert back.pair_summary(a, b) == g.pair_summary(a, b)
    data = json.loads(path.read_text())
    data["version"] = 99
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(FormatError, match="version 99"):
        load_relation_graph(tmp_path / "old.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_relation_graph(tmp_path / "junk.json")
    with pytest.raises(FileNotFoundError):
        load_relation_graph(tmp_path / "missing.json")


def test_empty_label_map_is_a_clear_error():
    with pytest.raises(MaskError, match="empty"):
        build_relation_graph(LabelMap(np.zeros((5, 5, 5), np.uint8), np.eye(4), {1: "liver"}))


def test_cli_relations_reports_audit(tmp_path, totalseg_fixture, fixture_labels):
    ct, seg = totalseg_fixture
    runner = CliRunner()
    res = runner.invoke(main, ["relations", str(ct), "--masks", str(seg), "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 0, res.output
    assert "laterality audit PASSED" in res.output
    assert (tmp_path / "r.json.manifest.json").exists()
    # a corrupted copy: voxel data mirrored, header kept
    img = nib.load(str(seg))
    lr_axis = int(np.argmax(np.abs(img.affine[0, :3])))
    bad = nib.Nifti1Image(np.flip(np.asarray(img.dataobj), axis=lr_axis).copy(), img.affine, img.header)
    nib.save(bad, str(tmp_path / "bad_seg.nii.gz"))
    vol = load_volume(ct)
    save_nifti(vol.with_array(np.flip(vol.array, axis=lr_axis).copy()), tmp_path / "bad_ct.nii.gz")
    res = runner.invoke(main, ["relations", str(tmp_path / "bad_ct.nii.gz"), "--masks", str(tmp_path / "bad_seg.nii.gz"),
                               "--out", str(tmp_path / "bad.json"), "--quiet"])
    assert res.exit_code == 0
    assert "FAILED" in res.output and "MIRRORED" in res.output
    assert json.loads((tmp_path / "bad.json").read_text())["audit"]["passed"] is False
