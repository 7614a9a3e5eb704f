"""Run folders on disk: crash-safe appending, resuming, sharding and merging.

Layout of a run folder (``SUFFIX`` is empty, or ``.shard-I-of-N`` for shard I of N)::

    RUN_DIR/records{SUFFIX}.jsonl    one RunRecord per (item, control, model), appended as produced
    RUN_DIR/excluded{SUFFIX}.jsonl   {"item_id", "model", "control", "reason"} per excluded pair
    RUN_DIR/manifest{SUFFIX}.json    settings, seed, versions, the expected (item, control) set, counts
    RUN_DIR/retried{SUFFIX}.jsonl    records that had ended in an error and were run again on resume

Appends are written whole lines at a time, then flushed and fsync'ed per batch; a line torn by
a kill is cut off before the next append, so every pair is on disk exactly once or not at all.
Records that ended in an error are moved to the retried file (appended first, then the records
file is replaced atomically) so that a resumed run does them again.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from volprobe.errors import FormatError, VolprobeError
from volprobe.fileio import atomic_output
from volprobe.jsonio import json_default, parse_json_object, read_json, write_json_atomic
from volprobe.outputs import RUN_MANIFEST, check_outputs
from volprobe.records import RunRecord, iter_record_dicts, iter_record_lines

Key = tuple[str, str, str]  # (model, control, item_id), as RunRecord.key



class IncompleteRunError(VolprobeError):
    """A merge found missing, duplicated or unexpected (item, control) pairs, or a missing shard."""


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based): ``--shard 0/4`` ... ``--shard 3/4``."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise VolprobeError(f"invalid shard {self.index}/{self.count}: need 0 <= i < N (0-based, e.g. 0/4 .. 3/4)")

    @classmethod
    def parse(cls, spec: "str | Shard | None") -> "Shard":
        if spec is None:
            return cls()
        if isinstance(spec, Shard):
            return spec
        m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", spec)
        if not m:
            raise VolprobeError(f"--shard {spec!r}: expected I/N, e.g. 0/4 (shards are numbered 0..N-1)")
        return cls(int(m.group(1)), int(m.group(2)))

    @property
    def suffix(self) -> str:
        return "" if self.count == 1 else f".shard-{self.index}-of-{self.count}"

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class RunFiles:
    """The three files of one run (or one shard) in ``out_dir``."""

    out_dir: Path
    shard: Shard

    @property
    def records(self) -> Path:
        return self.out_dir / f"records{self.shard.suffix}.jsonl"

    @property
    def excluded(self) -> Path:
        return self.out_dir / f"excluded{self.shard.suffix}.jsonl"

    @property
    def manifest(self) -> Path:
        return self.out_dir / f"manifest{self.shard.suffix}.json"

    @property
    def lock(self) -> Path:
        return self.out_dir / f".lock{self.shard.suffix}"

    @property
    def retried(self) -> Path:
        return self.out_dir / f"retried{self.shard.suffix}.jsonl"


def assign_shards(group_sizes: dict[str, int], count: int) -> dict[str, int]:
    """Deterministic balanced split of groups (cases) over ``count`` shards.

    Groups are taken largest first (ties by name) and each goes to the shard with the fewest
    items so far (ties: lowest index), so a case's items stay together.
    """
    loads = [0] * count
    out: dict[str, int] = {}
    for name in sorted(group_sizes, key=lambda g: (-group_sizes[g], g)):
        target = min(range(count), key=lambda s: (loads[s], s))
        out[name] = target
        loads[target] += group_sizes[name]
    return out


# -- appending -------------------------------------------------------------------------------

def cut_torn_tail(path: Path) -> int:
    """Truncate ``path`` after its last newline (a line torn by a kill); returns the bytes removed."""
    if not path.exists():
        return 0
    with open(path, "rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos = size
        block = 1 << 16
        while pos > 0:
            start = max(0, pos - block)
            fh.seek(start)
            chunk = fh.read(pos - start)
            nl = chunk.rfind(b"\n")
            if nl >= 0:
                keep = start + nl + 1
                break
            pos = start
        else:
            keep = 0
        if keep < size:
            fh.truncate(keep)
            fh.flush()
            os.fsync(fh.fileno())
        return size - keep


class JsonlAppender:
    """Appends JSON objects as lines; each :meth:`write` is flushed and fsync'ed before it returns."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.cut_bytes = cut_torn_tail(self.path)
        self._fh = open(self.path, "ab")

    def write(self, objects: Iterable[dict[str, Any]]) -> int:
        lines = [json.dumps(o, ensure_ascii=False, default=json_default).encode() for o in objects]
        return self.write_lines(lines)

    def write_lines(self, lines: list[bytes]) -> int:
        """Append JSON lines given as bytes (without their newlines)."""
        if lines:
            self._fh.write(b"".join(line + b"\n" for line in lines))
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(lines)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "JsonlAppender":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


@dataclass
class ErroredRecords:
    """The records of a run file that ended in an error: how many, and the first one's message."""

    count: int = 0
    first: str | None = None


def take_out_errors(records: Path, retried: Path, *, keep: bool = False) -> ErroredRecords:
    """Find the records in ``records`` that ended in an error; unless ``keep``, move them to ``retried``
    (appended and fsync'ed first, then ``records`` replaced atomically without them, a torn last line
    dropped too), so a resumed run does those pairs again. A kill in between leaves them in both files,
    and they are moved again on the next resume."""
    found = ErroredRecords()
    if not records.exists():
        return found
    lines = records.read_bytes().split(b"\n")
    kept, errored = [], []
    for lineno, line in enumerate(lines[:-1], start=1):  # the last piece is empty or a torn line
        if not line.strip():
            continue
        error = parse_json_object(line, f"{records}:{lineno}").get("error")
        if error is not None:
            errored.append(line)
            found.first = found.first or str(error)
        else:
            kept.append(line)
    found.count = len(errored)
    if errored and not keep:
        with JsonlAppender(retried) as log:
            log.write_lines(errored)
        with atomic_output(records, "wb") as fh:
            fh.write(b"".join(line + b"\n" for line in kept))
    return found


def line_key(data: dict[str, Any], where: str) -> Key:
    try:
        return (str(data["model"]), str(data["control"]), str(data["item_id"]))
    except KeyError as exc:
        raise FormatError(f"{where}: line lacks {exc.args[0]!r}") from None


def read_keys(path: Path) -> list[Key]:
    """Keys ``(model, control, item_id)`` of the records or exclusions in ``path`` (a torn last line is skipped)."""
    if not path.exists():
        return []
    return [line_key(d, str(path)) for d in iter_record_dicts(path)]


class RunLock:
    """An exclusive lock on a run (or shard) so that two processes never append to the same file."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = None

    def __enter__(self) -> "RunLock":
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "w")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._fh.close()
            raise VolprobeError(f"another process is writing this run ({self.path.parent}); "
                                "wait for it or use another --out / --shard") from None
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            self._fh.close()


# -- merging ---------------------------------------------------------------------------------

def expected_keys(run: dict[str, Any]) -> Iterator[Key]:
    """Every (model, control, item_id) a run (or shard) manifest's ``run`` section expects."""
    exp = run["expected"]
    for control in exp["controls"]:
        for item_id in exp["items"]:
            yield (exp["model"], control, item_id)


#: What every ``run`` section of a run manifest holds.
RUN_SECTION_KEYS = ("identity", "shard", "files", "expected")


def run_sections(manifest: dict[str, Any], where: Path) -> list[dict[str, Any]]:
    """The ``run`` sections of a run manifest (one; several after merging different runs)."""
    runs = manifest.get("runs") or ([manifest["run"]] if "run" in manifest else [])
    if not runs or not isinstance(runs, list) or not all(
            isinstance(r, dict) and all(k in r for k in RUN_SECTION_KEYS) for r in runs):
        command = manifest.get("command")
        by = f" (it was written by `{' '.join(str(command).split()[:2])}`)" if command else ""
        raise FormatError(f"{where}: not a run manifest{by}: no 'run' section with "
                          f"{', '.join(RUN_SECTION_KEYS)}; give folders written by `probe run` or `probe merge` "
                          "(a run whose manifest was overwritten must be run again into a new folder)")
    return runs


@dataclass
class MergeResult:
    """What :func:`merge_runs` wrote."""

    out_dir: Path
    sources: list[str]
    records: int
    excluded: int
    runs: int
    shards: int
    manifest: Path
    by_control: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        per = ", ".join(f"{c}: {n}" for c, n in sorted(self.by_control.items()))
        return (f"merged {self.shards} shard(s) of {self.runs} run(s) from {len(self.sources)} folder(s): "
                f"{self.records} records ({per}), {self.excluded} excluded pairs -> {self.out_dir}")


def merge_runs(run_dirs: Iterable[str | Path], out_dir: str | Path, *, show: int = 10) -> MergeResult:
    """Join the records of runs and shards into ``out_dir``, checking every expected pair is present once.

    Each shard's manifest names the (item, control) pairs it must produce; a pair is present when it
    has a record or an exclusion. All shards ``0..N-1`` of each run must be present.

    Raises:
        IncompleteRunError: a shard is missing or given twice, or a pair is missing, duplicated or
            unexpected (the message lists up to ``show`` of each and the counts).
    """
    from volprobe.manifest import build_manifest

    out_dir = Path(out_dir)
    dirs = [Path(d) for d in run_dirs]
    for d in dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"run folder not found: {d}")
    check_outputs("probe merge", [out_dir / n for n in ("records.jsonl", "excluded.jsonl", "manifest.json")], dirs,
                  folder=out_dir)
    if (out_dir / "records.jsonl").exists():
        raise VolprobeError(f"{out_dir} already holds records.jsonl; merge into a new folder")

    parts: list[tuple[Path, dict[str, Any]]] = []  # (folder, run section)
    for d in dirs:
        manifests = sorted(p for p in d.iterdir() if RUN_MANIFEST.match(p.name))
        if not manifests:
            raise FormatError(f"{d}: no run manifest (manifest.json or manifest.shard-I-of-N.json)")
        for m in manifests:
            parts += [(d, run) for run in run_sections(read_json(m), m)]

    problems: list[str] = []
    shards_by_run: dict[str, list[int]] = {}
    count_by_run: dict[str, int] = {}
    for d, run in parts:
        ident = json.dumps(run["identity"], sort_keys=True)
        shard = Shard.parse(run["shard"])
        shards_by_run.setdefault(ident, []).append(shard.index)
        if count_by_run.setdefault(ident, shard.count) != shard.count:
            problems.append(f"run of {run['identity'].get('model')} split into {count_by_run[ident]} and "
                            f"{shard.count} shards in different folders")
    for ident, indices in shards_by_run.items():
        model = json.loads(ident).get("model")
        n = count_by_run[ident]
        missing = sorted(set(range(n)) - set(indices))
        twice = sorted(i for i in set(indices) if indices.count(i) > 1)
        if missing:
            problems.append(f"run of {model}: shard(s) {', '.join(f'{i}/{n}' for i in missing)} missing")
        if twice:
            problems.append(f"run of {model}: shard(s) {', '.join(f'{i}/{n}' for i in twice)} given more than once")

    expected: dict[Key, int] = {}
    for _, run in parts:
        for key in expected_keys(run):
            expected[key] = expected.get(key, 0) + 1
    dup_expected = [k for k, n in expected.items() if n > 1]

    files: dict[Path, str] = {}  # path -> kind; each file read once even if several runs name it
    for d, run in parts:
        files.setdefault((d / run["files"]["records"]).resolve(), "records")
        files.setdefault((d / run["files"]["excluded"]).resolve(), "excluded")
    present: dict[Key, int] = {}
    lines: dict[str, list[dict[str, Any]]] = {"records": [], "excluded": []}
    for path, kind in files.items():
        if not path.exists():
            if kind == "records":
                problems.append(f"{path}: records file missing")
            continue
        for lineno, data in iter_record_lines(path):
            where = f"{path}:{lineno}"
            key = RunRecord.from_dict(data, where).key if kind == "records" else line_key(data, where)
            present[key] = present.get(key, 0) + 1
            lines[kind].append(data)

    missing_keys = [k for k in expected if k not in present]
    dup_keys = [k for k, n in present.items() if n > 1]
    unexpected = [k for k in present if k not in expected]
    for label, keys in (("missing (no record, no exclusion)", missing_keys), ("present more than once", dup_keys),
                        ("not expected by any manifest", unexpected), ("expected by two runs", dup_expected)):
        if keys:
            shown = "; ".join(f"{m} / {c} / {i}" for m, c, i in sorted(keys)[:show])
            more = f" (and {len(keys) - show} more)" if len(keys) > show else ""
            problems.append(f"{len(keys)} (model / control / item) pair(s) {label}: {shown}{more}")
    if problems:
        raise IncompleteRunError("cannot merge:\n  " + "\n  ".join(problems))

    out_dir.mkdir(parents=True, exist_ok=True)
    with JsonlAppender(out_dir / "records.jsonl") as fh:
        fh.write(lines["records"])
    with JsonlAppender(out_dir / "excluded.jsonl") as fh:
        fh.write(lines["excluded"])
    runs = _merged_runs(parts)
    by_control: dict[str, int] = {}
    for data in lines["records"]:
        by_control[data["control"]] = by_control.get(data["control"], 0) + 1
    manifest = build_manifest("probe merge", parameters={"sources": [str(d) for d in dirs]},
                              seed=runs[0]["identity"].get("seed") if len(runs) == 1 else None,
                              extra={"runs": runs, "counts": {"records": len(lines["records"]),
                                                               "excluded": len(lines["excluded"]),
                                                               "records_by_control": by_control}})
    manifest_path = out_dir / "manifest.json"
    write_json_atomic(manifest_path, manifest)
    return MergeResult(out_dir, [str(d) for d in dirs], len(lines["records"]), len(lines["excluded"]),
                       len(shards_by_run), len(parts), manifest_path, by_control)


def _merged_runs(parts: list[tuple[Path, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One ``run`` section per run: shards joined (shard 0/1), expected items and counts summed."""
    merged: dict[str, dict[str, Any]] = {}
    for _, run in sorted(parts, key=lambda p: Shard.parse(p[1]["shard"]).index):
        ident = json.dumps(run["identity"], sort_keys=True)
        if ident not in merged:
            merged[ident] = {**run, "shard": "0/1", "status": "merged", "merged_shards": 0, "sessions": [],
                             "files": {"records": "records.jsonl", "excluded": "excluded.jsonl"},
                             "expected": {**run["expected"], "items": []}, "exclusions": {}, "preparations": 0}
        m = merged[ident]
        m["expected"]["items"] += run["expected"]["items"]
        m["merged_shards"] += 1
        m["sessions"] += [{**s, "shard": run["shard"]} for s in run.get("sessions", [])]
        m["preparations"] += run.get("preparations", 0)
        for control, reasons in run.get("exclusions", {}).items():
            for reason, n in reasons.items():
                m["exclusions"].setdefault(control, {})
                m["exclusions"][control][reason] = m["exclusions"][control].get(reason, 0) + n
    return list(merged.values())
