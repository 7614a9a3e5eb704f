"""One semantics: gold answers, counterfactual golds and the oracle all come from answer_from_graph."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import FIXTURE_CT, FIXTURE_SEG
from test_questions_support import fixture_graph, generate, phantom_graph, phantom_graphs
from volprobe.items import Item, read_items
from volprobe.probes.questions import answer_from_graph, relation_outcome
from volprobe.controls import counterfactual_axes
from volprobe.probes.questions.relation import mirrored_outcome, opposite_side
from volprobe.segmentation.masks import load_masks
from volprobe.segmentation.phantoms.generate import case_seed, generate_phantoms, make_phantom, segment_phantom_by_threshold
from volprobe.segmentation.relations.graph import build_relation_graph, relations_for_case
from volprobe.segmentation.volume import load_volume


def _graph_from_files(ct: Path, seg: Path, case: str):
    """Rebuilt from the files alone: nothing shared with the generator's graph objects."""
    volume = load_volume(ct)
    return build_relation_graph(load_masks(seg, volume), volume, case=case)


def _check_against(items: list[Item], graphs: dict) -> int:
    """Every item's gold and counterfactual golds equal what ``graphs`` (and their mirrored graphs) imply."""
    mirrored = {(case, axis): g.mirrored(axis) for case, g in graphs.items() for axis in ("lr", "si", "ap")}
    checked = 0
    for it in items:
        assert answer_from_graph(it, graphs[it.case]) == it.answer, it.question
        for control, axis in counterfactual_axes().items():
            got = answer_from_graph(it, mirrored[(it.case, axis)])
            assert got == it.counterfactual[control], (control, it.question)
        checked += 1
    return checked


def test_fixture_gold_and_counterfactuals_recomputed_from_the_mask_files(tmp_path):
    from volprobe.probes.questions import load_cases, write_question_set, generate_questions, QuestionSettings

    rel = tmp_path / "rel" / "example.json"
    relations_for_case(FIXTURE_CT, FIXTURE_SEG, rel)
    qs = generate_questions(load_cases([rel]), QuestionSettings(per_case=300, seed=5))
    write_question_set(qs, tmp_path / "items.jsonl")
    items = read_items(tmp_path / "items.jsonl")
    assert (tmp_path / items[0].volume_path).resolve() == FIXTURE_CT.resolve()
    independent = {"example_ct_sm": _graph_from_files(FIXTURE_CT, FIXTURE_SEG, "example_ct_sm")}
    assert _check_against(items, independent) == len(items) > 250


def test_phantom_gold_and_counterfactuals_recomputed_from_the_mask_files(tmp_path):
    from volprobe.probes.questions import load_cases, write_question_set, generate_questions, QuestionSettings

    rows = generate_phantoms(tmp_path / "ph", 3, seed=7, orientation="mixed", progress=False)
    qs = generate_questions(load_cases([tmp_path / "ph"], masks_suffix="_seg.nii.gz"), QuestionSettings(per_case=150))
    write_question_set(qs, tmp_path / "out" / "items.jsonl")
    items = read_items(tmp_path / "out" / "items.jsonl")
    assert {it.patient for it in items} == {r["patient"] for r in rows}  # from the phantom layouts
    independent = {r["case_id"]: _graph_from_files(tmp_path / "ph" / r["files"]["ct"]["path"],
                                                   tmp_path / "ph" / r["files"]["seg"]["path"], r["case_id"])
                   for r in rows}
    assert _check_against(items, independent) == len(items) == 450


def test_counterfactuals_match_the_mirrored_graph_on_many_phantoms():
    graphs = phantom_graphs(8)
    qs = generate(graphs, per_case=200, seed=11)
    assert _check_against(qs.items, {g.case: g for g in graphs}) == 1600


@pytest.mark.parametrize("axis", ["lr", "si", "ap"])
def test_mirrored_outcome_equals_the_outcome_on_the_mirrored_graph(axis):
    g = fixture_graph()
    m = g.mirrored(axis)
    names = ["liver", "spleen", "kidney_left", "kidney_right", "aorta", "stomach", "gallbladder", "vertebrae_L1"]
    specs = []
    for a in names:
        specs.append({"kind": "side", "structures": [a]})
        specs.append({"kind": "crosses_midline", "structures": [a]})
        for b in names:
            if a == b:
                continue
            specs += [{"kind": "direction", "axis": ax, "structures": [a, b]} for ax in ("lr", "si", "ap")]
            specs += [{"kind": "contact", "structures": [a, b]}, {"kind": "inside", "structures": [a, b]}]
    quads = [names[:4], names[2:6], names[4:8], [names[0], names[3], names[5], names[7]]]
    for q in quads + [n[:2] for n in quads]:
        for crit, towards in (("axis", None), ("midline", ("closer", "farther")), ("size", ("larger", "smaller")),
                              ("reach", ("inferior", "superior"))):
            for ax in (("lr", "si", "ap") if crit == "axis" else ("si",) if crit == "reach" else (None,)):
                for toward in towards or ({"lr": ("left", "right"), "si": ("superior", "inferior"),
                                           "ap": ("anterior", "posterior")}[ax]):
                    spec = {"kind": "extreme", "criterion": crit, "toward": toward, "structures": q}
                    if ax:
                        spec["axis"] = ax
                    specs.append(spec)
        specs.append({"kind": "touches_which", "anchor": "liver", "structures": [n for n in q if n != "liver"]})
    decided = 0
    for spec in specs:
        got, want = mirrored_outcome(spec, g, axis), relation_outcome(spec, m)
        assert got == (None if want is None else (want[0], pytest.approx(want[1], abs=1e-6))), spec
        decided += want is not None
    assert decided > 200  # the fixture's slab cuts most of these structures along si: no centroid there


def test_answer_from_graph_refuses_what_the_graph_cannot_decide():
    g = fixture_graph()
    item = Item(id="x", question="Is the liver to the patient's left of the spleen?", answer="no",
                answer_type="yes_no", options=["yes", "no"],
                metadata={"relation": {"kind": "direction", "axis": "lr", "format": "yes_no",
                                       "structures": ["liver", "spleen"], "asserts": "left"}})
    assert answer_from_graph(item, g) == "no"
    assert answer_from_graph(item, g.mirrored("lr")) == "yes"
    missing = Item(id="y", question="?", answer="no", answer_type="yes_no", options=["yes", "no"],
                   metadata={"relation": {**item.metadata["relation"], "structures": ["liver", "urinary_bladder"]}})
    assert answer_from_graph(missing, g) is None  # the fixture has no bladder
    close = Item(id="z", question="?", answer="no", answer_type="yes_no", options=["yes", "no"],
                 metadata={"relation": {**item.metadata["relation"], "structures": ["vertebrae_L1", "spinal_cord"]}})
    assert relation_outcome(close.metadata["relation"], g) is None  # centres 2.3 mm apart along left-right
    assert answer_from_graph(close, g) is None
    assert answer_from_graph(Item(id="w", question="?", answer="a", answer_type="open"), g) is None
    assert opposite_side("left") == "right" and opposite_side("inferior") == "superior"


def test_the_oracle_reading_the_image_never_contradicts_the_gold():
    """A graph from segmenting the phantom's image (not its masks) decides many items and gets all right."""
    ph = make_phantom(case_seed(0, 0), noise_hu=2.0)
    truth = build_relation_graph(ph.labels, ph.volume, case="ph00")
    qs = generate([truth], per_case=300)
    seen = build_relation_graph(segment_phantom_by_threshold(ph.volume), ph.volume, case="oracle-input")
    answers = [answer_from_graph(it, seen) for it in qs.items]
    decided = [(a, it.answer) for a, it in zip(answers, qs.items) if a is not None]
    assert len(decided) > 0.4 * len(qs.items)
    assert all(a == gold for a, gold in decided)
    # and on the mirrored image it follows the counterfactual gold
    flipped = ph.volume.__class__(array=ph.volume.array[::-1].copy(), affine=ph.volume.affine)
    mirrored_seen = build_relation_graph(segment_phantom_by_threshold(flipped), flipped, case="oracle-input")
    lr_items = [it for it in qs.items if it.metadata["category"] == "laterality"]
    follows = [answer_from_graph(it, mirrored_seen) == it.counterfactual["mirror_lr"] for it in lr_items
               if answer_from_graph(it, mirrored_seen) is not None]
    assert follows and all(follows)
    assert phantom_graph(0).case == "ph00"
