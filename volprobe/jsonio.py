"""Small JSON helpers every layer shares: one JSON Lines line → one object, JSON files read and written
safely, and the checks of a versioned ``from_dict`` (format version, unknown and missing fields).

Errors name the file and line (:class:`~volprobe.errors.FormatError`).
"""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from volprobe.errors import FormatError
from volprobe.fileio import atomic_output, read_text


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for numpy scalars and arrays, paths and sets."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def parse_json_object(line: str | bytes, where: str) -> dict[str, Any]:
    """Parse ``line`` (``where`` is ``FILE:LINE``); a :class:`FormatError` if it is not a JSON object."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise FormatError(f"{where}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at column "
                          f"{exc.start + 1}); save the file as UTF-8") from None
    if not isinstance(data, dict):
        raise FormatError(f"{where}: expected a JSON object")
    return data


def iter_json_lines(lines: Iterable[str], path: str | Path) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed value)`` of each non-blank JSON Lines line; bad JSON names file and line."""
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as exc:
            raise FormatError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON file's content (gzip read transparently); invalid JSON or text that is not UTF-8 is a
    :class:`FormatError` naming the file and line."""
    path = Path(path)
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from exc


def write_json_atomic(path: str | Path, data: Any, *, indent: int | None = 2) -> Path:
    """Write JSON to ``path`` via a temporary file and rename, so a kill or a full disk leaves the old or the
    new file."""
    path = Path(path)
    text = json.dumps(data, indent=indent, default=json_default) + "\n"
    with atomic_output(path) as fh:
        fh.write(text)
    return path


def versioned_fields(cls: type, data: Mapping[str, Any], *, kind: str, version: int,
                     required: Iterable[str], where: str) -> dict[str, Any]:
    """The fields of dataclass ``cls`` in ``data`` (a ``to_dict`` with ``format_version``), checked:
    the format version is ``version`` (missing means current), no unknown field, no required one missing."""
    data = dict(data)
    found = data.pop("format_version", version)
    if found != version:
        raise FormatError(f"{where}: {kind} format version {found}, this volprobe reads {version}")
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise FormatError(f"{where}: unknown {kind} fields {sorted(unknown)}")
    missing = set(required) - set(data)
    if missing:
        raise FormatError(f"{where}: missing {kind} fields {sorted(missing)}")
    return data
