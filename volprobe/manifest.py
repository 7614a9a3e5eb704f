"""Manifests: the record written beside every output (versions, inputs, settings, seed)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

import volprobe
from volprobe.jsonio import write_json_atomic

#: Distributions whose versions every manifest records (read from metadata, nothing is imported).
TRACKED_PACKAGES = (
    "numpy", "scipy", "nibabel", "SimpleITK", "torch", "monai", "TotalSegmentator",
    "transformers", "statsmodels", "pandas", "scikit-learn", "matplotlib",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def package_versions(packages: Iterable[str] = TRACKED_PACKAGES) -> dict[str, str | None]:
    """Installed versions of ``packages`` (None where not installed)."""
    out: dict[str, str | None] = {}
    for name in packages:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def describe_inputs(inputs: Iterable[str | Path]) -> list[dict[str, Any]]:
    """Path and SHA-256 of each input file; folders are listed with the hashes of their files."""
    described = []
    for p in map(Path, inputs):
        if p.is_file():
            described.append({"path": str(p), "sha256": sha256_file(p)})
        elif p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file())
            h = hashlib.sha256()
            for f in files:
                h.update(str(f.relative_to(p)).encode())
                h.update(sha256_file(f).encode())
            described.append({"path": str(p), "sha256": h.hexdigest(), "files": len(files)})
        else:
            described.append({"path": str(p), "sha256": None, "missing": True})
    return described


def build_manifest(
    command: str,
    *,
    inputs: Iterable[str | Path] = (),
    input_hashes: Mapping[str, str] | None = None,
    parameters: Mapping[str, Any] | None = None,
    seed: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a dict: what ran, on what, with which settings and versions."""
    return {
        "volprobe_version": volprobe.__version__,
        "command": command,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "seed": seed,
        "parameters": dict(parameters or {}),
        "inputs": describe_inputs(inputs),
        "input_hashes": dict(input_hashes or {}),
        **dict(extra or {}),
    }


def manifest_path_for(output: str | Path) -> Path:
    """Where the manifest of ``output`` goes: ``DIR/manifest.json`` for a folder, ``FILE.manifest.json`` beside a
    file (or a path that does not exist yet: folder outputs are written before their manifest)."""
    output = Path(output)
    if output.is_dir():
        return output / "manifest.json"
    return output.with_name(output.name + ".manifest.json")


def write_manifest(output: str | Path, command: str, **kwargs: Any) -> Path:
    """Build a manifest (see :func:`build_manifest`) and write it beside ``output``; returns its path."""
    return write_json_atomic(manifest_path_for(output), build_manifest(command, **kwargs))
