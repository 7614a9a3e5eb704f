"""Reading run records (``RUN_DIR/records*.jsonl``) into one table for the statistics.

Fast path: Apache Arrow's multi-threaded JSON reader with an explicit schema of the fields the
statistics use (prompts and raw outputs are skipped, not materialised; :func:`read_prompts` reads the
prompts of chosen records again when a report needs them). It checks the types of
those fields, the required fields and the format version on every record, and the full
:class:`RunRecord` contract (no unknown fields) on the first record of each file; fields unknown to
the contract further down a file are not read and not reported. Whenever a check fails, the file
is read again line by line with the full contract on every record, so the error names file and line.
A torn last line (a writer killed mid-line) is skipped, as :mod:`volprobe.records` does. Files
compressed with gzip (``records.jsonl.gz``) are read transparently, their CRC checked; a run input
without any record is an error.
"""

from __future__ import annotations

import json
import mmap
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from volprobe.errors import FormatError
from volprobe.fileio import GZIP_MAGIC, read_input_bytes
from volprobe.records import NAME_SWAP_ONLY, RECORD_FORMAT_VERSION, RunRecord
from volprobe.jsonio import parse_json_object

#: The record fields the statistics read (see RunRecord); everything else is skipped.
STRING_FIELDS = ("item_id", "model", "control", "gold", "case", "patient", "task", "subtask", "category",
                 "answer_type", "parsed", "gold_original", "error")
BOOL_FIELDS = ("correct", "unparseable", "refused", "prior_fixed")
#: What each control states about itself (``RunRecord.control_facts``), read as ``fact:<name>`` columns.
FACT_FIELDS = (("reference", pa.bool_()), ("removes_image", pa.bool_()), ("needs_volume", pa.bool_()),
               ("changes_gold", pa.bool_()), ("patient_axis", pa.string()))
FACT_PREFIX = "fact:"
REQUIRED_FIELDS = ("item_id", "model", "control", "gold", "correct")
OPEN_TYPES = ("open", "numeric")
#: Column-name prefix of continuous scores (``score:token_f1``).
SCORE_PREFIX = "score:"


@dataclass
class RunInfo:
    """One run directory (or records file) given to the report."""

    path: str
    files: list[str]
    records: int
    manifest: dict[str, Any] | None = None
    skipped_torn_lines: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "files": self.files, "records": self.records,
                "skipped_torn_lines": self.skipped_torn_lines, "manifest": self.manifest}


@dataclass
class RecordTable:
    """All records of a report, one row each.

    ``frame`` columns: the string fields as pandas categoricals; ``correct``, ``unparseable``,
    ``refused`` (bool); ``chance`` (float, NaN for open items); ``evidence`` (axes joined by '+',
    sorted, ``none`` when empty); ``prior_fixed`` (``prior-fixed`` | ``not prior-fixed``; missing if unknown);
    ``source`` (index into ``sources``); ``score:<name>`` (float, NaN where absent); ``fact:<name>`` (the
    record's control facts, missing where the record states none); ``name_swap_only`` (bool: the record is
    tagged so, its gold changing under its control only because left/right names swap).
    """

    frame: pd.DataFrame
    sources: list[str]
    runs: list[RunInfo] = field(default_factory=list)

    def control_order(self) -> list[str]:
        """Control labels in the order the runs' manifests list them (runs in the given order), for reports."""
        order: list[str] = []
        for run in self.runs:
            manifest = run.manifest or {}
            sections = manifest.get("runs") or ([manifest["run"]] if isinstance(manifest.get("run"), dict) else [])
            for section in sections:
                for described in (section.get("identity") or {}).get("controls") or []:
                    label = described.get("label") if isinstance(described, dict) else None
                    if isinstance(label, str) and label not in order:
                        order.append(label)
        return order


def find_record_files(path: str | Path) -> list[Path]:
    """The records files of a run: ``path`` itself if it is a file, else ``path/records*.jsonl`` (or
    ``.jsonl.gz``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"run directory not found: {path}")
    if path.is_file():
        return [path]
    files = sorted(path.glob("records*.jsonl")) + sorted(path.glob("records*.jsonl.gz"))
    if not files:
        raise FormatError(f"{path}: no records*.jsonl files in this run directory")
    return files


def read_runs(paths: Iterable[str | Path]) -> RecordTable:
    """Read every run directory (or records file) into one :class:`RecordTable`."""
    tables, sources, runs = [], [], []
    for run in map(Path, paths):
        files = find_record_files(run)
        manifest = None
        if run.is_dir() and (run / "manifest.json").exists():
            try:
                manifest = json.loads((run / "manifest.json").read_text())
            except json.JSONDecodeError as exc:
                raise FormatError(f"{run / 'manifest.json'}: not valid JSON ({exc.msg})") from exc
        info = RunInfo(path=str(run), files=[str(f) for f in files], records=0, manifest=manifest)
        for f in files:
            table, torn = read_record_file(f)
            info.records += table.num_rows
            info.skipped_torn_lines += torn
            tables.append(_with_source(table, len(sources)))
            sources.append(str(f))
        if info.records == 0:
            raise FormatError(f"{run}: no records (empty {'file' if run.is_file() else 'records files'})")
        runs.append(info)
    if not tables:
        raise FormatError("no run directories given")
    return RecordTable(frame=_to_frame(tables), sources=sources, runs=runs)


# --------------------------------------------------------------------------- one file


#: Arrow schema of the fields read (all others are skipped by the fast reader).
SCHEMA = pa.schema(
    [("format_version", pa.int64())]
    + [(name, pa.string()) for name in STRING_FIELDS]
    + [(name, pa.bool_()) for name in BOOL_FIELDS]
    + [("chance", pa.float64()), ("evidence_axes", pa.list_(pa.string())),
       ("control_facts", pa.struct(list(FACT_FIELDS))), ("tags", pa.list_(pa.string()))]
)


def read_record_file(path: str | Path):
    """One records file as an Arrow table of the fields the statistics use (plus ``score:*`` columns: open
    items' scores and closed items' benchmark rules); returns (table, number of torn last lines skipped:
    0 or 1)."""
    path = Path(path)
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        compressed = fh.read(2) == GZIP_MAGIC
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if size and not compressed else b""
    if compressed:
        data = read_input_bytes(path)
        size = len(data)
    torn = 0
    if size and data[-1:] != b"\n":
        cut = data.rfind(b"\n") + 1
        torn = int(bool(data[cut:].strip()))
        data = memoryview(data)[:cut]
    lines = _LineIndex(data)
    try:
        table = _read_fast(data)
        table.validate(full=True)  # text that is not UTF-8 goes to the careful reader, which names the line
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        table = None
    if table is None or table.num_rows != len(lines) or not _values_ok(table):
        return _read_careful(lines, path), torn  # names the offending line
    if len(lines):
        _parse_line(lines[0][1], f"{path}:{lines[0][0]}")  # the full contract on the first record
    return _add_scores(table, lines, path), torn


def _read_fast(data):
    """Arrow's multi-threaded JSON reader, only the fields in SCHEMA."""
    return pj.read_json(pa.BufferReader(pa.py_buffer(data)), read_options=pj.ReadOptions(block_size=4 << 20),
                        parse_options=pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore"))


class _LineIndex:
    """The non-blank lines of a buffer: ``index[i]`` is (line number, bytes) of the i-th record."""

    def __init__(self, data):
        self.data = data
        arr = np.frombuffer(data, dtype=np.uint8)
        newline = np.flatnonzero(arr == 10)
        starts, ends = np.r_[0, newline + 1], np.r_[newline, arr.size]
        keep = ends > starts
        maybe_blank = keep & np.isin(arr[np.minimum(starts, max(arr.size - 1, 0))], (9, 13, 32)) if arr.size else keep
        for i in np.flatnonzero(maybe_blank):  # rare: lines starting with whitespace
            keep[i] = bool(bytes(data[starts[i]:ends[i]]).strip())
        rows = np.flatnonzero(keep)
        self.starts, self.ends, self.numbers = starts[rows], ends[rows], rows + 1

    def __len__(self) -> int:
        return self.starts.size

    def __getitem__(self, i: int) -> tuple[int, bytes]:
        return int(self.numbers[i]), bytes(self.data[self.starts[i]:self.ends[i]])

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return (self[i] for i in range(len(self)))


def _parse_line(line: bytes, where: str) -> dict[str, Any]:
    record = parse_json_object(line, where)
    RunRecord.from_dict(record, where)  # unknown / missing fields, format version
    return record


def _values_ok(table) -> bool:
    """Required fields present, key fields not empty, chance in [0, 1] and the format version right, on every
    record (vectorised); otherwise the careful reader names the line."""
    if any(table.column(name).null_count for name in REQUIRED_FIELDS):
        return False
    if any(pc.any(pc.equal(table.column(name), "")).as_py() for name in ("item_id", "model", "control")):
        return False
    chance = table.column("chance")
    if chance.null_count < len(chance) and not pc.all(pc.fill_null(
            pc.and_(pc.greater_equal(chance, 0.0), pc.less_equal(chance, 1.0)), True)).as_py():
        return False
    return not pc.any(pc.fill_null(pc.not_equal(table.column("format_version"), RECORD_FORMAT_VERSION), False)).as_py()


_TYPE_RULES = {name: (str,) for name in STRING_FIELDS}
_TYPE_RULES.update({name: (bool,) for name in BOOL_FIELDS})
_TYPE_RULES.update({"chance": (int, float), "format_version": (int,)})


def _read_careful(lines: "_LineIndex", path: Path):
    """Line-by-line reader: the full RunRecord contract and field types on every record."""
    rows, scores = [], []
    for lineno, line in lines:
        where = f"{path}:{lineno}"
        record = _parse_line(line, where)
        for name in REQUIRED_FIELDS:
            if record[name] is None:
                raise FormatError(f"{where}: required field {name!r} is null")
        for name, types in _TYPE_RULES.items():
            value = record.get(name)
            if value is not None and (not isinstance(value, types) or (bool not in types and isinstance(value, bool))):
                raise FormatError(f"{where}: field {name!r} must be {'/'.join(t.__name__ for t in types)}, "
                                  f"got {value!r}")
        axes = record.get("evidence_axes")
        if axes is not None and (not isinstance(axes, list) or not all(isinstance(a, str) for a in axes)):
            raise FormatError(f"{where}: field 'evidence_axes' must be a list of axis names, got {axes!r}")
        facts = record.get("control_facts")
        if facts is not None and (not isinstance(facts, dict) or any(
                facts.get(name) is not None and not isinstance(facts.get(name), bool if kind == pa.bool_() else str)
                for name, kind in FACT_FIELDS)):
            raise FormatError(f"{where}: field 'control_facts' must map {', '.join(n for n, _ in FACT_FIELDS)} to "
                              f"true/false (patient_axis: an axis name or null), got {facts!r}")
        if record.get("format_version", RECORD_FORMAT_VERSION) != RECORD_FORMAT_VERSION:
            raise FormatError(f"{where}: record format version {record['format_version']}")
        rows.append({name: record.get(name) for name in SCHEMA.names})
        scores.append(_scores_of(record, where))
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    return _attach_scores(table, scores)


def _scores_of(record: dict[str, Any], where: str) -> dict[str, float]:
    scores = record.get("scores") or {}
    if not isinstance(scores, dict) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores.values()):
        raise FormatError(f"{where}: field 'scores' must map score names to numbers, got {scores!r}")
    return scores


_SCORES = re.compile(rb'"scores":\s*(\{[^{}]*\})')
_NONEMPTY_SCORES = re.compile(rb'"scores":\s*\{\s*"')


def _add_scores(table, lines: _LineIndex, path: Path):
    """Scores of every record that has some: the continuous scores of open items, and a benchmark's own
    rule on closed items (e.g. ``3drad_substring``). Lines holding a non-empty ``scores`` object are
    found in the buffer at once; each such line's object is cut out and the objects parsed together by
    Arrow; a line where that is ambiguous, or a file where Arrow fails, is parsed as JSON line by line."""
    is_open = pc.fill_null(pc.is_in(table.column("answer_type"), value_set=pa.array(OPEN_TYPES)), False)
    with_scores = np.zeros(table.num_rows, dtype=bool)
    at = [m.start() for m in _NONEMPTY_SCORES.finditer(lines.data)]
    if at:
        with_scores[np.searchsorted(lines.starts, np.asarray(at), side="right") - 1] = True
    rows = np.flatnonzero(is_open.to_numpy(zero_copy_only=False) | with_scores)
    if rows.size == 0:
        return table
    objects = []
    for r in rows:
        found = _SCORES.findall(lines[r][1])
        objects.append(found[0] if len(found) == 1 else None)
    if all(o is not None for o in objects):
        try:
            parsed = pj.read_json(pa.BufferReader(b"\n".join(objects)))
            columns = {name: parsed.column(name).cast(pa.float64()).to_numpy(zero_copy_only=False)
                       for name in parsed.column_names}
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            columns = None
        if columns is not None and parsed.num_rows == rows.size:
            for name in sorted(columns):
                values = np.full(table.num_rows, np.nan)
                values[rows] = columns[name]
                table = table.append_column(SCORE_PREFIX + name, pa.array(values, mask=np.isnan(values)))
            return table
    scores: list[dict[str, float]] = [{}] * table.num_rows
    for r in rows:
        lineno, line = lines[r]
        scores[r] = _scores_of(json.loads(line), f"{path}:{lineno}")
    return _attach_scores(table, scores)


def _attach_scores(table, scores: list[dict[str, float]]):
    names = sorted({k for s in scores for k in s})
    for name in names:
        table = table.append_column(SCORE_PREFIX + name, pa.array([s.get(name) for s in scores], type=pa.float64()))
    return table


def read_prompts(table: RecordTable, rows: np.ndarray) -> np.ndarray:
    """The ``prompt`` of the records at ``rows`` of ``table.frame`` (object array; None where missing),
    read again from their files: the first read skips prompts, which only some analyses need."""
    rows = np.asarray(rows, dtype=np.int64)
    source = table.frame["source"].to_numpy()
    first = np.searchsorted(source, np.arange(len(table.sources)))  # records of a file are contiguous, in order
    out = np.full(rows.size, None, dtype=object)
    for s in np.unique(source[rows]):
        sel = source[rows] == s
        out[sel] = _file_prompts(table.sources[s])[rows[sel] - first[s]]
    return out


def _file_prompts(path: str) -> np.ndarray:
    """The prompt of every record of one records file, in the order :func:`read_record_file` reads them."""
    with open(path, "rb") as fh:
        data = fh.read()
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]  # the torn last line is skipped, as on the first read
    lines = _LineIndex(data)
    try:
        table = pj.read_json(pa.BufferReader(pa.py_buffer(data)), parse_options=pj.ParseOptions(
            explicit_schema=pa.schema([("prompt", pa.string())]), unexpected_field_behavior="ignore"))
        if table.num_rows == len(lines):
            return np.asarray(table.column("prompt").to_pylist(), dtype=object)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        pass
    return np.asarray([json.loads(line).get("prompt") for _, line in lines], dtype=object)


def _with_source(table, index: int):
    return table.append_column("source", pa.array(np.full(table.num_rows, index, dtype=np.int32)))


# --------------------------------------------------------------------------- to pandas


def _to_frame(tables: list) -> pd.DataFrame:
    table = pa.concat_tables(tables, promote_options="default")
    evidence = pc.binary_join(table.column("evidence_axes"), "+")
    prior = pc.if_else(table.column("prior_fixed"), "prior-fixed", "not prior-fixed")  # null stays null
    facts = table.column("control_facts")
    for name, _kind in FACT_FIELDS:
        table = table.append_column(FACT_PREFIX + name, pc.struct_field(facts, name))
    # name_swap_only tag: one bool column (tracking is also reported without these items)
    tags = table.column("tags").combine_chunks()
    swap = np.zeros(table.num_rows, dtype=bool)
    hits = pc.fill_null(pc.equal(pc.list_flatten(tags), NAME_SWAP_ONLY), False).to_numpy(zero_copy_only=False)
    swap[pc.list_parent_indices(tags).to_numpy()[hits]] = True
    table = table.append_column("name_swap_only", pa.array(swap))
    table = table.drop_columns(["evidence_axes", "prior_fixed", "format_version", "control_facts", "tags"])
    for name in ("unparseable", "refused"):
        table = table.set_column(table.schema.get_field_index(name), name, pc.fill_null(table.column(name), False))
    table = table.append_column("evidence", evidence).append_column("prior_fixed", prior)
    frame = table.to_pandas(strings_to_categorical=True)
    frame["evidence"] = _canonical_axes(frame["evidence"])
    frame["correct"] = frame["correct"].astype(bool)
    return frame


def _canonical_axes(labels: pd.Series) -> pd.Categorical:
    """'si+lr' and 'lr+si' are one label ('lr+si'); an empty list is 'none'; a missing one stays missing."""
    canon = ["+".join(sorted(set(c.split("+")) - {""})) or "none" for c in labels.cat.categories]
    names = sorted(set(canon))
    lookup = np.array([names.index(c) for c in canon] + [-1], dtype=np.int32)
    return pd.Categorical.from_codes(lookup[np.asarray(labels.cat.codes)], categories=names)  # code -1 → last
