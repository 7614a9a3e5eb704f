"""Scoring one model output against one item: :func:`score_output`.

Outcomes are exclusive: an output is *answered* (``parsed`` set), *refused*, or *unparseable*;
refused and unparseable outputs are scored wrong.

**Closed items** (``choice``, ``yes_no``; options lettered A, B, ... in ``Item.options`` order), tried
in this order, case and whitespace insensitive:

1. a bare letter: ``B``, ``B.``, ``(B)``, ``[B]``, ``**B**`` (a list of letters, ``A or B``, is several);
2. the whole output is an option's text (``No``, ``left``, ``Refractory Lesion``);
3. an answer statement: ``Answer: B``, ``The answer is (B)``, ``Option B``, ``correct choice: b.``
   (all such statements must name the same letter);
4. a leading letter with punctuation: ``B. No``, ``(B) ...``, ``B) ...``, ``B: ...`` (unparseable if the
   rest is exactly another option's text or marks another letter, as in echoed options ``A. Yes B. No``);
5. option texts: the first clause (up to ``, . ; : ! ? (``) is an option's text (``Yes, it is
   visible``), else the one option whose text appears anywhere (whole words; a match inside a longer
   matched option text does not count);
6. a lone letter marker anywhere: ``(B)`` or ``B.`` / ``B)`` followed by a space (capital letters only).

An output that names several options at the first step that finds any, or none at all, is
unparseable. Each option's texts are its full text and, for ``Name (explanation)`` options (3D-RAD
Tasks 5 and 6), the name before the parenthesis. ``<think>...</think>`` blocks are dropped first.

**Refusals**: an output containing one of :data:`REFUSAL_PHRASES` is a refusal when it gives no
answer: no single option (closed), no measurement (numeric), or always (open, where an answer cannot
be told from a refusal). The list is deliberately narrow: phrases that
decline to answer or say an image is missing, not hedges such as "likely".

**Open items**: ``parsed`` is the SQuAD-normalised text (lower case, no punctuation or articles);
scores ``exact`` (normalised match), ``token_f1``, ``bleu1`` (sacrebleu sentence BLEU, max n-gram order 1,
lower-cased, 13a tokens, brevity penalty) and ``rouge1`` (rouge-score ROUGE-1 F, no stemming), all in
[0, 1] (×100 for the paper's scale). ``correct`` = exact match or ``token_f1 ≥`` :data:`OPEN_F1_THRESHOLD`.
Items with ``metadata['scoring'] == 'spatial_terms'`` (CT-SpatialVQA) add ``spatial_agree`` (see
:mod:`volprobe.probes.scoring.spatial_terms`) and use it as ``correct`` when the gold names a
spatial term.

**Numeric items** (3D-RAD Task 3): the measurement is read in mm
(:mod:`volprobe.probes.scoring.measurements`); ``correct`` when every dimension is within
max(10%, 1 mm); ``parsed`` is the canonical ``30x13 mm``; the open-text scores are added for comparison
with the paper, plus ``abs_error_mm`` and ``rel_error`` when the dimension counts agree. An output with
no number is unparseable. A gold answer with no number falls back to the open rule.

**A benchmark's own rule, as a secondary score** (never the outcome): closed 3D-RAD items also get
``scores["3drad_substring"]``, 3D-RAD's published scoring (:func:`threedrad_substring`), so numbers can be
set beside the paper's; :data:`SECONDARY_RULES` labels it for ``probe score``.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

from volprobe.probes.scoring.measurements import measurement_errors, measurements_match, parse_measurement
from volprobe.probes.scoring.spatial_terms import spatial_agreement
from volprobe.items import Item
from volprobe.records import RunRecord

#: Token F1 at or above which an open answer counts as correct (SQuAD-style partial match).
OPEN_F1_THRESHOLD = 0.5

#: Phrases that mark a refusal (matched case-insensitively as substrings, apostrophes ' or ’).
REFUSAL_PHRASES = (
    "i cannot determine", "i can't determine", "i can not determine", "cannot be determined",
    "can't be determined", "unable to determine", "not possible to determine", "impossible to determine",
    "i cannot answer", "i can't answer", "unable to answer", "i cannot provide", "i can't provide",
    "i am unable to", "i'm unable to", "i cannot see", "i can't see", "i cannot view", "i can't view",
    "unable to view", "unable to see the image", "without an image", "without the image",
    "without seeing the image", "without access to the image", "no image was provided",
    "no image provided", "no image is provided", "image is not provided", "image was not provided",
    "not provided an image", "not provided with an image", "as an ai",
    "insufficient information to", "not enough information to",
)


#: Score name of 3D-RAD's substring rule (a secondary score of closed 3D-RAD items).
THREEDRAD_SUBSTRING = "3drad_substring"
#: Secondary scores that are a benchmark's own scoring rule: name → label shown next to the numbers.
SECONDARY_RULES = {
    THREEDRAD_SUBSTRING: "3D-RAD's own rule (secondary, as in its published numbers): correct when the gold "
                         "letter and '.' occur anywhere in the output, so an echoed option list counts as correct",
}


def threedrad_substring(item: Item, text: str) -> float | None:
    """3D-RAD's scoring of a closed answer: 1.0 when ``letter + '.'`` occurs anywhere in the output.

    As Tang-xiaoxiao/3D-RAD ``M3D/Bench/eval/eval_3DRAD.py`` (``if answer_choice[0] + '.' in
    generated_texts[0]``) with the letter of the item's gold option; its published tables use it for the
    closed tasks 5 and 6 (tasks 1-4 by BLEU/ROUGE/BERTScore of the text). None for open items.
    """
    if not item.is_closed or item.answer not in item.options:
        return None
    letter = string.ascii_uppercase[item.options.index(item.answer)]
    return float(f"{letter}." in (text or ""))


@dataclass
class Scored:
    """One output scored against one item.

    Attributes:
        parsed: closed items: the chosen option's text; open items: the normalised text; numeric items:
            the canonical measurement (``30x13 mm``); None when unparseable or refused.
        correct: the binary outcome (False for unparseable and refused outputs).
        unparseable: no single answer could be read (several options, none, no number).
        refused: the model declined (see :data:`REFUSAL_PHRASES`).
        scores: continuous scores in [0, 1] for open and numeric items (``token_f1``, ``bleu1``, ...).
    """

    parsed: str | None
    correct: bool
    unparseable: bool = False
    refused: bool = False
    scores: dict[str, float] = field(default_factory=dict)


def is_refusal(text: str) -> bool:
    low = (text or "").lower().replace("’", "'")
    return any(phrase in low for phrase in REFUSAL_PHRASES)


# -- closed answers ------------------------------------------------------------------------------
_THINK = re.compile(r"<think>.*?(?:</think>|$)", re.DOTALL | re.IGNORECASE)
_BARE = re.compile(r"^[(\[]?([A-Za-z])[)\]]?[.:)]?$")
_STATEMENT = re.compile(
    r"(?i:answer|option|choice)\s*(?i:is)?\s*[:\-]?\s*[(\[]?(?:([A-Z])(?=$|[\s.,:;)\]])|([a-z])(?=$|[.):\]]))")
_LEADING = re.compile(r"^(?:[(\[]([A-Za-z])[)\]][.:]?|([A-Za-z])[.):])(?=\s|$)")
_LETTER_LIST = re.compile(r"^[(\[]?[A-Z][)\]]?(?:\s*(?:,|/|&|\bor\b|\band\b)\s*[(\[]?[A-Z][)\]]?)+\.?$")
_MARKER = re.compile(r"\(([A-Z])\)|(?<![A-Za-z])([A-Z])[.)](?=\s|$)")
_CLAUSE_END = re.compile(r"[,.;:!?(\n]")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def _drop_thinking(text: str) -> str:
    return _THINK.sub(" ", text) if "<think>" in text.lower() else text


def _words(text: str) -> str:
    """Lower case, every run of non-alphanumerics one space, stripped."""
    return _NON_WORD.sub(" ", text.lower()).strip()


@lru_cache(maxsize=4096)
def _option_texts(options: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """Per option: its normalised texts (full text; name before a parenthesis), minus any shared by two options."""
    texts = []
    for opt in options:
        forms = {_words(opt)}
        if "(" in opt:
            forms.add(_words(opt.split("(", 1)[0]))
        texts.append({f for f in forms if f})
    counts = Counter(f for forms in texts for f in forms)
    return tuple(tuple(sorted((f for f in forms if counts[f] == 1), key=len, reverse=True)) for forms in texts)


def _letter_index(letter: str, n_options: int) -> int | None:
    idx = ord(letter.upper()) - ord("A")
    return idx if 0 <= idx < n_options else None


def _one(indices: set[int]) -> tuple[int | None, str]:
    if len(indices) == 1:
        return next(iter(indices)), "ok"
    return None, ("several" if indices else "none")


def _mentioned(words: str, forms: tuple[tuple[str, ...], ...]) -> set[int]:
    """Options whose text occurs in ``words`` (whole words), ignoring matches inside a longer match."""
    padded = f" {words} "
    spans: list[tuple[int, int, int]] = []  # (start, end, option)
    for idx, option_forms in enumerate(forms):
        for form in option_forms:
            needle = f" {form} "
            start = padded.find(needle)
            while start >= 0:
                spans.append((start, start + len(needle), idx))
                start = padded.find(needle, start + 1)
    return {i for s, e, i in spans
            if not any(s2 <= s and e <= e2 and (e2 - s2) > (e - s) and i2 != i for s2, e2, i2 in spans)}


def parse_choice(text: str, options: list[str] | tuple[str, ...]) -> tuple[int | None, str]:
    """Read the option a free-text answer chooses (rules in the module docstring).

    Returns ``(index into options, "ok")``, or ``(None, "several")`` / ``(None, "none")``.
    """
    n = len(options)
    forms = _option_texts(tuple(options))
    t = _drop_thinking(text or "").replace("*", "").replace("`", "").strip().strip("\"'").strip()
    if not t:
        return None, "none"
    m = _BARE.match(t)  # 1. bare letter
    if m and _letter_index(m.group(1), n) is not None:
        return _letter_index(m.group(1), n), "ok"
    if _LETTER_LIST.match(t):  # "A or B", "A, C"
        return None, "several"
    words = _words(t)
    exact = {i for i, f in enumerate(forms) if words in f}  # 2. whole output is an option text
    if len(exact) == 1:
        return exact.pop(), "ok"
    stated = {_letter_index(a or b, n) for a, b in _STATEMENT.findall(t)} - {None}  # 3. answer statement
    if stated:
        return _one(stated)  # type: ignore[arg-type]
    m = _LEADING.match(t)  # 4. leading letter marker
    if m:
        idx = _letter_index(m.group(1) or m.group(2), n)
        if idx is not None:
            rest = t[m.end():]
            others = {_letter_index(a or b, n) for a, b in _MARKER.findall(rest)} - {None, idx}
            if others or any(_words(rest) in f for j, f in enumerate(forms) if j != idx):
                return None, "several"
            return idx, "ok"
    first_clause = _words(_CLAUSE_END.split(t, 1)[0])  # 5. option texts
    lead = {i for i, f in enumerate(forms) if first_clause in f}
    if len(lead) == 1:
        return lead.pop(), "ok"
    mentioned = _mentioned(words, forms)
    if mentioned:
        return _one(mentioned)
    markers = {_letter_index(a or b, n) for a, b in _MARKER.findall(t)} - {None}  # 6. letter markers
    return _one(markers)  # type: ignore[arg-type]


# -- open answers ----------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans({c: " " for c in string.punctuation})


def normalize_answer(text: str) -> str:
    """SQuAD normalisation: lower case, punctuation → space, articles dropped, whitespace collapsed."""
    return " ".join(_ARTICLES.sub(" ", (text or "").lower().translate(_PUNCT)).split())


def token_f1(prediction: str, gold: str) -> float:
    """Harmonic mean of token precision and recall after :func:`normalize_answer` (1.0 when both empty)."""
    return _token_f1(normalize_answer(prediction).split(), normalize_answer(gold).split())


def _token_f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


@lru_cache(maxsize=1)
def _bleu1():
    from sacrebleu.metrics import BLEU

    return BLEU(max_ngram_order=1, lowercase=True, effective_order=True)


@lru_cache(maxsize=1)
def _rouge1():
    from rouge_score import rouge_scorer  # imports nltk: keep lazy

    return rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)


def bleu1(prediction: str, gold: str) -> float:
    """Sentence BLEU-1 in [0, 1] (sacrebleu; brevity penalty; lower-cased)."""
    return _bleu1().sentence_score(prediction or "", [gold or ""]).score / 100.0


def rouge1(prediction: str, gold: str) -> float:
    """ROUGE-1 F-measure in [0, 1] (rouge-score, no stemming)."""
    return _rouge1().score(gold or "", prediction or "")["rouge1"].fmeasure


def text_scores(prediction: str, gold: str) -> dict[str, float]:
    """``exact``, ``token_f1``, ``bleu1``, ``rouge1`` of a free-text answer, each in [0, 1]."""
    pred, ref = normalize_answer(prediction), normalize_answer(gold)
    return {
        "exact": float(pred == ref),
        "token_f1": _token_f1(pred.split(), ref.split()),
        "bleu1": bleu1(prediction, gold),
        "rouge1": rouge1(prediction, gold),
    }


def _open_correct(scores: dict[str, float], threshold: float) -> bool:
    return scores["exact"] == 1.0 or scores["token_f1"] >= threshold


# -- the entry point -------------------------------------------------------------------------------
def score_output(item: Item, text: str, *, f1_threshold: float = OPEN_F1_THRESHOLD) -> Scored:
    """Score one model output for one item (any answer type); rules in the module docstring."""
    text = text or ""
    if item.is_closed:
        secondary = {}
        if item.metadata.get("benchmark") == "3drad" and (rule := threedrad_substring(item, text)) is not None:
            secondary[THREEDRAD_SUBSTRING] = rule
        idx, _status = parse_choice(text, item.options)
        if idx is not None:
            parsed = item.options[idx]
            return Scored(parsed=parsed, correct=parsed == item.answer, scores=secondary)
        refused = is_refusal(text)
        return Scored(parsed=None, correct=False, unparseable=not refused, refused=refused, scores=secondary)

    answer_text = _drop_thinking(text).strip()
    scores = text_scores(answer_text, item.answer)
    refused = is_refusal(answer_text)
    if item.answer_type == "numeric":
        gold = parse_measurement(item.answer)
        pred = parse_measurement(answer_text)
        if gold is not None:
            if pred is None:
                return Scored(None, False, unparseable=not refused, refused=refused, scores=scores)
            errors = measurement_errors(pred, gold)
            if errors is not None:
                scores["abs_error_mm"], scores["rel_error"] = errors
            return Scored(str(pred), measurements_match(pred, gold), scores=scores)

    parsed = normalize_answer(answer_text)
    correct = _open_correct(scores, f1_threshold)
    if item.metadata.get("scoring") == "spatial_terms":
        agree = spatial_agreement(item.answer, answer_text)
        if agree is not None:
            scores["spatial_agree"] = float(agree)
            correct = agree
    if refused:
        return Scored(None, False, refused=True, scores=scores)
    if not parsed:
        return Scored(None, False, unparseable=True, scores=scores)
    return Scored(parsed, correct, scores=scores)


def record_from_output(item: Item, model: str, text: str, *, control: str, scored: Scored | None = None,
                       **fields) -> RunRecord:
    """A :class:`RunRecord` for ``model``'s output ``text`` on ``item`` under ``control`` (built by
    :meth:`RunRecord.for_item`; scored here unless ``scored`` is given).

    Extra keyword arguments set other record fields (``control_facts``, ``prompt``, ``seed``, ...).
    """
    scored = scored if scored is not None else score_output(item, text)
    rec = RunRecord.for_item(item, model=model, control=control, raw_output=text, **fields)
    apply_score(rec, scored)
    return rec


def apply_score(rec: RunRecord, scored: Scored) -> None:
    """Copy a score's outcome (parsed answer, correctness, unparseable/refused, scores) into a record."""
    rec.parsed, rec.correct = scored.parsed, bool(scored.correct)
    rec.unparseable, rec.refused = bool(scored.unparseable), bool(scored.refused)
    rec.scores = dict(scored.scores or {})
