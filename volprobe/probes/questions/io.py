"""Writing a question set: items as JSON Lines and a manifest beside them."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from volprobe.items import write_items
from volprobe.probes.questions.generate import QuestionSet


def relative_volume_path(path: str | None, out_dir: Path) -> str | None:
    """An absolute CT path made relative to the items file's folder (None stays None)."""
    if path is None:
        return None
    return os.path.relpath(path, out_dir.resolve())


def write_question_set(qs: QuestionSet, out: str | Path, command: str = "probe questions",
                       inputs: Sequence[str | Path] = ()) -> tuple[Path, Path]:
    """Write ``out`` (JSON Lines; ``volume_path`` relative to ``out``'s folder) and ``out.manifest.json``.

    Returns (items path, manifest path).
    """
    from volprobe.manifest import write_manifest

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    folder = out.parent
    paths = {it.volume_path for it in qs.items}
    write_items(qs.items, out, volume_paths={p: relative_volume_path(p, folder) for p in paths})
    hashes = {}
    for row in qs.cases:
        hashes[f"{row['case']}:labels"] = row["labels_hash"]
        if row["ct_hash"]:
            hashes[f"{row['case']}:ct"] = row["ct_hash"]
    manifest = write_manifest(out, command, inputs=list(inputs), input_hashes=hashes,
                              parameters=qs.settings.to_dict(), seed=qs.settings.seed,
                              extra={"volume_paths": "relative to the items file's folder", **qs.manifest_extra()})
    return out, manifest
