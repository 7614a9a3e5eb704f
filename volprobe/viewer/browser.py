"""The item browser's data: which items it shows, their rows under every control, the thumbnails.

Items are sampled per category (``per_category`` items each, drawn with the report's seed; 0 keeps every
item), so a report over thousands of items stays small; every record of a shown item is used. Volumes are
read once per case (items are visited case by case) and each control's input is made once per case.
Thumbnails are small PNGs (``thumbnail_px`` on the longer side, proportions in mm kept), stored once
however many items or models show them, and inlined in ``report.html`` as data URIs.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from volprobe.records import iter_record_dicts
from volprobe.seeding import seed_sequence
from volprobe.viewer.evidence import ItemEvidence, add_planes, item_evidence
from volprobe.viewer.sources import CaseImages, ItemIndex, load_items
from volprobe.viewer.views import OUTLINE_COLOURS, thumbnail_png

#: Items per category shown by default.
DEFAULT_PER_CATEGORY = 12
#: Characters of a raw model output shown in the page (the records keep all of it).
RAW_CHARS = 1500


@dataclass
class BrowserSettings:
    """What the browser shows.

    Attributes:
        per_category: items drawn per category (0: every item).
        seed: the draw's seed (the report's).
        items: items files (default: those the runs' manifests name).
        masks: folders holding each case's masks (see :mod:`volprobe.viewer.sources`).
        thumbnail_px: longer side of a thumbnail, pixels.
    """

    per_category: int = DEFAULT_PER_CATEGORY
    seed: int = 0
    items: Sequence[str | Path] = ()
    masks: Sequence[str | Path] = ()
    thumbnail_px: int = 128

    def describe(self, total: int, shown: int) -> str:
        if self.per_category <= 0 or shown == total:
            return f"all {total:,} items"
        return (f"{shown:,} of {total:,} items: up to {self.per_category} per category, drawn with seed {self.seed} "
                "(probe report --browser-items 0 shows every item)")


@dataclass
class BrowserData:
    """Everything the page's item browser needs (JSON-able via :meth:`to_json`)."""

    items: list[dict[str, Any]]
    thumbnails: dict[str, str]
    models: list[str]
    controls: list[str]
    categories: list[str]
    total_items: int
    sampling: str
    blind: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "thumbnails": self.thumbnails, "models": self.models, "controls": self.controls,
                "categories": self.categories, "total_items": self.total_items, "sampling": self.sampling,
                "blind": self.blind, "notes": self.notes}


def record_files(runs: Sequence[str | Path]) -> list[Path]:
    from volprobe.stats.load import find_record_files

    return [f for run in runs for f in find_record_files(run)]


def scan_records(files: Iterable[Path]) -> tuple[dict[str, str], list[str], list[str]]:
    """item id → category (first record), and the models and controls in order of appearance."""
    categories: dict[str, str] = {}
    models: dict[str, None] = {}
    controls: dict[str, None] = {}
    reference: dict[str, None] = {}
    for path in files:
        for rec in iter_record_dicts(path):
            categories.setdefault(rec["item_id"], str(rec.get("category") or rec.get("task") or "items"))
            models.setdefault(rec["model"])
            controls.setdefault(rec["control"])
            if (rec.get("control_facts") or {}).get("reference"):
                reference.setdefault(rec["control"])
    ordered = list(reference) + [c for c in controls if c not in reference]
    return categories, list(models), ordered


def sample_items(categories: dict[str, str], per_category: int, seed: int) -> list[str]:
    """Up to ``per_category`` item ids per category (all when 0), drawn with ``seed``; in the given order."""
    if per_category <= 0:
        return list(categories)
    by_category: dict[str, list[str]] = {}
    for item_id, category in categories.items():
        by_category.setdefault(category, []).append(item_id)
    chosen: set[str] = set()
    for category, ids in by_category.items():
        if len(ids) <= per_category:
            chosen.update(ids)
            continue
        rng = np.random.default_rng(seed_sequence(seed, "browser", category))
        chosen.update(ids[i] for i in rng.choice(len(ids), per_category, replace=False))
    return [i for i in categories if i in chosen]


def records_of(files: Iterable[Path], item_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Every record of the given items, by item id."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in files:
        for rec in iter_record_dicts(path):
            if rec["item_id"] in item_ids:
                found.setdefault(rec["item_id"], []).append(rec)
    return found


class Thumbnails:
    """PNG thumbnails as data URIs, each stored once (by content)."""

    def __init__(self, px: int):
        self.px = px
        self.uris: dict[str, str] = {}
        self._ids: dict[bytes, str] = {}

    def add(self, data: bytes) -> str:
        """The id of a PNG (stored once by content)."""
        digest = hashlib.sha1(data).digest()
        if digest not in self._ids:
            self._ids[digest] = f"t{len(self._ids)}"
            self.uris[self._ids[digest]] = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        return self._ids[digest]

    @property
    def bytes(self) -> int:
        return sum(len(u) for u in self.uris.values())


def evidence_for(item_ids: Sequence[str], records: dict[str, list[dict[str, Any]]], index: ItemIndex,
                 controls: Sequence[str], masks: Sequence[str | Path] = ()) -> Iterable[tuple[ItemEvidence, Any]]:
    """(:class:`ItemEvidence`, item or None) for each id, case by case: each volume is read once, each control's
    input made once per case (:func:`~volprobe.viewer.evidence.add_planes`)."""
    groups: dict[tuple[str, str], list[str]] = {}
    for item_id in item_ids:
        item = index.items.get(item_id)
        key = (str(index.files[item_id]), item.case_key) if item is not None else ("", item_id)
        groups.setdefault(key, []).append(item_id)
    images: CaseImages | None = None
    try:
        for (path, _), ids in sorted(groups.items()):
            evs = [(item_evidence(i, records[i], index.items.get(i), None, controls), index.items.get(i)) for i in ids]
            if path:
                if images is None or str(images.items_path) != path:
                    if images is not None:
                        images.close()
                    images = CaseImages(index.by_file[Path(path)], Path(path), masks)
                add_planes([(ev, item, records[ev.item_id]) for ev, item in evs], images)
            yield from evs
    finally:
        if images is not None:
            images.close()


def _item_json(ev: ItemEvidence, item, thumbs: Thumbnails) -> dict[str, Any]:
    rows = []
    for row in ev.rows:
        shown = []
        for s in row.shown:
            images = []
            for view in s.views:
                data, (h, w) = thumbnail_png(view, s.window, s.value_range, ev.structures, thumbs.px)
                images.append({"src": thumbs.add(data), "plane": view.plane, "index": view.index,
                               "count": view.count, "h": h, "w": w})
            shown.append({"window": s.window.label, "models": s.models, "note": s.note, "images": images})
        rows.append({"control": row.control, "gold": row.gold, "gold_changed": row.gold_changed,
                     "reference": row.reference, "counterfactual": row.counterfactual, "note": row.note,
                     "shown": shown,
                     "answers": [{"model": a.model, "raw": _clip(a.raw), "parsed": a.parsed, "correct": a.correct,
                                  "error": a.error and a.error.strip().splitlines()[0][:300], "no_image": a.no_image,
                                  "flags": a.flags} for a in row.answers]})
    return {"id": ev.item_id, "category": ev.category, "case": ev.case,
            "patient": item.patient_key if item is not None else None, "question": ev.question,
            "options": ev.options, "gold": ev.gold, "counterfactual": ev.counterfactual,
            "structures": [{"name": n, "colour": OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]}
                           for k, n in enumerate(ev.structures)],
            "notes": ev.notes, "rows": rows}


def _clip(text: str) -> str:
    return text if len(text) <= RAW_CHARS else text[:RAW_CHARS] + " …"


def build_browser(runs: Sequence[str | Path], settings: BrowserSettings | None = None) -> BrowserData:
    """The browser's data for the runs (see the module docstring)."""
    t0 = time.perf_counter()
    settings = settings or BrowserSettings()
    files = record_files(runs)
    categories, models, controls = scan_records(files)
    chosen = sample_items(categories, settings.per_category, settings.seed)
    records = records_of(files, set(chosen))
    index = load_items(runs, settings.items)
    thumbs = Thumbnails(settings.thumbnail_px)
    by_id = {}
    for ev, item in evidence_for(chosen, records, index, controls, settings.masks):
        by_id[ev.item_id] = _item_json(ev, item, thumbs)
    return BrowserData(items=[by_id[i] for i in chosen], thumbnails=thumbs.uris, models=models, controls=controls,
                       categories=sorted(set(categories.values())), total_items=len(categories),
                       sampling=settings.describe(len(categories), len(chosen)), blind=blind_models(records),
                       notes=index.notes, seconds=time.perf_counter() - t0)


def blind_models(records: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """model → how it runs without an image, for the models that read no image in any of these records."""
    modes: dict[str, set] = {}
    for recs in records.values():
        for rec in recs:
            modes.setdefault(rec["model"], set()).add(rec.get("no_image_mode"))
    return {m: next(iter(v)) for m, v in modes.items() if None not in v and len(v) == 1}
