"""Other harnesses' results as volprobe run records, so published runs can be tested statistically.

- :func:`import_predictions`: JSON Lines with a ``prediction`` per QA pair (CT-SpatialVQA style:
  ``image_path``, ``question``, ``prediction``, ``answer``; or any items file's ``item_id``/``id`` or
  ``question_id``), scored here with :func:`~volprobe.probes.scoring.answers.score_output`.
- :func:`import_judged`: a CSV with a ``question_id`` column (``<case_id>::<index>``) and one column per
  model holding the fraction of judges who accepted its answer (0, 0.33, 0.66, 1). An answer is
  **correct when the fraction is ≥ 0.5** (a majority of judges; change with ``threshold``, in (0, 1]); the
  fraction is kept as ``scores['judge_fraction']``. Columns without a single number (notes) are skipped
  with a warning; in a model column a blank or text cell is an error naming its line and column (blank
  cells may be read as "not judged" with ``skip_blank``).

In both, two rows for one item are an error naming both lines, unless ``dedupe`` (``"first"`` or
``"last"``) says which to keep; an input without rows is an error.

Both give :class:`~volprobe.records.RunRecord` objects with ``model`` = the given name or the
column name, under the reference control; :func:`~volprobe.records.write_records` saves them as JSON Lines for ``volprobe.stats``.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Sequence

from volprobe.controls import reference_control
from volprobe.errors import FormatError, InvalidValueError
from volprobe.fileio import existing_path, read_text
from volprobe.probes.datasets.common import (first_few, iter_csv_rows,
                                               parse_ctrate_name, strip_volume_suffix)
from volprobe.probes.datasets.ctspatialvqa import TASK as CTSPATIAL_TASK
from volprobe.probes.datasets.ctspatialvqa import question_key
from volprobe.jsonio import iter_json_lines
from volprobe.items import Item
from volprobe.records import RecordsImport, RunRecord
from volprobe.probes.scoring.answers import Scored, normalize_answer, record_from_output

#: Judge fraction at or above which an answer counts as correct (a majority of judges).
JUDGE_THRESHOLD = 0.5
#: Which of several rows for one item to keep (None: an error).
DEDUPE_POLICIES = ("first", "last")
_QID = re.compile(r"^(?P<case>.+)::(?P<index>\d+)$")


def _qid_key(question_id: str) -> tuple[str, int] | None:
    m = _QID.match(question_id.strip())
    return (strip_volume_suffix(m["case"]), int(m["index"])) if m else None


class _ItemIndex:
    """Finds the item a foreign row is about: by item id, question id, or (case, question text)."""

    def __init__(self, items: Sequence[Item]):
        self.by_id = {it.id: it for it in items}
        self.by_qid: dict[tuple[str, int], Item] = {}
        self.by_question: dict[tuple[str, str], Item] = {}
        for it in items:
            qid = it.metadata.get("question_id")
            key = _qid_key(qid) if isinstance(qid, str) else None
            if key is not None:
                self.by_qid[key] = it
            if it.case:
                self.by_question.setdefault(question_key(it.case, it.question), it)

    def find(self, row: dict) -> Item | None:
        for field_name in ("item_id", "id"):
            if isinstance(row.get(field_name), str) and row[field_name] in self.by_id:
                return self.by_id[row[field_name]]
        if isinstance(row.get("question_id"), str):
            key = _qid_key(row["question_id"])
            if key in self.by_qid:
                return self.by_qid[key]
        case = row.get("case_id") or row.get("case") or row.get("image_path")
        if isinstance(case, str) and isinstance(row.get("question"), str):
            return self.by_question.get(question_key(case, row["question"]))
        return None


def _check_dedupe(dedupe: str | None) -> None:
    if dedupe is not None and dedupe not in DEDUPE_POLICIES:
        raise InvalidValueError(f"dedupe must be one of {', '.join(DEDUPE_POLICIES)} or None, got {dedupe!r}")


def _duplicate(path: Path, line: int, first_line: int, what: str) -> FormatError:
    return FormatError(f"{path}:{line}: {what} again (first at line {first_line}); remove one, or choose which "
                       "to keep with --dedupe first|last (Python: dedupe='first'|'last')")


def import_predictions(path: str | Path, items: Sequence[Item], model: str, dedupe: str | None = None
                       ) -> RecordsImport:
    """Score a JSON Lines file of predictions against ``items`` (module docstring); the records are under the
    reference control (another harness showed the whole volume, or nothing we can tell apart).

    Two predictions for one item are an error unless ``dedupe`` keeps the ``"first"`` or ``"last"``. Rows
    that match no item and gold answers that differ from the items' are reported as warnings; a file without
    rows, or where no row matches, is an error.
    """
    _check_dedupe(dedupe)
    path = existing_path(path, "predictions file")
    index = _ItemIndex(items)
    control = reference_control()
    result = RecordsImport(records=[], source=str(path))
    unmatched: list[str] = []
    chosen: dict[str, tuple[int, Item, dict]] = {}
    duplicates = gold_mismatch = rows = 0
    for lineno, row in iter_json_lines(read_text(path).split("\n"), path):
        rows += 1
        if not isinstance(row, dict) or not isinstance(row.get("prediction"), str):
            raise FormatError(f"{path}:{lineno}: expected an object with a string 'prediction'")
        item = index.find(row)
        if item is None:
            unmatched.append(f"line {lineno}")
            continue
        if item.id in chosen:
            if dedupe is None:
                raise _duplicate(path, lineno, chosen[item.id][0], f"a prediction for item {item.id!r}")
            duplicates += 1
            if dedupe == "first":
                continue
        chosen[item.id] = (lineno, item, row)
    if rows == 0:
        raise FormatError(f"{path}: no predictions (an empty file); expected JSON Lines with a 'prediction' per row")
    for _lineno, item, row in sorted(chosen.values(), key=lambda c: c[0]):
        if isinstance(row.get("answer"), str) and normalize_answer(row["answer"]) != normalize_answer(item.answer):
            gold_mismatch += 1
        result.records.append(record_from_output(item, model, row["prediction"], control=control.label,
                                                 control_facts=control.facts(), prompt=row.get("question", "")))
    if not result.records:
        raise FormatError(f"{path}: none of its {len(unmatched)} predictions matches an item "
                          "(matched by item_id/id, question_id, or case and question text)")
    if unmatched:
        result.warn(f"{len(unmatched)} predictions match no item ({first_few(unmatched)})")
    if duplicates:
        result.warn(f"{duplicates} repeated predictions for the same item ignored (--dedupe {dedupe}: the "
                    f"{dedupe} was kept)")
    if gold_mismatch:
        result.warn(f"{gold_mismatch} predictions carry a gold answer that differs from the item's; "
                    "the item's gold answer was used")
    if len(chosen) < len(items):
        result.warn(f"{len(items) - len(chosen)} of {len(items)} items have no prediction")
    return result


def import_judged(path: str | Path, items: Sequence[Item] | None = None, threshold: float = JUDGE_THRESHOLD,
                  models: Sequence[str] | None = None, dedupe: str | None = None,
                  skip_blank: bool = False) -> RecordsImport:
    """Read a judged-correctness CSV into records (module docstring).

    Args:
        items: the CT-SpatialVQA items (gives each record its item id, gold answer and category);
            without them records are built from the question id alone.
        threshold: judge fraction at or above which an answer is correct, in (0, 1].
        models: the model columns to read (default: every column but ``question_id`` holding a number).
        dedupe: ``"first"`` or ``"last"``: which row of a question id given more than once to keep
            (default: an error naming both lines).
        skip_blank: read blank cells as "not judged" (no record) instead of an error.

    Raises:
        FormatError: no rows; a blank or non-numeric cell in a model column, or a fraction outside [0, 1]
            (naming line and column); a question id given twice; a malformed question id.
        InvalidValueError: ``threshold`` outside (0, 1], an unknown ``dedupe``.
    """
    if not 0.0 < threshold <= 1.0:
        raise InvalidValueError(f"threshold must lie in (0, 1] (0.5 = a majority of judges), got {threshold}")
    _check_dedupe(dedupe)
    path = Path(path)
    header, rows = iter_csv_rows(path)
    lower = [h.lower() for h in header]
    if "question_id" not in lower:
        raise FormatError(f"{path}:1: no 'question_id' column; header is {', '.join(header)}")
    qcol = lower.index("question_id")
    table = list(rows)
    if not table:
        raise FormatError(f"{path}: no rows after the header; nothing was judged")
    wanted = list(models) if models else [h for i, h in enumerate(header) if i != qcol]
    unknown = [m for m in wanted if m not in header]
    if unknown:
        raise FormatError(f"{path}:1: no column(s) {', '.join(unknown)}; header is {', '.join(header)}")
    result = RecordsImport(records=[], source=str(path))
    columns = {}
    for name in wanted:
        col = header.index(name)
        if not models and not any(_is_number(row[col].strip()) for _, row in table):
            result.warn(f"column {name!r} skipped: it holds no judge fractions (notes?)")
            continue
        columns[name] = col
    if not columns:
        raise FormatError(f"{path}: no model columns with judge fractions")
    keys: dict[int, tuple[str, int]] = {}
    first_line: dict[tuple[str, int], int] = {}
    for line, row in table:
        key = _qid_key(row[qcol])
        if key is None:
            raise FormatError(f"{path}:{line}: question_id {row[qcol]!r} is not '<case_id>::<index>'")
        if key in first_line:
            if dedupe is None:
                raise _duplicate(path, line, first_line[key], f"question_id {row[qcol].strip()!r}")
            if dedupe == "first":
                continue
            del keys[first_line[key]]
        first_line[key] = line
        keys[line] = key
    fractions: dict[tuple[int, str], float] = {}
    for line, row in table:
        if line not in keys:
            continue
        for name, col in columns.items():
            value = row[col].strip()
            if not value:
                if skip_blank:
                    continue
                raise FormatError(f"{path}:{line}: column {name!r} is blank; give every judged cell a fraction in "
                                  "[0, 1], leave the model out (--model), or read blanks as not judged "
                                  "(--skip-blank)")
            if not _is_number(value):
                raise FormatError(f"{path}:{line}: column {name!r} holds {value!r}, not a judge fraction in [0, 1]")
            fraction = float(value)
            if not 0.0 <= fraction <= 1.0:
                raise FormatError(f"{path}:{line}: {name} = {fraction}, a judge fraction must lie in [0, 1]")
            fractions[(line, name)] = fraction
    index_of = _ItemIndex(items).by_qid if items is not None else {}
    base = _index_base(list(keys.values()), index_of if items is not None else None)
    if base == 1:
        result.warn("question ids count from 1; matched to 0-based item indices")
    unmatched = []
    for line, row in table:
        if line not in keys:
            continue
        case, number = keys[line]
        item = index_of.get((case, number - base))
        if items is not None and item is None:
            unmatched.append(row[qcol])
            continue
        for name in columns:
            if (line, name) in fractions:
                result.records.append(_judged_record(item, case, number - base, name, fractions[(line, name)],
                                                     threshold))
    if unmatched:
        result.warn(f"{len(unmatched)} question ids match no item ({first_few(unmatched)})")
    if dedupe is not None and len(keys) < len(table):
        result.warn(f"{len(table) - len(keys)} repeated question ids ignored (--dedupe {dedupe})")
    return result


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _index_base(keys: list[tuple[str, int]], index_of: dict[tuple[str, int], Item] | None) -> int:
    """0 or 1: whichever matches more items; without items, 1 only when no id uses index 0."""
    if index_of is None:
        return 1 if keys and min(k[1] for k in keys) == 1 else 0
    hits = [sum((case, n - base) in index_of for case, n in keys) for base in (0, 1)]
    return 1 if hits[1] > hits[0] else 0


def _judged_record(item: Item | None, case: str, index: int, model: str, fraction: float,
                   threshold: float) -> RunRecord:
    if item is None:  # only the question id is known: an open item with no text and no gold
        ctrate = parse_ctrate_name(case)
        item = Item(id=f"{CTSPATIAL_TASK}/{case}/{index}", question="", answer="", answer_type="open", case=case,
                    patient=ctrate.patient if ctrate else case, task=CTSPATIAL_TASK)
    control = reference_control()
    return record_from_output(item, model, "", control=control.label, control_facts=control.facts(),
                              scored=Scored(None, fraction >= threshold, scores={"judge_fraction": fraction}))
