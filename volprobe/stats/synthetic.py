"""Synthetic run records with a known truth, for tests, benchmarks and trying out ``probe report``.

:func:`write_synthetic_runs` writes one run directory per model, in the exact layout and record
format of ``probe run`` (``RUN_DIR/records*.jsonl`` + ``manifest.json``). A model that *uses the
volume* answers from the image when it has one (accuracy ``accuracy``, with a per-patient random
effect so that questions about one patient are correlated) and from the text otherwise; a model
that does *not* use the volume gives its text-only answer under every control.

Controls are given as objects with a ``label`` and ``facts()`` (:class:`volprobe.controls.Control`
instances, or :class:`SyntheticControl`); the simulation reacts to what the facts say: a control that
removes the image gets the text-only answer, a counterfactual along a patient axis transforms the gold of
the items on that axis (open items excluded), the reference is read intact, and any other control leaves
part of the evidence (half the answers fall back on the text). The facts are written into every record.

Items mix 2-option laterality (``lr``), superior/inferior (``si``), 3-option anterior/posterior
(``ap``), 4-option questions with no axis, and open questions (continuous ``token_f1`` score,
left out of counterfactual controls as "not transformable").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from volprobe.seeding import seed_sequence
from volprobe.records import RECORD_FORMAT_VERSION



@dataclass(frozen=True)
class SyntheticControl:
    """A control as the simulation and the records see it: its label and its facts (the keys of
    :meth:`volprobe.controls.Control.facts`)."""

    label: str
    reference: bool = False
    removes_image: bool = False
    needs_volume: bool = True
    changes_gold: bool = False
    patient_axis: str | None = None

    def facts(self) -> dict:
        return {"reference": self.reference, "removes_image": self.removes_image, "needs_volume": self.needs_volume,
                "changes_gold": self.changes_gold, "patient_axis": self.patient_axis}

# kind → (options, evidence axes, task, subtask, category, option permutation of the counterfactual)
_KINDS = {
    "lr": (["left", "right"], ["lr"], "spatial", "laterality", "side", [1, 0]),
    "si": (["superior", "inferior"], ["si"], "spatial", "level", "level", [1, 0]),
    "ap": (["anterior", "posterior", "same level"], ["ap"], "spatial", "depth", "depth", [1, 0, 2]),
    "four": (["liver", "spleen", "kidney", "pancreas"], [], "3drad/T4", "organ", "organ", None),
    "open": ([], [], "3drad/T1", "report", "open", None),
}
_KIND_NAMES = list(_KINDS)


@dataclass
class SyntheticModel:
    """A simulated model.

    Attributes:
        accuracy: P(right) when reading an intact volume (for an average patient).
        uses_volume: False → the image never changes the answer.
        blind_accuracy: P(right) from the text alone; None → a uniform guess (chance).
        patient_sd: SD of a per-patient effect on the logit of ``accuracy`` (clustering).
        unparseable_rate, refusal_rate, error_rate: shares of such outcomes (any control).
        random: answers uniformly at random, independently per control (the ``random`` reference).
    """

    name: str
    accuracy: float = 0.85
    uses_volume: bool = True
    blind_accuracy: float | None = None
    patient_sd: float = 0.8
    unparseable_rate: float = 0.0
    refusal_rate: float = 0.0
    error_rate: float = 0.0
    random: bool = False


@dataclass
class SyntheticItems:
    """Item attributes as parallel arrays (index = item)."""

    item_id: np.ndarray
    patient: np.ndarray
    case: np.ndarray
    kind: np.ndarray  # index into _KIND_NAMES
    gold: np.ndarray  # option index (closed) or -1 (open)
    prior_fixed: np.ndarray

    @property
    def n(self) -> int:
        return len(self.item_id)


def synthetic_items(n_items: int, n_patients: int, seed: int = 0,
                    kind_shares: Sequence[float] = (0.3, 0.2, 0.2, 0.2, 0.1)) -> SyntheticItems:
    """Items spread over patients (two scans per patient on average)."""
    rng = np.random.default_rng([seed, 1])
    patient = np.sort(rng.integers(0, n_patients, n_items))
    scan = rng.integers(0, 2, n_items)
    kind = rng.choice(len(_KIND_NAMES), size=n_items, p=np.asarray(kind_shares) / np.sum(kind_shares))
    n_options = np.array([max(len(_KINDS[k][0]), 1) for k in _KIND_NAMES])[kind]
    gold = np.where(kind == _KIND_NAMES.index("open"), -1, (rng.random(n_items) * n_options).astype(int))
    return SyntheticItems(
        item_id=np.array([f"q{i:07d}" for i in range(n_items)]),
        patient=np.array([f"pt{p:05d}" for p in patient]),
        case=np.array([f"pt{p:05d}-ct{s}" for p, s in zip(patient, scan)]),
        kind=kind, gold=gold, prior_fixed=rng.random(n_items) < 0.3,
    )


def _rng(seed: int, *keys: str) -> np.random.Generator:
    return np.random.default_rng(seed_sequence(seed, *keys))


def _gold_under(items: SyntheticItems, facts: dict) -> tuple[np.ndarray, np.ndarray]:
    """(gold option index under a control with these facts, item included in the control)."""
    gold = items.gold.copy()
    included = np.ones(items.n, dtype=bool)
    axis = facts.get("patient_axis") if facts.get("changes_gold") else None
    if axis is None:
        return gold, included
    for k, name in enumerate(_KIND_NAMES):
        sel = items.kind == k
        options, axes, *_, perm = _KINDS[name]
        if name == "open":
            included[sel] = False  # open answers cannot be transformed
        elif axis in axes:
            gold[sel] = np.asarray(perm)[gold[sel]]
    return gold, included


def _answers(model: SyntheticModel, items: SyntheticItems, control: str, facts: dict, gold: np.ndarray, seed: int):
    """(chosen option index, open-item score in [0, 1]) per item."""
    n_options = np.array([max(len(_KINDS[k][0]), 1) for k in _KIND_NAMES])[items.kind]
    is_open = items.gold < 0

    def pick(rng, right: np.ndarray, target: np.ndarray) -> np.ndarray:
        wrong = (target + 1 + (rng.random(items.n) * (n_options - 1)).astype(int)) % n_options
        return np.where(right, target, wrong)

    blind_rng = _rng(seed, model.name, "blind")  # the same text-only answer under every control
    blind_p = 1.0 / n_options if model.blind_accuracy is None else np.full(items.n, model.blind_accuracy)
    blind = pick(blind_rng, blind_rng.random(items.n) < blind_p, items.gold)
    blind_score = blind_rng.beta(2, 5, items.n)
    if model.random:
        rng = _rng(seed, model.name, control)
        return (rng.random(items.n) * n_options).astype(int), rng.random(items.n)
    if not model.uses_volume or facts.get("removes_image"):
        return blind, blind_score
    rng = _rng(seed, model.name, control)
    codes = np.unique(items.patient, return_inverse=True)[1]
    effect = _rng(seed, model.name, "patients").normal(0, model.patient_sd, codes.max() + 1)[codes]
    logit = np.log(model.accuracy / (1 - model.accuracy)) + effect
    p_right = 1 / (1 + np.exp(-logit))
    reading = pick(rng, rng.random(items.n) < p_right, gold)
    reading_score = np.clip(rng.beta(8, 2, items.n) * p_right / model.accuracy, 0, 1)
    if not facts.get("reference") and not facts.get("changes_gold"):  # part of the evidence: half the time
        # the model falls back on the text
        use_image = rng.random(items.n) < 0.5
        return np.where(use_image, reading, blind), np.where(use_image, reading_score, blind_score)
    return reading, np.where(is_open, reading_score, 0.0)


def synthetic_record_lines(model: SyntheticModel, items: SyntheticItems, control, seed: int = 0) -> list[str]:
    """The JSON Lines of one model under one control (an object with ``label`` and ``facts()``; RunRecord format)."""
    facts = dict(control.facts())
    label = control.label
    gold, included = _gold_under(items, facts)
    answer, score = _answers(model, items, label, facts, gold, seed)
    control = label
    rng = _rng(seed, model.name, control, "outcomes")
    u = rng.random(items.n)
    error = u < model.error_rate
    refused = ~error & (u < model.error_rate + model.refusal_rate)
    unparse = ~error & ~refused & (u < model.error_rate + model.refusal_rate + model.unparseable_rate)
    latency = rng.gamma(4, 0.05, items.n)
    hashes = rng.integers(0, 2**63, (items.n, 4))
    block = json.dumps({
        "control": control, "control_seed": seed, "control_params": {}, "control_facts": facts,
        "model": model.name, "model_revision": "synthetic", "seed": seed,
        "no_image_mode": "no image token" if not facts.get("needs_volume", True) else None,
        "generation": {"do_sample": False, "max_new_tokens": 64},
    })[1:-1]
    lines = []
    for i in np.flatnonzero(included):
        name = _KIND_NAMES[items.kind[i]]
        options, axes, task, subtask, category, _ = _KINDS[name]
        is_open = name == "open"
        rec = {
            "format_version": RECORD_FORMAT_VERSION, "item_id": items.item_id[i], "case": items.case[i],
            "patient": items.patient[i], "task": task, "subtask": subtask, "category": category,
            "answer_type": "open" if is_open else "choice",
            "chance": None if is_open else 1.0 / len(options), "evidence_axes": axes,
            "prior_fixed": bool(items.prior_fixed[i]) if not is_open else None,
            "input_hash": "".join(f"{h:016x}" for h in hashes[i]),
            "prompt": f"Question {items.item_id[i]} about the CT of {items.patient[i]}: "
                      + ("describe the finding." if is_open else "options: " + ", ".join(options) + "."),
            "gold": "finding text" if is_open else options[gold[i]],
            "gold_original": None if is_open else options[items.gold[i]],
            "error": None, "refused": False, "unparseable": False, "scores": {}, "latency_s": round(float(latency[i]), 4),
        }
        if is_open:
            f1 = round(float(score[i]), 4)
            rec.update(parsed="finding text" if f1 >= 0.5 else "other text", raw_output="The finding is ...",
                       correct=f1 >= 0.5, scores={"token_f1": f1, "rouge1": round(f1 * 0.9, 4)})
        else:
            chosen = options[answer[i]]
            rec.update(parsed=chosen, raw_output=f"{'ABCD'[answer[i]]}. {chosen}", correct=bool(answer[i] == gold[i]))
        if error[i]:
            rec.update(error="RuntimeError: CUDA out of memory", raw_output="", parsed=None, correct=False, scores={})
        elif refused[i]:
            rec.update(refused=True, raw_output="I cannot answer without more information.", parsed=None,
                       correct=False, scores={})
        elif unparse[i] and not is_open:
            rec.update(unparseable=True, raw_output="It could be A or B.", parsed=None, correct=False)
        lines.append("{" + json.dumps(rec)[1:-1] + ", " + block + "}\n")
    return lines


def write_synthetic_runs(root: str | Path, models: Sequence[SyntheticModel], items: SyntheticItems,
                         controls: Sequence, seed: int = 0, shards: int = 1) -> list[Path]:
    """Write ``root/<model>/records[-i].jsonl`` and a manifest per model; returns the run directories.

    ``controls``: objects with ``label`` and ``facts()`` (:class:`volprobe.controls.Control`,
    :class:`SyntheticControl`), in report order."""
    from volprobe.manifest import write_manifest

    runs = []
    for model in models:
        run = Path(root) / model.name.replace(":", "_")
        run.mkdir(parents=True, exist_ok=True)
        lines = [ln for control in controls for ln in synthetic_record_lines(model, items, control, seed)]
        for s in range(shards):
            name = "records.jsonl" if shards == 1 else f"records-{s:03d}-of-{shards:03d}.jsonl"
            with open(run / name, "w", encoding="utf-8") as fh:
                fh.writelines(lines[s::shards])
        write_manifest(run, "synthetic run (volprobe.stats.synthetic)", seed=seed,
                       parameters={"model": vars(model), "controls": [c.label for c in controls], "items": items.n},
                       extra={"run": {"identity": {"controls": [{"label": c.label, **c.facts()} for c in controls]}}})
        runs.append(run)
    return runs
