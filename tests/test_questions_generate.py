"""Question sets: balance, clear relations only, giveaway and audit rules, evidence tags, priors, determinism."""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import replace

import numpy as np
import pytest

from test_questions_support import ORGANS, fixture_graph, fixture_volume_and_masks, generate, phantom_graphs
from volprobe.errors import VolprobeError
from volprobe.probes.questions import CATEGORIES, FAMILIES, QuestionSettings, relation_outcome
from volprobe.probes.questions.balance import judge_prior
from volprobe.probes.questions.families import OPTION_COUNT
from volprobe.probes.questions.templates import _PICK, _YES_NO, VALUE_QUESTIONS, render
from volprobe.segmentation.names import side_of
from volprobe.controls.counterfactuals import case_relations
from volprobe.segmentation.relations.graph import build_relation_graph
from volprobe.segmentation.volume import PATIENT_AXES


@pytest.fixture(scope="module")
def phantom_set():
    graphs = phantom_graphs()
    return graphs, generate(graphs, per_case=120, seed=3)


@pytest.fixture(scope="module")
def fixture_set():
    g = fixture_graph()
    return g, generate([g], per_case=400, seed=0)


def _cells(items):
    cells = defaultdict(list)
    for it in items:
        cells[(it.metadata["category"], it.metadata["format"])].append(it)
    return cells


@pytest.mark.parametrize("which", ["phantom_set", "fixture_set"])
def test_answer_labels_and_positions_balance_in_every_category_and_format(which, request):
    items = request.getfixturevalue(which)[1].items
    cells = _cells(items)
    assert {c for c, _ in cells} == set(CATEGORIES)
    for (cat, fmt), its in cells.items():
        k = OPTION_COUNT[fmt]
        positions = Counter(it.answer_index for it in its)
        assert max(positions.values()) - min(positions.get(i, 0) for i in range(k)) <= 1, (cat, fmt, positions)
        if fmt == "yes_no":
            answers = Counter(it.answer for it in its)
            assert answers["yes"] == answers["no"], (cat, fmt, answers)
        sides = Counter(it.metadata["relation"]["option_values"][it.answer_index] for it in its
                        if it.metadata["relation"]["kind"] == "direction" and fmt != "yes_no")
        if sides:  # left/right, anterior/posterior, superior/inferior: counterbalanced pairs
            assert len(set(sides.values())) == 1, (cat, sides)


def test_option_rotation_balances_each_cell_without_a_fixed_cycle():
    """A fixed cycle (0, 1, 0, 1, ...) can fall into step with a family's answers and give them away."""
    from volprobe.probes.questions.generate import _Builder
    from volprobe.probes.questions.families import FAMILY_BY_ID

    builder = _Builder(QuestionSettings(seed=5), phantom_graphs(2), set())
    for fam_id in ("extreme.reach.si.two_option", "extreme.size.four_option"):
        fam = FAMILY_BY_ID[fam_id]
        k = OPTION_COUNT[fam.format]
        seq = []
        for _ in range(100 * k):
            seq.append(builder._position(fam))
            assert builder._position(fam) == seq[-1]  # asked again before the unit is built: the same
            builder.counters[(fam.category, fam.format)] += 1
        blocks = [tuple(seq[i:i + k]) for i in range(0, len(seq), k)]
        assert all(sorted(b) == list(range(k)) for b in blocks)  # balanced within one, always
        if k == 2:  # no fixed cycle: both orders of a block, about equally often
            assert 0.3 < Counter(blocks)[(0, 1)] / len(blocks) < 0.7
        else:
            assert len(set(blocks)) > 15


def test_counterbalanced_pairs_have_opposite_answers(phantom_set):
    units = defaultdict(list)
    for it in phantom_set[1].items:
        units[(it.case, it.metadata["unit"])].append(it)
    pairs = [u for u in units.values() if len(u) == 2]
    assert len(pairs) > 100
    for a, b in pairs:
        assert a.answer != b.answer or a.options != b.options, (a.question, b.question)
        assert a.question != b.question
        if a.answer_type == "yes_no":
            assert {a.answer, b.answer} == {"yes", "no"}


@pytest.mark.parametrize("which", ["phantom_set", "fixture_set"])
def test_every_item_rests_on_a_clear_relation_above_its_threshold(which, request):
    graphs, qs = request.getfixturevalue(which)
    by_case = {g.case: g for g in (graphs if isinstance(graphs, list) else [graphs])}
    for it in qs.items:
        g = by_case[it.case]
        t = g.thresholds
        spec = it.metadata["relation"]
        got = relation_outcome(spec, g)
        assert got is not None
        assert it.metadata["margin"] == pytest.approx(got[1], abs=1e-3)
        kind, crit = spec["kind"], spec.get("criterion")
        m = it.metadata["margin"]
        if kind == "direction" or crit in ("axis", "midline"):
            assert m > t.centroid_margin_mm
        elif crit == "reach":
            assert m > t.extent_margin_mm
        elif kind in ("side", "crosses_midline"):
            assert m > t.midline_margin_mm
        elif crit == "size":
            assert m > 1 + t.size_ratio_margin
        elif kind == "touches_which":
            assert m > t.contact_tolerance_mm + t.contact_margin_mm  # the untouched ones are clearly apart


def test_nothing_is_asked_when_every_relation_is_indeterminate():
    g = fixture_graph()
    blind = replace(g, thresholds=replace(g.thresholds, centroid_margin_mm=1e6, extent_margin_mm=1e6,
                                          midline_margin_mm=1e6, size_ratio_margin=1e6, contact_tolerance_mm=-1.0,
                                          contact_margin_mm=1e6, contained_share=2.0, not_contained_share=-1.0))
    qs = generate([blind], per_case=50)
    assert qs.items == []
    assert any("no clear relation" in w for w in qs.warnings)


@pytest.mark.parametrize("which", ["phantom_set", "fixture_set"])
def test_fov_cut_structures_are_never_used_for_size_or_extent(which, request):
    graphs, qs = request.getfixturevalue(which)
    by_case = {g.case: g for g in (graphs if isinstance(graphs, list) else [graphs])}
    checked = 0
    for it in qs.items:
        if it.metadata["category"] in ("size", "extent"):
            checked += 1
            assert not any(by_case[it.case].structures[n].touches_border for n in it.evidence["structures"]), it.question
    assert checked > 20
    if which == "fixture_set":  # the fixture has 33 cut structures: the rule had work to do
        assert sum(s.touches_border for s in by_case["example"].structures.values()) > 20


@pytest.mark.parametrize("which", ["phantom_set", "fixture_set"])
def test_laterality_questions_never_name_a_side_named_structure(which, request):
    items = request.getfixturevalue(which)[1].items
    lr = [it for it in items if it.metadata["category"] == "laterality"
          or it.metadata["relation"]["kind"] == "crosses_midline"]
    assert len(lr) > 30
    for it in lr:
        assert not any(side_of(n) for n in it.evidence["structures"]), it.question
        assert not any(w in opt for opt in it.options for w in ("left ", "right ")), it.options
    # other categories do use them (the rule is targeted, not a blanket ban)
    assert any(side_of(n) for it in items if it.metadata["category"] == "size" for n in it.evidence["structures"])


def test_a_failed_laterality_audit_blocks_laterality_and_side_named_structures():
    volume, masks = fixture_volume_and_masks()
    lr_axis = int(np.argmax(np.abs(masks.affine[0, :3])))
    mirrored = replace(masks, labels=np.flip(masks.labels, lr_axis).copy())  # voxels mirrored, names kept
    g = build_relation_graph(mirrored, None, case="mirrored")
    assert not g.audit.passed
    qs = generate([g], per_case=200)
    assert qs.items, "other categories are still asked"
    assert not [it for it in qs.items if it.metadata["category"] == "laterality"]
    assert not [it for it in qs.items if any(side_of(n) for n in it.evidence["structures"])]
    assert any("laterality audit failed" in w for w in qs.warnings)


def test_evidence_tags_name_axes_slices_and_structures(fixture_set):
    g, qs = fixture_set
    for it in qs.items:
        names = it.evidence["structures"]
        assert set(names) == set(it.metadata["relation"]["structures"]) | (
            {it.metadata["relation"]["anchor"]} if "anchor" in it.metadata["relation"] else set())
        first = min(g.structures[n].axial_slices[0] for n in names)
        last = max(g.structures[n].axial_slices[1] for n in names)
        assert it.evidence["axial_slices"] == [first, last]
        shared = it.evidence["axial_slices_shared"]
        if shared:
            assert all(g.structures[n].axial_slices[0] <= shared[0] <= shared[1] <= g.structures[n].axial_slices[1]
                       for n in names)
        axes = it.evidence["axes"]
        assert axes == [a for a in PATIENT_AXES if a in axes]
        spec = it.metadata["relation"]
        if spec.get("axis"):
            assert spec["axis"] in axes
        if any(side_of(n) for n in names):
            assert "lr" in axes  # mirroring renames the structure
    # superior/inferior answers are tagged as needing through-plane evidence
    assert all("si" in it.evidence["axes"] for it in qs.items if it.metadata["category"] == "longitudinal")


@pytest.mark.parametrize("which", ["phantom_set", "fixture_set"])
def test_a_counterfactual_on_an_axis_the_answer_does_not_use_keeps_the_gold(which, request):
    items = request.getfixturevalue(which)[1].items
    changed = Counter()
    for it in items:
        for control, axis in {"mirror_lr": "lr", "flip_si": "si", "flip_ap": "ap"}.items():
            cf = it.counterfactual[control]
            if axis not in it.evidence["axes"]:
                assert cf == it.answer
            elif cf is not None:
                assert cf in it.options
                changed[control] += cf != it.answer
    assert min(changed.values()) > 10  # mirroring does change the answers that depend on that axis


def test_item_fields_chance_open_phrasing_and_metadata(fixture_set):
    g, qs = fixture_set
    ids = [it.id for it in qs.items]
    assert len(set(ids)) == len(ids)
    assert len({(it.case, it.question, tuple(it.options)) for it in qs.items}) == len(qs.items)  # no duplicates
    for it in qs.items:
        assert it.task == "spatial" and it.subtask == it.metadata["category"]
        assert it.chance == pytest.approx(1 / len(it.options))
        assert len(it.options) == {"yes_no": 2, "two_option": 2, "four_option": 4}[it.metadata["format"]]
        assert it.case == it.metadata["case"] == "example" and it.patient == "example"
        assert it.metadata["open_question"].endswith("?") and it.metadata["open_answer"]
        assert it.metadata["family"].startswith(it.metadata["template_family"] + ":")
        assert "_" not in it.question.replace("the_", "")  # plain English names
        if it.metadata["margin_unit"] == "mm":
            assert it.metadata["margin_mm"] == it.metadata["margin"]
        spec = it.metadata["relation"]
        if spec["kind"] in ("extreme", "touches_which") and it.answer_type == "choice":
            from volprobe.segmentation.names import plain_name

            assert it.metadata["open_answer"] == plain_name(spec["option_values"][it.answer_index])


def test_per_case_categories_and_formats_limit_the_set():
    graphs = phantom_graphs(3)
    qs = generate(graphs, per_case=17, categories=("size", "longitudinal"), formats=("yes_no", "four_option"))
    per_case = Counter(it.case for it in qs.items)
    assert set(per_case) == {g.case for g in graphs} and max(per_case.values()) <= 17
    assert {it.metadata["category"] for it in qs.items} == {"size", "longitudinal"}
    assert {it.metadata["format"] for it in qs.items} == {"yes_no", "four_option"}
    with pytest.raises(VolprobeError, match="unknown categories"):
        QuestionSettings(categories=("laterality", "colour"))
    with pytest.raises(VolprobeError, match="unknown formats"):
        QuestionSettings(formats=("essay",))


def test_structure_filters():
    graphs = phantom_graphs(2)
    qs = generate(graphs, per_case=60, include=("kidney_*", "liver", "spleen"), exclude=("kidney_right",))
    used = {n for it in qs.items for n in it.evidence["structures"]}
    assert used and used <= {"kidney_left", "liver", "spleen"}
    with pytest.raises(VolprobeError, match="at least two"):
        generate(graphs, include=("liver",))


def test_same_seed_same_items_other_seed_other_items(phantom_set):
    graphs, qs = phantom_set
    again = generate(graphs, per_case=120, seed=3)
    assert [it.to_dict() for it in again.items] == [it.to_dict() for it in qs.items]
    other = generate(graphs, per_case=120, seed=4)
    assert {it.id for it in other.items} != {it.id for it in qs.items}
    # the case order of the input does not matter
    shuffled = generate(graphs[::-1], per_case=120, seed=3)
    assert [it.id for it in shuffled.items] == [it.id for it in qs.items]


def test_generation_leaves_the_garbage_collector_as_it_found_it(phantom_set):
    import gc

    graphs, _ = phantom_set
    assert gc.isenabled()
    generate(graphs[:3], per_case=20)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        generate(graphs[:3], per_case=20)
        assert not gc.isenabled()
    finally:
        gc.enable()


def _comparable(items):
    out = []
    for it in items:
        d = it.to_dict()
        # margins to rounding; the content hashes and transform parameters describe the grid, which differs
        d["metadata"] = {k: v for k, v in d["metadata"].items()
                         if k not in ("margin", "margin_mm", "volume_sha256", "masks_sha256", "control_params")}
        out.append(d)
    return out


def test_ras_and_lps_layouts_of_the_same_scan_give_the_same_items():
    ras, lps = fixture_graph("RAS"), fixture_graph("LPS")
    assert ras.grid["affine"] != lps.grid["affine"]
    a, b = generate([ras], per_case=300), generate([lps], per_case=300)
    assert len(a.items) > 200
    assert _comparable(a.items) == _comparable(b.items)
    for x, y in zip(a.items, b.items):
        assert x.metadata["margin"] == pytest.approx(y.metadata["margin"], abs=1e-3)
    pa = generate(phantom_graphs(4, "RAS"), per_case=80)
    pb = generate(phantom_graphs(4, "LPS"), per_case=80)
    assert _comparable(pa.items) == _comparable(pb.items)


def test_jittered_phantoms_give_non_prior_fixed_families_with_both_answers():
    qs = generate(phantom_graphs(), per_case=400, include=ORGANS)
    free = {f: row for f, row in qs.families.items() if row["prior_fixed"] is False}
    assert len(free) >= 4
    assert all(len(row["outcomes"]) >= 2 for row in free.values())
    assert any(len(row["answers"]) >= 2 for row in free.values())
    # the relations the phantom generator flips are among them; the liver stays on the right
    assert any(f.startswith("direction.si.") and "kidney_left" in f and "kidney_right" in f for f in free)
    assert any(f.startswith("extreme.size.") and f.split(":")[1] == "kidney_left,kidney_right" for f in free)
    assert qs.families["side.yes_no:liver:asserts=right"]["prior_fixed"] is True
    fixed_items = [it for it in qs.items if it.metadata["prior_fixed"]]
    assert fixed_items and all(it.metadata["prior_share"] >= 0.9 for it in fixed_items)
    # per family, the outcomes counted across cases are the item's own relation's, in its own terms
    graphs = {g.case: g for g in phantom_graphs()}
    for it in qs.items:
        row = qs.families[it.metadata["family"]]
        assert relation_outcome(it.metadata["relation"], graphs[it.case])[0] in row["outcomes"]
        assert sum(row["outcomes"].values()) == row["prior_cases"] == it.metadata["prior_cases"]


def _asked_outcomes(qs, graphs) -> dict[str, Counter]:
    """Per family, the outcomes of its items, recomputed from the graphs."""
    asked: dict[str, Counter] = defaultdict(Counter)
    for it in qs.items:
        asked[it.metadata["family"]][relation_outcome(it.metadata["relation"], graphs[it.case])[0]] += 1
    return asked


def _majority_share(qs, asked, families) -> tuple[float, int]:
    """Share of the asked items of ``families`` whose outcome is the family's most common one across cases."""
    top = total = 0
    for f in families:
        outcomes = qs.families[f]["outcomes"]
        top += asked[f][max(outcomes, key=outcomes.get)]
        total += sum(asked[f].values())
    return top / total, total


def test_families_that_vary_across_cases_are_asked_with_balanced_answers():
    graphs = phantom_graphs(24, variation=1.5)
    by_case = {g.case: g for g in graphs}
    qs = generate(graphs, per_case=150, include=ORGANS)
    asked = _asked_outcomes(qs, by_case)
    free = {f: row for f, row in qs.families.items() if row["prior_fixed"] is False}
    assert len(free) >= 10 and all(row["answers_balanced"] for row in free.values())
    for fam, row in free.items():  # never more than 2 apart, over the outcomes the family has in the run
        counts = [asked[fam][o] for o in row["outcomes"]]
        assert max(counts) - min(counts) <= 2, (fam, row["outcomes"], asked[fam])
    leaning = [f for f, row in free.items() if max(row["outcomes"].values()) >= 0.7 * row["prior_cases"]]
    share, n = _majority_share(qs, asked, leaning)  # their outcomes lean 70:30 or more across cases ...
    assert n >= 40 and 0.38 <= share <= 0.62, (share, n)  # ... but are asked about evenly
    fixed = {f: row for f, row in qs.families.items() if row["prior_fixed"] is True}
    assert not any(row["answers_balanced"] for row in fixed.values())
    assert any(max(asked[f].values()) - min(asked[f].get(o, 0) for o in row["outcomes"]) >= 3
               for f, row in fixed.items())  # prior-fixed families are tagged, not balanced
    # without balancing, the leaning families are asked as they come
    natural = generate(graphs, per_case=150, include=ORGANS, family_balance=False)
    natural_share, natural_n = _majority_share(natural, _asked_outcomes(natural, by_case),
                                               [f for f in leaning if f in natural.families])
    assert natural_n >= 40 and natural_share >= 0.7, (natural_share, natural_n)
    assert not any(row["answers_balanced"] for row in natural.families.values())


def test_canonical_phantoms_make_every_family_prior_fixed():
    qs = generate(phantom_graphs(10, variation=0.0), per_case=60)
    assert qs.families and all(row["prior_fixed"] is True for row in qs.families.values())


def test_prior_rule_single_case_and_reference(fixture_set):
    _, qs = fixture_set
    assert all(it.metadata["prior_fixed"] is None and it.metadata["prior_cases"] == 1 for it in qs.items)
    assert judge_prior({"left": 9, "right": 1}) == (True, 0.9, 10)
    assert judge_prior({"left": 8, "right": 2}) == (False, 0.8, 10)
    assert judge_prior({"left": 5}) == (None, 1.0, 5)
    assert judge_prior({}, 10, 0.9) == (None, None, 0)
    fam = qs.items[0].metadata["family"]
    outcome = next(iter(qs.families[fam]["outcomes"]))
    ref = {fam: {outcome: 20}}
    again = generate([fixture_graph()], per_case=400, prior_reference=ref)
    row = again.families[fam]
    assert row["prior_fixed"] is True and row["prior_cases"] == 21
    assert all(it.metadata["prior_fixed"] is True for it in again.items if it.metadata["family"] == fam)


def test_every_template_family_has_three_paraphrases_that_render():
    for fam_templates in _YES_NO.values():
        for paraphrases in fam_templates.values():
            assert len(paraphrases) == 3
    for two, many in _PICK.values():
        assert len(two) == len(many) == 3
    assert all(len(v) == 3 for v in VALUE_QUESTIONS.values())
    assert len(FAMILIES) >= 25
    spec = {"kind": "extreme", "criterion": "size", "toward": "larger", "format": "four_option",
            "structures": ["liver", "spleen", "kidney_left", "vertebrae_L1"],
            "option_values": ["liver", "spleen", "kidney_left", "vertebrae_L1"]}
    texts = {render(spec, p).question for p in range(3)}
    assert len(texts) == 3
    assert render(spec, 0).options == ("liver", "spleen", "left kidney", "L1 vertebra")
    assert "liver" not in render(spec, 0).question  # the options are not in the question


def test_containment_questions_from_a_label_map_with_one_organ_inside_another():
    from volprobe.probes.questions import answer_from_graph
    from volprobe.segmentation.masks import LabelMap

    lab = np.zeros((40, 40, 40), np.uint8)
    lab[5:30, 5:30, 5:30] = 1  # liver
    lab[12:18, 12:18, 12:18] = 2  # gallbladder, inside it
    lab[32:38, 5:15, 5:15] = 3  # spleen, outside
    names = {1: "liver", 2: "gallbladder", 3: "spleen"}
    g = case_relations(LabelMap(lab, np.diag([4.0, 4.0, 4.0, 1.0]), names), None, case="boxes")
    qs = generate([g], per_case=100, categories=("adjacency",), formats=("yes_no",))
    inside = [it for it in qs.items if it.metadata["relation"]["kind"] == "inside"]
    assert len(inside) == 2 and sorted(it.answer for it in inside) == ["no", "yes"]  # one polarity pair
    yes = next(it for it in inside if it.metadata["relation"]["asserts"] == "yes")
    assert yes.answer == "yes" and "gallbladder" in yes.question.split("inside")[0]
    assert yes.metadata["margin_unit"] == "share" and yes.metadata["margin"] == 1.0
    mirrored = g.counterfactuals["mirror_lr"].graph  # containment survives a mirror
    assert all(answer_from_graph(it, mirrored) == it.counterfactual["mirror_lr"] == it.answer for it in inside)
