"""Where model weights come from, and which device and dtype they run in.

``--model NAME:PATH`` resolves, with no network access ever, to

1. ``PATH`` when it is an existing folder;
2. else, when ``PATH`` looks like a Hugging Face hub id (``org/name``), the cached snapshot of that id;
3. else, with no ``PATH``, the cached snapshot of the adapter's default hub id (if it has one).

Hub caches searched, in order: ``$HF_HUB_CACHE`` (or ``$HUGGINGFACE_HUB_CACHE``), ``$HF_HOME/hub``,
``~/.cache/huggingface/hub``. A snapshot is ``<cache>/models--ORG--NAME/snapshots/<commit>``; the commit
named by ``refs/main`` wins. When nothing is found, :class:`WeightsMissingError` lists every place looked.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from volprobe.errors import VolprobeError, WeightsMissingError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ResolvedWeights:
    """A local folder holding a model, and where it came from.

    Attributes:
        path: the folder.
        source: ``"local"`` (a folder given on the command line) or ``"hf-cache"`` (a hub snapshot).
        repo_id: hub id when the folder is a cache snapshot.
        revision: snapshot commit hash, or for a local folder ``sha256:<16 hex>`` of its config and
            weight-file headers (see :func:`folder_fingerprint`).
    """

    path: Path
    source: str
    repo_id: str | None
    revision: str


def hub_cache_dirs() -> list[Path]:
    """Hugging Face hub cache folders to search, in order, without duplicates."""
    env = os.environ
    candidates = [env.get("HF_HUB_CACHE"), env.get("HUGGINGFACE_HUB_CACHE")]
    if env.get("HF_HOME"):
        candidates.append(os.path.join(env["HF_HOME"], "hub"))
    candidates.append(os.path.join(os.path.expanduser("~"), ".cache", "huggingface", "hub"))
    out: list[Path] = []
    for c in candidates:
        if c and Path(c).expanduser() not in out:
            out.append(Path(c).expanduser())
    return out


def find_snapshot(repo_id: str, cache_dir: Path) -> Path | None:
    """The snapshot folder of ``repo_id`` in one hub cache (``refs/main`` first), or None."""
    repo_dir = cache_dir / f"models--{repo_id.replace('/', '--')}"
    snapshots = repo_dir / "snapshots"
    ref = repo_dir / "refs" / "main"
    if ref.is_file():
        snap = snapshots / ref.read_text().strip()
        if snap.is_dir():
            return snap
    found = sorted(p for p in snapshots.iterdir() if p.is_dir()) if snapshots.is_dir() else []
    return found[-1] if len(found) == 1 else None


def resolve_weights(path: str | None, *, model: str, default_repo: str | None = None,
                    required: Sequence[str] = ("config.json",)) -> ResolvedWeights:
    """Find a model's folder on disk (never downloads).

    Args:
        path: the ``PATH`` of ``--model NAME:PATH``: a folder or a hub id; None for the default.
        model: adapter name (for messages).
        default_repo: hub id used when ``path`` is None.
        required: files or sub-folders the folder must hold (relative paths).

    Raises:
        WeightsMissingError: nothing usable found; the message lists every place looked and why it failed.
    """
    looked: list[str] = []
    repo_id = None
    if path is not None:
        p = Path(path).expanduser()
        if p.exists():
            if not p.is_dir():
                looked.append(f"{p} (a file, not a model folder)")
            else:
                return _checked(p, "local", None, required, model)
        elif HUB_ID.match(path) and not path.startswith((".", "~")):
            looked.append(f"{p} (no such folder; trying it as a hub id)")
            repo_id = path
        else:
            looked.append(f"{p} (no such folder)")
    elif default_repo:
        repo_id = default_repo
    if repo_id is not None:
        for cache in hub_cache_dirs():
            snap = find_snapshot(repo_id, cache)
            where = cache / f"models--{repo_id.replace('/', '--')}"
            if snap is None:
                why = "no snapshot named by refs/main" if where.is_dir() else "not present"
                looked.append(f"{where}/snapshots/* (Hugging Face cache: {repo_id} {why})")
                continue
            return _checked(snap, "hf-cache", repo_id, required, model)
    hint = (f"download it where there is internet (`huggingface-cli download {repo_id}`) and copy the cache, "
            f"or pass the folder: --model {model}:/path/to/folder" if repo_id else
            f"pass the folder holding the model: --model {model}:/path/to/folder")
    if not looked:
        looked.append(f"(no path given and {model} has no default hub id)")
    raise WeightsMissingError(f"{model} weights not found (offline: nothing is downloaded). Looked in:\n  - "
                              + "\n  - ".join(looked) + f"\n{hint}")


def _checked(folder: Path, source: str, repo_id: str | None, required: Sequence[str], model: str) -> ResolvedWeights:
    missing = [r for r in required if not (folder / r).exists()]
    if missing:
        raise WeightsMissingError(f"{model}: {folder} ({source}) lacks {', '.join(missing)}; "
                                  "it is not a complete model folder")
    revision = folder.name if source == "hf-cache" else folder_fingerprint(folder)
    return ResolvedWeights(path=folder, source=source, repo_id=repo_id, revision=revision)


def folder_fingerprint(folder: Path, head_bytes: int = 1 << 16) -> str:
    """``sha256:<16 hex>`` of a model folder's ``*.json`` files and each weight file's name, size and first 64 KiB.

    Cheap (reads no whole weight file) yet changes when weights are replaced: safetensors headers
    hold every tensor's name, shape and offset.
    """
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if not f.is_file() or "__pycache__" in f.parts:
            continue
        rel = f.relative_to(folder).as_posix()
        if f.suffix == ".json":
            h.update(rel.encode() + b"\0" + f.read_bytes())
        elif f.name.endswith(WEIGHT_SUFFIXES):
            with open(f, "rb") as fh:
                h.update(f"{rel}\0{f.stat().st_size}\0".encode() + fh.read(head_bytes))
    return "sha256:" + h.hexdigest()[:16]


# -- device and dtype -------------------------------------------------------------------

DTYPE_ALIASES = {"bf16": "bfloat16", "bfloat16": "bfloat16", "fp16": "float16", "float16": "float16",
                 "half": "float16", "fp32": "float32", "float32": "float32", "float": "float32"}


def resolve_device(device: str):
    """``cpu``, ``cuda``, ``cuda:N`` (or ``mps``) as a ``torch.device``; clear error when not available."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise VolprobeError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise VolprobeError(f"device {device!r} requested but CUDA is not available on this machine")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise VolprobeError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise VolprobeError("device 'mps' requested but MPS is not available")
    return dev


def resolve_dtype(dtype: str, device) -> "torch.dtype":  # noqa: F821
    """Model dtype: ``auto`` is bf16 on CUDA (fp16 where bf16 is unsupported) and fp32 elsewhere."""
    import torch

    name = str(dtype).lower().removeprefix("torch.")
    if name == "auto":
        if getattr(device, "type", str(device)).startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in DTYPE_ALIASES:
        raise VolprobeError(f"unknown dtype {dtype!r}; use auto, bf16, fp16 or fp32")
    return getattr(torch, DTYPE_ALIASES[name])


def dtype_name(dtype) -> str:
    """``torch.bfloat16`` → ``"bfloat16"`` (for records)."""
    return str(dtype).removeprefix("torch.")
