"""Run records: one JSON object per (item, control, model), appended as produced.

This module is the contract between everything that makes records (the run engine, imports of other
harnesses' predictions and judgements, blind baselines) and ``volprobe.stats`` (which reads them). Every
record is built from its item by :meth:`RunRecord.for_item`, so the item fields are copied one way.
It imports nothing heavy (no torch).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from volprobe.errors import VolprobeWarning
from volprobe.items import Item
from volprobe.jsonio import json_default, parse_json_object, versioned_fields
from volprobe.manifest import write_manifest

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
        control: control label (``full``, ``text_only``, ``mirror_lr``, ...); control_seed: its seed.
        control_params: the control's settings (e.g. which slice).
        control_facts: what the control does, as the control states it (``reference``,
            ``removes_image``, ``needs_volume``, ``changes_gold``, ``patient_axis``; see
            :meth:`volprobe.controls.base.Control.facts`); the statistics read control roles from here.
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
    control_facts: dict[str, Any] | None = None
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
        return cls(**versioned_fields(cls, data, kind="record", version=RECORD_FORMAT_VERSION,
                                      required=("item_id", "model", "control", "gold", "correct"), where=where))

    @classmethod
    def for_item(cls, item: Item, *, model: str, control: str, gold: str | None = None,
                 control_facts: Mapping[str, Any] | None = None, **other: Any) -> "RunRecord":
        """The record of ``model`` answering ``item`` under ``control``: the item's fields copied
        (patient falls back to the case, category to the subtask and task), ``gold`` the gold under the
        control (default: the item's answer), ``correct`` False until the answer is scored. Other record
        fields as keyword arguments."""
        other.setdefault("correct", False)
        return cls(item_id=item.id, model=model, control=control, gold=item.answer if gold is None else gold,
                   gold_original=item.answer, case=item.case, patient=item.patient_key or None, task=item.task,
                   subtask=item.subtask, category=item.category, answer_type=item.answer_type, chance=item.chance,
                   evidence_axes=list(item.evidence.get("axes") or []),
                   prior_fixed=item.metadata.get("prior_fixed"),
                   control_facts=None if control_facts is None else dict(control_facts), **other)


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


def write_records(records: Iterable[RunRecord], path: str | Path) -> int:
    """Write records as JSON Lines (the run-record format ``volprobe.stats`` reads); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(path, "w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec.to_dict(), ensure_ascii=False, default=json_default) + "\n")
            n += 1
    return n


@dataclass
class RecordsImport:
    """Records made outside a run (another harness's predictions or judgements, a blind baseline), with
    what could not be used."""

    records: list[RunRecord]
    source: str
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, VolprobeWarning, stacklevel=3)

    def __str__(self) -> str:
        models = sorted({r.model for r in self.records})
        lines = [f"{len(self.records)} records from {self.source} (models: {', '.join(models) or 'none'})"]
        return "\n".join(lines + [f"warning: {w}" for w in self.warnings])

    def write(self, out: str | Path, command: str, inputs: Iterable[str | Path] = (),
              parameters: Mapping[str, Any] | None = None) -> int:
        """Write the records (JSON Lines) and their manifest (inputs, parameters, warnings); returns the count."""
        n = write_records(self.records, out)
        write_manifest(out, command, inputs=list(inputs), parameters=dict(parameters or {}),
                       extra={"warnings": self.warnings})
        return n
