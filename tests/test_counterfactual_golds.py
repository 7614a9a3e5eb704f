"""Counterfactual golds from the transformed masks, `probe controls apply`, the name-swap tag and provenance.

The central check: for oblique, LPS and RAS phantoms and every geometric control, each item's counterfactual
gold equals the relation re-evaluated on the label map that `probe controls apply --labels` writes (zero
mismatches). Before golds came from the moved masks, 214 of 1,200 oblique counterfactual golds failed this
comparison (none on RAS or LPS grids): they assumed an exact reflection about a patient axis, while the
controls flip the nearest array axis.
"""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from clifixtures import assert_one_error_line, check_ok, invoke
from test_questions_support import fixture_volume_and_masks, generate, phantom_graphs
from volprobe.controls import Control, ControlError, get_control, geometric_controls, register_control
from volprobe.controls.counterfactuals import case_relations, counterfactual_graph
from volprobe.items import read_items
from volprobe.probes.questions import answer_from_graph
from volprobe.records import NAME_SWAP_ONLY, RunRecord, read_records
from volprobe.segmentation.masks import LabelMap, load_masks
from volprobe.segmentation.names import mirror_name, side_of
from volprobe.segmentation.phantoms.generate import PhantomError, case_seed, generate_phantoms, make_phantom
from volprobe.segmentation.relations.graph import RelationGraph, build_relation_graph
from volprobe.segmentation.volume import Volume, load_volume, save_nifti

SMALL = ("--shape", 64, 56, 60, "--spacing", 5, 5, 6)  # a phantom's whole torso on a coarse grid: fast


def test_the_geometric_controls_are_the_three_flips():
    assert [c.label for c in geometric_controls()] == ["mirror_lr", "flip_si", "flip_ap"]
    assert all(c.facts()["changes_geometry"] and c.changes_gold for c in geometric_controls())
    assert not any(get_control(n).changes_geometry for n in ("full", "blank", "shuffled_slices", "single_slice"))


def test_a_geometric_control_must_say_how_it_moves_the_masks():
    class Tilted(Control):
        name = "tilted_without_labels"
        statement = "rotates the image a little"
        changes_gold = changes_geometry = True

    with pytest.raises(ControlError, match="transform_labels"):
        register_control(Tilted)


# -- the golds equal the relations on the masks `probe controls apply --labels` writes ---------------------

@pytest.fixture(scope="module", params=["oblique", "LPS", "RAS"])
def study(request, tmp_path_factory):
    """Two phantoms in one orientation, their items, and per case and geometric control the graph of what
    `probe controls apply --labels` writes."""
    root = tmp_path_factory.mktemp(f"cf-{request.param}")
    check_ok(invoke("phantom", "--out", root / "ph", "--n", 2, "--seed", 5, "--orientation", request.param, *SMALL))
    check_ok(invoke("questions", root / "ph", "--out", root / "items.jsonl", "--per-case", 80, "--no-progress"))
    items = read_items(root / "items.jsonl")
    graphs = {}
    for case in sorted({it.case for it in items}):
        for control in geometric_controls():
            out = root / "moved" / f"{case}_{control.label}.nii.gz"
            check_ok(invoke("controls", "apply", root / "ph" / f"{case}.nii.gz", "--control", control.label,
                            "--out", out, "--labels", root / "ph" / f"{case}_seg.nii.gz"))
            volume = load_volume(out)
            masks = load_masks(root / "moved" / f"{case}_{control.label}_seg.nii.gz", volume)
            graphs[(case, control.label)] = build_relation_graph(masks, volume, case=case)
    return request.param, items, graphs


def test_counterfactual_golds_equal_the_relations_on_the_moved_masks(study):
    orientation, items, graphs = study
    mismatches, changed = [], 0
    for it in items:
        for control in geometric_controls():
            want = answer_from_graph(it, graphs[(it.case, control.label)])
            if it.counterfactual[control.label] != want:
                mismatches.append((control.label, it.question, it.counterfactual[control.label], want))
            changed += it.counterfactual[control.label] not in (None, it.answer)
    assert len(items) > 100 and not mismatches, mismatches[:5]
    assert changed > 50
    # the tilt of each flip is recorded with the item (and copied into every record)
    tilts = [it.metadata["control_params"][c.label]["axis_angle_deg"] for it in items for c in geometric_controls()]
    assert (min(tilts) > 5) if orientation == "oblique" else (max(tilts) == 0)


def test_the_moved_masks_are_renamed_for_a_mirror_only(study):
    _, items, graphs = study
    case = items[0].case
    for control in geometric_controls():
        assert {"kidney_left", "kidney_right"} <= set(graphs[(case, control.label)].structures)
    # after the mirror the kidney on the image's left is the patient's right kidney, named by where it is
    # seen; a flip along another axis keeps the names
    mirrored, flipped = graphs[(case, "mirror_lr")], graphs[(case, "flip_si")]
    assert mirrored.structures["kidney_left"].voxels == flipped.structures["kidney_right"].voxels
    assert mirrored.audit.passed and flipped.audit.passed


# -- pair geometry reused for an isometry ------------------------------------------------------------------

def _same_relations(reused: RelationGraph, full: RelationGraph) -> None:
    """Every relation of every pair and structure agrees; exact distances agree to 1e-9 mm; where either
    distance is only a lower bound (pairs beyond the cutoff) both are at least the cutoff."""
    assert reused.structures == full.structures and set(reused.pairs) == set(full.pairs)
    pairs = sorted(full.pairs)
    for a, b in zip(reused.pair_summaries(pairs), full.pair_summaries(pairs)):
        assert {k: a[k] for k in ("direction", "extent", "inside", "volume_ratio")} == \
               {k: b[k] for k in ("direction", "extent", "inside", "volume_ratio")}, (a["a"], a["b"])
        assert a["contact"][0] == b["contact"][0], (a["a"], a["b"])  # its margin is the distance (below)
    cutoff = full.thresholds.distance_cutoff_mm
    for key in pairs:
        r, f = reused.pairs[key], full.pairs[key]
        assert (r.share_a_in_b, r.share_b_in_a) == (f.share_a_in_b, f.share_b_in_a)
        if r.distance_is_lower_bound or f.distance_is_lower_bound:
            assert min(r.surface_distance_mm, f.surface_distance_mm) >= cutoff - 1e-9, key
        else:
            assert r.surface_distance_mm == pytest.approx(f.surface_distance_mm, abs=1e-9), key
    assert reused.midline == full.midline and reused.audit == full.audit


@pytest.mark.parametrize("orientation", ["RAS", "oblique", "fixture"])
def test_reused_pair_geometry_equals_the_recomputed_graph(orientation):
    if orientation == "fixture":
        volume, masks = fixture_volume_and_masks()
    else:
        ph = make_phantom(case_seed(0, 2), orientation=orientation, shape=(64, 56, 60), spacing=(5, 5, 6))
        volume, masks = ph.volume, ph.labels
    graph = build_relation_graph(masks, volume, case="x")
    for control in geometric_controls():
        cf = counterfactual_graph(control, masks, volume, graph)
        assert cf.pairs_reused
        full = build_relation_graph(control.transform_labels(masks), control.apply_to_case(volume, "x").volume,
                                    case="x")
        _same_relations(cf.graph, full)


def test_a_sheared_grid_measures_the_pairs_again():
    ph = make_phantom(case_seed(0, 3), shape=(48, 40, 44), spacing=(6, 6, 7))
    affine = ph.volume.affine.copy()
    affine[0, 1] = 1.5  # j also moves along x: the axes are no longer orthogonal
    volume, masks = Volume(ph.volume.array, affine), LabelMap(ph.labels.labels, affine, ph.labels.names)
    control = get_control("mirror_lr")
    assert not control.keeps_distances(affine) and control.keeps_distances(ph.volume.affine)
    graph = build_relation_graph(masks, volume, case="sheared")
    cf = counterfactual_graph(control, masks, volume, graph)
    assert not cf.pairs_reused
    full = build_relation_graph(control.transform_labels(masks), control.apply_to_case(volume, "x").volume, case="x")
    assert cf.graph.pairs == full.pairs


def test_counterfactual_graphs_survive_the_relations_file(tmp_path):
    ph = make_phantom(case_seed(0, 4), orientation="oblique", shape=(48, 40, 44), spacing=(6, 6, 7))
    graph = case_relations(ph.labels, ph.volume, case="p")
    back = RelationGraph.from_dict(json.loads(json.dumps(graph.to_dict())))
    assert set(back.counterfactuals) == {"mirror_lr", "flip_si", "flip_ap"}
    for name, cf in graph.counterfactuals.items():
        got = back.counterfactuals[name]
        assert got.params == cf.params and got.renamed == cf.renamed and got.pairs_reused
        assert got.graph.structures == cf.graph.structures and got.graph.pairs == cf.graph.pairs
        assert got.geometry_only.structures == cf.geometry_only.structures


def test_a_case_without_counterfactual_graphs_gets_no_counterfactual_gold():
    bare = replace(phantom_graphs(1)[0], counterfactuals={})  # e.g. a graph built in memory from masks alone
    qs = generate([bare], per_case=40)
    assert qs.items and all(set(it.counterfactual) == {"mirror_lr", "flip_si", "flip_ap"} for it in qs.items)
    assert all(v is None for it in qs.items for v in it.counterfactual.values())
    assert any("without a counterfactual graph for mirror_lr" in w for w in qs.warnings)


# -- the name-swap-only tag ------------------------------------------------------------------------------

def test_name_swap_only_marks_golds_that_change_only_because_side_names_swap():
    graphs = phantom_graphs(6)
    qs = generate(graphs, per_case=300, seed=3)
    by_case = {g.case: g for g in graphs}
    tagged = partners = 0
    for it in qs.items:
        assert set(it.metadata["name_swap_only"]) <= {"mirror_lr"}  # only the mirror renames
        changed = it.counterfactual["mirror_lr"] not in (None, it.answer)
        # the outcome on the mirrored anatomy with every structure under its original name, rebuilt by hand
        cf = by_case[it.case].counterfactuals["mirror_lr"]
        unnamed = cf.graph.renamed({n: mirror_name(n) for n in cf.graph.structures if side_of(n)})
        geometry_only = answer_from_graph(it, unnamed)
        assert ("mirror_lr" in it.metadata["name_swap_only"]) == (changed and geometry_only == it.answer), it.question
        tagged += "mirror_lr" in it.metadata["name_swap_only"]
        a, *rest = it.metadata["relation"]["structures"]
        spec = it.metadata["relation"]
        if (spec["kind"] == "direction" and spec["axis"] != "lr" and side_of(a) and rest[0] == mirror_name(a)
                and changed):
            partners += 1  # a left structure against its right partner along another axis
            assert "mirror_lr" in it.metadata["name_swap_only"], it.question
    assert tagged > 20 and partners > 5


def test_records_carry_the_tag_and_the_tilt():
    graphs = phantom_graphs(2, "oblique")
    item = next(it for it in generate(graphs, per_case=300).items if it.metadata["name_swap_only"])
    rec = RunRecord.for_item(item, model="m", control="mirror_lr")
    assert rec.tags == [NAME_SWAP_ONLY] and rec.control_params["axis_angle_deg"] > 5
    assert RunRecord.for_item(item, model="m", control="flip_si").tags == []
    given = RunRecord.for_item(item, model="m", control="mirror_lr", control_params={"array_axis": 0, "x": 1})
    assert given.control_params["x"] == 1 and "axis_angle_deg" in given.control_params


def test_reports_show_tracking_without_the_name_swap_only_items(tmp_path):
    from volprobe.records import write_records
    from volprobe.stats import ReportSettings
    from volprobe.stats.analysis import analyse
    from volprobe.stats.load import read_runs
    from volprobe.stats.panel import build_panel

    facts_full = get_control("full").facts()
    facts_cf = get_control("mirror_lr").facts()
    records = []
    for i in range(40):
        swap = i < 10  # the model follows the 30 geometric changes, not the 10 name swaps
        for control, facts, gold, parsed in (("full", facts_full, "yes", "yes"),
                                             ("mirror_lr", facts_cf, "no", "yes" if swap else "no")):
            records.append(RunRecord(item_id=f"q{i}", model="m", control=control, gold=gold, gold_original="yes",
                                     correct=parsed == gold, parsed=parsed, case=f"c{i}", answer_type="yes_no",
                                     chance=0.5, control_facts=facts,
                                     tags=[NAME_SWAP_ONLY] if swap and control == "mirror_lr" else []))
    write_records(records, tmp_path / "records.jsonl")
    paired = analyse(build_panel(read_runs([tmp_path / "records.jsonl"])), ReportSettings()).paired
    row = paired[(paired["control"] == "mirror_lr") & (paired["grouping"] == "all")].iloc[0]
    assert row.n_changed == 40 and row.tracking_rate == pytest.approx(0.75)
    assert row.n_changed_geometry == 30 and row.tracking_geometry_rate == pytest.approx(1.0)


# -- provenance -------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    root = tmp_path_factory.mktemp("provenance")
    check_ok(invoke("phantom", "--out", root / "ph", "--n", 2, "--seed", 2, *SMALL))
    check_ok(invoke("questions", root / "ph", "--out", root / "items.jsonl", "--per-case", 6, "--no-progress"))
    return root


def test_items_record_the_hashes_of_their_volume_and_masks(small_study):
    items = read_items(small_study / "items.jsonl")
    for it in items:
        volume = load_volume(small_study / it.volume_path)
        assert it.metadata["volume_sha256"] == volume.content_hash
        masks = load_masks(str(small_study / it.volume_path).replace(".nii.gz", "_seg.nii.gz"), volume)
        assert it.metadata["masks_sha256"] == build_relation_graph(masks, volume).labels_hash


def test_a_stale_item_is_refused_by_probe_run(small_study, tmp_path):
    items = read_items(small_study / "items.jsonl")
    stale = sorted({it.case for it in items})[1]
    ph = tmp_path / "ph"
    ph.mkdir()
    for f in (small_study / "ph").iterdir():
        (ph / f.name).write_bytes(f.read_bytes())
    (tmp_path / "items.jsonl").write_bytes((small_study / "items.jsonl").read_bytes())
    ct = ph / f"{stale}.nii.gz"
    volume = load_volume(ct)
    changed = volume.array.copy()
    changed[0, 0, 0] += 1  # one voxel: another scan as far as the items know
    save_nifti(volume.with_array(changed), ct)
    run = ("run", "--model", "oracle", "--items", tmp_path / "items.jsonl", "--control", "full", "--no-progress")
    line = assert_one_error_line(invoke(*run, "--out", tmp_path / "r1"), 2, "was made from")
    first = next(it.id for it in items if it.case == stale)
    assert f"{stale}.nii.gz" in line and first in line and "--allow-changed-volumes" in line
    check_ok(invoke(*run, "--out", tmp_path / "r2", "--allow-changed-volumes"))
    records = read_records(tmp_path / "r2" / "records.jsonl")
    assert len(records) == len(items)
    assert all(("volume_changed" in r.tags) == (r.case == stale) for r in records)


def test_probe_phantom_refuses_a_folder_of_other_settings(tmp_path):
    out = tmp_path / "ph"
    check_ok(invoke("phantom", "--out", out, "--n", 1, *SMALL))
    before = (out / "phantom_s0_000.nii.gz").read_bytes()
    line = assert_one_error_line(invoke("phantom", "--out", out, "--n", 1, "--noise", 5, *SMALL), 2, "other settings")
    assert "--overwrite" in line and "noise_hu" in line
    assert (out / "phantom_s0_000.nii.gz").read_bytes() == before
    check_ok(invoke("phantom", "--out", out, "--n", 2, *SMALL))  # same settings: kept, one case added
    assert (out / "phantom_s0_000.nii.gz").read_bytes() == before and (out / "phantom_s0_001.nii.gz").exists()
    (out / "manifest.json").unlink()  # a case's layout says what it was made with, manifest or not
    with pytest.raises(PhantomError, match="phantom_s0_000 made with other settings"):
        generate_phantoms(out, 1, shape=(64, 56, 60), spacing=(5, 5, 6), noise_hu=5, progress=False)
    check_ok(invoke("phantom", "--out", out, "--n", 1, "--noise", 5, "--overwrite", *SMALL))
    assert (out / "phantom_s0_000.nii.gz").read_bytes() != before


# -- probe controls apply ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def one_volume(tmp_path_factory):
    root = tmp_path_factory.mktemp("apply")
    check_ok(invoke("phantom", "--out", root, "--n", 1, "--seed", 9, "--orientation", "oblique", *SMALL))
    return root / "phantom_s9_000.nii.gz", root / "phantom_s9_000_seg.nii.gz"


@pytest.mark.parametrize("spec", ["full", "blank", "shuffled_slices", "single_slice", "mirror_lr", "flip_si",
                                  "flip_ap"])
def test_probe_controls_apply_writes_what_the_control_gives(one_volume, tmp_path, spec):
    ct, _ = one_volume
    out = tmp_path / "out.nii.gz"
    check_ok(invoke("controls", "apply", ct, "--control", spec, "--out", out, "--seed", 3))
    want = get_control(spec).apply_to_case(load_volume(ct), "phantom_s9_000", _ctx(3)).volume
    array, affine = _read(out)
    assert np.array_equal(array, want.array) and np.allclose(affine, want.affine)
    assert json.loads((tmp_path / "out.nii.gz.manifest.json").read_text())["parameters"]["control"] == spec


def _read(path):
    """Voxels and affine of a NIfTI as nibabel reads it (a single slice is a valid file, if not a CT volprobe reads)."""
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj), img.affine


def _ctx(seed):
    from volprobe.controls import ControlContext

    return ControlContext(seed=seed)


def test_probe_controls_apply_moves_the_masks_as_the_volume(one_volume, tmp_path):
    ct, seg = one_volume
    out = tmp_path / "m.nii.gz"
    result = invoke("controls", "apply", ct, "--control", "mirror_lr", "--out", out, "--labels", seg)
    check_ok(result)
    assert "renamed" in result.output
    volume = load_volume(ct)
    masks = load_masks(seg, volume)
    want = get_control("mirror_lr").transform_labels(masks)
    got = load_masks(tmp_path / "m_seg.nii.gz", load_volume(out))
    assert np.array_equal(got.labels, want.labels)
    assert {got.names[i] for i in got.present()} == {want.names[i] for i in want.present()}
    left = next(i for i, n in masks.names.items() if n == "kidney_left")
    assert got.names[left] == "kidney_right"


def test_probe_controls_apply_needs_an_item_for_item_dependent_controls(one_volume, tmp_path):
    ct, seg = one_volume
    out = tmp_path / "s.nii.gz"
    assert_one_error_line(invoke("controls", "apply", ct, "--control", "single_slice:evidence", "--out", out), 2,
                          "give an item")
    check_ok(invoke("questions", ct.parent, "--out", tmp_path / "items.jsonl", "--per-case", 4, "--no-progress"))
    item = read_items(tmp_path / "items.jsonl")[0]
    check_ok(invoke("controls", "apply", ct, "--control", "single_slice:evidence", "--out", out, "--item", item.id,
                    "--items", tmp_path / "items.jsonl"))
    want = get_control("single_slice:evidence").apply(load_volume(ct), item, _ctx(0)).volume
    array, affine = _read(out)
    assert np.array_equal(array, want.array) and np.allclose(affine, want.affine)
    for spec, args, phrase in (("text_only", (), "no image"), ("swapped_volume", (), "two different patients"),
                               ("shuffled_slices", ("--labels", seg), "does not move the anatomy")):
        assert_one_error_line(invoke("controls", "apply", ct, "--control", spec, "--out", out, *args), 2, phrase)


def test_probe_controls_still_lists_the_controls():
    result = invoke("controls")
    check_ok(result)
    assert "mirror_lr" in result.output and "geometry: golds from the moved masks" in result.output
