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

from volprobe.segmentation.names import is_plural, plain_name
from volprobe.segmentation.volume import NEGATIVE_SIDE

# -- words -----------------------------------------------------------------------------------------------
# Templates name structures with fields per role (a, b, x, the anchor as a): ``{a}`` "the left kidney",
# ``{A}`` "The left kidney", and verbs that agree with it (:func:`_fields`): ``{Is_a}``/``{is_a}``,
# ``{Does_a}``/``{does_a}``, ``{touches_a}``, ``{it_a}`` ("is"/"are", "does"/"do", "touches"/"touch",
# "it"/"them"). Superior/inferior is always glossed "toward the head / the feet" (on an axial image "above"
# reads as anterior); a relation between centroids always says so ("judged by their centres").

#: "a REL b" phrases of a direction (by centroids), per outcome value.
RELATION_WORDS = {
    "left": ("to the patient's left of", "on the patient's left side of", "further to the patient's left than"),
    "right": ("to the patient's right of", "on the patient's right side of", "further to the patient's right than"),
    "superior": ("further toward the head than", "superior to (nearer the head than)",
                 "higher in the body (nearer the head) than"),
    "inferior": ("further toward the feet than", "inferior to (nearer the feet than)",
                 "lower in the body (nearer the feet) than"),
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
    "lr": ("Is the centre of {a} to the patient's left or to the patient's right of the centre of {b}?",
           "Relative to the centre of {b}, does the centre of {a} lie toward the patient's left or right?",
           "Judged by their centres, {is_a} {a} on the patient's left or right of {b}?"),
    "si": ("Is the centre of {a} above (toward the head) or below (toward the feet) the centre of {b}?",
           "Judged by their centres, {does_a} {a} lie superior (toward the head) or inferior (toward the feet) "
           "to {b}?",
           "Judged by their centres, {is_a} {a} higher (toward the head) or lower (toward the feet) in the body "
           "than {b}?"),
    "ap": ("Is the centre of {a} in front of or behind the centre of {b}?",
           "Judged by their centres, {does_a} {a} lie anterior or posterior to {b}?",
           "Judged by their centres, {does_a} {a} lie further forward or further back in the body than {b}?"),
}
#: "lies more TOWARD" phrases for the extreme-along-an-axis questions.
TOWARD_WORDS = {
    "left": "to the patient's left", "right": "to the patient's right",
    "superior": "superiorly (toward the head)", "inferior": "inferiorly (toward the feet)",
    "anterior": "anteriorly (toward the front of the body)", "posterior": "posteriorly (toward the back of the body)",
}

_YES_NO = {
    "side.yes_no": {
        None: ("{Is_x} {x} on the patient's {s} side?",
               "{Does_x} {x} lie on the {s} side of the patient's body?",
               "Relative to the body's midline, {is_x} {x} on the patient's {s}?"),
    },
    "direction.yes_no": {
        None: ("Judged by their centres, {is_a} {a} {rel} {b}?", "Comparing their centres, {does_a} {a} lie {rel} {b}?",
               "Is the centre of {a} {rel} the centre of {b}?"),
    },
    "extreme.midline.yes_no": {
        "closer": ("Judged by their centres, {is_a} {a} closer to the body's midline than {b}?",
                   "Comparing their centres, {does_a} {a} lie nearer the midline of the body than {b}?",
                   "Is the centre of {a} closer to the midsagittal plane than the centre of {b}?"),
    },
    "extreme.size.yes_no": {
        "larger": ("{Is_a} {a} larger than {b}?", "{Does_a} {a} have a larger volume than {b}?",
                   "By volume, {is_a} {a} bigger than {b}?"),
    },
    "extreme.reach.si.yes_no": {
        "inferior": ("{Does_a} {a} extend below the lowest point of {b}, further toward the feet?",
                     "{Does_a} {a} reach further down (toward the feet) than {b}?",
                     "Is the lowest point of {a} below (nearer the feet than) the lowest point of {b}?"),
        "superior": ("{Does_a} {a} extend above the highest point of {b}, further toward the head?",
                     "{Does_a} {a} reach higher up (toward the head) than {b}?",
                     "Is the highest point of {a} above (nearer the head than) the highest point of {b}?"),
    },
    "contact.yes_no": {
        "yes": ("{Does_a} {a} touch {b}?", "Are {a} and {b} in contact?", "{Is_a} {a} directly touching {b}?"),
        "no": ("Is there a gap between {a} and {b}?", "Are {a} and {b} separated, without touching?",
               "Do {a} and {b} lie apart from each other, not in contact?"),
    },
    "inside.yes_no": {
        "yes": ("{Is_a} {a} inside {b}?", "{Does_a} {a} lie within {b}?", "{Is_a} {a} contained in {b}?"),
        "no": ("{Does_a} {a} lie outside {b}?", "{Is_a} {a} located outside of {b}?",
               "{Is_a} {a} outside {b}, not within {it_b}?"),
    },
    "crosses_midline.yes_no": {
        "yes": ("{Does_x} {x} cross the body's midline?", "{Does_x} {x} extend across the midline of the body?",
                "{Does_x} {x} lie on both sides of the body's midline?"),
        "no": ("{Does_x} {x} lie entirely on one side of the body's midline?",
               "{Is_x} {x} confined to one side of the midline?",
               "{Does_x} {x} stay on one side of the body's midline without crossing it?"),
    },
}

#: Pick questions: (criterion key, toward) → (paraphrases for two structures, for more than two).
#: Paraphrase 0 always holds "these {n} structures" (the open phrasing names them instead).
_PICK = {
    ("axis", None): (
        ("Judged by their centres, which of these {n} structures lies more {tw}?",
         "By their centres, which of the two is positioned further {tw}?",
         "Comparing their centres, which of these two structures lies more {tw}?"),
        ("Judged by their centres, which of these {n} structures lies farthest {tw}?",
         "By their centres, which of the following is positioned furthest {tw}?",
         "Comparing their centres, which of these structures lies farthest {tw}?")),
    ("midline", "closer"): (
        ("Judged by their centres, which of these {n} structures lies closer to the body's midline?",
         "By their centres, which of the two is nearer the midline of the body?",
         "Comparing their centres, which of these two structures is more medial?"),
        ("Judged by their centres, which of these {n} structures lies closest to the body's midline?",
         "By their centres, which of the following is nearest the midline of the body?",
         "Comparing their centres, which of these structures is the most medial?")),
    ("midline", "farther"): (
        ("Judged by their centres, which of these {n} structures lies farther from the body's midline?",
         "By their centres, which of the two is further from the midline of the body?",
         "Comparing their centres, which of these two structures is more lateral?"),
        ("Judged by their centres, which of these {n} structures lies farthest from the body's midline?",
         "By their centres, which of the following is furthest from the midline of the body?",
         "Comparing their centres, which of these structures is the most lateral?")),
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
        ("Which of these {n} structures reaches further down (toward the feet)?",
         "Which of the two extends lower in the body (has its lowest point nearer the feet)?",
         "Which of these two structures has its lowest point further toward the feet?"),
        ("Which of these {n} structures reaches lowest (toward the feet)?",
         "Which of the following extends lowest in the body (nearest the feet)?",
         "Which of these structures has its lowest point nearest the feet?")),
    ("reach", "superior"): (
        ("Which of these {n} structures reaches further up (toward the head)?",
         "Which of the two extends higher in the body (has its highest point nearer the head)?",
         "Which of these two structures has its highest point further toward the head?"),
        ("Which of these {n} structures reaches highest (toward the head)?",
         "Which of the following extends highest in the body (nearest the head)?",
         "Which of these structures has its highest point nearest the head?")),
    ("touches_which", None): (
        ("Which of these {n} structures {does_a} {a} touch?", "Which of the two is in direct contact with {a}?",
         "{A} {touches_a} which one of these two structures?"),
        ("Which of these {n} structures {does_a} {a} touch?", "Which of the following is in direct contact with {a}?",
         "{A} {touches_a} which one of these structures?")),
}

_OPEN = {
    "side": "On which side of the patient's body {does_x} {x} lie?",
    "direction": {"lr": "Along the patient's left-right axis, judged by their centres, where {does_a} {a} lie "
                        "relative to {b}?",
                  "si": "Along the head-foot axis, judged by their centres, where {does_a} {a} lie relative to {b}?",
                  "ap": "Along the front-back axis, judged by their centres, where {does_a} {a} lie relative to "
                        "{b}?"},
    "contact": "{Does_a} {a} touch {b}?",
    "inside": "{Is_a} {a} inside {b}?",
    "crosses_midline": "{Does_x} {x} cross the body's midline?",
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
def _fields(role: str, name: str) -> dict[str, str]:
    """Template fields naming ``name`` in ``role`` (a, b, x): the name with its article, capitalised, and
    the verbs and pronoun that agree with it."""
    phrase, plural = the(name), is_plural(name)
    verbs = {"Is": "Are" if plural else "Is", "is": "are" if plural else "is",
             "Does": "Do" if plural else "Does", "does": "do" if plural else "does",
             "touches": "touch" if plural else "touches", "it": "them" if plural else "it"}
    return {role: phrase, role.upper(): phrase[:1].upper() + phrase[1:],
            **{f"{verb}_{role}": form for verb, form in verbs.items()}}


def _names(**roles: str) -> dict[str, str]:
    """The fields of every named role (``a=``, ``b=``, ``x=``)."""
    out: dict[str, str] = {}
    for role, name in roles.items():
        out.update(_fields(role, name))
    return out


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
    named = _fields("a", spec["anchor"]) if spec["kind"] == "touches_which" else {}
    return t.format(n=_count(n), tw=TOWARD_WORDS.get(spec.get("toward"), ""), **named)


def _yes_no_question(spec: Mapping[str, Any], tfam: str, p: int) -> str:
    kind, names = spec["kind"], spec["structures"]
    if kind == "side":
        return _YES_NO[tfam][None][p].format(s=spec["asserts"], **_names(x=names[0]))
    if kind == "direction":
        rel = RELATION_WORDS[spec["asserts"]][p]
        return _YES_NO["direction.yes_no"][None][p].format(rel=rel, **_names(a=names[0], b=names[1]))
    if kind == "extreme":  # "Is a <beats> b?": asserts names[0]; keyed by the criterion's toward
        return _YES_NO[tfam][spec["toward"]][p].format(**_names(a=names[0], b=names[1]))
    if kind in ("contact", "inside"):
        return _YES_NO[tfam][spec["asserts"]][p].format(**_names(a=names[0], b=names[1]))
    if kind == "crosses_midline":
        return _YES_NO[tfam][spec["asserts"]][p].format(**_names(x=names[0]))
    raise ValueError(f"no yes/no templates for kind {kind!r}")


def _open(spec: Mapping[str, Any]) -> str:
    kind, names = spec["kind"], spec["structures"]
    if kind in ("side", "crosses_midline"):
        return _OPEN[kind].format(**_names(x=names[0]))
    if kind == "direction":
        return _OPEN["direction"][spec["axis"]].format(**_names(a=names[0], b=names[1]))
    if kind in ("contact", "inside"):
        return _OPEN[kind].format(**_names(a=names[0], b=names[1]))
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
        q = VALUE_QUESTIONS[axis][p].format(**_names(a=spec["structures"][0], b=spec["structures"][1]))
        return Rendered(q, words, values, _open(spec))
    return Rendered(_pick_question(spec, p), tuple(option_text(v) for v in values), values, _open(spec))
