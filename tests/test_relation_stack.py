"""RelationStack answers exactly as the RelationGraph methods and relation_outcome do, for every case at once."""

from __future__ import annotations

import itertools
import math
from dataclasses import replace

import numpy as np
import pytest

from test_questions_support import fixture_graph, phantom_graphs
from volprobe.probes.questions import relation_outcome
from volprobe.probes.questions.families import FAMILIES, unit_specs
from volprobe.probes.questions.relation import stack_outcomes
from volprobe.segmentation.relations.stack import RelationStack
from volprobe.segmentation.relations.graph import INDETERMINATE, RelationThresholds

NAMES = ["liver", "spleen", "kidney_left", "kidney_right", "aorta", "stomach", "gallbladder", "pancreas",
         "lung_upper_lobe_right", "lung_lower_lobe_left", "heart", "adrenal_gland_left", "vertebrae_L1",
         "urinary_bladder", "esophagus", "not_a_structure"]
YES_NO = (lambda r: "yes", lambda r: "no")
AXES = (("lr", "right", "left"), ("ap", "anterior", "posterior"), ("si", "superior", "inferior"))


@pytest.fixture(scope="module")
def graphs():
    """Phantoms with varied anatomy, one with other thresholds, one with containment and a near pair whose
    distance is only a lower bound (no phantom has either), the real fixture in two array layouts (a
    different structure set, so many structures are absent from some cases)."""
    gs = phantom_graphs(10, variation=1.5)
    gs.append(replace(gs[0], case="strict", thresholds=RelationThresholds(centroid_margin_mm=12.0,
                                                                         midline_margin_mm=9.0, extent_margin_mm=6.0,
                                                                         size_ratio_margin=0.4)))
    pairs = dict(gs[1].pairs)
    pairs[("gallbladder", "liver")] = replace(pairs[("gallbladder", "liver")], share_a_in_b=0.97, share_b_in_a=0.02)
    pairs[("heart", "liver")] = replace(pairs[("heart", "liver")], share_a_in_b=0.01, share_b_in_a=0.5)
    pairs[("kidney_left", "spleen")] = replace(pairs[("kidney_left", "spleen")], surface_distance_mm=0.5,
                                               distance_is_lower_bound=True)
    gs.append(replace(gs[1], case="edited", pairs=pairs))
    return gs + [fixture_graph("RAS"), fixture_graph("LPS")]


def _expect(stack_rel, graph_rels, positive, negative):
    """Codes and margins of a stack query against the per-graph Relations (None: graph lacks a structure)."""
    want_code = []
    for r in graph_rels:
        want_code.append(0 if r is None or r.value == INDETERMINATE else 1 if r.value == positive(r) else
                         -1 if r.value == negative(r) else 99)
    assert stack_rel.code.tolist() == want_code
    for c, r, m in zip(want_code, graph_rels, stack_rel.margin.tolist()):
        if c != 0:
            assert m == float(r.margin)  # exactly: the same float64 arithmetic
    return sum(c != 0 for c in want_code)


def _per_graph(graphs, method, *args):
    out = []
    for g in graphs:
        try:
            out.append(getattr(g, method)(*args))
        except KeyError:
            out.append(None)
    return out


def test_every_query_equals_the_graph_method(graphs):
    stack = RelationStack(graphs)
    decided = 0
    for a in NAMES:
        decided += _expect(stack.side(a), _per_graph(graphs, "side", a), lambda r: "right", lambda r: "left")
        decided += _expect(stack.crosses_midline(a), _per_graph(graphs, "crosses_midline", a), *YES_NO)
    for a, b in itertools.permutations(NAMES, 2):
        for axis, pos, neg in AXES:
            decided += _expect(stack.direction(a, b, axis), _per_graph(graphs, "direction", a, b, axis),
                               lambda r, p=pos: p, lambda r, n=neg: n)
            for side in (pos, neg):
                decided += _expect(stack.extends_beyond(a, b, axis, side),
                                   _per_graph(graphs, "extends_beyond", a, b, axis, side), *YES_NO)
        decided += _expect(stack.contact(a, b), _per_graph(graphs, "contact", a, b), *YES_NO)
        decided += _expect(stack.inside(a, b), _per_graph(graphs, "inside", a, b), *YES_NO)
        decided += _expect(stack.closer_to_midline(a, b), _per_graph(graphs, "closer_to_midline", a, b),
                           lambda r, a=a: a, lambda r, b=b: b)
        decided += _expect(stack.larger(a, b), _per_graph(graphs, "larger", a, b), lambda r, a=a: a, lambda r, b=b: b)
    assert decided > 15_000


def test_stack_outcomes_equal_relation_outcome_for_every_family(graphs):
    """Every family's specs on many keys (pairs, sets of four, touches-which, with absent structures)."""
    stack = RelationStack(graphs)
    rng = np.random.default_rng(0)
    names = NAMES[:-1]
    checked = decided = 0
    for fam in FAMILIES:
        for _ in range(40):
            if fam.kind == "touches_which":
                key = tuple(rng.choice(names, fam.size + 1, replace=False))
            else:
                key = tuple(sorted(rng.choice(names + ["not_a_structure"], fam.size, replace=False)))
            for spec in unit_specs(fam, key, int(rng.integers(4))):
                values, margins = stack_outcomes(spec, stack)
                for g, v, m in zip(graphs, values, margins):
                    want = relation_outcome(spec, g)
                    assert (v is None) == (want is None), (spec, g.case)
                    if want is not None:
                        assert (v, m) == want, (spec, g.case)
                        assert not math.isnan(m)
                        decided += 1
                    checked += 1
    assert decided > 5_000 and checked > decided


def test_absent_structures_and_pairs_are_undecided(graphs):
    stack = RelationStack(graphs)
    assert stack.direction("liver", "not_a_structure", "lr").code.tolist() == [0] * len(graphs)
    fixture_rows = [i for i, g in enumerate(graphs) if "heart" not in g.structures]
    assert fixture_rows and len(fixture_rows) < len(graphs)  # the fixture crop lacks the heart
    for spec in ({"kind": "contact", "structures": ["heart", "liver"]},
                 {"kind": "extreme", "criterion": "size", "toward": "larger", "structures": ["heart", "liver"]}):
        values, _ = stack_outcomes(spec, stack)
        assert all(values[i] is None for i in fixture_rows)
        assert any(v is not None for v in values), spec
