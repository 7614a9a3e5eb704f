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

from volprobe.errors import FormatError, VolprobeWarning
from volprobe.fileio import atomic_output, existing_path, read_text
from volprobe.items import ANSWER_TYPES, Item, check_chance
from volprobe.jsonio import json_default, parse_json_object, versioned_fields
from volprobe.manifest import write_manifest

RECORD_FORMAT_VERSION = 1
#: Record tags (:attr:`RunRecord.tags`).
NAME_SWAP_ONLY = "name_swap_only"
VOLUME_CHANGED = "volume_changed"


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
        control_params: the control's settings (e.g. which slice; for a flip, the array axis and its angle to the
            patient axis, ``axis_angle_deg``, also for models that read no image: from the item's
            ``metadata['control_params']``).
        control_facts: what the control does, as the control states it (``reference``,
            ``removes_image``, ``needs_volume``, ``changes_gold``, ``changes_geometry``, ``patient_axis``; see
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
        tags: facts about this (item, control) that reports may set apart: ``name_swap_only`` (the gold
            changes under this control only because left/right names swap; from the item's
            ``metadata['name_swap_only']``), ``volume_changed`` (the volume read differs from the one the
            item was made from, run with ``--allow-changed-volumes``).
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
    tags: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.model, self.control, self.item_id)

    def to_dict(self) -> dict[str, Any]:
        return {"format_version": RECORD_FORMAT_VERSION, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> "RunRecord":
        """A record from its JSON object, checked (:func:`check_record_fields`); errors name ``where``."""
        rec = cls(**versioned_fields(cls, data, kind="record", version=RECORD_FORMAT_VERSION,
                                     required=("item_id", "model", "control", "gold", "correct"), where=where))
        check_record_fields(rec, where)
        return rec

    @classmethod
    def for_item(cls, item: Item, *, model: str, control: str, gold: str | None = None,
                 control_facts: Mapping[str, Any] | None = None, **other: Any) -> "RunRecord":
        """The record of ``model`` answering ``item`` under ``control``: the item's fields copied
        (patient falls back to the case, category to the subtask and task), ``gold`` the gold under the
        control (default: the item's answer), ``correct`` False until the answer is scored, the control's
        parameters the item states (``metadata['control_params'][control]``) under the given ones, and the tag
        ``name_swap_only`` when the item lists the control in ``metadata['name_swap_only']``. Other record
        fields as keyword arguments."""
        other.setdefault("correct", False)
        stated = (item.metadata.get("control_params") or {}).get(control)
        if stated:
            other["control_params"] = {**stated, **(other.get("control_params") or {})}
        if control in (item.metadata.get("name_swap_only") or ()):
            other["tags"] = [*other.get("tags", ()), NAME_SWAP_ONLY]
        return cls(item_id=item.id, model=model, control=control, gold=item.answer if gold is None else gold,
                   gold_original=item.answer, case=item.case, patient=item.patient_key or None, task=item.task,
                   subtask=item.subtask, category=item.category, answer_type=item.answer_type, chance=item.chance,
                   evidence_axes=list(item.evidence.get("axes") or []),
                   prior_fixed=item.metadata.get("prior_fixed"),
                   control_facts=None if control_facts is None else dict(control_facts), **other)


RECORD_FIELDS = tuple(f.name for f in fields(RunRecord))

_KEY_FIELDS = ("item_id", "model", "control")
_STRING_FIELDS = ("gold", "task", "prompt", "raw_output")
_OPTIONAL_STRINGS = ("case", "patient", "subtask", "category", "parsed", "gold_original", "error", "input_hash",
                     "model_revision", "no_image_mode")
_FLAGS = ("correct", "unparseable", "refused")
#: What a control states about itself (see ``Control.facts``): flags, and the patient axis it acts on.
_FACT_FLAGS = ("reference", "removes_image", "needs_volume", "changes_gold", "changes_geometry")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_record_fields(rec: RunRecord, where: str = "record") -> None:
    """The types and ranges every reader of records checks (``probe score``, ``merge``, ``report``): the key
    fields non-empty strings, text fields strings or null, flags true/false, a known answer type, chance in
    [0, 1], axes and tags lists of strings, control facts flags and an axis name, scores numbers. Records a run writes
    pass (they copy items that passed :func:`volprobe.items.check_item_fields`)."""
    for name in _KEY_FIELDS:
        value = getattr(rec, name)
        if value is None:
            raise FormatError(f"{where}: required field {name!r} is null")
        if not isinstance(value, str) or not value.strip():
            raise FormatError(f"{where}: field {name!r} must be a non-empty string, got {value!r}")
    for name in _STRING_FIELDS:
        if not isinstance(getattr(rec, name), str):
            raise FormatError(f"{where}: field {name!r} must be str, got {getattr(rec, name)!r}")
    for name in _OPTIONAL_STRINGS:
        value = getattr(rec, name)
        if value is not None and not isinstance(value, str):
            raise FormatError(f"{where}: field {name!r} must be str or null, got {value!r}")
    for name in _FLAGS:
        if not isinstance(getattr(rec, name), bool):
            raise FormatError(f"{where}: field {name!r} must be bool, got {getattr(rec, name)!r}")
    if rec.prior_fixed is not None and not isinstance(rec.prior_fixed, bool):
        raise FormatError(f"{where}: field 'prior_fixed' must be bool or null, got {rec.prior_fixed!r}")
    if rec.answer_type not in ANSWER_TYPES:
        raise FormatError(f"{where}: field 'answer_type' must be one of {ANSWER_TYPES}, got {rec.answer_type!r}")
    check_chance(rec.chance, where)
    axes = rec.evidence_axes
    if not isinstance(axes, list) or not all(isinstance(a, str) for a in axes):
        raise FormatError(f"{where}: field 'evidence_axes' must be a list of axis names, got {axes!r}")
    facts = rec.control_facts
    if facts is not None and (
            not isinstance(facts, dict)
            or any(facts.get(k) is not None and not isinstance(facts[k], bool) for k in _FACT_FLAGS)
            or (facts.get("patient_axis") is not None and not isinstance(facts["patient_axis"], str))):
        raise FormatError(f"{where}: field 'control_facts' must map {', '.join(_FACT_FLAGS)} to true/false and "
                          f"patient_axis to an axis name or null, got {facts!r}")
    if not isinstance(rec.scores, dict) or not all(isinstance(k, str) and _number(v) for k, v in rec.scores.items()):
        raise FormatError(f"{where}: field 'scores' must map score names to numbers, got {rec.scores!r}")
    if not isinstance(rec.tags, list) or not all(isinstance(t, str) for t in rec.tags):
        raise FormatError(f"{where}: field 'tags' must be a list of strings, got {rec.tags!r}")
    for name in ("control_params", "generation"):
        if not isinstance(getattr(rec, name), dict):
            raise FormatError(f"{where}: field {name!r} must be an object, got {getattr(rec, name)!r}")
    if rec.latency_s is not None and not _number(rec.latency_s):
        raise FormatError(f"{where}: field 'latency_s' must be a number or null, got {rec.latency_s!r}")


def iter_record_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, raw record dict)`` of a JSON Lines file (UTF-8, or gzip-compressed). A torn last line
    (a killed writer) is skipped; a malformed line elsewhere is an error naming file and line."""
    path = existing_path(path, "records file")
    lines = read_text(path).split("\n")
    last = len(lines) - 1  # the text after the last newline: empty, or a line torn by a kill
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if lineno - 1 == last:
            try:
                json.loads(line)
            except json.JSONDecodeError:
                return  # partial write at the moment of a kill
        yield lineno, parse_json_object(line, f"{path}:{lineno}")


def iter_record_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    """Raw record dicts of :func:`iter_record_lines`."""
    return (data for _, data in iter_record_lines(path))


def read_records(path: str | Path) -> list[RunRecord]:
    """The records of a JSON Lines file, each checked (:func:`check_record_fields`), errors naming file and line."""
    return [RunRecord.from_dict(d, f"{path}:{lineno}") for lineno, d in iter_record_lines(path)]


def read_record_files(paths: Iterable[str | Path]) -> list[RunRecord]:
    """The records of several files, for one summary: each file must hold records, and each
    (model, control, item) must occur once over all of them (a file given twice, or two copies of a run,
    would count twice).

    Raises:
        FormatError: an empty file, or a key present twice (naming both places).
    """
    records: list[RunRecord] = []
    first: dict[tuple[str, str, str], str] = {}
    for path in paths:
        n = 0
        for lineno, data in iter_record_lines(path):
            where = f"{path}:{lineno}"
            rec = RunRecord.from_dict(data, where)
            if rec.key in first:
                raise FormatError(f"{where}: record {' / '.join(rec.key)} (model / control / item) is present more "
                                  f"than once (first at {first[rec.key]}); give each run once, or merge shards "
                                  "with `probe merge`")
            first[rec.key] = where
            records.append(rec)
            n += 1
        if n == 0:
            raise FormatError(f"{path}: no records (an empty file)")
    return records


def write_records(records: Iterable[RunRecord], path: str | Path) -> int:
    """Write records as JSON Lines (the run-record format ``volprobe.stats`` reads); returns the count."""
    path = Path(path)
    n = 0
    with atomic_output(path) as fh:
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
