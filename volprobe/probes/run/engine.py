"""The run engine: every item under every control, one RunRecord each, crash-safe and resumable.

Call order for one model (``adapter``) and a list of controls::

    for each case (its items together; volumes cached, each loaded once):
        for each control:  cin = control.apply(volume, item, ctx)        # once per case, or per item
                           prepared = adapter.prepare(cin.volume)        # once per distinct cin.key
        adapter.generate([(prepared, item), ...])                        # batches of --batch-size
        score_output(item with the control's gold, text) -> RunRecord    # appended, flushed, fsync'ed

Records go to ``RUN_DIR/records.jsonl`` (``records.shard-I-of-N.jsonl`` for a shard); pairs a
control cannot run (a counterfactual without transformable gold, ``single_slice:outside`` when
the structures fill every slice) go to ``excluded*.jsonl`` with the reason. Rerunning the same
command resumes: done pairs are skipped, a line torn by a kill is cut, and records that ended in an
error are run again (unless ``retry_errors=False``). See :mod:`volprobe.probes.run.store`.

Each item's volume is its own ``volume_path``; the items of one case must name one volume (the
engine reads each case's volume once), else the run stops before any work, naming both. A volume whose
content hash differs from the one its items were made from (``metadata['volume_sha256']``) stops the
run when it is read (records written so far are kept), unless ``allow_changed_volumes``: then the
records of that case are tagged ``volume_changed``.

The engine sets ``adapter.run_seed`` to the run seed before ``load()``, for adapters that draw
random numbers (the ``random`` reference model).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from volprobe.controls import Control, ControlContext, ControlledInput, ExcludedItem, expand_control_specs, get_control
from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared, hash_bytes
from volprobe.probes.scoring.answers import apply_score, score_output
from volprobe.records import VOLUME_CHANGED, RunRecord
from volprobe.probes.run.volume_cache import VolumeCache, VolumeChangedError, expected_volume_hashes
from volprobe.probes.run.store import (JsonlAppender, RunFiles, RunLock, Shard, assign_shards, read_json, read_keys,
                                      take_out_errors, write_json_atomic)

BLIND_KEY = "<blind model: no image>"


@dataclass
class RunSummary:
    """What one invocation of :func:`run` did (also written to the manifest's ``run.sessions``).

    Attributes:
        expected: (item, control) pairs this run or shard must cover.
        already_done: pairs found on disk at start (records or exclusions) and skipped.
        written: records written now; errors: of those, records with an ``error``.
        retried: records that had ended in an error and were run again now.
        errors_remaining: records in the run (or shard) file that hold an error after this invocation;
            first_error: the message of one of them.
        excluded: control → reason → count, over the whole run folder.
        preparations: ``adapter.prepare`` calls; distinct_inputs: distinct model inputs among them;
            max_preparations_per_input: must be 1 (each (volume, control) input prepared once).
        volumes_loaded: volume reads (each case once unless evicted from the cache); volume_read_s: their time.
        volumes_changed: cases whose volume differs from the one their items were made from (run anyway).
        elapsed_s: wall time of this invocation.
    """

    out_dir: Path
    records_path: Path
    manifest_path: Path
    expected: int = 0
    already_done: int = 0
    written: int = 0
    errors: int = 0
    retried: int = 0
    errors_remaining: int = 0
    first_error: str | None = None
    excluded: dict[str, dict[str, int]] = field(default_factory=dict)
    preparations: int = 0
    distinct_inputs: int = 0
    max_preparations_per_input: int = 0
    volumes_loaded: int = 0
    volume_read_s: float = 0.0
    volumes_changed: int = 0
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}

    def __str__(self) -> str:
        n_excl = sum(sum(r.values()) for r in self.excluded.values())
        lines = [f"run {self.out_dir}: {self.written} records written now ({self.errors} with errors), "
                 f"{self.already_done} already done, {n_excl} excluded, of {self.expected} (item, control) pairs"
                 + (f"; retried {self.retried} that had ended in an error" if self.retried else ""),
                 f"  {self.preparations} input preparations for {self.distinct_inputs} distinct inputs "
                 f"(max {self.max_preparations_per_input} per input), {self.volumes_loaded} volumes read "
                 f"({self.volume_read_s:.1f} s), {self.elapsed_s:.1f} s in all",
                 f"  records: {self.records_path}"]
        if self.volumes_changed:
            lines.append(f"  {self.volumes_changed} case(s) read a volume other than the one their items were made "
                         "from (records tagged volume_changed)")
        for control, reasons in sorted(self.excluded.items()):
            for reason, n in sorted(reasons.items()):
                lines.append(f"  excluded from {control}: {n} ({reason})")
        return "\n".join(lines)


# -- planning --------------------------------------------------------------------------------

@dataclass
class _Unit:
    """One (item, control) pair on its way to a record."""

    item: Item
    control: Control
    gold: str
    cin: ControlledInput | None = None
    prepared: Prepared | None = None
    error: str | None = None


def select_items(items: Sequence[Item], limit: int | None, shard: Shard) -> list[Item]:
    """The first ``limit`` items, then those of the cases assigned to ``shard`` (file order kept)."""
    chosen = list(items[:limit] if limit is not None else items)
    if shard.count == 1:
        return chosen
    sizes = Counter(it.case_key for it in chosen)
    owner = assign_shards(dict(sizes), shard.count)
    return [it for it in chosen if owner[it.case_key] == shard.index]


def items_fingerprint(items: Sequence[Item]) -> str:
    """SHA-256 of the items' JSON (independent of how the file was formatted)."""
    h = hashlib.sha256()
    for it in items:
        h.update(json.dumps(it.to_dict(), sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def case_volumes(items: Sequence[Item], resolve: Callable[[str | None], Path | None]
                 ) -> dict[str, tuple[str | None, str]]:
    """case → (volume path as the items write it, patient), checking that every item of a case names the
    same volume (``resolve`` maps a written path to the file it means; None when the item names none).

    Raises:
        VolprobeError: two items of one case name different volumes (or one names none), naming both.
    """
    first: dict[str, Item] = {}
    same: dict[tuple[str | None, str | None], bool] = {}
    for it in items:
        case = it.case_key
        other = first.setdefault(case, it)
        a, b = other.volume_path, it.volume_path
        if a == b:
            continue
        if (a, b) not in same:
            pa, pb = resolve(a), resolve(b)
            same[(a, b)] = pa is not None and pb is not None and os.path.realpath(pa) == os.path.realpath(pb)
        if not same[(a, b)]:
            raise VolprobeError(
                f"case {case!r}: item {other.id!r} names the volume {a!r} and item {it.id!r} names {b!r}; "
                "the items of one case must name one volume (fix the paths, or give the items different cases)")
    return {case: (it.volume_path, it.patient_key) for case, it in first.items()}


def _group_by_case(items: Sequence[Item]) -> list[tuple[str, list[Item]]]:
    groups: dict[str, list[Item]] = {}
    for it in items:
        groups.setdefault(it.case_key, []).append(it)
    return list(groups.items())


# -- the run ---------------------------------------------------------------------------------

def run(items: Sequence[Item], model: ModelAdapter, controls: Sequence[Control | str], out_dir: str | Path, *,
        seed: int = 0, batch_size: int = 1, limit: int | None = None, shard: str | Shard | None = None,
        model_label: str | None = None, items_path: str | Path | None = None, base_dir: str | Path | None = None,
        progress: bool = True, volume_cache: int = 4, command: str = "probe run",
        settings: dict[str, Any] | None = None, retry_errors: bool = True,
        volume_reader: Callable | None = None, ray: Any = None,
        allow_changed_volumes: bool = False) -> RunSummary:
    """Answer every item under every control with ``model``; append one RunRecord per pair.

    Args:
        items: all items of the items file (``limit`` and ``shard`` select from them; ``swapped_volume``
            draws from all their cases, so shards agree with an unsharded run).
        model: an adapter (not yet loaded: the engine calls ``load()`` when there is work).
        controls: Control objects or specs (``"single_slice:evidence"``); labels must be distinct.
        out_dir: the run folder; rerunning with the same settings resumes.
        seed: run seed (control seeds derive from it; recorded everywhere).
        batch_size: items per ``adapter.generate`` call.
        limit: only the first ``limit`` items of the file.
        shard: ``"i/N"``: this process runs the cases assigned to shard i of N (0-based).
        model_label: the ``model`` field of the records (default: the adapter's name).
        items_path: the items file, hashed into the manifest.
        base_dir: folder against which relative volume paths are resolved when not found as given
            (default: the items file's folder).
        volume_cache: how many volumes to keep in memory.
        settings: extra settings to record in the manifest (device, dtype, model options ...).
        retry_errors: on resume, run again the pairs whose records ended in an error (they move to
            ``retried*.jsonl``); False keeps them.
        volume_reader: ``read(path, case, patient) -> Volume`` used instead of ``load_volume`` (CT-RATE metadata).
        ray: a :class:`~volprobe.probes.run.distributed.RayOptions`: spread the work over Ray workers;
            records, resume and retry as in one process.
        allow_changed_volumes: run items whose volume differs from the one they were made from (their
            records tagged ``volume_changed``) instead of stopping.

    Raises:
        VolprobeError: bad arguments; items of one case naming different volumes; the folder holds a
            different run; another process writes it.
        VolumeChangedError: a volume read is not the one its items were made from (unless
            ``allow_changed_volumes``).
    """
    t_start = time.perf_counter()
    if batch_size < 1:
        raise VolprobeError(f"--batch-size must be at least 1 (got {batch_size})")
    if limit is not None and limit < 0:
        raise VolprobeError(f"--limit must be >= 0 (got {limit})")
    shard = Shard.parse(shard)
    controls = [get_control(c) if isinstance(c, str) else c for c in controls]
    labels = [c.label for c in controls]
    if not controls:
        raise VolprobeError("no control given (e.g. --control full --control text_only)")
    if len(set(labels)) != len(labels):
        raise VolprobeError(f"controls given twice: {sorted(l for l in set(labels) if labels.count(l) > 1)}")
    label = model_label or model.name or type(model).__name__
    out_dir = Path(out_dir)
    files = RunFiles(out_dir, shard)
    base = Path(base_dir) if base_dir is not None else (Path(items_path).parent if items_path else None)

    paths = case_volumes(items, lambda raw: VolumeCache.resolve_path(raw, base))
    volumes = VolumeCache(paths, base, volume_cache, read=volume_reader, expected=expected_volume_hashes(items),
                          allow_changed=allow_changed_volumes)
    ctx = ControlContext(seed=seed, load_case=volumes.get, cases={
        c: p for c, (vp, p) in paths.items() if c and vp is not None and volumes.resolve(c).exists()})
    if model.uses_image:
        for c in controls:
            if c.needs_volume:
                c.check(ctx)

    chosen = select_items(items, limit, shard)
    identity = {"model": label, "adapter": model.name, "model_path": model.path,
                "items_sha256": items_fingerprint(items), "controls": [c.describe() for c in controls],
                "seed": seed, "limit": limit, "shard_count": shard.count}
    out_dir.mkdir(parents=True, exist_ok=True)
    with RunLock(files.lock):
        state = _open_run(files, identity, shard, [it.id for it in chosen], labels, label, command, items_path,
                          seed, settings or {})
        summary = RunSummary(out_dir, files.records, files.manifest)
        summary.expected = len(chosen) * len(controls)
        kept = take_out_errors(files.records, files.retried, keep=not retry_errors)
        summary.retried = kept.count if retry_errors else 0
        try:
            with JsonlAppender(files.records) as rec_out, JsonlAppender(files.excluded) as excl_out:
                done = set(read_keys(files.records)) | set(read_keys(files.excluded))
                summary.already_done = len(done)
                if ray is None:
                    engine = _Engine(model, label, controls, ctx, volumes, seed, batch_size, rec_out, excl_out,
                                     summary)
                    engine.run(_group_by_case(chosen), done, progress)
                else:
                    engine = ray.execute(model=model, label=label, controls=controls, seed=seed,
                                         batch_size=batch_size, paths=paths, base_dir=base, cases=dict(ctx.cases),
                                         groups=_group_by_case(chosen), done=done, rec_out=rec_out,
                                         excl_out=excl_out, summary=summary, progress=progress,
                                         volume_reader=volume_reader)
        finally:
            volumes.close()
        summary.errors_remaining = summary.errors + (0 if retry_errors else kept.count)
        summary.first_error = engine.first_error or kept.first
        summary.excluded = _exclusion_counts(files.excluded)
        if ray is None:
            summary.volumes_loaded = volumes.loaded
            summary.volume_read_s = round(volumes.read_s, 3)
            summary.volumes_changed = len(volumes.changed)
        summary.elapsed_s = round(time.perf_counter() - t_start, 3)
        _close_run(files, state, summary, engine)
    return summary


def _open_run(files: RunFiles, identity: dict[str, Any], shard: Shard, item_ids: list[str], labels: list[str],
              model_label: str, command: str, items_path: str | Path | None, seed: int,
              settings: dict[str, Any]) -> dict[str, Any]:
    """Check a resumed run is the same run; write the manifest (status 'running') before any record."""
    from volprobe.manifest import build_manifest

    sessions: list[dict[str, Any]] = []
    if files.manifest.exists():
        old = read_json(files.manifest).get("run", {})
        if old.get("identity") != identity or old.get("shard") != str(shard):
            diff = sorted(k for k in identity if identity.get(k) != old.get("identity", {}).get(k))
            raise VolprobeError(f"{files.out_dir} holds a different run (differs in: {', '.join(diff) or 'shard'}); "
                                "rerun with the same settings to resume, or use a new --out")
        sessions = old.get("sessions", [])
    elif files.records.exists() and files.records.stat().st_size > 0:
        raise VolprobeError(f"{files.records} exists without {files.manifest.name}; use a new --out")
    run_section = {"identity": identity, "shard": str(shard), "status": "running",
                   "files": {"records": files.records.name, "excluded": files.excluded.name},
                   "expected": {"model": model_label, "controls": labels, "items": item_ids},
                   "settings": settings, "sessions": sessions}
    manifest = build_manifest(command, inputs=[items_path] if items_path else [], seed=seed,
                              parameters={"model": model_label, "controls": labels, "shard": str(shard),
                                          **settings},
                              extra={"run": run_section})
    write_json_atomic(files.manifest, manifest)
    return manifest


def _close_run(files: RunFiles, manifest: dict[str, Any], summary: RunSummary, engine) -> None:
    """Record this session (the local engine or the Ray driver's result) and mark the run complete."""
    run_section = manifest["run"]
    session = {**summary.as_dict(), "model_revision": engine.revision, "generation": engine.generation,
               "no_image_mode": engine.model.no_image_mode}
    if hasattr(engine, "per_worker"):
        session["ray"] = {"workers": engine.workers, "restarts": engine.restarts, "units_resent": engine.resent,
                          "per_worker": {str(w): v for w, v in engine.per_worker.items()}}
    run_section["sessions"].append(session)
    run_section["status"] = "complete"
    run_section["exclusions"] = summary.excluded
    run_section["preparations"] = summary.preparations
    write_json_atomic(files.manifest, manifest)


def _exclusion_counts(path: Path) -> dict[str, dict[str, int]]:
    from volprobe.records import iter_record_dicts

    counts: dict[str, dict[str, int]] = {}
    if path.exists():
        for d in iter_record_dicts(path):
            per = counts.setdefault(d["control"], {})
            per[d["reason"]] = per.get(d["reason"], 0) + 1
    return counts


class _Engine:
    """The loop of one invocation: units (item, control) → batches → records."""

    def __init__(self, model: ModelAdapter, label: str, controls: list[Control], ctx: ControlContext,
                 volumes: VolumeCache, seed: int, batch_size: int, rec_out: JsonlAppender,
                 excl_out: JsonlAppender, summary: RunSummary):
        self.model, self.label, self.controls, self.ctx = model, label, controls, ctx
        self.volumes, self.seed, self.batch_size = volumes, seed, batch_size
        self.rec_out, self.excl_out, self.summary = rec_out, excl_out, summary
        self.facts = {c.label: c.facts() for c in controls}
        self.prep_counts: Counter[str] = Counter()
        self.loaded = False
        self.revision: str | None = None
        self.generation: dict[str, Any] = {}
        self._shared_prepared: dict[str, Prepared | Exception] = {}
        self.first_error: str | None = None

    # -- driver -----------------------------------------------------------------------------
    def run(self, groups: list[tuple[str, list[Item]]], done: set, progress: bool) -> None:
        from tqdm.auto import tqdm

        work, exclusions = self._plan(groups, done)
        self.excl_out.write(exclusions)  # every gold-based exclusion, before any model work
        total = sum(len(p) for _, p in work)
        bar = tqdm(total=total, unit="item", desc=f"{self.label}", disable=not progress or total == 0,
                   dynamic_ncols=True, smoothing=0.05)
        batch: list[_Unit] = []
        try:
            for unit in self._units(work, bar):
                if unit.error is not None:
                    self._write([self._record(unit, None, None)], bar)
                    continue
                batch.append(unit)
                if len(batch) >= self.batch_size:
                    self._write(self._generate(batch), bar)
                    batch = []
            if batch:
                self._write(self._generate(batch), bar)
        finally:
            bar.close()
        self.summary.preparations = sum(self.prep_counts.values())
        self.summary.distinct_inputs = len(self.prep_counts)
        self.summary.max_preparations_per_input = max(self.prep_counts.values(), default=0)

    def _plan(self, groups: list[tuple[str, list[Item]]], done: set
              ) -> tuple[list[tuple[str, list[_Unit]]], list[dict[str, str]]]:
        """Pending units per case (control-major, so a case's inputs are used one after another), and
        the exclusions decided by the gold alone. Raises on a malformed counterfactual before any work."""
        work, exclusions = [], []
        for case, group in groups:
            pending = []
            for control in self.controls:
                for item in group:
                    if (self.label, control.label, item.id) in done:
                        continue
                    try:
                        pending.append(_Unit(item, control, control.gold(item)))
                    except ExcludedItem as exc:
                        exclusions.append(self._exclusion(item, control, exc.reason))
            if pending:
                work.append((case, pending))
        return work, exclusions

    def _write(self, records: list[RunRecord], bar) -> None:
        self.rec_out.write(r.to_dict() for r in records)
        self.summary.written += len(records)
        errors = [r.error for r in records if r.error is not None]
        if errors:
            self.summary.errors += len(errors)
            self.first_error = self.first_error or errors[0]
        bar.update(len(records))

    def _ensure_loaded(self) -> None:
        if not self.loaded:
            self.model.run_seed = self.seed
            self.model.load()
            self.loaded = True
            self.revision = self.model.revision
            self.generation = dict(self.model.generation_settings)

    # -- units --------------------------------------------------------------------------------
    def _units(self, work: list[tuple[str, list[_Unit]]], bar) -> Iterator[_Unit]:
        reads = [(case, pending) for case, pending in work
                 if self.model.uses_image and any(u.control.needs_volume for u in pending)]
        following = {case: reads[n + 1] for n, (case, _) in enumerate(reads[:-1])}
        if reads:
            self._read_ahead(*reads[0])
        for case, pending in work:
            if case in following:
                self._read_ahead(*following[case])  # the next case's volumes, while this one generates
            prepared: dict[str, Prepared | Exception] = {}  # this case's model inputs, dropped after it
            current: dict[str, ControlledInput | Exception] = {}  # the current control's input for this case
            for unit in pending:
                try:
                    cin = self._controlled(case, unit.item, unit.control, current)
                except ExcludedItem as exc:
                    self.excl_out.write([self._exclusion(unit.item, unit.control, exc.reason)])
                    bar.update(1)
                    continue
                except VolumeChangedError:
                    raise  # stale items: the run stops (records so far kept)
                except Exception as exc:  # missing volume, failing control: recorded, run goes on
                    unit.error = _describe(exc)
                    yield unit
                    continue
                found = self._prepare(cin, prepared)
                unit.cin = dataclasses.replace(cin, volume=None)  # the volume is not needed past prepare
                if isinstance(found, Exception):
                    unit.error = f"prepare failed: {_describe(found)}"
                else:
                    unit.prepared = found
                yield unit

    def _read_ahead(self, case: str, pending: list[_Unit]) -> None:
        self.volumes.prefetch(case)
        first = {u.control.label: u for u in reversed(pending) if u.control.needs_volume}
        for unit in first.values():
            for other in unit.control.other_cases(unit.item, self.ctx):
                self.volumes.prefetch(other)

    def _controlled(self, case: str, item: Item, control: Control,
                    current: dict[str, ControlledInput | Exception]) -> ControlledInput:
        """The control's input for the item (computed once per case unless the control is item-dependent)."""
        if not self.model.uses_image:
            return ControlledInput(None, BLIND_KEY)
        if not control.needs_volume:
            return control.apply(None, item, self.ctx)
        if control.item_dependent or control.label not in current:
            try:
                found: ControlledInput | Exception = control.apply(self.volumes.get(case), item, self.ctx)
            except (ExcludedItem, VolumeChangedError):
                raise
            except Exception as exc:
                found = exc
            if control.item_dependent:
                return _raise_or_return(found)
            current.clear()  # units are control-major: the previous control's volume is done with
            current[control.label] = found
        return _raise_or_return(current[control.label])

    def _prepare(self, cin: ControlledInput, per_case: dict[str, Prepared | Exception]) -> Prepared | Exception:
        """``adapter.prepare`` once per input key (inputs without a volume are shared by the whole run)."""
        cache = self._shared_prepared if cin.volume is None else per_case
        if cin.key not in cache:
            self._ensure_loaded()
            self.prep_counts[cin.key] += 1
            try:
                cache[cin.key] = self.model.prepare(cin.volume)
            except Exception as exc:
                cache[cin.key] = exc
        return cache[cin.key]

    def _exclusion(self, item: Item, control: Control, reason: str) -> dict[str, str]:
        return {"item_id": item.id, "model": self.label, "control": control.label, "reason": reason}

    # -- generation ---------------------------------------------------------------------------
    def _generate(self, batch: list[_Unit]) -> list[RunRecord]:
        self._ensure_loaded()
        t0 = time.perf_counter()
        try:
            outs: list[Generation | Exception] = list(self.model.generate([(u.prepared, u.item) for u in batch]))
            if len(outs) != len(batch):
                raise RuntimeError(f"adapter returned {len(outs)} generations for a batch of {len(batch)}")
            share = (time.perf_counter() - t0) / len(batch)
            return [self._record(u, g, share) for u, g in zip(batch, outs)]
        except Exception as exc:
            if len(batch) == 1:
                return [self._record(batch[0], exc, time.perf_counter() - t0)]
        return [rec for u in batch for rec in self._generate([u])]  # only the failing item gets the error

    def _record(self, unit: _Unit, out: Generation | Exception | None, latency: float | None) -> RunRecord:
        item, control, cin = unit.item, unit.control, unit.cin
        prepared = unit.prepared
        rec = RunRecord.for_item(
            item, model=self.label, control=control.label, gold=unit.gold, control_facts=self.facts[control.label],
            control_seed=cin.seed if cin else None, control_params=dict(cin.params) if cin else {},
            model_revision=self.revision,
            no_image_mode=self.model.no_image_mode if prepared is not None and prepared.no_image else None,
            latency_s=None if latency is None else round(latency, 6), generation=self.generation, seed=self.seed,
            error=unit.error)
        if item.case_key in self.volumes.changed:
            rec.tags.append(VOLUME_CHANGED)
        try:
            rec.prompt = self.model.prompt(item)
        except Exception as exc:
            rec.error = rec.error or f"prompt failed: {_describe(exc)}"
        if prepared is not None:
            rec.input_hash = hash_bytes(prepared.input_hash, rec.prompt)
        if isinstance(out, Exception):
            rec.error = f"generate failed: {_describe(out)}"
        elif out is not None and rec.error is None:
            rec.raw_output = out.text
            try:
                self._score(rec, item, unit.gold, out)
            except Exception as exc:
                rec.error = f"scoring failed: {_describe(exc)}"
        return rec

    @staticmethod
    def _score(rec: RunRecord, item: Item, gold: str, out: Generation) -> None:
        scored_item = item if gold == item.answer else dataclasses.replace(item, answer=gold)
        score = score_output(scored_item, out.text)
        if out.refused:  # the adapter saw a refusal (e.g. its own no-image message): outcomes stay exclusive
            rec.scores = dict(score.scores or {})
            rec.refused = True
            return
        apply_score(rec, score)


def _raise_or_return(found: ControlledInput | Exception) -> ControlledInput:
    if isinstance(found, Exception):
        raise found
    return found


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- from files (the CLI) ----------------------------------------------------------------------

def run_from_files(model_spec: str, items_path: str | Path, control_specs: Sequence[str], out_dir: str | Path, *,
                   device: str = "cpu", dtype: str = "auto", single_slice: str | None = None,
                   model_options: dict[str, Any] | None = None, label: str | None = None,
                   loader: Callable[..., ModelAdapter] | None = None, ctrate_metadata: str | Path | None = None,
                   **kwargs: Any) -> RunSummary:
    """``probe run``: read the items, build the model and controls, :func:`run`. Volumes are read through
    CT-RATE's metadata (``ctrate_metadata`` CSV, or the rows the items carry) when there is any."""
    from volprobe.items import read_items
    from volprobe.probes.datasets.ctrate import volume_reader_for
    from volprobe.probes.models.base import load_model

    items = read_items(items_path)
    if not items:
        raise VolprobeError(f"{items_path}: no items")
    controls = [get_control(spec, mode=single_slice) for spec in expand_control_specs(control_specs)]
    model = (loader or load_model)(model_spec, device=device, dtype=dtype, **(model_options or {}))
    settings = {"model_spec": model_spec, "device": device, "dtype": dtype, "batch_size": kwargs.get("batch_size", 1),
                "model_options": dict(model_options or {})}
    reader = volume_reader_for(items, ctrate_metadata)
    if ctrate_metadata is not None:
        settings["ctrate_metadata"] = str(ctrate_metadata)
    if kwargs.get("ray") is not None:
        settings["ray"] = kwargs["ray"].describe()
    return run(items, model, controls, out_dir, model_label=label or model_spec, items_path=items_path,
               settings=settings, volume_reader=reader, **kwargs)
