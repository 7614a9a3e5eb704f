"""Run records: one JSON object per (item, control, model), appended as produced.

This module is the contract between the run engine (which writes records) and
``volprobe.stats`` (which reads them). It imports nothing heavy (no torch).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterator

from volprobe.errors import FormatError
from volprobe.jsonio import parse_json_object

RECORD_FORMAT_VERSION = 1


@dataclass
class RunRecord:
    """The outcome of one model answering one item under one control.

    Identity: ``(model, control, item_id)`` is unique within a run.

    Attributes:
        item_id, case, patient, task, subtask: copied from the item (patient falls back to case).
        category: grouping label for reports (question category, 3D-RAD task, ...).
        answer_type, chance: copied from the item (chance None for open items).
        evidence_axes: patient axes the answer depends on ('lr', 'ap', 'si').
        prior_fixed: True when normal anatomy fixes the answer (question sets), None if unknown.
        control: control name (``full``, ``text_only``, ``mirror_lr``, ...); control_seed: its seed.
        control_params: the control's settings (e.g. which slice).
        input_hash: SHA-256 of the exact model input (prepared tensors or images + prompt).
        model: model name as given on the command line; model_revision: weights revision/hash.
        no_image_mode: how the adapter ran without an image (for ``text_only``), else None.
        prompt: the text sent; raw_output: the model's text.
        parsed: parsed answer: option text for closed items, normalised text for open ones, None if unparseable.
        gold: gold answer under this control (transformed for counterfactuals); gold_original: before it.
        correct: parsed == gold (for open items: the binary correctness rule of the scorer).
        unparseable: closed answer naming several options or none; refused: the model declined.
        error: exception text when the model failed on this item (then correct is False).
        scores: continuous scores (token_f1, rouge1, bleu1, ...) for open items.
        latency_s: seconds spent generating this item (batch time shared equally).
        generation: decoding settings (do_sample, max_new_tokens, ...).
        seed: the run's seed.
    """

    item_id: str
    model: str
    control: str
    gold: str
    correct: bool
    case: str | None = None
    patient: str | None = None
    task: str = ""
    subtask: str | None = None
    category: str | None = None
    answer_type: str = "choice"
    chance: float | None = None
    evidence_axes: list[str] = field(default_factory=list)
    prior_fixed: bool | None = None
    control_seed: int | None = None
    control_params: dict[str, Any] = field(default_factory=dict)
    input_hash: str | None = None
    model_revision: str | None = None
    no_image_mode: str | None = None
    prompt: str = ""
    raw_output: str = ""
    parsed: str | None = None
    gold_original: str | None = None
    unparseable: bool = False
    refused: bool = False
    error: str | None = None
    scores: dict[str, float] = field(default_factory=dict)
    latency_s: float | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.control, self.item_id)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": RECORD_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> "RunRecord":
        data = dict(data)
        version = data.pop("format_version", RECORD_FORMAT_VERSION)
        if version != RECORD_FORMAT_VERSION:
            raise FormatError(f"{where}: record format version {version}, this volprobe reads {RECORD_FORMAT_VERSION}")
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise FormatError(f"{where}: unknown record fields {sorted(unknown)}")
        missing = {"item_id", "model", "control", "gold", "correct"} - set(data)
        if missing:
            raise FormatError(f"{where}: missing record fields {sorted(missing)}")
        return cls(**data)


RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))


def iter_record_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    """Raw record dicts from a JSON Lines file. A torn last line (a killed writer) is skipped;
    a malformed line elsewhere is an error naming file and line."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        lines = fh.readlines()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if lineno == len(lines) and not line.endswith("\n"):
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return  # partial write at the moment of a kill
        yield parse_json_object(line, f"{path}:{lineno}")


def read_records(path: str | Path) -> list[RunRecord]:
    return [RunRecord.from_dict(d, f"{path}") for d in iter_record_dicts(path)]
