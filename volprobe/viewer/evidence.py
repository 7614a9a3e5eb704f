"""One item under every control: what each control presented (planes through the evidence, structures
outlined) and what each model answered, from the run records.

:func:`item_evidence` gathers, for one item, a :class:`ControlRow` per control in the records: the gold under
that control and each model's raw and parsed answer with its outcome flags; :func:`add_planes` adds the planes
the control presented, once per display window and run seed among the models that read the image, for all
sampled items of a case at once (one control's input in memory at a time). The same rows feed the HTML item
browser and ``probe figure``.

Outcome flags of an answer (the browser filters on them): ``right`` / ``wrong``; ``changed`` (its parsed
answer differs from the same model's under the reference control); for items whose gold changes under a
counterfactual control, ``followed`` (answered with the transformed gold) or ``not_followed``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from volprobe.controls import Control, ControlContext, get_control
from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.viewer.sources import CaseImages
from volprobe.viewer.views import (DisplayWindow, PlaneView, Presentation, evidence_point, params_differ,
                                   plane_index, plane_view, planes_for, present)

FLAGS = ("right", "wrong", "changed", "followed", "not_followed")


@dataclass
class Answer:
    """One model's answer under one control."""

    model: str
    raw: str
    parsed: str | None
    correct: bool
    error: str | None = None
    no_image: str | None = None  #: how the model ran without an image (None: it read the image)
    flags: list[str] = field(default_factory=list)


@dataclass
class Shown:
    """The planes a control presented, as one display window shows them (for ``models``)."""

    window: DisplayWindow
    seed: int
    models: list[str]
    views: list[PlaneView] = field(default_factory=list)
    value_range: tuple[float, float] = (0.0, 0.0)
    note: str = ""


@dataclass
class ControlRow:
    """One control for one item: gold, answers, and what it presented."""

    control: str
    gold: str
    gold_changed: bool
    reference: bool
    counterfactual: bool
    answers: list[Answer] = field(default_factory=list)
    shown: list[Shown] = field(default_factory=list)
    note: str = ""


@dataclass
class ItemEvidence:
    """An item's question, options, gold and one :class:`ControlRow` per control."""

    item_id: str
    category: str
    case: str | None
    question: str
    options: list[str]
    gold: str
    structures: list[str]
    counterfactual: dict[str, Any]
    rows: list[ControlRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _control(label: str) -> Control | None:
    try:
        return get_control(label)
    except VolprobeError:
        return None


def _answer(rec: Mapping[str, Any]) -> Answer:
    return Answer(model=rec["model"], raw=rec.get("raw_output") or "", parsed=rec.get("parsed"),
                  correct=bool(rec.get("correct")), error=rec.get("error"), no_image=rec.get("no_image_mode"))


def item_evidence(item_id: str, records: Sequence[Mapping[str, Any]], item: Item | None, images: CaseImages | None,
                  controls: Sequence[str]) -> ItemEvidence:
    """The rows of one item (its records from every run), in the order of ``controls``; with the planes each
    control presented when the item and its volumes (``images``) are known (see :func:`add_planes`)."""
    first = records[0]
    ev = ItemEvidence(item_id=item_id, category=str(first.get("category") or first.get("task") or "items"),
                      case=first.get("case"), question=item.question if item else _question_of(first.get("prompt")),
                      options=list(item.options) if item else [], gold=first.get("gold_original") or first["gold"],
                      structures=list((item.evidence.get("structures") or []) if item else []),
                      counterfactual=dict(item.counterfactual) if item else {})
    by_control = _by_control(records)
    reference_answers = {rec["model"]: rec.get("parsed") for rec in records
                         if (rec.get("control_facts") or {}).get("reference")}
    for label in [c for c in controls if c in by_control]:
        recs = by_control[label]
        facts = recs[0].get("control_facts") or {}
        gold = recs[0]["gold"]
        row = ControlRow(control=label, gold=gold, gold_changed=gold != (recs[0].get("gold_original") or gold),
                         reference=bool(facts.get("reference")), counterfactual=bool(facts.get("changes_gold")))
        for rec in recs:
            answer = _answer(rec)
            answer.flags.append("right" if answer.correct else "wrong")
            ref = reference_answers.get(answer.model)
            if not row.reference and rec["model"] in reference_answers and answer.parsed != ref:
                answer.flags.append("changed")
            if row.gold_changed:
                answer.flags.append("followed" if answer.parsed == rec["gold"] else "not_followed")
            row.answers.append(answer)
        ev.rows.append(row)
    if item is not None and images is not None:
        add_planes([(ev, item, records)], images)
    return ev


def _by_control(records: Sequence[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    by_control: dict[str, list[Mapping[str, Any]]] = {}
    for rec in records:
        by_control.setdefault(rec["control"], []).append(rec)
    return by_control


def _question_of(prompt: str | None) -> str:
    return (prompt or "").strip().split("\n")[0]


def add_planes(group: Sequence[tuple[ItemEvidence, Item, Sequence[Mapping[str, Any]]]], images: CaseImages) -> None:
    """Add to each row of these items (all of one case, with their records) the planes its control presented.

    Control by control: each control's input is made once for the case (once per item for controls whose input
    depends on the item), used for every item and let go before the next, so one presented volume is in
    memory at a time. The input is made for each run seed and display window among the models that read the
    image (the models that read none: the first record's)."""
    case = group[0][1].case_key
    try:
        volume = images.volume(case)
    except Exception as exc:  # a missing or unreadable volume: the rows keep their answers
        for ev, _, _ in group:
            ev.notes.append(f"volume of case {case} not shown: {str(exc).splitlines()[0]}")
        return
    labels = images.labels(case)
    points = {}
    for ev, item, _ in group:
        if images.changed(case):
            ev.notes.append(f"the volume of case {case} differs from the one the item was made from")
        if labels is None and ev.structures and images.notes.get(case):
            ev.notes.append(images.notes[case])
        points[item.id] = evidence_point(volume, labels, item)
    by_item = {item.id: _by_control(recs) for _, item, recs in group}
    labels_in_order = list(dict.fromkeys(row.control for ev, _, _ in group for row in ev.rows))
    for label in labels_in_order:
        control = _control(label)
        made: dict[tuple, Presentation | Exception] = {}  # this control's inputs for this case
        for ev, item, _ in group:
            row = next((r for r in ev.rows if r.control == label), None)
            if row is None:
                continue
            if control is None:
                row.note = f"control {label} is not registered here: no image"
                continue
            groups: dict[tuple, list[Mapping[str, Any]]] = {}
            recs = by_item[item.id][label]
            for rec in [r for r in recs if r.get("no_image_mode") is None] or recs[:1]:
                window = DisplayWindow.from_generation(rec.get("generation"))
                groups.setdefault((window, int(rec.get("seed") or 0)), []).append(rec)
            for (window, seed), seen_by in groups.items():
                key = (seed, item.id if control.item_dependent else None)
                if key not in made:
                    try:
                        made[key] = present(control, item, volume, labels,
                                            ControlContext(seed=seed, cases=images.cases, load_case=images.volume),
                                            load_labels=images.labels)
                    except Exception as exc:  # the control cannot present this item here (e.g. no other patient)
                        made[key] = exc
                p = made[key]
                if isinstance(p, Exception):
                    row.note = f"not shown: {str(p).splitlines()[0]}"
                    break
                row.shown.append(_shown(p, item, volume, points[item.id], control, ev.structures, window, seed,
                                        seen_by))
        made.clear()


def _shown(p: Presentation, item: Item, volume, point, control: Control, structures: Sequence[str],
           window: DisplayWindow, seed: int, records: Sequence[Mapping[str, Any]]) -> Shown:
    shown = Shown(window=window, seed=seed, models=list(dict.fromkeys(r["model"] for r in records)),
                  value_range=p.value_range, note=p.note)
    diffs = sorted({d for r in records if r.get("no_image_mode") is None
                    for d in params_differ(p.cin, r.get("control_params") or {}, r.get("control_seed"))})
    if diffs:
        shown.note = "; ".join(filter(None, [shown.note, "recomputed input differs from the run's record ("
                                             + "; ".join(diffs) + ")"]))
    if p.volume is not None:
        for plane in planes_for(item):
            view = plane_view(p, plane, plane_index(p, plane, item, volume, point, control), structures)
            if min(view.image.shape) >= 2:  # a plane across a single slice is a line
                shown.views.append(view)
    return shown
