"""Paraphrase templates: the words of every question family (patient frame: left = patient's left).

A template family id is ``kind[.criterion][.axis].format`` (e.g. ``direction.lr.yes_no``,
``extreme.size.four_option``). :func:`render` turns a relation spec (see
:mod:`volprobe.probes.questions.relation`) and a paraphrase index into the question text, the option
texts, and an open-ended phrasing with its canonical short answer. Structure names are plain English
(:func:`~volprobe.segmentation.names.plain_name`): ``kidney_left`` → "the left kidney". The question
never lists the options of a choice item (adapters format them).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Mapping

from volprobe.segmentation.names import plain_name
from volprobe.segmentation.volume import NEGATIVE_SIDE

# -- words -----------------------------------------------------------------------------------------------

#: "a REL b" phrases of a direction (by centroids), per outcome value.
RELATION_WORDS = {
    "left": ("to the patient's left of", "on the patient's left side of", "further to the patient's left than"),
    "right": ("to the patient's right of", "on the patient's right side of", "further to the patient's right than"),
    "superior": ("above", "superior to", "higher in the body than"),
    "inferior": ("below", "inferior to", "lower in the body than"),
    "anterior": ("anterior to", "in front of", "further toward the front of the body than"),
    "posterior": ("posterior to", "behind", "further toward the back of the body than"),
}
#: Option words of the two-option direction question per axis, one pair per paraphrase (negative side first).
VALUE_WORDS = {
    "lr": (("left", "right"), ("left", "right"), ("left", "right")),
    "si": (("below", "above"), ("inferior", "superior"), ("lower", "higher")),
    "ap": (("behind", "in front"), ("posterior", "anterior"), ("further back", "further forward")),
}
VALUE_QUESTIONS = {
    "lr": ("Is {a} to the patient's left or to the patient's right of {b}?",
           "Relative to {b}, does {a} lie toward the patient's left or right?",
           "Judged by their centres, is {a} on the patient's left or right of {b}?"),
    "si": ("Is {a} above or below {b}?",
           "Does {a} lie superior or inferior to {b}?",
           "Judged by their centres, is {a} higher or lower in the body than {b}?"),
    "ap": ("Is {a} in front of or behind {b}?",
           "Does {a} lie anterior or posterior to {b}?",
           "Judged by their centres, does {a} lie further forward or further back in the body than {b}?"),
}
#: "lies more TOWARD" phrases for the extreme-along-an-axis questions.
TOWARD_WORDS = {
    "left": "to the patient's left", "right": "to the patient's right",
    "superior": "superiorly (toward the head)", "inferior": "inferiorly (toward the feet)",
    "anterior": "anteriorly (toward the front of the body)", "posterior": "posteriorly (toward the back of the body)",
}

_YES_NO = {
    "side.yes_no": {
        None: ("Is {x} on the patient's {s} side?",
               "Does {x} lie on the {s} side of the patient's body?",
               "Relative to the body's midline, is {x} on the patient's {s}?"),
    },
    "direction.yes_no": {
        None: ("Is {a} {rel} {b}?", "Does {a} lie {rel} {b}?", "Judged by their centres, is {a} {rel} {b}?"),
    },
    "extreme.midline.yes_no": {
        "closer": ("Is {a} closer to the body's midline than {b}?",
                   "Does {a} lie nearer the midline of the body than {b}?",
                   "Is the centre of {a} closer to the midsagittal plane than the centre of {b}?"),
    },
    "extreme.size.yes_no": {
        "larger": ("Is {a} larger than {b}?", "Does {a} have a larger volume than {b}?",
                   "By volume, is {a} bigger than {b}?"),
    },
    "extreme.reach.si.yes_no": {
        "inferior": ("Does {a} extend below the lowest point of {b}?", "Does {a} reach further down than {b}?",
                     "Is the lowest point of {a} below the lowest point of {b}?"),
        "superior": ("Does {a} extend above the highest point of {b}?", "Does {a} reach higher up than {b}?",
                     "Is the highest point of {a} above the highest point of {b}?"),
    },
    "contact.yes_no": {
        "yes": ("Does {a} touch {b}?", "Are {a} and {b} in contact?", "Is {a} directly touching {b}?"),
        "no": ("Is there a gap between {a} and {b}?", "Are {a} and {b} separated, without touching?",
               "Do {a} and {b} lie apart from each other, not in contact?"),
    },
    "inside.yes_no": {
        "yes": ("Is {a} inside {b}?", "Does {a} lie within {b}?", "Is {a} contained in {b}?"),
        "no": ("Does {a} lie outside {b}?", "Is {a} located outside of {b}?", "Is {a} outside {b}, not within it?"),
    },
    "crosses_midline.yes_no": {
        "yes": ("Does {x} cross the body's midline?", "Does {x} extend across the midline of the body?",
                "Does {x} lie on both sides of the body's midline?"),
        "no": ("Does {x} lie entirely on one side of the body's midline?",
               "Is {x} confined to one side of the midline?",
               "Does {x} stay on one side of the body's midline without crossing it?"),
    },
}

#: Pick questions: (criterion key, toward) → (paraphrases for two structures, for more than two).
#: Paraphrase 0 always starts "Which of these {n} structures" (the open phrasing names them instead).
_PICK = {
    ("axis", None): (
        ("Which of these {n} structures lies more {tw}?", "Which of the two is positioned further {tw}?",
         "Judged by their centres, which of these two structures lies more {tw}?"),
        ("Which of these {n} structures lies farthest {tw}?", "Which of the following is positioned furthest {tw}?",
         "Judged by their centres, which of these structures lies farthest {tw}?")),
    ("midline", "closer"): (
        ("Which of these {n} structures lies closer to the body's midline?",
         "Which of the two is nearer the midline of the body?",
         "Judged by their centres, which of these two structures is more medial?"),
        ("Which of these {n} structures lies closest to the body's midline?",
         "Which of the following is nearest the midline of the body?",
         "Judged by their centres, which of these structures is the most medial?")),
    ("midline", "farther"): (
        ("Which of these {n} structures lies farther from the body's midline?",
         "Which of the two is further from the midline of the body?",
         "Judged by their centres, which of these two structures is more lateral?"),
        ("Which of these {n} structures lies farthest from the body's midline?",
         "Which of the following is furthest from the midline of the body?",
         "Judged by their centres, which of these structures is the most lateral?")),
    ("size", "larger"): (
        ("Which of these {n} structures is larger?", "Which of the two has the larger volume?",
         "By volume, which of these two structures is bigger?"),
        ("Which of these {n} structures is the largest?", "Which of the following has the largest volume?",
         "By volume, which of these structures is the biggest?")),
    ("size", "smaller"): (
        ("Which of these {n} structures is smaller?", "Which of the two has the smaller volume?",
         "Which of these two structures takes up less volume?"),
        ("Which of these {n} structures is the smallest?", "Which of the following has the smallest volume?",
         "Which of these structures takes up the least volume?")),
    ("reach", "inferior"): (
        ("Which of these {n} structures reaches further down?",
         "Which of the two extends lower in the body (has the lower lowest point)?",
         "Which of these two structures has its lowest point further down?"),
        ("Which of these {n} structures reaches lowest?", "Which of the following extends lowest in the body?",
         "Which of these structures has its lowest point furthest down?")),
    ("reach", "superior"): (
        ("Which of these {n} structures reaches further up?",
         "Which of the two extends higher in the body (has the higher highest point)?",
         "Which of these two structures has its highest point further up?"),
        ("Which of these {n} structures reaches highest?", "Which of the following extends highest in the body?",
         "Which of these structures has its highest point furthest up?")),
    ("touches_which", None): (
        ("Which of these {n} structures does {a} touch?", "Which of the two is in direct contact with {a}?",
         "{A} touches which one of these two structures?"),
        ("Which of these {n} structures does {a} touch?", "Which of the following is in direct contact with {a}?",
         "{A} touches which one of these structures?")),
}

_OPEN = {
    "side": "On which side of the patient's body does {x} lie?",
    "direction": {"lr": "Along the patient's left-right axis, where does {a} lie relative to {b}?",
                  "si": "Along the head-foot axis, where does {a} lie relative to {b}?",
                  "ap": "Along the front-back axis, where does {a} lie relative to {b}?"},
    "contact": "Does {a} touch {b}?",
    "inside": "Is {a} inside {b}?",
    "crosses_midline": "Does {x} cross the body's midline?",
}


# -- rendering ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Rendered:
    question: str
    options: tuple[str, ...]
    option_values: tuple[str, ...]  # outcome each option stands for (yes/no items: yes, no)
    open_question: str


@lru_cache(maxsize=None)
def the(name: str) -> str:
    """'the left kidney' for ``kidney_left``."""
    return "the " + plain_name(name)


@lru_cache(maxsize=None)
def option_text(name: str) -> str:
    """Option text for a structure: its plain name (``kidney_left`` → 'left kidney')."""
    return plain_name(name)


def template_family(spec: Mapping[str, Any]) -> str:
    """``kind[.criterion][.axis].format`` of a spec."""
    parts = [spec["kind"]]
    if spec["kind"] == "extreme":
        parts.append(spec["criterion"])
    if "axis" in spec:
        parts.append(spec["axis"])
    parts.append(spec["format"])
    return ".".join(parts)


def _listing(names) -> str:
    words = [the(n) for n in names]
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _pick_key(spec: Mapping[str, Any]) -> tuple[str, str | None]:
    if spec["kind"] == "touches_which":
        return "touches_which", None
    crit = spec["criterion"]
    return crit, None if crit == "axis" else spec["toward"]


def _count(n: int) -> str:
    return {2: "two", 3: "three", 4: "four"}.get(n, str(n))


def _pick_question(spec: Mapping[str, Any], p: int) -> str:
    n = len(spec["structures"])
    t = _PICK[_pick_key(spec)][0 if n == 2 else 1][p]
    a = the(spec["anchor"]) if spec["kind"] == "touches_which" else ""
    tw = TOWARD_WORDS.get(spec.get("toward"), "")
    return t.format(n=_count(n), a=a, A=a[:1].upper() + a[1:], tw=tw)


def _yes_no_question(spec: Mapping[str, Any], tfam: str, p: int) -> str:
    kind, names = spec["kind"], spec["structures"]
    if kind == "side":
        return _YES_NO[tfam][None][p].format(x=the(names[0]), s=spec["asserts"])
    if kind == "direction":
        rel = RELATION_WORDS[spec["asserts"]][p]
        return _YES_NO["direction.yes_no"][None][p].format(a=the(names[0]), b=the(names[1]), rel=rel)
    if kind == "extreme":  # "Is a <beats> b?": asserts names[0]; keyed by the criterion's toward
        return _YES_NO[tfam][spec["toward"]][p].format(a=the(names[0]), b=the(names[1]))
    if kind in ("contact", "inside"):
        return _YES_NO[tfam][spec["asserts"]][p].format(a=the(names[0]), b=the(names[1]))
    if kind == "crosses_midline":
        return _YES_NO[tfam][spec["asserts"]][p].format(x=the(names[0]))
    raise ValueError(f"no yes/no templates for kind {kind!r}")


def _open(spec: Mapping[str, Any]) -> str:
    kind, names = spec["kind"], spec["structures"]
    if kind in ("side", "crosses_midline"):
        return _OPEN[kind].format(x=the(names[0]))
    if kind == "direction":
        return _OPEN["direction"][spec["axis"]].format(a=the(names[0]), b=the(names[1]))
    if kind in ("contact", "inside"):
        return _OPEN[kind].format(a=the(names[0]), b=the(names[1]))
    # extreme, touches_which: the first pick paraphrase, naming the structures
    return _pick_question(spec, 0).replace(f"these {_count(len(names))} structures", _listing(names))


def open_answer(spec: Mapping[str, Any], outcome: str) -> str:
    """Canonical short answer of the open phrasing: a side/direction word, yes/no, or a plain name."""
    if spec["kind"] in ("extreme", "touches_which"):
        return option_text(outcome)
    return outcome


def render(spec: Mapping[str, Any], p: int) -> Rendered:
    """Question, options and open phrasing of ``spec`` with paraphrase ``p`` (0-2).

    Choice items take their option order from ``spec['option_values']``.
    """
    tfam = template_family(spec)
    fmt = spec["format"]
    if fmt == "yes_no":
        return Rendered(_yes_no_question(spec, tfam, p), ("yes", "no"), ("yes", "no"), _open(spec))
    values = tuple(spec["option_values"])
    if spec["kind"] == "direction":
        axis = spec["axis"]
        neg, pos = VALUE_WORDS[axis][p]
        words = tuple(neg if v == NEGATIVE_SIDE[axis] else pos for v in values)
        q = VALUE_QUESTIONS[axis][p].format(a=the(spec["structures"][0]), b=the(spec["structures"][1]))
        return Rendered(q, words, values, _open(spec))
    return Rendered(_pick_question(spec, p), tuple(option_text(v) for v in values), values, _open(spec))
