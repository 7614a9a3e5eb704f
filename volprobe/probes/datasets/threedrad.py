"""3D-RAD (NeurIPS 2025, CT-RATE chest CTs): all six tasks as :class:`~volprobe.items.Item`.

Layout of the release: ``3DRAD/<split>/Task<N>_<Name>/<subtask>.csv``, every CSV
with the header ``Task,Subtask,VolumeName,Question,Answer,QuestionType,AnswerChoice,Choice A..D``.

Tasks are numbered as in the paper, **by folder name** (the release swaps the folder numbers of
tasks 1 and 2):

==== =============================== ============ ==================================================
task name                            answer_type  subtask (CSV file stem)
==== =============================== ============ ==================================================
T1   Anomaly Detection               open         file stem
T2   Image Observation               open         file stem
T3   Medical Computation             numeric      Diameter / Size / Thickness
T4   Existence Detection             yes_no       finding label
T5   Static Temporal Diagnosis       choice       scan position letter of the current scan
T6   Longitudinal Temporal Diagnosis choice       scan position letter of the current scan
==== =============================== ============ ==================================================

Each item: ``id`` ``3drad/<split>/T<n>/<subtask>/<line>``, ``task`` ``3drad/T<n>``, ``case`` the volume
name without ending, ``patient`` ``<split>_<number>``, options = the non-``-`` choices in A..D order,
``answer`` the text of the ``AnswerChoice`` option. ``metadata``: ``benchmark``, ``split``, ``category``
(task name), ``label`` and ``family`` (the CT-RATE finding a T4–T6 question is about, from the file
name or question text; None when not recognised), ``scan_position``, ``history`` (T6: prior states,
0/1, oldest first), ``question_type``, ``csv_task``, ``csv_subtask``, ``source_file``, ``source_line``.
"""

from __future__ import annotations

import re
from pathlib import Path

from volprobe.errors import FormatError
from volprobe.probes.datasets.common import (PLACEHOLDERS, ImportResult, header_key, iter_csv_rows,
                                               missing_volumes_message, parse_ctrate_name, resolve_volumes,
                                               strip_volume_suffix)
from volprobe.items import Item
from volprobe.probes.scoring.answers import parse_choice

#: Paper task number → (name, word that identifies its folder, answer type).
TASKS: dict[int, tuple[str, str, str]] = {
    1: ("Anomaly Detection", "anomaly", "open"),
    2: ("Image Observation", "observation", "open"),
    3: ("Medical Computation", "computation", "numeric"),
    4: ("Existence Detection", "existence", "yes_no"),
    5: ("Static Temporal Diagnosis", "static", "choice"),
    6: ("Longitudinal Temporal Diagnosis", "longitudinal", "choice"),
}
SPLITS = ("test", "train")

#: CT-RATE's 18 abnormality labels (Task 4 uses all; Tasks 5-6 all but "Medical material").
CTRATE_LABELS = (
    "Medical material", "Arterial wall calcification", "Cardiomegaly", "Pericardial effusion",
    "Coronary artery wall calcification", "Hiatal hernia", "Lymphadenopathy", "Emphysema", "Atelectasis",
    "Lung nodule", "Lung opacity", "Pulmonary fibrotic sequela", "Pleural effusion",
    "Mosaic attenuation pattern", "Peribronchial thickening", "Consolidation", "Bronchiectasis",
    "Interlobular septal thickening",
)
_LABELS_LONGEST_FIRST = sorted(((lab.lower(), lab) for lab in CTRATE_LABELS), key=lambda p: -len(p[0]))

_COLUMNS = {"volume": "volumename", "question": "question", "answer": "answer", "qtype": "questiontype",
            "letter": "answerchoice", "task": "task", "subtask": "subtask"}
_REQUIRED = ("volumename", "question", "answer")
_CHOICES = ("choice a", "choice b", "choice c", "choice d")
_LETTER = re.compile(r"^[(\[]?([A-Za-z])[)\]]?\.?$")
_HISTORY = re.compile(r"\[\s*([01](?:\s*,\s*[01])*)?\s*\]")
_STATE = re.compile(r"[01]")


def task_of_folder(name: str) -> int | None:
    """Paper task number of a release folder, from its *name* (``Task1_Image_Observation`` → 2)."""
    low = name.lower()
    hits = [n for n, (_name, word, _type) in TASKS.items() if word in low]
    return hits[0] if len(hits) == 1 else None


def parse_history(question: str) -> list[int] | None:
    """Prior states embedded in a Task 6 question (``[0, 1]``, oldest first), or None when absent."""
    m = _HISTORY.search(question)
    if m is None:
        return None
    return [int(v) for v in _STATE.findall(m.group(1) or "")]


def find_label(text: str) -> str | None:
    """The CT-RATE label named in a question or file stem (longest match; underscores as spaces)."""
    low = text.replace("_", " ").lower()
    return next((label for key, label in _LABELS_LONGEST_FIRST if key in low), None)


def _split_folder(path: Path, split: str) -> Path:
    if split not in SPLITS:
        raise FormatError(f"3D-RAD split must be one of {SPLITS}, got {split!r}")
    if not path.exists():
        raise FileNotFoundError(f"3D-RAD folder not found: {path}")
    for candidate in (path / split, path):
        if candidate.is_dir() and any(p.is_dir() and p.name.lower().startswith("task") for p in candidate.iterdir()):
            return candidate
    raise FormatError(f"{path}: no 3D-RAD task folders (Task*_*/) in it or in {path / split}")


def task_folders(split_dir: Path, result: ImportResult) -> dict[int, Path]:
    """Paper task number → folder; unknown folders and missing tasks become warnings."""
    found: dict[int, Path] = {}
    for folder in sorted(p for p in split_dir.iterdir() if p.is_dir() and p.name.lower().startswith("task")):
        number = task_of_folder(folder.name)
        if number is None:
            result.warn(f"{folder}: not a known 3D-RAD task folder, skipped")
            continue
        if number in found:
            raise FormatError(f"{split_dir}: two folders for task T{number}: {found[number].name}, {folder.name}")
        found[number] = folder
    for number in sorted(set(TASKS) - set(found)):
        result.warn(f"{split_dir}: no folder for T{number} ({TASKS[number][0]}); its items are missing")
    return found


def load_3drad(path: str | Path, split: str = "test", volumes: str | Path | None = None) -> ImportResult:
    """Read a 3D-RAD split (folder ``PATH/<split>/`` or ``PATH`` itself) into items.

    Args:
        path: the 3D-RAD folder (holding ``test/`` and ``train/``) or one split folder.
        split: ``test`` (3D-RAD-Bench) or ``train`` (3D-RAD-T); recorded in ids and metadata.
        volumes: folder of NIfTI / ``.npy`` volumes named after ``VolumeName``; missing ones are
            reported in the result (count and first few) and their items stay text-only.

    Raises:
        FileNotFoundError: ``path`` or ``volumes`` does not exist.
        FormatError: a malformed row or header (message names file and line).
    """
    path = Path(path)
    split_dir = _split_folder(path, split)
    result = ImportResult(items=[], source=str(split_dir))
    for number, folder in sorted(task_folders(split_dir, result).items()):
        csvs = sorted(folder.glob("*.csv"))
        if not csvs:
            result.warn(f"{folder}: no CSV files")
        for csv_path in csvs:
            result.items.extend(read_task_csv(csv_path, number, split, relative_to=split_dir.parent))
    if not result.items:
        raise FormatError(f"{split_dir}: no items (no task folder holds a CSV with rows); expected "
                          "<split>/Task<N>_<Name>/<subtask>.csv")
    if volumes is not None:
        result.missing_volumes = resolve_volumes(result.items, volumes)
        if result.missing_volumes:
            n_cases = len({it.case for it in result.items})
            result.warn(missing_volumes_message(result.missing_volumes, n_cases, volumes))
    return result


def read_task_csv(csv_path: Path, task_number: int, split: str, relative_to: Path | None = None) -> list[Item]:
    """Items of one 3D-RAD CSV file of paper task ``task_number``."""
    header, rows = iter_csv_rows(csv_path)
    keys = [header_key(h) for h in header]
    col = {k: i for i, k in reversed(list(enumerate(keys)))}  # first occurrence wins
    missing = [k for k in _REQUIRED if k not in col]
    task_name, _word, answer_type = TASKS[task_number]
    if answer_type in ("choice", "yes_no"):
        missing += [k for k in ("answerchoice", *_CHOICES) if k not in col]
    if missing:
        raise FormatError(f"{csv_path}:1: missing column(s) {', '.join(missing)}; header is {', '.join(header)}")
    source = str(csv_path.relative_to(relative_to)) if relative_to else str(csv_path)
    stem = csv_path.stem
    file_label = find_label(stem) if task_number == 4 else None
    items = []
    for line, row in rows:
        where = f"{csv_path}:{line}"
        get = {name: (row[col[key]].strip() if key in col else "") for name, key in _COLUMNS.items()}
        if not get["volume"] or not get["question"]:
            raise FormatError(f"{where}: empty VolumeName or Question")
        case = strip_volume_suffix(get["volume"])
        ctrate = parse_ctrate_name(case)
        meta = {
            "benchmark": "3drad", "split": split, "category": task_name, "question_type": get["qtype"] or None,
            "scan_position": ctrate.scan if ctrate else None, "csv_task": get["task"] or None,
            "csv_subtask": get["subtask"] or None, "source_file": source, "source_line": line,
        }
        options: list[str] = []
        if answer_type in ("choice", "yes_no"):
            options = _options(row, col, where)
            answer = _gold_option(get["letter"], get["answer"], options, where)
            label = file_label or find_label(get["question"])
            meta["label"] = meta["family"] = label
        else:
            answer = get["answer"]
            if answer in PLACEHOLDERS:
                raise FormatError(f"{where}: empty Answer for an open question")
        if task_number == 6:
            history = parse_history(get["question"])
            if history is None:
                raise FormatError(f"{where}: Task 6 question without a [0/1, ...] history list")
            meta["history"] = history
        try:
            items.append(Item(
                id=f"3drad/{split}/T{task_number}/{stem}/{line}", question=get["question"], answer=answer,
                answer_type=answer_type, options=options, case=case,
                patient=ctrate.patient if ctrate else case, task=f"3drad/T{task_number}", subtask=stem,
                metadata=meta))
        except FormatError as exc:
            raise FormatError(f"{where}: {exc}") from exc
    return items


def _options(row: list[str], col: dict[str, int], where: str) -> list[str]:
    cells = [row[col[k]].strip() for k in _CHOICES]
    n = next((i for i, c in enumerate(cells) if c in PLACEHOLDERS), len(cells))
    if any(c not in PLACEHOLDERS for c in cells[n:]):
        raise FormatError(f"{where}: a choice follows an empty ('-') choice: {cells}")
    if n < 2:
        raise FormatError(f"{where}: a closed question needs at least two choices, got {cells}")
    return cells[:n]


def _gold_option(letter_cell: str, answer_cell: str, options: list[str], where: str) -> str:
    """The gold option: from ``AnswerChoice``, checked against ``Answer`` (which may be the letter or text)."""
    m = _LETTER.match(letter_cell)
    by_letter = ord(m.group(1).upper()) - ord("A") if m else None
    if by_letter is not None and not 0 <= by_letter < len(options):
        raise FormatError(f"{where}: AnswerChoice {letter_cell!r} but only {len(options)} choices")
    if by_letter is not None and answer_cell == options[by_letter]:  # the usual case, checked fast
        return answer_cell
    by_text = parse_choice(answer_cell, options)[0] if answer_cell not in PLACEHOLDERS else None
    if by_letter is None and by_text is None:
        raise FormatError(f"{where}: neither AnswerChoice {letter_cell!r} nor Answer {answer_cell!r} "
                          f"names one of {options}")
    if by_letter is not None and by_text is not None and by_letter != by_text:
        raise FormatError(f"{where}: AnswerChoice {letter_cell!r} ({options[by_letter]!r}) disagrees with "
                          f"Answer {answer_cell!r}")
    return options[by_letter if by_letter is not None else by_text]
