"""Where the pictures come from: the items a run answered, their volumes and their masks.

Items: ``--items`` files when given; else the items file each run's manifest names as its input (for a
merged run, the manifests of the runs it was merged from). A relative path in a manifest was written
relative to the folder the run was started from; it is tried as written, then under each folder above the
run folder. A file whose SHA-256 differs from the one the manifest recorded is used and said so.

Volumes: each item's ``volume_path`` (as written, else relative to its items file's folder), read once per
case with the run engine's reader (:class:`~volprobe.probes.run.volume_cache.VolumeCache`, CT-RATE metadata
applied as in a run).

Masks (for outlines), per case, the first that exists and is the label map the item was made from (its
content hash equal to the item's ``metadata['masks_sha256']``, where the item records one):

1. in a ``--masks`` folder: ``CASE.nii.gz``, ``CASE_seg.nii.gz``, ``CASE/`` (one file per structure), or the
   same names after the CT's file name;
2. beside the CT: ``NAME_seg.nii.gz`` for ``NAME.nii.gz`` (as ``probe phantom`` writes them);
3. the masks the item's relation graph was built from: the items file's manifest lists each case's graph,
   and the graph names its masks (``source.labels``).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Iterable, Sequence

from volprobe.errors import VolprobeError
from volprobe.items import Item, read_items
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.volume import Volume, content_hash

NIFTI = (".nii.gz", ".nii")


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return Path(name).stem


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def resolve_recorded(raw: str, near: Path) -> Path | None:
    """A path a manifest recorded: as written (absolute, or relative to the current folder), else under each
    folder above ``near`` (the folder the command that wrote it may have been started from)."""
    p = Path(raw)
    if p.exists():
        return p
    if p.is_absolute():
        return None
    for folder in [near, *near.parents]:
        if (folder / p).exists():
            return folder / p
    return None


def _run_manifests(run: Path) -> list[Path]:
    if run.is_file():
        beside = run.with_name(run.name + ".manifest.json")
        return [beside] if beside.exists() else ([run.parent / "manifest.json"] if (run.parent / "manifest.json").exists() else [])
    return sorted(p for p in run.glob("manifest*.json"))


def items_files_of_run(run: Path, depth: int = 0) -> tuple[list[Path], list[str]]:
    """The items files a run's manifests name as inputs (found on disk), and notes on those not found or
    changed since the run."""
    found: list[Path] = []
    notes: list[str] = []
    for manifest_path in _run_manifests(run):
        manifest = _read_json(manifest_path) or {}
        near = manifest_path.parent
        for entry in manifest.get("inputs") or []:
            raw = entry.get("path") if isinstance(entry, dict) else None
            if not raw or not str(raw).endswith((".jsonl", ".jsonl.gz")):
                continue
            path = resolve_recorded(str(raw), near)
            if path is None:
                notes.append(f"{manifest_path}: items file {raw} not found (give it with --items)")
                continue
            want = entry.get("sha256")
            if want:
                from volprobe.manifest import sha256_file

                if sha256_file(path) != want:
                    notes.append(f"{path} changed since the run {run} (SHA-256 differs from its manifest): questions "
                                 "and options are shown as the file holds them now")
            found.append(path)
        sources = (manifest.get("parameters") or {}).get("sources") if depth == 0 else None
        for source in sources or []:  # a merged run: the runs it was merged from
            path = resolve_recorded(str(source), near)
            if path is not None:
                more, more_notes = items_files_of_run(path, depth + 1)
                found += more
                notes += more_notes
    return list(dict.fromkeys(found)), notes


@dataclass
class ItemIndex:
    """Items by id, with the file each came from, and every item of each file."""

    items: dict[str, Item] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    by_file: dict[Path, list[Item]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def add_file(self, path: Path) -> None:
        self.by_file[path] = read_items(path)
        for item in self.by_file[path]:
            if item.id not in self.items:
                self.items[item.id] = item
                self.files[item.id] = path


def load_items(runs: Sequence[str | Path], items_files: Sequence[str | Path] = ()) -> ItemIndex:
    """The items of ``items_files`` when given, else of the files the runs' manifests name (see the module
    docstring); notes say what was not found."""
    index = ItemIndex()
    paths: list[Path] = [Path(p) for p in items_files]
    if not paths:
        for run in runs:
            found, notes = items_files_of_run(Path(run))
            paths += found
            index.notes += notes
    given = {Path(p) for p in items_files}
    for path in dict.fromkeys(paths):
        try:
            index.add_file(path)
        except VolprobeError as exc:
            if path in given:
                raise
            # a run's inputs may hold other JSON Lines files (another harness's predictions)
            index.notes.append(f"{path} (an input of a run) is not an items file: {str(exc).splitlines()[0]}")
    if not paths:
        index.notes.append("no items file found for the runs (give one with --items): the browser shows the "
                           "records' prompts without images")
    return index


class CaseImages:
    """Volumes and masks of the cases of one items file, each read once and kept while used (a few at a time).

    Args:
        items: every item of the items file (the run's cases: ``swapped_volume`` draws from all of them).
        items_path: the items file (relative volume paths are resolved against its folder).
        masks_dirs: ``--masks`` folders.
        size: volumes kept in memory.
    """

    def __init__(self, items: Sequence[Item], items_path: Path, masks_dirs: Sequence[str | Path] = (),
                 size: int = 4):
        from volprobe.probes.datasets.ctrate import volume_reader_for
        from volprobe.probes.run.engine import case_volumes
        from volprobe.probes.run.volume_cache import VolumeCache, expected_volume_hashes

        self.items_path = items_path
        base = items_path.parent
        self.paths = case_volumes(items, lambda raw: VolumeCache.resolve_path(raw, base))
        self.volumes = VolumeCache(self.paths, base, size, read_ahead=False, read=volume_reader_for(items, None),
                                   expected=expected_volume_hashes(items), allow_changed=True)
        self.masks_dirs = [Path(d) for d in masks_dirs]
        self.masks_hash = {it.case_key: it.metadata.get("masks_sha256") for it in items
                           if it.metadata.get("masks_sha256")}
        self._graph_masks: dict[str, Path] | None = None
        self._masks: OrderedDict[str, LabelMap | None] = OrderedDict()
        self.size = size
        self.notes: dict[str, str] = {}

    @cached_property
    def cases(self) -> dict[str, str]:
        """case → patient for every case whose volume exists (what a run's context holds)."""
        return {c: p for c, (vp, p) in self.paths.items() if c and vp is not None and self.volumes.resolve(c).exists()}

    def volume(self, case: str) -> Volume:
        return self.volumes.get(case)

    def close(self) -> None:
        self.volumes.close()

    def changed(self, case: str) -> bool:
        """True when the case's volume read differs from the one its items were made from."""
        return case in self.volumes.changed

    # -- masks ---------------------------------------------------------------------------
    def labels(self, case: str) -> LabelMap | None:
        """The case's masks on its CT's grid, or None (why: :attr:`notes`)."""
        if case in self._masks:
            self._masks.move_to_end(case)
            return self._masks[case]
        found = self._find_labels(case)
        self._masks[case] = found
        while len(self._masks) > self.size:
            self._masks.popitem(last=False)
        return found

    def _candidates(self, case: str) -> Iterable[Path]:
        ct = self.volumes.resolve(case)
        stems = list(dict.fromkeys([case] + ([_strip_nifti(ct.name)] if ct is not None else [])))
        for folder in self.masks_dirs:
            for stem in stems:
                yield from (folder / f"{stem}{s}" for s in ("_seg.nii.gz", ".nii.gz", "_seg.nii", ".nii"))
                yield folder / stem
        if ct is not None:
            yield from (ct.with_name(_strip_nifti(ct.name) + s) for s in ("_seg.nii.gz", "_seg.nii"))
        graph_masks = self._masks_from_graphs().get(case)
        if graph_masks is not None:
            yield graph_masks

    def _find_labels(self, case: str) -> LabelMap | None:
        from volprobe.segmentation.masks import load_masks

        tried = []
        for path in self._candidates(case):
            if not path.exists() or path in tried or (path.is_dir() and not any(path.glob("*.nii*"))):
                continue
            tried.append(path)
            try:
                volume = self.volume(case)
                labels = load_masks(path, volume)
            except (VolprobeError, OSError) as exc:
                self.notes[case] = f"masks {path} unreadable: {str(exc).splitlines()[0]}"
                continue
            want = self.masks_hash.get(case)
            if want and content_hash(labels.labels, labels.affine) != want:
                self.notes[case] = f"masks {path} are not those the items were made from (content hash differs)"
                continue
            self.notes.pop(case, None)
            return labels
        self.notes.setdefault(case, "no masks found (give their folder with --masks)")
        return None

    def _masks_from_graphs(self) -> dict[str, Path]:
        """case → the masks its relation graph was built from, via the items file's manifest."""
        if self._graph_masks is None:
            self._graph_masks = {}
            manifest = _read_json(self.items_path.with_name(self.items_path.name + ".manifest.json")) or {}
            near = self.items_path.parent
            for row in manifest.get("cases") or []:
                if not isinstance(row, dict) or not row.get("source") or not row.get("case"):
                    continue
                graph_path = resolve_recorded(str(row["source"]), near)
                graph = _read_json(graph_path) if graph_path is not None else None
                labels = ((graph or {}).get("source") or {}).get("labels")
                if labels:
                    path = resolve_recorded(str(labels), graph_path.parent)
                    if path is not None:
                        self._graph_masks[str(row["case"])] = path
        return self._graph_masks
