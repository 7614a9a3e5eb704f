"""Where a command may write: the guard every ``probe`` command calls before it writes anything.

:func:`check_outputs` refuses (one :class:`~volprobe.errors.InvalidValueError` naming both paths) when a
path the command would write

1. is one of its inputs (the same file or folder, through symlinks and hard links too);
2. lies directly in a *run folder* that holds one of its inputs (or is an input), unless that run folder
   was written by this same command (``probe run`` resuming): a run folder's files belong to its run
   (records, exclusions, manifest); other commands write into a subfolder of it or elsewhere;
3. already exists inside an input folder and was not written by this command (its manifest, beside it
   or in its folder, names another command or none): e.g. a phantom's layout file.

A run folder is one whose ``manifest.json`` (or ``manifest.shard-I-of-N.json``) has a ``run`` or ``runs``
section. Paths that do not exist yet are compared by where they would be.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from volprobe.errors import InvalidValueError
from volprobe.manifest import manifest_path_for

#: File names of run manifests (``manifest.json``, or ``manifest.shard-I-of-N.json`` of shard I of N).
RUN_MANIFEST = re.compile(r"^manifest(?:\.shard-\d+-of-\d+)?\.json$")


def file_outputs(out: str | Path) -> list[Path]:
    """A file output and the manifest written beside it."""
    return [Path(out), manifest_path_for(Path(out))]


def _real(path: Path) -> Path:
    return Path(os.path.realpath(path))


def _same(a: Path, b: Path) -> bool:
    if _real(a) == _real(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _manifest_command(path: Path) -> tuple[str | None, bool]:
    """(command, is a run manifest) of one manifest file; (None, False) when unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None, False
    if not isinstance(data, dict):
        return None, False
    command = data.get("command") if isinstance(data.get("command"), str) else None
    return command, "run" in data or "runs" in data


def _folder_manifests(folder: Path) -> list[tuple[str | None, bool]]:
    try:
        names = sorted(p for p in folder.iterdir() if RUN_MANIFEST.match(p.name))
    except OSError:
        return []
    return [_manifest_command(p) for p in names]


def run_folder_owner(folder: Path) -> str | None:
    """The command that wrote run folder ``folder`` (``probe run``, ``probe merge``), or None when ``folder``
    is not a run folder."""
    for command, is_run in _folder_manifests(folder):
        if is_run:
            return command or "an unknown command"
    return None


def _written_by(path: Path, command: str) -> bool:
    """Whether ``path`` was written by ``command`` (per its manifest beside it, or its folder's manifest)."""
    found = []
    sidecar = manifest_path_for(path) if not path.is_dir() else path / "manifest.json"
    if sidecar.is_file():
        found.append(_manifest_command(sidecar)[0])
    else:
        found += [c for c, _ in _folder_manifests(path.parent)]
    return any(c is not None and (c == command or c.startswith(command + " ")) for c in found)


def _within(path: Path, folder: Path) -> bool:
    try:
        path.relative_to(folder)
    except ValueError:
        return False
    return True


def check_outputs(command: str, outputs: Iterable[str | Path | None], inputs: Iterable[str | Path | None], *,
                  folder: str | Path | None = None, option: str = "--out") -> None:
    """Refuse outputs that could change an input (module docstring); ``command`` is e.g. ``"probe report"``.

    Args:
        outputs: the files the command writes (for a file output, with its manifest: :func:`file_outputs`).
        inputs: the files and folders it reads (None entries are skipped).
        folder: the output folder of a command that writes one (checked not to be an input; the files it
            writes directly in it belong in ``outputs``).

    Raises:
        InvalidValueError: naming the output, the input it would change, and what to do instead.
    """
    ins = [Path(p) for p in inputs if p is not None]
    present = [p for p in ins if os.path.lexists(p)]
    folders = {_real(p): p for p in present if p.is_dir()}
    runs = {}
    for p in present:
        holder = p if p.is_dir() else p.parent
        owner = run_folder_owner(holder)
        if owner is not None:
            runs[_real(holder)] = (holder, owner)
    if folder is not None:
        outputs = [folder, *outputs]
    for out in (Path(o) for o in outputs if o is not None):
        real = _real(out)
        for p in present:
            if _same(out, p):
                what = "folder" if p.is_dir() else "file"
                raise InvalidValueError(f"{option} {out} is also an input of this command (the {what} {p}); "
                                        "writing there would destroy it: choose a new path")
        if folder is not None and out == Path(folder):
            continue  # an output folder may be new inside a run or input folder; its files are checked
        for real_run, (run, owner) in runs.items():
            if real.parent == real_run and not (owner == command or owner.startswith(command + " ")):
                raise InvalidValueError(
                    f"{option}: {out} would be written into the run folder {run}, whose files belong to "
                    f"`{' '.join(owner.split()[:2])}`; write into a subfolder (e.g. {run / 'report'}) or elsewhere")
        if out.is_file():
            for real_folder, in_folder in folders.items():
                if _within(real, real_folder) and not _written_by(out, command):
                    raise InvalidValueError(f"{option}: {out} exists inside the input folder {in_folder} and was not "
                                            f"written by `{command}`; writing it would change the input: "
                                            "choose another path")
