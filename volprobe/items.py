"""The one item format shared by question sets, benchmarks and runs.

An :class:`Item` is one question about one volume. Closed items (``choice``, ``yes_no``)
list their options; the gold ``answer`` is the text of one option, and ``answer_letter``
gives its letter (A, B, ...). Open items (``open``, ``numeric``) have no options.

Items serialise to JSON Lines, one object per line (see :func:`write_items`).
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from volprobe.errors import FormatError
from volprobe.fileio import atomic_output, existing_path, read_text
from volprobe.jsonio import json_default, parse_json_object, versioned_fields

ANSWER_TYPES = ("choice", "yes_no", "open", "numeric")
CLOSED_TYPES = ("choice", "yes_no")
ITEM_FORMAT_VERSION = 1


@dataclass
class Item:
    """One question about one volume.

    Attributes:
        id: unique id within an item set.
        question: the prompt text (options are *not* embedded; adapters format them).
        answer: gold answer: the text of the correct option for closed items, free text otherwise.
        answer_type: ``choice`` | ``yes_no`` | ``open`` | ``numeric``.
        options: option texts in presentation order (letters A, B, ... follow this order).
        chance: probability a uniform guess is right (1/len(options) for closed items; None for open).
        case: volume reference: the case/scan id this question is about.
        volume_path: path of the CT (NIfTI etc.), or None when unavailable (text-only use).
        patient: patient id (several scans may share one; used for clustering and ``swapped_volume``).
        task, subtask: where the item comes from, e.g. ``spatial``/``laterality`` or ``3drad/T4``/``Bronchiectasis``.
        evidence: what the answer needs: ``axes`` (patient axes among 'lr', 'ap', 'si'), ``axial_slices``
            ([first, last] array indices along the volume's axial axis), ``structures`` (names).
        counterfactual: control name → gold answer after that counterfactual (e.g. ``mirror_lr``);
            None marks an item whose answer cannot be transformed under that control.
        metadata: anything else (relation, margin in mm, template, open-ended phrasing, ...). Keys other layers
            read: ``category``, ``prior_fixed``; ``volume_sha256`` / ``masks_sha256``: SHA-256 content hashes
            (voxel data, dtype, shape, affine; ``Volume.content_hash``) of the CT and the masks on its grid the
            item was computed from (``probe run`` checks the volume it reads against it);
            ``name_swap_only``: the counterfactual controls under which the gold changes only because
            left/right names swap; ``control_params``: control → the parameters its counterfactual gold was
            computed with (copied into run records).
    """

    id: str
    question: str
    answer: str
    answer_type: str = "choice"
    options: list[str] = field(default_factory=list)
    chance: float | None = None
    case: str | None = None
    volume_path: str | None = None
    patient: str | None = None
    task: str = ""
    subtask: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)
    counterfactual: dict[str, str | None] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_item_fields(self)
        if self.answer_type not in ANSWER_TYPES:
            raise FormatError(f"item {self.id}: answer_type {self.answer_type!r} not one of {ANSWER_TYPES}")
        if self.is_closed:
            if len(self.options) < 2:
                raise FormatError(f"item {self.id}: a {self.answer_type} item needs at least two options")
            if len(set(self.options)) != len(self.options):
                raise FormatError(f"item {self.id}: duplicate options {self.options}")
            if self.answer not in self.options:
                raise FormatError(f"item {self.id}: gold answer {self.answer!r} is not one of {self.options}")
            if self.chance is None:
                self.chance = 1.0 / len(self.options)

    @property
    def is_closed(self) -> bool:
        return self.answer_type in CLOSED_TYPES

    @property
    def letters(self) -> list[str]:
        return list(string.ascii_uppercase[: len(self.options)])

    @property
    def answer_index(self) -> int | None:
        return self.options.index(self.answer) if self.is_closed else None

    @property
    def answer_letter(self) -> str | None:
        idx = self.answer_index
        return None if idx is None else string.ascii_uppercase[idx]

    def letter_of(self, option: str) -> str:
        return string.ascii_uppercase[self.options.index(option)]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (shallow: nested lists and dicts are the item's own, not copies)."""
        out: dict[str, Any] = {"format_version": ITEM_FORMAT_VERSION}
        for name in _FIELD_NAMES:
            out[name] = getattr(self, name)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "item") -> "Item":
        checked = versioned_fields(cls, data, kind="item", version=ITEM_FORMAT_VERSION,
                                   required=("id", "question", "answer"), where=where)
        try:
            return cls(**checked)
        except FormatError as exc:
            raise FormatError(f"{where}: {exc}") from None

    # -- what the layers above read off an item ---------------------------------------------
    @property
    def case_key(self) -> str:
        """The volume the item is about: its case, else its volume path, else '' (no volume)."""
        return self.case or self.volume_path or ""

    @property
    def patient_key(self) -> str:
        """Patient id, falling back to :attr:`case_key` (the cluster of the statistics)."""
        return self.patient or self.case_key

    @property
    def category(self) -> str:
        """Grouping label for reports: ``metadata['category']``, else the subtask, else the task."""
        return self.metadata.get("category") or self.subtask or self.task

    def as_output(self, answer: str) -> str:
        """How a model states ``answer``: ``B. No`` (letter and option text) for a closed item, the text
        itself for an open one."""
        if self.is_closed:
            return f"{self.letter_of(answer)}. {answer}"
        return answer


_FIELD_NAMES = tuple(f.name for f in fields(Item))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_chance(value: Any, where: str) -> None:
    """``chance`` is null or a probability: a number in [0, 1]."""
    if value is not None and not (_is_number(value) and 0.0 <= value <= 1.0):
        raise FormatError(f"{where}: chance must be a number in [0, 1] (the probability that a uniform guess is "
                          f"right) or null, got {value!r}")


def check_item_fields(item: Item) -> None:
    """The types and ranges every command checks on an item, so that what one command accepts the next never
    rejects (records copy these fields): a non-empty string id; string question, answer and task; case,
    patient, subtask null or strings; volume_path null or a non-empty string; options a list of strings;
    chance in [0, 1]; evidence, counterfactual and metadata objects, with ``evidence['axes']`` a list of axis
    names, counterfactual golds strings or null, ``metadata['category']`` a string,
    ``metadata['prior_fixed']`` true, false or null, the metadata hashes strings, ``name_swap_only`` a list of
    names and ``control_params`` an object of objects, when present."""
    if not isinstance(item.id, str) or not item.id.strip():
        raise FormatError(f"item id must be a non-empty string, got {item.id!r}")
    where = f"item {item.id}"
    for name in ("question", "answer", "task", "answer_type"):
        if not isinstance(getattr(item, name), str):
            raise FormatError(f"{where}: {name} must be a string, got {getattr(item, name)!r}")
    for name in ("case", "patient", "subtask"):
        if getattr(item, name) is not None and not isinstance(getattr(item, name), str):
            raise FormatError(f"{where}: {name} must be a string or null, got {getattr(item, name)!r}")
    if item.volume_path is not None and (not isinstance(item.volume_path, str) or not item.volume_path.strip()):
        raise FormatError(f"{where}: volume_path must be a non-empty path or null, got {item.volume_path!r}")
    options = item.options
    if not isinstance(options, (list, tuple)) or not all(isinstance(o, str) for o in options):
        hint = ' (write ["yes", "no"], not one string)' if isinstance(options, str) else ""
        raise FormatError(f"{where}: options must be a list of option texts, got {options!r}{hint}")
    if isinstance(options, tuple):
        item.options = list(options)
    check_chance(item.chance, where)
    for name in ("evidence", "counterfactual", "metadata"):
        if not isinstance(getattr(item, name), dict):
            raise FormatError(f"{where}: {name} must be an object, got {getattr(item, name)!r}")
    axes = item.evidence.get("axes")
    if axes is not None and (not isinstance(axes, list) or not all(isinstance(a, str) for a in axes)):
        raise FormatError(f"{where}: evidence['axes'] must be a list of axis names, got {axes!r}")
    bad = {k: v for k, v in item.counterfactual.items() if v is not None and not isinstance(v, str)}
    if bad:
        raise FormatError(f"{where}: counterfactual golds must be option texts or null, got {bad!r}")
    category = item.metadata.get("category")
    if category is not None and not isinstance(category, str):
        raise FormatError(f"{where}: metadata['category'] must be a string, got {category!r}")
    prior = item.metadata.get("prior_fixed")
    if prior is not None and not isinstance(prior, bool):
        raise FormatError(f"{where}: metadata['prior_fixed'] must be true, false or null, got {prior!r}")
    for key in ("volume_sha256", "masks_sha256"):
        value = item.metadata.get(key)
        if value is not None and not isinstance(value, str):
            raise FormatError(f"{where}: metadata[{key!r}] must be a hex digest or null, got {value!r}")
    swaps = item.metadata.get("name_swap_only")
    if swaps is not None and (not isinstance(swaps, list) or not all(isinstance(c, str) for c in swaps)):
        raise FormatError(f"{where}: metadata['name_swap_only'] must be a list of control names, got {swaps!r}")
    params = item.metadata.get("control_params")
    if params is not None and (not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values())):
        raise FormatError(f"{where}: metadata['control_params'] must map control names to objects, got {params!r}")


def write_items(items: Iterable[Item], path: str | Path,
                volume_paths: Mapping[str | None, str | None] | None = None) -> int:
    """Write items as JSON Lines; returns the count. Ids must be unique.

    ``volume_paths``: written in place of each item's ``volume_path`` (e.g. made relative to the file's
    folder); the items themselves are not changed.
    """
    path = Path(path)
    encode = json.JSONEncoder(ensure_ascii=False, default=json_default).encode  # one encoder for all lines
    seen: set[str] = set()
    n = 0
    with atomic_output(path) as fh:
        for item in items:
            if item.id in seen:
                raise FormatError(f"duplicate item id {item.id!r} while writing {path}")
            seen.add(item.id)
            d = item.to_dict()
            if volume_paths is not None:
                d["volume_path"] = volume_paths[item.volume_path]
            fh.write(encode(d) + "\n")
            n += 1
    return n


def iter_items(path: str | Path) -> Iterator[Item]:
    """Read items from JSON Lines (UTF-8, or gzip-compressed), naming the file and line of any malformed
    entry (see :func:`check_item_fields` for the rules)."""
    path = existing_path(path, "items file")
    for lineno, line in enumerate(read_text(path).split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        yield Item.from_dict(parse_json_object(line, where), where)


def read_items(path: str | Path) -> list[Item]:
    items = list(iter_items(path))
    ids = [it.id for it in items]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise FormatError(f"{path}: duplicate item id {dup!r}")
    return items
