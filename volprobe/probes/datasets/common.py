"""What every benchmark importer shares: CT-RATE volume names, volume folders, the import result."""

from __future__ import annotations

import csv
import io
import os
import re
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from volprobe.errors import FormatError, VolprobeWarning
from volprobe.fileio import read_text
from volprobe.items import Item, write_items
from volprobe.manifest import write_manifest

#: File endings of volumes that can be matched by name (longest first, so ``.nii.gz`` beats ``.gz``).
VOLUME_SUFFIXES = (".nii.gz", ".nii", ".npy", ".nrrd", ".mha", ".mhd")
#: When one name exists with several endings, the first here wins.
_SUFFIX_PREFERENCE = {s: i for i, s in enumerate(VOLUME_SUFFIXES)}

_CTRATE_NAME = re.compile(r"^(?P<split>[A-Za-z]+)_(?P<number>\d+)_(?P<scan>[A-Za-z])_(?P<recon>\d+)$")

#: How many missing volume names a report lists.
MISSING_SHOWN = 5


def volume_suffix(name: str) -> str | None:
    low = name.lower()
    if not low.endswith(VOLUME_SUFFIXES):
        return None
    return next(s for s in VOLUME_SUFFIXES if low.endswith(s))


def strip_volume_suffix(name: str) -> str:
    """``test_17_b_2.nii.gz`` → ``test_17_b_2`` (any folder part is dropped)."""
    name = name.strip().replace("\\", "/").rsplit("/", 1)[-1]
    suffix = volume_suffix(name)
    return name[: -len(suffix)] if suffix else name


@dataclass(frozen=True)
class CtRateName:
    """Parts of a CT-RATE volume name ``<split>_<patient>_<scan letter>_<reconstruction>``."""

    split: str
    number: str
    scan: str
    reconstruction: str

    @property
    def patient(self) -> str:
        """Patient id, e.g. ``test_17`` (all scans and reconstructions of one patient share it)."""
        return f"{self.split}_{self.number}"


def parse_ctrate_name(name: str) -> CtRateName | None:
    """Parse ``test_17_b_2.nii.gz`` (suffix optional); None when the name is not in CT-RATE's pattern."""
    m = _CTRATE_NAME.match(name) or _CTRATE_NAME.match(strip_volume_suffix(name))
    if m is None:
        return None
    return CtRateName(m["split"], m["number"], m["scan"].lower(), m["recon"])


class VolumeIndex:
    """Volumes in a folder (searched recursively), found by name without the file ending.

    CT-RATE nests volumes (``valid/valid_1/valid_1_a/valid_1_a_1.nii.gz``); flat folders work too.
    Where one name exists with several endings, NIfTI is preferred over ``.npy`` and ITK formats.
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"volume folder not found: {self.folder}")
        found: dict[str, tuple[int, str]] = {}
        for root, _dirs, files in os.walk(self.folder):
            for fname in files:
                suffix = volume_suffix(fname)
                if suffix is None:
                    continue
                rank = _SUFFIX_PREFERENCE[suffix]
                key = fname[: -len(suffix)]
                if key not in found or rank < found[key][0]:
                    found[key] = (rank, os.path.join(root, fname))
        self._paths = {k: p for k, (_r, p) in found.items()}

    def __len__(self) -> int:
        return len(self._paths)

    def find(self, case: str) -> str | None:
        return self._paths.get(strip_volume_suffix(case))


def resolve_volumes(items: list[Item], folder: str | Path) -> list[str]:
    """Set ``volume_path`` of each item whose case is in ``folder``; returns the missing case names (sorted)."""
    index = VolumeIndex(folder)
    missing: set[str] = set()
    for item in items:
        path = index.find(item.case) if item.case else None
        if path is None:
            missing.add(item.case or item.id)
        item.volume_path = path
    return sorted(missing)


def first_few(values: list[str], n: int = MISSING_SHOWN) -> str:
    """``a, b, c, ...``: the first ``n`` values, and an ellipsis when there are more."""
    return ", ".join(values[:n]) + (", ..." if len(values) > n else "")


def missing_volumes_message(missing: list[str], n_cases: int, folder: str | Path) -> str:
    return (f"{len(missing)} of {n_cases} volumes not found in {folder} (first: {first_few(missing)}); "
            "their items keep volume_path=None and can still be used text-only")


@dataclass
class ImportResult:
    """Items read from a benchmark, with what went wrong along the way.

    Attributes:
        items: the items, in file order.
        source: the path read.
        missing_volumes: case names with no volume in the volume folder (empty when none was given).
        warnings: problems that did not stop the import (missing task folder, unmatched categories, ...).
    """

    items: list[Item]
    source: str
    missing_volumes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        warnings.warn(message, VolprobeWarning, stacklevel=3)

    @property
    def counts(self) -> dict[str, int]:
        """Items per task."""
        return dict(sorted(Counter(it.task for it in self.items).items()))

    def __str__(self) -> str:
        lines = [f"{len(self.items)} items from {self.source}"]
        lines += [f"  {task}: {n}" for task, n in self.counts.items()]
        with_volume = sum(it.volume_path is not None for it in self.items)
        lines.append(f"  with a resolved volume: {with_volume}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def write(self, out: str | Path, command: str, inputs: Sequence[str | Path] = (),
              parameters: dict | None = None) -> int:
        """Write the items (JSON Lines) and their manifest (counts, missing volumes, warnings); returns the count."""
        n = write_items(self.items, out)
        write_manifest(out, command, inputs=list(inputs), parameters=parameters or {},
                       extra={"counts": self.counts, "missing_volumes": len(self.missing_volumes),
                              "warnings": self.warnings})
        return n


#: Cell values that mean "nothing here" in benchmark CSVs.
PLACEHOLDERS = frozenset({"", "-", "—", "–"})


def header_key(name: str) -> str:
    """Column name for matching: ``Choice_A`` → ``choice a``; ``AnswerChoice`` → ``answerchoice``."""
    return " ".join(name.replace("_", " ").strip().lower().split())


def iter_csv_rows(path: str | Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header of a CSV and an iterator of ``(line number, fields)`` for its non-blank records.

    Handles a byte-order mark, gzip compression and quoted commas (the csv module). Text that is not
    UTF-8 is a :class:`FormatError` naming the line of the first bad byte. A record with fewer fields than
    the header, or with extra non-empty fields (an unquoted comma), is a :class:`FormatError` naming
    the file and the line where the record starts. Trailing empty fields are tolerated.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CSV file not found: {path}")
    fh = io.StringIO(read_text(path), newline="")
    reader = csv.reader(fh)
    try:
        header = next(reader)
    except StopIteration:
        raise FormatError(f"{path}:1: empty file, expected a header line") from None
    except csv.Error as exc:
        raise FormatError(f"{path}:1: not a readable CSV ({exc})") from exc
    header = [h.strip() for h in header]

    def rows() -> Iterator[tuple[int, list[str]]]:
        n = len(header)
        with fh:
            while True:
                start = reader.line_num + 1
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    raise FormatError(f"{path}:{start}: malformed CSV record ({exc})") from exc
                if not row or all(not f.strip() for f in row):
                    continue
                if len(row) < n:
                    raise FormatError(f"{path}:{start}: {len(row)} fields, the header has {n} "
                                      f"({', '.join(header)})")
                if len(row) > n:
                    if any(f.strip() for f in row[n:]):
                        raise FormatError(f"{path}:{start}: {len(row)} fields, the header has {n} "
                                          "(an unquoted comma?)")
                    row = row[:n]
                yield start, row

    return header, rows()
