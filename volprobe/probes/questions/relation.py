"""Relation specs: the machine-readable meaning of a spatial question, and how relation graphs answer it.

Every spatial item stores a spec in ``item.metadata['relation']``. One function,
:func:`stack_outcomes`, evaluates a spec's relation for every case of a
:class:`~volprobe.segmentation.relations.RelationStack` at once, from the stack's relation queries
(the relation rules, written once there). :func:`relation_outcome` is the same for one
:class:`~volprobe.segmentation.relations.RelationGraph` (row 0 of the graph's stack of one), and
:func:`answer_from_graph` maps that outcome to the item's option text. The generator evaluates each
spec on all its cases at once for the gold answers, and on the graphs of the cases' label maps
transformed by each geometric control for the counterfactual golds (``graph.counterfactuals``), and the
``oracle`` model answers through :func:`answer_from_graph` on the graph of whatever volume it is given,
so the three can never disagree about what a question means.

Spec keys (all JSON):

``kind``
    ``side`` (one structure; outcome ``left``/``right`` of the body midline),
    ``direction`` (``structures`` [a, b], ``axis``; outcome where a lies relative to b by centroids:
    ``left``/``right``, ``anterior``/``posterior``, ``superior``/``inferior``),
    ``extreme`` (2-4 ``structures``, a ``criterion`` and ``toward``; outcome the structure that beats
    every other one by more than the threshold; see :func:`_beats`),
    ``contact`` / ``inside`` ([a, b]; ``yes``/``no``), ``crosses_midline`` ([x]; ``yes``/``no``; undecided
    when the field of view cuts x), ``touches_which`` (``anchor`` and 2-4 ``structures``; outcome the
    single structure that touches the anchor while every other one is verified apart from it).
``format``
    ``yes_no``: ``asserts`` is the outcome the question claims (answer ``yes`` when the outcome equals
    it, ``no`` when it is another determinate value); ``two_option`` / ``four_option``:
    ``option_values`` lists the outcome each option stands for, in option order.

Outcomes are never guessed: a missing structure or a relation under its threshold
(``indeterminate``) gives ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from volprobe.items import Item
from volprobe.segmentation.relations.graph import RelationGraph
from volprobe.segmentation.relations.stack import RelationStack, StackRelation
from volprobe.segmentation.volume import NEGATIVE_SIDE, POSITIVE_SIDE

YES, NO = "yes", "no"
#: ``extreme`` criteria and the values ``toward`` may take.
CRITERIA = {
    "axis": ("left", "right", "anterior", "posterior", "superior", "inferior"),
    "midline": ("closer", "farther"),
    "size": ("larger", "smaller"),
    "reach": ("superior", "inferior"),
}


def _beats(spec: Mapping[str, Any]) -> Callable[[RelationStack, str, str], StackRelation]:
    """``beats(stack, x, y)``: per case +1 where x beats y under the spec's ``criterion``, -1 where y beats
    x, 0 undecided (every criterion is antisymmetric, with the same margin both ways).

    ``axis``: x's centroid lies further ``toward`` along ``axis`` (margin mm); ``midline``: x's
    centroid is ``closer`` to (``farther`` from) the midline (mm); ``size``: x is ``larger``
    (``smaller``) by volume (margin: volume ratio; undecided for structures cut by the field of view);
    ``reach``: x extends past y's extreme point on side ``toward`` of ``axis`` (mm; undecided when cut).
    """
    crit, toward = spec["criterion"], spec["toward"]
    if crit not in CRITERIA or toward not in CRITERIA[crit]:
        raise ValueError(f"unknown criterion {crit!r} / toward {toward!r}")
    if crit == "axis":
        axis = spec["axis"]
        sign = 1 if toward == POSITIVE_SIDE[axis] else -1 if toward == NEGATIVE_SIDE[axis] else 0
        return lambda s, x, y: _signed(s.direction(x, y, axis), sign)
    if crit == "midline":
        sign = 1 if toward == "closer" else -1
        return lambda s, x, y: _signed(s.closer_to_midline(x, y), sign)
    if crit == "size":
        sign = 1 if toward == "larger" else -1
        return lambda s, x, y: _signed(s.larger(x, y), sign)
    axis = spec["axis"]
    return lambda s, x, y: s.extends_beyond(x, y, axis, toward)


def _signed(r: StackRelation, sign: int) -> StackRelation:
    return r if sign == 1 else StackRelation((r.code * np.int8(sign)).astype(np.int8), r.margin)


def _extreme(spec: Mapping[str, Any], stack: RelationStack) -> tuple[np.ndarray, np.ndarray]:
    """Per case: index of the structure that beats every other one (-1: none), and its smallest margin."""
    names, pair = list(spec["structures"]), _beats(spec)
    k, n = len(names), len(stack)
    wins = np.zeros((k, k, n), bool)
    margins = np.full((k, k, n), np.inf)
    for i in range(k):
        for j in range(i + 1, k):
            r = pair(stack, names[i], names[j])
            wins[i, j], wins[j, i] = r.code == 1, r.code == -1
            margins[i, j] = margins[j, i] = r.margin
    winner, margin = np.full(n, -1), np.zeros(n)
    for i in range(k):
        others = [j for j in range(k) if j != i]
        won = wins[i, others].all(axis=0)
        winner[won] = i
        margin[won] = margins[i, others].min(axis=0)[won]
    return winner, margin


def _touches_which(spec: Mapping[str, Any], stack: RelationStack) -> tuple[np.ndarray, np.ndarray]:
    """Per case: index of the one structure touching the anchor while every other one is verified apart
    from it (-1: none, or a contact undecided), and the smallest gap of the others (mm)."""
    anchor, names = spec["anchor"], list(spec["structures"])
    rs = [stack.contact(anchor, y) for y in names]
    codes = np.stack([r.code for r in rs])
    gaps = np.stack([np.where(r.code == -1, r.margin, np.inf) for r in rs])
    single = ((codes == 1).sum(axis=0) == 1) & (codes != 0).all(axis=0)
    winner = np.where(single, (codes == 1).argmax(axis=0), -1)
    return winner, gaps.min(axis=0)


def outcome_labels(spec: Mapping[str, Any]) -> tuple[str, ...]:
    """Every outcome the spec's relation can have: its structures (``extreme``, ``touches_which``), else
    the two values of a two-valued relation, negative first (no/yes, left/right, the axis's sides)."""
    kind = spec["kind"]
    if kind in ("extreme", "touches_which"):
        return tuple(spec["structures"])
    if kind in ("contact", "inside", "crosses_midline"):
        return NO, YES
    if kind == "side":
        return "left", "right"
    if kind == "direction":
        return NEGATIVE_SIDE[spec["axis"]], POSITIVE_SIDE[spec["axis"]]
    raise ValueError(f"unknown relation kind {kind!r}")


def stack_outcomes(spec: Mapping[str, Any], stack: RelationStack) -> tuple[list[str | None], list[float]]:
    """The spec's outcome in every case of ``stack`` at once: the outcomes (None where the case cannot
    decide: a structure missing, a relation indeterminate) and the margins (meaningless where the
    outcome is None). Margins are in mm, except ``inside`` (share of a inside b) and ``size`` (volume ratio)."""
    kind, names, labels = spec["kind"], spec["structures"], outcome_labels(spec)
    if kind in ("extreme", "touches_which"):
        winner, margin = (_extreme if kind == "extreme" else _touches_which)(spec, stack)
        return np.array([*labels, None], dtype=object)[winner].tolist(), margin.tolist()
    if kind == "side":
        r = stack.side(names[0])
    elif kind == "crosses_midline":
        r = stack.crosses_midline(names[0])
        j = stack.index.get(names[0])
        if j is not None:  # undecided when the field of view cuts it: the part across may be missing
            r = StackRelation(np.where(stack.border[:, j], 0, r.code).astype(np.int8), r.margin)
    elif kind == "direction":
        r = stack.direction(names[0], names[1], spec["axis"])
    elif kind == "contact":
        r = stack.contact(*sorted(names))
    else:  # inside
        r = stack.inside(names[0], names[1])
    table = np.array([labels[0], None, labels[1]], dtype=object)
    return table[r.code.astype(np.intp) + 1].tolist(), r.margin.tolist()


def relation_outcome(spec: Mapping[str, Any], graph: RelationGraph) -> tuple[str, float] | None:
    """(outcome, margin) of the spec's relation in ``graph``, or None when the graph cannot decide it:
    :func:`stack_outcomes` on the graph's stack of one."""
    values, margins = stack_outcomes(spec, graph.stack)
    return None if values[0] is None else (values[0], margins[0])


def option_for(spec: Mapping[str, Any], outcome: str | None, options: list[str]) -> str | None:
    """The option text that ``outcome`` makes correct (None when no option is)."""
    if outcome is None:
        return None
    if spec["format"] == "yes_no":
        return YES if outcome == spec["asserts"] else NO
    values = spec["option_values"]
    return options[values.index(outcome)] if outcome in values else None


def answer_from_graph(item: Item, graph: RelationGraph) -> str | None:
    """The option text of ``item`` that ``graph`` implies, or None when the graph cannot decide.

    ``item.metadata['relation']`` is the item's spec (see the module docstring). None also for items
    without a spec. This is the single definition of a spatial item's answer: gold answers,
    counterfactual golds (on the graph of the transformed label map) and the oracle all go through it.
    """
    spec = item.metadata.get("relation") if item.metadata else None
    if not spec:
        return None
    got = relation_outcome(spec, graph)
    return option_for(spec, got[0] if got else None, item.options)


_OPPOSITE = {**{v: k for k, v in POSITIVE_SIDE.items()}, **{v: k for k, v in NEGATIVE_SIDE.items()}}


def opposite_side(value: str) -> str:
    """'left' ↔ 'right', 'anterior' ↔ 'posterior', 'superior' ↔ 'inferior'."""
    axis = _OPPOSITE[value]
    return NEGATIVE_SIDE[axis] if value == POSITIVE_SIDE[axis] else POSITIVE_SIDE[axis]
