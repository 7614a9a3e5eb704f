"""One semantics: gold answers, counterfactual golds and the oracle all come from answer_from_graph; counterfactual
golds are relations of the masks moved as the control moves the CT, checked here against masks flipped by
independent code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import FIXTURE_CT, FIXTURE_SEG
from test_questions_support import fixture_graph, generate, phantom_graph, phantom_graphs
from volprobe.items import Item, read_items
from volprobe.probes.questions import answer_from_graph, relation_outcome
from volprobe.controls.counterfactuals import case_relations, relations_for_case
from volprobe.probes.questions.relation import opposite_side
from volprobe.segmentation.masks import LabelMap, load_masks
from volprobe.segmentation.names import mirror_name
from volprobe.segmentation.phantoms.generate import case_seed, generate_phantoms, make_phantom, segment_phantom_by_threshold
from volprobe.segmentation.relations.graph import build_relation_graph
from volprobe.segmentation.volume import Volume, load_volume

#: The built-in counterfactuals: which patient axis each flips (the nearest array axis), renaming sides for lr.
FLIPS = {"mirror_lr": 0, "flip_ap": 1, "flip_si": 2}


def _flipped(volume: Volume, masks: LabelMap, control: str) -> tuple[Volume, LabelMap]:
    """The CT and masks with the array axis nearest the control's patient axis reversed, affine kept, side
    names swapped for the left/right mirror: written here with numpy, independently of the controls."""
    directions = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
    axis = int(np.argmax(np.abs(directions[FLIPS[control]])))
    names = {i: mirror_name(n) if control == "mirror_lr" else n for i, n in masks.names.items()}
    return (Volume(np.flip(volume.array, axis).copy(), volume.affine),
            LabelMap(np.flip(masks.labels, axis).copy(), masks.affine, names))


def _graphs(volume: Volume, masks: LabelMap, case: str) -> dict:
    """``None`` → the case's graph, control → the graph of its flipped CT and masks, all rebuilt here."""
    out = {None: build_relation_graph(masks, volume, case=case)}
    for control in FLIPS:
        out[control] = build_relation_graph(*_flipped(volume, masks, control)[::-1], case=case)
    return out


def _graphs_from_files(ct: Path, seg: Path, case: str) -> dict:
    """Rebuilt from the files alone: nothing shared with the generator's graph objects."""
    volume = load_volume(ct)
    return _graphs(volume, load_masks(seg, volume), case)


def _check_against(items: list[Item], graphs: dict) -> int:
    """Every item's gold and counterfactual golds equal what ``graphs`` (case → :func:`_graphs`) imply."""
    checked = 0
    for it in items:
        assert answer_from_graph(it, graphs[it.case][None]) == it.answer, it.question
        assert set(it.counterfactual) == set(FLIPS)
        for control in FLIPS:
            assert answer_from_graph(it, graphs[it.case][control]) == it.counterfactual[control], (control, it.question)
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
    independent = {"example_ct_sm": _graphs_from_files(FIXTURE_CT, FIXTURE_SEG, "example_ct_sm")}
    assert _check_against(items, independent) == len(items) > 250


def test_phantom_gold_and_counterfactuals_recomputed_from_the_mask_files(tmp_path):
    from volprobe.probes.questions import load_cases, write_question_set, generate_questions, QuestionSettings

    rows = generate_phantoms(tmp_path / "ph", 3, seed=7, orientation="mixed", progress=False)
    qs = generate_questions(load_cases([tmp_path / "ph"], masks_suffix="_seg.nii.gz"), QuestionSettings(per_case=150))
    write_question_set(qs, tmp_path / "out" / "items.jsonl")
    items = read_items(tmp_path / "out" / "items.jsonl")
    assert {it.patient for it in items} == {r["patient"] for r in rows}  # from the phantom layouts
    independent = {r["case_id"]: _graphs_from_files(tmp_path / "ph" / r["files"]["ct"]["path"],
                                                    tmp_path / "ph" / r["files"]["seg"]["path"], r["case_id"])
                   for r in rows}
    assert _check_against(items, independent) == len(items) == 450


def test_counterfactuals_match_the_flipped_masks_on_many_oblique_phantoms():
    """On oblique grids the flipped array axis is tilted against the patient axis: the golds follow the tilt."""
    indices = range(6)
    qs = generate(phantom_graphs(len(indices), "oblique"), per_case=200, seed=11)
    graphs = {}
    for i in indices:
        ph = make_phantom(case_seed(0, i), orientation="oblique", noise_hu=0.0)
        graphs[f"ph{i:02d}"] = _graphs(ph.volume, ph.labels, f"ph{i:02d}")
    assert _check_against(qs.items, graphs) == 1200
    changed = {c: sum(it.counterfactual[c] not in (None, it.answer) for it in qs.items) for c in FLIPS}
    assert min(changed.values()) > 50


def test_answer_from_graph_refuses_what_the_graph_cannot_decide():
    g = fixture_graph()
    item = Item(id="x", question="Is the liver to the patient's left of the spleen?", answer="no",
                answer_type="yes_no", options=["yes", "no"],
                metadata={"relation": {"kind": "direction", "axis": "lr", "format": "yes_no",
                                       "structures": ["liver", "spleen"], "asserts": "left"}})
    assert answer_from_graph(item, g) == "no"
    assert answer_from_graph(item, g.counterfactuals["mirror_lr"].graph) == "yes"
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
    truth = case_relations(ph.labels, ph.volume, case="ph00")
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
