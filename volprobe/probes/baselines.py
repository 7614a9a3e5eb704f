"""Blind baselines: answer from the question text only, fitted on a training split.

Every volume-use claim is measured against these. Each is generic over :class:`Item` (3D-RAD, spatial
question sets, ...), answers closed items with one of the item's own options (by *text*, so rotated
option orders are fine) and open items with a training answer, and is saved to / loaded from one JSON
file (:func:`save_baseline`, :func:`load_baseline`). Use one as a model: ``--model prior:baseline.json``.
Kinds are registered by name in :data:`BASELINES` (entry-point group ``volprobe.baselines``, so a plugin
can add one).

Kinds:

``majority``
    The most frequent gold answer among training items of the same group, trying in turn
    (task, subtask, family), (task, family), (task, subtask), (task,), everything; a group is used
    when it has at least ``min_count`` training items and one of its answers is among the item's
    options. ``family`` is ``metadata['family']``: the question family (spatial sets) or the finding
    label (3D-RAD Tasks 4-6), so this is "per task and per label". Ties go to the earlier option;
    with nothing to go on, the first option.

``history-rule`` (3D-RAD Task 6; others fall back to ``majority``)
    The prior states in the question (``metadata['history']``, oldest first) fix which answers are
    possible: with a 1 in the history, only *Refractory* (present now) or *Resolved* (absent now);
    with none, only *New* or *No Abnormality*. So it **never predicts New when the history has a 1**.
    Between the two, it takes the more frequent in training for the same history state
    (last prior present / present earlier only / never present) and label, then the same state over
    all labels; with no training data it assumes persistence: last prior present → Refractory,
    present earlier only → Resolved, never → No Abnormality.

``text-classifier``
    Per task, TF-IDF (word 1-2-grams including one-character words, sublinear tf) + logistic
    regression (scikit-learn, lbfgs) over the question text plus its option texts, predicting the
    gold option text; the prediction is the most probable class among the item's own options. The
    file stores the fitted vocabulary, idf and coefficients (float64, exact), so loading needs no
    refit and reproduces predictions exactly.
    Open items and tasks without two classes fall back to ``majority``.
"""

from __future__ import annotations

import base64
import json
from abc import ABC, abstractmethod
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from volprobe.errors import FormatError, VolprobeError
from volprobe.items import Item
from volprobe.jsonio import write_json_atomic
from volprobe.manifest import write_manifest
from volprobe.records import RecordsImport
from volprobe.registry import Registry


BASELINE_FORMAT_VERSION = 1
DEFAULT_MIN_COUNT = 5


class Baseline(ABC):
    """A fitted blind model: ``predict`` returns an option text (closed items) or answer text (open items).

    ``name`` is its kind (``majority``, ...), the registry name and the ``kind`` of its file."""

    name: str = ""

    def __init__(self, seed: int = 0, min_count: int = DEFAULT_MIN_COUNT):
        if min_count < 1:
            raise VolprobeError(f"min_count must be at least 1, got {min_count}")
        self.seed = seed
        self.min_count = min_count
        self.n_fitted = 0

    @abstractmethod
    def fit(self, items: Sequence[Item]) -> "Baseline":
        ...

    @abstractmethod
    def predict(self, item: Item) -> str:
        ...

    def predict_many(self, items: Sequence[Item]) -> list[str]:
        return [self.predict(it) for it in items]

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """JSON-able fitted state."""

    @abstractmethod
    def load_state(self, state: dict[str, Any]) -> None:
        ...

    @property
    def kind(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": BASELINE_FORMAT_VERSION, "kind": self.kind, "seed": self.seed,
                "min_count": self.min_count, "n_fitted": self.n_fitted, "state": self.state()}


# -- majority --------------------------------------------------------------------------------------------
_ALL = json.dumps(["all"])


def _group_keys(item: Item) -> list[str]:
    family = item.metadata.get("family")
    keys = []
    if family is not None:
        keys += [json.dumps(["tsf", item.task, item.subtask, family]), json.dumps(["tf", item.task, family])]
    return keys + [json.dumps(["ts", item.task, item.subtask]), json.dumps(["t", item.task]), _ALL]


def _best(counts: Counter | dict[str, int], candidates: Sequence[str] | None) -> str | None:
    """Most frequent of ``candidates`` in ``counts`` (ties: earlier candidate); any answer when None."""
    if candidates is None:
        return min(counts, key=lambda a: (-counts[a], a)) if counts else None
    seen = [c for c in candidates if counts.get(c, 0) > 0]
    return max(seen, key=lambda c: (counts[c], -candidates.index(c))) if seen else None


class MajorityBaseline(Baseline):
    name = "majority"

    def fit(self, items: Sequence[Item]) -> "MajorityBaseline":
        counts: dict[str, Counter] = defaultdict(Counter)
        for it in items:
            for key in _group_keys(it):
                counts[key][it.answer] += 1
        self.counts = {k: dict(v) for k, v in counts.items()}
        self.n_fitted = len(items)
        return self

    def predict(self, item: Item) -> str:
        candidates = item.options if item.is_closed else None
        for key in _group_keys(item):
            counts = self.counts.get(key)
            if not counts or (sum(counts.values()) < self.min_count and key != _ALL):
                continue
            answer = _best(counts, candidates)
            if answer is not None:
                return answer
        return item.options[0] if item.is_closed else ""

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts}

    def load_state(self, state: dict[str, Any]) -> None:
        self.counts = state["counts"]


# -- history rule (3D-RAD Task 6) ------------------------------------------------------------------------
#: Option roles recognised by the start of the option text (lower case).
ROLE_PREFIXES = {"refractory": "refractory", "resolved": "resolved", "new": "new", "no abnormality": "absent"}
ADMISSIBLE = {"last_present": ("refractory", "resolved"), "earlier_present": ("refractory", "resolved"),
              "never_present": ("new", "absent")}
PERSISTENCE = {"last_present": "refractory", "earlier_present": "resolved", "never_present": "absent"}


def history_state(history: Sequence[int]) -> str:
    """``last_present`` | ``earlier_present`` | ``never_present`` (an empty history is never present)."""
    if history and history[-1]:
        return "last_present"
    return "earlier_present" if any(history) else "never_present"


def option_roles(options: Sequence[str]) -> dict[str, str] | None:
    """Role → option text for the four 3D-RAD temporal options, or None when they are not all there."""
    roles = {}
    for opt in options:
        low = opt.strip().lower()
        role = next((r for prefix, r in ROLE_PREFIXES.items() if low.startswith(prefix)), None)
        if role is not None:
            roles[role] = opt
    return roles if len(roles) == len(ROLE_PREFIXES) else None


class HistoryRuleBaseline(Baseline):
    name = "history-rule"

    def __init__(self, seed: int = 0, min_count: int = DEFAULT_MIN_COUNT):
        super().__init__(seed, min_count)
        self.fallback = MajorityBaseline(seed, min_count)

    @staticmethod
    def _applies(item: Item) -> tuple[str, dict[str, str]] | None:
        history = item.metadata.get("history")
        roles = option_roles(item.options) if item.is_closed else None
        if history is None or roles is None:
            return None
        return history_state(history), roles

    @staticmethod
    def _keys(state: str, item: Item) -> list[str]:
        family = item.metadata.get("family")
        keys = [json.dumps([state, family])] if family is not None else []
        return keys + [json.dumps([state])]

    def fit(self, items: Sequence[Item]) -> "HistoryRuleBaseline":
        self.fallback.fit(items)
        counts: dict[str, Counter] = defaultdict(Counter)
        for it in items:
            applies = self._applies(it)
            if applies is None:
                continue
            state, roles = applies
            role = next((r for r, text in roles.items() if text == it.answer), None)
            if role is None:
                continue
            for key in self._keys(state, it):
                counts[key][role] += 1
        self.counts = {k: dict(v) for k, v in counts.items()}
        self.n_fitted = len(items)
        return self

    def predict(self, item: Item) -> str:
        applies = self._applies(item)
        if applies is None:
            return self.fallback.predict(item)
        state, roles = applies
        admissible = list(ADMISSIBLE[state])
        for key in self._keys(state, item):
            counts = self.counts.get(key, {})
            if sum(counts.get(r, 0) for r in admissible) >= self.min_count:
                return roles[_best(counts, admissible)]  # type: ignore[index]
        return roles[PERSISTENCE[state]]

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts, "fallback": self.fallback.state()}

    def load_state(self, state: dict[str, Any]) -> None:
        self.counts = state["counts"]
        self.fallback.load_state(state["fallback"])


# -- text classifier -------------------------------------------------------------------------------------
TFIDF_PARAMS = {"ngram_range": (1, 2), "sublinear_tf": True, "max_features": 20000, "lowercase": True,
                "token_pattern": r"(?u)\b\w+\b"}  # single characters too: the 0/1 of a Task 6 history
LOGREG_PARAMS = {"C": 1.0, "max_iter": 2000}


def classifier_text(item: Item) -> str:
    """What the text classifier reads: the question and the option texts."""
    return item.question + " || " + " | ".join(item.options)


def _encode(array: np.ndarray) -> dict[str, Any]:
    array = np.ascontiguousarray(array, dtype="<f8")
    return {"shape": list(array.shape), "float64_base64": base64.b64encode(array.tobytes()).decode("ascii")}


def _decode(data: dict[str, Any]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(data["float64_base64"]), dtype="<f8").reshape(data["shape"]).copy()


class _TaskClassifier:
    """TF-IDF + logistic regression for one task, rebuilt exactly from stored parameters."""

    def __init__(self, vectorizer, classes: list[str], coef: np.ndarray, intercept: np.ndarray):
        self.vectorizer, self.classes, self.coef, self.intercept = vectorizer, classes, coef, intercept
        self.index = {c: i for i, c in enumerate(classes)}

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], seed: int) -> "_TaskClassifier":
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        vectorizer = TfidfVectorizer(**TFIDF_PARAMS)
        x = vectorizer.fit_transform(texts)
        model = LogisticRegression(random_state=seed, **LOGREG_PARAMS).fit(x, labels)
        return cls(vectorizer, [str(c) for c in model.classes_], model.coef_, model.intercept_)

    def logits(self, texts: list[str]) -> np.ndarray:
        """Per text, one score per class (monotone in the class probability)."""
        raw = self.vectorizer.transform(texts) @ self.coef.T + self.intercept
        raw = np.asarray(raw)
        if len(self.classes) == 2:  # binary logistic regression: one column, score of classes[1]
            raw = np.hstack([np.zeros_like(raw), raw])
        return raw

    def to_dict(self) -> dict[str, Any]:
        vocab = sorted(self.vectorizer.vocabulary_.items(), key=lambda kv: kv[1])
        return {"terms": [t for t, _i in vocab], "idf": _encode(self.vectorizer.idf_), "classes": self.classes,
                "coef": _encode(self.coef), "intercept": _encode(self.intercept)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "_TaskClassifier":
        from sklearn.feature_extraction.text import TfidfVectorizer

        vectorizer = TfidfVectorizer(vocabulary={t: i for i, t in enumerate(data["terms"])}, **TFIDF_PARAMS)
        vectorizer.idf_ = _decode(data["idf"])
        return cls(vectorizer, data["classes"], _decode(data["coef"]), _decode(data["intercept"]))


class TextClassifierBaseline(Baseline):
    name = "text-classifier"

    def __init__(self, seed: int = 0, min_count: int = DEFAULT_MIN_COUNT):
        super().__init__(seed, min_count)
        self.fallback = MajorityBaseline(seed, min_count)
        self.models: dict[str, _TaskClassifier] = {}

    def fit(self, items: Sequence[Item]) -> "TextClassifierBaseline":
        self.fallback.fit(items)
        by_task: dict[str, list[Item]] = defaultdict(list)
        for it in items:
            if it.is_closed:
                by_task[it.task].append(it)
        self.models = {}
        for task, task_items in sorted(by_task.items()):
            labels = [it.answer for it in task_items]
            if len(set(labels)) >= 2:
                self.models[task] = _TaskClassifier.fit([classifier_text(it) for it in task_items], labels, self.seed)
        self.n_fitted = len(items)
        return self

    def predict(self, item: Item) -> str:
        return self.predict_many([item])[0]

    def predict_many(self, items: Sequence[Item]) -> list[str]:
        out: list[str | None] = [None] * len(items)
        by_task: dict[str, list[int]] = defaultdict(list)
        for i, it in enumerate(items):
            if it.is_closed and it.task in self.models:
                by_task[it.task].append(i)
        for task, idx in by_task.items():
            model = self.models[task]
            logits = model.logits([classifier_text(items[i]) for i in idx])
            for row, i in zip(logits, idx):
                known = [o for o in items[i].options if o in model.index]
                if known:  # ties: the earlier option
                    out[i] = max(known, key=lambda o: (row[model.index[o]], -items[i].options.index(o)))
        return [p if p is not None else self.fallback.predict(it) for p, it in zip(out, items)]

    def state(self) -> dict[str, Any]:
        return {"models": {t: m.to_dict() for t, m in self.models.items()}, "fallback": self.fallback.state(),
                "tfidf": {k: list(v) if isinstance(v, tuple) else v for k, v in TFIDF_PARAMS.items()},
                "logreg": LOGREG_PARAMS}

    def load_state(self, state: dict[str, Any]) -> None:
        self.models = {t: _TaskClassifier.from_dict(m) for t, m in state["models"].items()}
        self.fallback.load_state(state["fallback"])


# -- registry and files ----------------------------------------------------------------------------------
#: Every baseline kind by name (entry-point group ``volprobe.baselines``).
BASELINES: Registry[Baseline] = Registry("baseline kind", "volprobe.baselines")
for _cls in (MajorityBaseline, HistoryRuleBaseline, TextClassifierBaseline):
    BASELINES.register(_cls)


def fit_baseline(items: Iterable[Item], kind: str, seed: int = 0, min_count: int = DEFAULT_MIN_COUNT) -> Baseline:
    """Fit a baseline of ``kind`` (a name in :data:`BASELINES`) on training items."""
    cls = BASELINES.get(kind)
    items = list(items)
    if not items:
        raise VolprobeError("cannot fit a baseline on no items")
    return cls(seed=seed, min_count=min_count).fit(items)


def save_baseline(baseline: Baseline, path: str | Path, *, command: str = "probe baseline fit",
                  inputs: Sequence[str | Path] = ()) -> Path:
    """Write the baseline file and its manifest (``PATH.manifest.json``: inputs, kind, seed, versions)."""
    path = write_json_atomic(path, baseline.to_dict(), indent=None)
    write_manifest(path, command, inputs=list(inputs), seed=baseline.seed,
                   parameters={"kind": baseline.kind, "min_count": baseline.min_count, "n_fitted": baseline.n_fitted})
    return path


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline file written by :func:`save_baseline` (no refit, no network)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"baseline file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("format_version") != BASELINE_FORMAT_VERSION:
            raise FormatError(f"{path}: baseline format version {data.get('format_version')}, "
                              f"this volprobe reads {BASELINE_FORMAT_VERSION}")
        cls = BASELINES.get(data["kind"])
        baseline = cls(seed=data["seed"], min_count=data["min_count"])
        baseline.n_fitted = data["n_fitted"]
        baseline.load_state(data["state"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        if isinstance(exc, FormatError):
            raise
        raise FormatError(f"{path}: not a volprobe baseline file ({type(exc).__name__}: {exc})") from exc
    return baseline


def evaluate_baseline(baseline: Baseline, items: Sequence[Item], model: str, control: str,
                      control_facts: dict[str, Any] | None = None) -> RecordsImport:
    """Answer ``items`` with ``baseline`` and score them: one record per item under ``control`` (the
    reference condition: a blind baseline reads no image, so every control gives the same answers)."""
    from volprobe.probes.scoring.answers import record_from_output

    answers = baseline.predict_many(items)
    records = [record_from_output(it, model, it.as_output(a), control=control, control_facts=control_facts,
                                  seed=baseline.seed, generation={"baseline_kind": baseline.kind})
               for it, a in zip(items, answers)]
    return RecordsImport(records=records, source=f"{baseline.kind} baseline")
