"""Cases for question generation: relation graphs with their patient and CT path.

Accepted inputs (``probe questions CASES...``):

* a relations JSON written by ``probe relations`` (or :meth:`RelationGraph.save`);
* a folder: every ``*.json`` in it that is a relations file (manifests and phantom layouts are skipped);
* a folder written by ``probe phantom``, recognised by its ``manifest.json``: its cases' CTs and masks as
  the manifest lists them (no flag needed);
* with ``masks_suffix`` (e.g. ``_seg.nii.gz``): a CT ``NAME.nii.gz`` whose masks are ``NAME_seg.nii.gz``
  beside it, or a folder of such pairs; a CT in such a folder without its masks is an error. Graphs of
  CTs are computed on the fly, with their counterfactual graphs (one per geometric control, see
  :func:`volprobe.controls.counterfactuals.case_relations`); a relations file holds them already.

The patient id comes from a phantom layout ``<case>_layout.json`` beside the relations file, the masks
or the CT (its ``patient`` field), else it is the case id. The CT path is ``graph.source['ct']`` tried
as given (absolute, or relative to the working directory) and then relative to the relations file's
folder; it is stored as an absolute path (None when the graph has no CT, or it is not found).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from volprobe.errors import FormatError
from volprobe.jsonio import read_json
from volprobe.segmentation.relations.graph import RELATIONS_FORMAT, RelationGraph, load_relation_graph

NIFTI_SUFFIXES = (".nii.gz", ".nii")


@dataclass
class QuestionCase:
    """One case: its relation graph, where it came from, its patient and its CT (absolute path or None)."""

    graph: RelationGraph
    source: str
    patient: str
    volume_path: str | None
    ct_as_given: str | None = None

    @property
    def case(self) -> str:
        return self.graph.case


def check_graph(graph: RelationGraph, where: str) -> None:
    """Refuse graphs no question can be asked about."""
    if not graph.structures:
        raise FormatError(f"{where}: case {graph.case!r} has no structures (empty segmentation?); "
                          "nothing to ask about")
    if not graph.pairs:
        raise FormatError(f"{where}: case {graph.case!r} has no structure pairs (only "
                          f"{', '.join(sorted(graph.structures))}); spatial questions need at least two structures")


def _is_relations_json(path: Path) -> bool:
    if path.name == "manifest.json" or path.name.endswith((".manifest.json", "_layout.json")):
        return False
    try:
        with open(path, encoding="utf-8") as fh:
            head = fh.read(200)
    except OSError:
        return False
    return f'"format": "{RELATIONS_FORMAT}"' in head or f'"format":"{RELATIONS_FORMAT}"' in head


def _strip_nifti(name: str) -> str:
    for suffix in NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _find_patient(case: str, folders: Iterable[Path]) -> str:
    for folder in folders:
        layout = folder / f"{case}_layout.json"
        if layout.exists():
            try:
                patient = json.loads(layout.read_text()).get("patient")
            except (OSError, ValueError):
                patient = None
            if patient:
                return str(patient)
    return case


def _resolve_ct(ct: str | None, relations_dir: Path | None) -> str | None:
    if not ct:
        return None
    p = Path(ct)
    tries = [p] if p.is_absolute() else [p] + ([relations_dir / p, relations_dir / p.name] if relations_dir else [])
    for t in tries:
        if t.exists():
            return str(t.resolve())
    return None


def _case_from_relations(path: Path) -> QuestionCase:
    graph = load_relation_graph(path)
    check_graph(graph, str(path))
    ct = graph.source.get("ct")
    folders = [path.parent] + [Path(p).parent for p in (graph.source.get("labels"), ct) if p]
    return QuestionCase(graph, str(path), _find_patient(graph.case, folders), _resolve_ct(ct, path.parent), ct)


def _case_from_ct(ct: Path, masks: Path) -> QuestionCase:
    from volprobe.controls.counterfactuals import case_relations
    from volprobe.segmentation.masks import load_masks
    from volprobe.segmentation.volume import load_volume

    volume = load_volume(ct)
    graph = case_relations(load_masks(masks, volume), volume, case=_strip_nifti(ct.name))
    check_graph(graph, str(masks))
    return QuestionCase(graph, str(ct), _find_patient(graph.case, [ct.parent]), str(ct.resolve()), str(ct))


def _ct_pairs(folder: Path, masks_suffix: str) -> list[tuple[Path, Path]]:
    pairs, alone = [], []
    for ct in sorted(folder.iterdir()):
        if ct.name.endswith(masks_suffix) or not ct.name.endswith(NIFTI_SUFFIXES):
            continue
        masks = folder / (_strip_nifti(ct.name) + masks_suffix)
        if masks.exists():
            pairs.append((ct, masks))
        else:
            alone.append(f"{ct.name} (no {masks.name})")
    if alone:
        raise FileNotFoundError(f"{folder}: {len(alone)} CT{'s' if len(alone) > 1 else ''} without masks: "
                                f"{', '.join(alone[:5])}{', ...' if len(alone) > 5 else ''}; add the masks "
                                f"(NAME{masks_suffix}) or move the CT out of the folder")
    return pairs


#: The command whose output folder lists its cases' CTs and masks in ``manifest.json``.
PHANTOM_COMMAND = "probe phantom"


def phantom_pairs(folder: Path) -> list[tuple[Path, Path]] | None:
    """(CT, masks) of every case of a folder written by ``probe phantom`` (from its manifest), or None when
    ``folder`` is not one. A case whose files are missing is an error."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return None
    data = read_json(manifest)
    if not str(data.get("command", "")).startswith(PHANTOM_COMMAND) or not isinstance(data.get("cases"), list):
        return None
    pairs = []
    for case in data["cases"]:
        try:
            ct, masks = folder / case["files"]["ct"]["path"], folder / case["files"]["seg"]["path"]
        except (KeyError, TypeError):
            raise FormatError(f"{manifest}: a case without files.ct.path and files.seg.path: {case!r}") from None
        for path in (ct, masks):
            if not path.exists():
                raise FileNotFoundError(f"{path} is listed in {manifest} but missing; rerun `probe phantom` "
                                        "with the same settings to write it again")
        pairs.append((ct, masks))
    return pairs


def discover(paths: Iterable[str | Path], masks_suffix: str | None = None) -> list[tuple[str, Path, Path | None]]:
    """What each input holds: ('relations', json, None) or ('ct', ct, masks) entries, in input order.

    Raises:
        FileNotFoundError: an input does not exist.
        FormatError: an input holds no case.
    """
    found: list[tuple[str, Path, Path | None]] = []
    for raw in paths:
        p = Path(raw)
        if not p.exists():
            raise FileNotFoundError(f"case input not found: {p}")
        if p.is_dir():
            entries = [("relations", f, None) for f in sorted(p.glob("*.json")) if _is_relations_json(f)]
            phantoms = phantom_pairs(p)
            if phantoms is not None:
                entries += [("ct", ct, m) for ct, m in phantoms]
            elif masks_suffix:
                entries += [("ct", ct, m) for ct, m in _ct_pairs(p, masks_suffix)]
            if not entries:
                hint = (f" or CT + <name>{masks_suffix} pairs" if masks_suffix else
                        "; for CTs with masks beside them pass --masks-suffix, e.g. _seg.nii.gz")
                raise FormatError(f"{p}: no relations JSON files{hint}")
            found += entries
        elif p.name.endswith(".json"):
            found.append(("relations", p, None))  # the loader names what is wrong with it
        elif p.name.endswith(NIFTI_SUFFIXES):
            if not masks_suffix:
                raise FormatError(f"{p}: a CT needs its masks: pass --masks-suffix (e.g. _seg.nii.gz) or give "
                                  "its relations JSON from `probe relations`")
            masks = p.parent / (_strip_nifti(p.name) + masks_suffix)
            if not masks.exists():
                raise FileNotFoundError(f"masks for {p} not found: {masks}")
            found.append(("ct", p, masks))
        else:
            raise FormatError(f"{p}: expected a relations .json, a CT .nii.gz (with --masks-suffix) or a folder")
    return found


def load_cases(paths: Iterable[str | Path], masks_suffix: str | None = None, progress: bool = False) -> list[QuestionCase]:
    """Read every case of ``paths``, sorted by case id.

    Raises:
        FileNotFoundError, FormatError: a missing or unreadable input, a relations file of another version,
            an empty case, a case without pairs, two inputs with the same case id.
    """
    from tqdm import tqdm

    entries = discover(paths, masks_suffix)
    cases: list[QuestionCase] = []
    for kind, path, masks in tqdm(entries, desc="cases", unit="case", disable=not progress):
        cases.append(_case_from_relations(path) if kind == "relations" else _case_from_ct(path, masks))
    seen: dict[str, str] = {}
    for c in cases:
        if c.case in seen:
            raise FormatError(f"case id {c.case!r} appears twice: {seen[c.case]} and {c.source}")
        seen[c.case] = c.source
    return sorted(cases, key=lambda c: c.case)


def case_from_graph(graph: RelationGraph, patient: str | None = None, volume_path: str | None = None) -> QuestionCase:
    """A case from a graph in memory (tests, benchmarks); its items carry counterfactual golds for the
    counterfactual graphs it holds (:func:`volprobe.controls.counterfactuals.case_relations`)."""
    check_graph(graph, f"case {graph.case}")
    return QuestionCase(graph, f"<memory:{graph.case}>", patient or graph.case, volume_path,
                        graph.source.get("ct") if graph.source else None)
