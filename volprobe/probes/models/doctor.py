"""``probe doctor MODEL[:PATH]``: is a model folder complete and usable here, without loading its weights?

Each adapter's :meth:`~volprobe.probes.models.base.ModelAdapter.diagnose` returns :class:`Check` results:
files present, config readable, tokenizer loads, the model's own (remote) code imports and its
architecture builds with the installed library versions (on PyTorch's ``meta`` device: no memory, no
weights), and which preprocessing preset will be used and why. A check is ``ok``, a ``note`` (worth
knowing, not blocking) or a ``problem`` (the run would fail or feed the model something wrong), and
every problem says how to fix it. :func:`doctor` runs them; the CLI exits non-zero on any problem.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.probes.models.weights import WEIGHT_SUFFIXES, resolve_weights

STATUSES = ("ok", "note", "problem")


@dataclass
class Check:
    """One finding of ``probe doctor``.

    Attributes:
        what: what was checked (``weights``, ``config``, ``tokenizer``, ``model code``, ``preset`` ...).
        status: ``ok``, ``note`` or ``problem``.
        message: what was found, in plain words.
        fix: for a problem (or a note), what to do.
    """

    what: str
    status: str
    message: str
    fix: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")


@dataclass
class DoctorReport:
    """All checks of one model spec; :attr:`ok` when none is a problem."""

    spec: str
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(c.status == "problem" for c in self.checks)

    @property
    def problems(self) -> list[Check]:
        return [c for c in self.checks if c.status == "problem"]

    def __str__(self) -> str:
        marks = {"ok": "ok     ", "note": "note   ", "problem": "PROBLEM"}
        lines = [f"probe doctor {self.spec}"]
        for c in self.checks:
            lines.append(f"  {marks[c.status]} {c.what}: {c.message}")
            if c.fix:
                lines.append(f"          -> {c.fix}")
        n = len(self.problems)
        lines.append("no problems found" if not n else f"{n} problem{'s' if n > 1 else ''} found; "
                     "a run with this model would fail or feed it inputs it was not trained on")
        return "\n".join(lines)


def doctor(spec: str, **options: Any) -> DoctorReport:
    """Run the checks of the adapter named by ``spec`` (``NAME[:PATH]``) with ``--model-option`` ``options``.

    Raises:
        VolprobeError: unknown model name or a bad option (before any check).
    """
    from volprobe.probes.models.base import load_model

    adapter = load_model(spec, **options)
    try:
        checks = list(adapter.diagnose())
    except Exception as exc:  # a check that crashes is itself a finding
        checks = [Check("doctor", "problem", f"a check failed unexpectedly ({type(exc).__name__}: {exc})",
                        "report this with the folder's file list")]
    return DoctorReport(spec, checks or [Check("model", "ok", f"{adapter.name}: nothing to load or check")])


# -- helpers the adapters' diagnose() use -------------------------------------------------------

def weights_check(adapter) -> Check:
    """Where the model folder is (local or Hugging Face cache), or a problem listing every place looked."""
    try:
        found = resolve_weights(adapter.path, model=adapter.name, default_repo=adapter.default_repo, required=())
    except WeightsMissingError as exc:
        lines = str(exc).splitlines()
        looked = [ln.strip().lstrip("- ") for ln in lines[1:-1] if ln.strip()]  # the places searched
        message = lines[0].removesuffix(" Looked in:").rstrip(".")
        return Check("folder", "problem", f"{message}; looked in: {'; '.join(looked)}" if looked else lines[0],
                     _fix_of(exc))
    adapter.weights = found
    where = f"{found.path} ({'local folder' if found.source == 'local' else f'Hugging Face cache: {found.repo_id}'})"
    return Check("folder", "ok", f"{where}, revision {found.revision}")


def _fix_of(exc: Exception) -> str:
    lines = str(exc).splitlines()
    return lines[-1] if len(lines) > 1 else "pass the model folder: --model NAME:/path/to/folder"


def folder_of(checks: list[Check], adapter) -> Path | None:
    """The resolved folder after :func:`weights_check` (None when it failed)."""
    return None if checks[-1].status == "problem" or adapter.weights is None else Path(adapter.weights.path)


def read_json_file(path: Path, what: str) -> tuple[dict | None, Check]:
    """A JSON file as a dict, with the check saying whether it could be read."""
    if not path.is_file():
        return None, Check(what, "problem", f"{path.name} is missing from {path.parent}",
                           f"copy the model's {path.name} into {path.parent}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        return None, Check(what, "problem", f"{path} is not readable JSON ({exc})",
                           f"download {path.name} again; the file is damaged")
    if not isinstance(data, dict):
        return None, Check(what, "problem", f"{path} holds {type(data).__name__}, not a JSON object",
                           f"download {path.name} again")
    return data, Check(what, "ok", f"{path.parent.name}/{path.name} read")


def weight_files_check(folder: Path, names: tuple[str, ...] = (), source: str = "the checkpoint") -> Check:
    """Weight files present: the given names, or any ``*.safetensors``/``*.bin``/``*.pt`` at the top level."""
    if names:
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            return Check("weights", "problem", f"no weights: {', '.join(missing)} missing from {folder}",
                         f"download {source} on a machine with internet and put {', '.join(missing)} in {folder} "
                         "(volprobe never downloads)")
        size = sum((folder / n).stat().st_size for n in names)
        return Check("weights", "ok", f"{', '.join(names)} ({size / 2 ** 30:.2f} GiB)")
    files = [p for p in folder.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)]
    if not files:
        return Check("weights", "problem", f"no weight files (*.safetensors, *.bin) in {folder}",
                     "download the model's weight files into that folder (volprobe never downloads)")
    size = sum(p.stat().st_size for p in files)
    return Check("weights", "ok", f"{len(files)} weight file(s), {size / 2 ** 30:.2f} GiB")


def attempt(what: str, action: Callable[[], str], fix: Callable[[Exception], str]) -> Check:
    """Run ``action`` (returns the ok message); any exception becomes a problem with ``fix(exc)``."""
    try:
        return Check(what, "ok", action())
    except Exception as exc:  # the point is to report whatever breaks
        return Check(what, "problem", f"{type(exc).__name__}: {_first_line(exc)}", fix(exc))


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


@contextlib.contextmanager
def on_meta_device() -> Iterator[None]:
    """Build modules without memory or weights (PyTorch's ``meta`` device)."""
    import torch

    with torch.device("meta"):
        yield


def library_note(needs: dict[str, tuple[str, str]], source: str) -> Check:
    """A note when installed library versions are outside the range a model's own code was run with.

    ``needs``: library → (lowest, first version known to break) as strings, e.g. ``{"transformers": ("4.40",
    "4.46")}``; an empty upper bound means none known.
    """
    from importlib.metadata import PackageNotFoundError, version

    outside = []
    for lib, (low, high) in needs.items():
        try:
            have = version(lib)
        except PackageNotFoundError:
            outside.append(f"{lib} not installed")
            continue
        if _vt(have) < _vt(low) or (high and _vt(have) >= _vt(high)):
            outside.append(f"{lib} {have} (the model's code was run with >= {low}{f', < {high}' if high else ''})")
    if not outside:
        return Check("libraries", "ok", ", ".join(f"{lib} {version(lib)}" for lib in needs) + f" ({source})")
    return Check("libraries", "note", "; ".join(outside) + f" ({source})",
                 "if the model code fails to import or build, use a separate environment with those versions "
                 "(README: Models, GPUs and offline weights)")


def _vt(text: str) -> tuple[int, ...]:
    import re

    return tuple(int(p) for p in re.findall(r"\d+", text)[:3])


def ensure(condition: bool, message: str) -> None:
    """Raise a :class:`VolprobeError` with ``message`` unless ``condition`` (inside :func:`attempt`)."""
    if not condition:
        raise VolprobeError(message)
