"""CT-SpatialVQA (CT-RATE validation volumes): free-text spatial QA as open items with categories.

Inputs (as the CT-SpatialVQA release ships them):

- the main file, JSON Lines: ``{"case_id", "image_path", "question", "answer"}`` per line (a JSON list of
  such objects works too);
- optionally the categories file, JSON: ``case_id → {"qa_pairs": [{"question", "answer", "category": [..]}]}``.
  Pairs are matched to main-file rows by case and question text (case and punctuation insensitive).
  This file alone can also be given as the main file.

Each item: ``id`` ``ctspatialvqa/<case>/<index>`` (index = 0-based position of the pair among that case's
pairs, in file order), ``task`` ``ctspatialvqa``, ``answer_type`` ``open``, ``case`` the volume name
without ending, ``patient`` ``valid_<n>``. ``metadata``: ``categories`` (all, as listed),
``category`` (the **first** listed category: one label for per-category reports; a pair counts once),
``question_id`` ``<case_id>::<index>`` (the id judged-correctness CSVs use), ``image_path``,
``scoring`` ``spatial_terms`` (so :func:`~volprobe.probes.scoring.answers.score_output` adds spatial-term
agreement and uses it as correctness), ``source_file``, ``source_line``. ``subtask`` = ``category``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterator

from volprobe.errors import FormatError
from volprobe.fileio import read_text
from volprobe.probes.datasets.common import (ImportResult, missing_volumes_message,
                                               parse_ctrate_name, resolve_volumes, strip_volume_suffix)
from volprobe.jsonio import iter_json_lines
from volprobe.items import Item
from volprobe.probes.scoring.answers import normalize_answer

TASK = "ctspatialvqa"
CATEGORIES = (
    "Laterality & Bilateral Symmetry", "Longitudinal (Vertical) Position", "Anterior-Posterior (Depth) Relations",
    "Medial-Lateral Orientation (Centricity)", "Adjacency & Containment", "Spatial Extent & Boundaries",
)
_CANONICAL = {c.lower(): c for c in CATEGORIES}


def question_key(case: str, question: str) -> tuple[str, str]:
    """Match key of a QA pair: (case name without ending, normalised question)."""
    return strip_volume_suffix(case), normalize_answer(question)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from exc


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, row) of the main file: JSON Lines, a JSON list, or the categories mapping (line 0)."""
    text = read_text(path)
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        whole = None  # JSON Lines (or broken: reported line by line below)
    if isinstance(whole, list):
        yield from ((i + 1, row) for i, row in enumerate(whole))
        return
    if isinstance(whole, dict) and "case_id" not in whole:
        for case_id, entry in whole.items():
            for pair in _qa_pairs(entry, path, case_id):
                yield 0, {"case_id": case_id, **pair}
        return
    yield from iter_json_lines(text.split("\n"), path)


def _qa_pairs(entry: Any, path: Path, case_id: str) -> list[dict[str, Any]]:
    if not isinstance(entry, dict) or not isinstance(entry.get("qa_pairs"), list):
        raise FormatError(f"{path}: case {case_id!r} has no 'qa_pairs' list")
    return entry["qa_pairs"]


def read_categories(path: str | Path) -> dict[tuple[str, str], list[str]]:
    """Categories file → {question_key: [category, ...]} (names in canonical spelling where known)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"categories file not found: {path}")
    data = _read_json(path)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object mapping case_id to {{'qa_pairs': [...]}}")
    out = {}
    for case_id, entry in data.items():
        for pair in _qa_pairs(entry, path, case_id):
            if not isinstance(pair, dict) or "question" not in pair:
                raise FormatError(f"{path}: case {case_id!r}: a QA pair without 'question'")
            out[question_key(case_id, pair["question"])] = _categories(pair.get("category"), f"{path} ({case_id})")
    return out


def _categories(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise FormatError(f"{where}: 'category' must be a list of names, got {value!r}")
    return [_CANONICAL.get(v.strip().lower(), v.strip()) for v in value]


def load_ctspatialvqa(path: str | Path, categories: str | Path | None = None,
                      volumes: str | Path | None = None) -> ImportResult:
    """Read CT-SpatialVQA into open items (module docstring).

    Volumes: from ``volumes`` (a folder searched by case name) when given, else ``image_path``
    relative to the main file's folder; cases with no volume are reported and stay text-only.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CT-SpatialVQA file not found: {path}")
    category_map = read_categories(categories) if categories is not None else {}
    result = ImportResult(items=[], source=str(path))
    per_case: dict[str, int] = defaultdict(int)
    unmatched = 0
    for lineno, row in _rows(path):
        where = f"{path}:{lineno}" if lineno else f"{path}"
        if not isinstance(row, dict):
            raise FormatError(f"{where}: expected a JSON object")
        missing = [k for k in ("case_id", "question", "answer")
                   if not isinstance(row.get(k), str) or not row[k].strip()]
        if missing:
            raise FormatError(f"{where}: missing or empty {', '.join(missing)}")
        case_id = row["case_id"].strip()
        case = strip_volume_suffix(case_id)
        index = per_case[case]
        per_case[case] += 1
        cats = _categories(row.get("category"), where) if "category" in row else []
        if category_map:
            key = question_key(case_id, row["question"])
            if key in category_map:
                cats = category_map[key]
            else:
                unmatched += 1
        ctrate = parse_ctrate_name(case)
        category = cats[0] if cats else None
        result.items.append(Item(
            id=f"{TASK}/{case}/{index}", question=row["question"].strip(), answer=row["answer"].strip(),
            answer_type="open", case=case, patient=ctrate.patient if ctrate else case, task=TASK,
            subtask=category, metadata={
                "benchmark": TASK, "category": category, "categories": cats, "question_id": f"{case_id}::{index}",
                "image_path": row.get("image_path"), "scoring": "spatial_terms", "source_file": str(path),
                "source_line": lineno or None}))
    if not result.items:
        raise FormatError(f"{path}: no QA pairs (an empty file?); expected JSON Lines with case_id, question "
                          "and answer")
    if unmatched:
        result.warn(f"{unmatched} of {len(result.items)} QA pairs have no entry in the categories file {categories}")
    _attach_volumes(result, path.parent, volumes)
    return result


def _attach_volumes(result: ImportResult, base: Path, volumes: str | Path | None) -> None:
    if volumes is not None:
        result.missing_volumes = resolve_volumes(result.items, volumes)
        where: str | Path = volumes
    else:
        missing = set()
        for item in result.items:
            rel = item.metadata.get("image_path")
            candidate = (base / rel) if rel else None
            if candidate is not None and candidate.is_file():
                item.volume_path = str(candidate)
            else:
                missing.add(item.case)
        result.missing_volumes = sorted(missing)
        where = f"{base} (image_path)"
    if result.missing_volumes:
        n_cases = len({it.case for it in result.items})
        result.warn(missing_volumes_message(result.missing_volumes, n_cases, where))
