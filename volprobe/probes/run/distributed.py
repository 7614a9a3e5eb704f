"""``probe run --ray``: one run spread over Ray workers (the GPUs of one machine, or a cluster).

The driver (the ``probe run`` process) keeps everything that makes a run trustworthy: the run folder,
its lock, the identity check, resume and retry (:func:`volprobe.probes.run.engine.run`). It sends the
workers **units** of work — one case under one control, with all of that case's pending items — and
appends the records each unit returns, exactly as a one-process run would write them. Each worker is
a Ray actor holding one copy of the model (loaded once) and runs the same engine code on its unit, so
each (volume, control) input is prepared once and every record is the one a single process would make
(timings aside).

Scheduling: a worker keeps to one case while it has units left there (its volume is read once per
worker), then takes the next untouched case; when none is left it helps with the units of other
cases. At most :data:`IN_FLIGHT` units wait at each worker. A worker that dies (out of memory, a
crashed node, a killed process) is restarted by Ray up to ``max_restarts`` times; the units it held
are sent again (to it or another worker). Units are written only when complete, so nothing is written
twice. The run fails only when every worker is gone.

Workers need the items' volumes at the same paths (a shared filesystem on a cluster) and the same
Python environment. ``--device cuda`` on a worker means the GPU(s) Ray gave it (``--gpus-per-worker``).
"""

from __future__ import annotations

import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from volprobe.controls import Control, ControlContext
from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.probes.models.base import ModelAdapter
from volprobe.probes.run.engine import RunSummary, _Engine
from volprobe.probes.run.volume_cache import VolumeCache

#: Units waiting at one worker (one running, one queued so the worker never idles on the driver).
IN_FLIGHT = 2


@dataclass(frozen=True)
class RayOptions:
    """How a run uses Ray.

    Attributes:
        address: ``None`` or ``"local"``: start a Ray instance on this machine (every GPU, or CPU slots);
            else the address of a running cluster (``ray start --head`` prints it; ``auto`` finds it).
        workers: number of workers (default: one per GPU, else one per 1 CPU slot, at least 1).
        gpus_per_worker: GPUs each worker holds (0 for CPU models).
        cpus_per_worker: CPU slots each worker holds.
        max_restarts: how often Ray restarts a worker that died.
    """

    address: str | None = None
    workers: int | None = None
    gpus_per_worker: float = 0.0
    cpus_per_worker: float = 1.0
    max_restarts: int = 3

    def describe(self) -> dict[str, Any]:
        return {"address": self.address or "local", "workers": self.workers, "gpus_per_worker": self.gpus_per_worker,
                "cpus_per_worker": self.cpus_per_worker, "max_restarts": self.max_restarts}

    def execute(self, **kwargs: Any) -> "DistributedResult":
        """The engine's hook: :func:`run_on_ray` with these options."""
        return run_on_ray(self, **kwargs)


class _Collect:
    """An appender that keeps what is written (the worker returns it to the driver)."""

    def __init__(self) -> None:
        self.lines: list[dict] = []

    def write(self, objects) -> int:
        before = len(self.lines)
        self.lines.extend(objects)
        return len(self.lines) - before


class Worker:
    """What runs inside one Ray actor: the model (loaded on first use, once) and the engine for one unit
    at a time. Plain class; :func:`run_on_ray` wraps it with ``ray.remote``."""

    def __init__(self, model: ModelAdapter, label: str, controls: Sequence[Control], seed: int, batch_size: int,
                 paths: dict[str, tuple[str | None, str]], base_dir: str | None, cases: dict[str, str],
                 volume_reader=None, expected_volumes=None, allow_changed_volumes: bool = False,
                 volume_cache: int = 4):
        self.volumes = VolumeCache(paths, Path(base_dir) if base_dir else None, volume_cache, read_ahead=False,
                                   read=volume_reader, expected=expected_volumes, allow_changed=allow_changed_volumes)
        ctx = ControlContext(seed=seed, load_case=self.volumes.get, cases=cases)
        self.controls = {c.label: c for c in controls}
        self.summary = RunSummary(Path("."), Path("."), Path("."))
        self.engine = _Engine(model, label, list(controls), ctx, self.volumes, seed, batch_size, _Collect(),
                              _Collect(), self.summary)

    def run_unit(self, case: str, control: str, items: list[dict]) -> dict[str, Any]:
        """Answer ``items`` (all of one case) under one control; returns the records, the exclusions and
        what the driver reports (preparations per input key, the model's revision and settings)."""
        t0 = time.perf_counter()
        engine = self.engine
        prepared, loaded, read_s = Counter(engine.prep_counts), self.volumes.loaded, self.volumes.read_s
        engine.controls = [self.controls[control]]
        engine.rec_out, engine.excl_out = _Collect(), _Collect()
        engine.run([(case, [Item.from_dict(d) for d in items])], set(), progress=False)
        return {"records": engine.rec_out.lines, "excluded": engine.excl_out.lines,
                "preparations": dict(engine.prep_counts - prepared), "revision": engine.revision,
                "generation": engine.generation, "seconds": time.perf_counter() - t0,
                "volumes_loaded": self.volumes.loaded - loaded, "volume_read_s": self.volumes.read_s - read_s,
                "volumes_changed": sorted(self.volumes.changed)}

    def ping(self) -> bool:
        return True


@dataclass
class _Unit:
    case: str
    control: str
    items: list[dict]


@dataclass
class DistributedResult:
    """What the driver learnt from the workers (stands in for the local engine in the run's bookkeeping)."""

    model: ModelAdapter
    revision: str | None = None
    generation: dict[str, Any] = field(default_factory=dict)
    first_error: str | None = None
    preparations: Counter = field(default_factory=Counter)
    workers: int = 0
    restarts: int = 0
    resent: int = 0
    per_worker: dict[int, dict[str, float]] = field(default_factory=dict)


class _Scheduler:
    """Which unit a worker takes next: its current case first, then an untouched case, then any."""

    def __init__(self, units: Sequence[_Unit]):
        self.by_case: OrderedDict[str, deque[_Unit]] = OrderedDict()
        for u in units:
            self.by_case.setdefault(u.case, deque()).append(u)
        self.untouched: deque[str] = deque(self.by_case)
        self.current: dict[int, str | None] = {}

    def __bool__(self) -> bool:
        return any(self.by_case.values())

    def next_for(self, worker: int) -> _Unit | None:
        case = self.current.get(worker)
        if case is None or not self.by_case.get(case):
            case = None
            while self.untouched:
                candidate = self.untouched.popleft()
                if self.by_case.get(candidate):
                    case = candidate
                    break
            if case is None:  # nothing untouched: help with the case that has most units left
                left = [(len(q), c) for c, q in self.by_case.items() if q]
                if not left:
                    return None
                case = max(left)[1]
            self.current[worker] = case
        return self.by_case[case].popleft()

    def give_back(self, unit: _Unit) -> None:
        self.by_case.setdefault(unit.case, deque()).appendleft(unit)


def plan_units(groups: Sequence[tuple[str, list[Item]]], controls: Sequence[Control], label: str,
               done: set) -> list[_Unit]:
    """One unit per (case, control) with the case's items not done yet (file order kept)."""
    units = []
    for case, items in groups:
        for control in controls:
            pending = [it.to_dict() for it in items if (label, control.label, it.id) not in done]
            if pending:
                units.append(_Unit(case, control.label, pending))
    return units


def _init_ray(options: RayOptions):
    try:
        import ray
    except ImportError as exc:
        raise VolprobeError("--ray needs Ray: pip install 'volprobe[ray]' (or pip install ray)") from exc
    if not ray.is_initialized():
        address = None if options.address in (None, "local") else options.address
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "logging_level": "ERROR"}
        try:
            ray.init(address=address, **kwargs)
        except ConnectionError as exc:
            raise VolprobeError(f"--ray {options.address}: no Ray cluster there ({exc}); start one with "
                                "`ray start --head` or leave the address out for a local one") from exc
    return ray


def _worker_count(ray, options: RayOptions) -> int:
    if options.workers is not None:
        if options.workers < 1:
            raise VolprobeError(f"--workers must be at least 1 (got {options.workers})")
        return options.workers
    resources = ray.cluster_resources()
    if options.gpus_per_worker > 0:
        n = int(resources.get("GPU", 0) // options.gpus_per_worker)
        if n < 1:
            raise VolprobeError(f"--gpus-per-worker {options.gpus_per_worker:g}: the Ray cluster has "
                                f"{resources.get('GPU', 0):g} GPU(s)")
        return n
    return max(1, int(resources.get("CPU", 1) // max(options.cpus_per_worker, 1e-9)))


def run_on_ray(options: RayOptions, *, model: ModelAdapter, label: str, controls: Sequence[Control], seed: int,
               batch_size: int, paths: dict[str, tuple[str | None, str]], base_dir: Path | None,
               cases: dict[str, str], groups: Sequence[tuple[str, list[Item]]], done: set, rec_out, excl_out,
               summary, progress: bool, volume_reader=None, expected_volumes=None,
               allow_changed_volumes: bool = False) -> DistributedResult:
    """Answer every pending (item, control) pair on Ray workers, appending records through ``rec_out`` and
    exclusions through ``excl_out`` as units complete (see the module docstring)."""
    from tqdm.auto import tqdm

    ray = _init_ray(options)
    from ray.exceptions import ActorUnavailableError, RayActorError, RayTaskError

    units = plan_units(groups, controls, label, done)
    result = DistributedResult(model=model)
    total = sum(len(u.items) for u in units)
    if not units:
        return result
    n = min(_worker_count(ray, options), len({u.case for u in units}) * len(controls))
    remote = ray.remote(num_cpus=options.cpus_per_worker, num_gpus=options.gpus_per_worker,
                        max_restarts=options.max_restarts)(Worker)
    actors = {w: remote.remote(model, label, list(controls), seed, batch_size, paths,
                               str(base_dir) if base_dir else None, cases, volume_reader, expected_volumes,
                               allow_changed_volumes) for w in range(n)}
    result.workers = n
    scheduler = _Scheduler(units)
    inflight: dict[Any, tuple[int, _Unit]] = {}
    load = Counter()
    failures = Counter()
    changed: set[str] = set()
    done_items = {w: 0 for w in actors}
    started = time.perf_counter()
    bar = tqdm(total=total, unit="item", desc=f"{label} (ray, {n} workers)", disable=not progress,
               dynamic_ncols=True, smoothing=0.05)

    def submit(w: int) -> None:
        while load[w] < IN_FLIGHT:
            unit = scheduler.next_for(w)
            if unit is None:
                return
            inflight[actors[w].run_unit.remote(unit.case, unit.control, unit.items)] = (w, unit)
            load[w] += 1

    try:
        for w in actors:
            submit(w)
        while inflight:
            ready, _ = ray.wait(list(inflight), num_returns=1)
            ref = ready[0]
            w, unit = inflight.pop(ref)
            load[w] -= 1
            try:
                out = ray.get(ref)
            except RayTaskError as exc:  # the unit itself failed (e.g. its volume changed): as in one process
                cause = exc.cause if isinstance(getattr(exc, "cause", None), BaseException) else exc
                raise cause from None
            except (ActorUnavailableError, RayActorError) as exc:
                failures[w] += 1
                result.resent += 1
                scheduler.give_back(unit)  # sent again, to this worker once Ray restarted it, or another
                if failures[w] > options.max_restarts:
                    actors.pop(w, None)
                    if not actors:
                        raise VolprobeError(f"every Ray worker died (last: {type(exc).__name__}: {exc}); the "
                                            "records written so far are kept: rerun to resume") from exc
                else:
                    result.restarts += 1
                for other in list(actors):
                    submit(other)
                continue
            rec_out.write(out["records"])
            excl_out.write(out["excluded"])
            errors = [r["error"] for r in out["records"] if r.get("error")]
            summary.written += len(out["records"])
            summary.errors += len(errors)
            result.first_error = result.first_error or (errors[0] if errors else None)
            result.preparations.update(out["preparations"])
            info = result.per_worker.setdefault(w, {"items": 0, "seconds": 0.0, "volumes_loaded": 0,
                                                    "volume_read_s": 0.0})
            info["items"] += len(out["records"]) + len(out["excluded"])
            info["seconds"] += out["seconds"]
            info["volumes_loaded"] += out["volumes_loaded"]
            info["volume_read_s"] += out["volume_read_s"]
            changed |= set(out["volumes_changed"])
            result.revision = result.revision or out["revision"]
            result.generation = result.generation or out["generation"]
            done_items[w] += len(unit.items)
            bar.update(len(unit.items))
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix_str(" ".join(f"w{k} {v / elapsed:.1f}/s" for k, v in sorted(done_items.items())))
            if w in actors:
                submit(w)
    finally:
        bar.close()
        for actor in actors.values():
            ray.kill(actor)
    summary.preparations = sum(result.preparations.values())
    summary.distinct_inputs = len(result.preparations)
    summary.max_preparations_per_input = max(result.preparations.values(), default=0)
    summary.volumes_loaded = int(sum(i.get("volumes_loaded", 0) for i in result.per_worker.values()))
    summary.volume_read_s = round(sum(i.get("volume_read_s", 0.0) for i in result.per_worker.values()), 3)
    summary.volumes_changed = len(changed)
    return result
