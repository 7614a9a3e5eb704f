"""One JSON Lines line → one JSON object, with errors that name the file and line."""

from __future__ import annotations

import json
from typing import Any

from volprobe.errors import FormatError


def parse_json_object(line: str | bytes, where: str) -> dict[str, Any]:
    """Parse ``line`` (``where`` is ``FILE:LINE``); a :class:`FormatError` if it is not a JSON object."""
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise FormatError(f"{where}: not valid JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise FormatError(f"{where}: expected a JSON object")
    return data
