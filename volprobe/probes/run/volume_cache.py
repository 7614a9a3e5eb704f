"""The run engine's volume cache: each case's CT read once, the next case read ahead in a thread, and checked
against the content hash its items were made from (``item.metadata['volume_sha256']``)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from volprobe.errors import VolprobeError


class VolumeChangedError(VolprobeError):
    """The volume read for a case is not the one its items were made from (their gold may be wrong)."""


def expected_volume_hashes(items: Iterable) -> dict[str, tuple[str, str]]:
    """case -> (the volume content hash its items were made from, the id of an item saying so), for the cases
    whose items record one (``metadata['volume_sha256']``).

    Raises:
        VolprobeError: two items of one case record different volumes (naming both).
    """
    found: dict[str, tuple[str, str]] = {}
    for it in items:
        want = it.metadata.get("volume_sha256")
        if not want:
            continue
        seen = found.setdefault(it.case_key, (want, it.id))
        if seen[0] != want:
            raise VolprobeError(f"case {it.case_key!r}: item {seen[1]!r} was made from the volume with content SHA-256 "
                                f"{seen[0]} and item {it.id!r} from {want}; the items of one case must come from one "
                                "volume (regenerate them)")
    return found


class VolumeCache:
    """Loads each case's volume on demand, keeping the ``size`` most recently used (read errors too).

    :meth:`prefetch` starts reading a case in a background thread (gzip and numpy release the
    GIL, so the read overlaps the model's generation); :meth:`get` then waits for it.

    Args:
        paths: case → (volume path as written in the items, patient id).
        base_dir: folder against which a relative path is tried when it does not exist as given.
        size: volumes kept in memory (the current case and the next, each with a swapped_volume source).
        read: ``read(path, case, patient) -> Volume`` for files that need more than
            :func:`~volprobe.segmentation.volume.load_volume` (e.g. CT-RATE's metadata); None: ``load_volume``.
        expected: case -> (content hash, item id) of the volume the case's items were made from
            (:func:`expected_volume_hashes`); a volume read with another hash raises :class:`VolumeChangedError`,
            or with ``allow_changed`` is used and its case listed in :attr:`changed`.
    """

    def __init__(self, paths: dict[str, tuple[str | None, str]], base_dir: Path | None, size: int = 4,
                 read_ahead: bool = True, read: Callable[[Path, str, str | None], Any] | None = None,
                 expected: Mapping[str, tuple[str, str]] | None = None, allow_changed: bool = False):
        self.paths = paths
        self.read = read
        self.expected = dict(expected or {})
        self.allow_changed = allow_changed
        #: case -> content hash of a volume read that differs from the one its items were made from
        self.changed: dict[str, str] = {}
        self.base_dir = base_dir
        self.size = max(1, size)
        self.loaded = 0  #: volume reads done
        self.read_s = 0.0  #: seconds spent reading (partly hidden behind generation when read ahead)
        self._cache: OrderedDict[str, Any] = OrderedDict()
        self._pending: dict[str, Future] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="volprobe-read") if read_ahead else None

    @staticmethod
    def resolve_path(raw: str | None, base_dir: Path | None) -> Path | None:
        """The file a written volume path means: as given, else relative to ``base_dir``; None for no path."""
        if raw is None:
            return None
        p = Path(raw)
        if not p.is_absolute() and not p.exists() and base_dir is not None:
            p = base_dir / p
        return p

    def resolve(self, case: str) -> Path | None:
        """The volume file of a case (:meth:`resolve_path`); None when its items name none."""
        return self.resolve_path(self.paths.get(case, (None, case))[0], self.base_dir)

    def prefetch(self, case: str) -> None:
        """Start reading ``case`` in the background (a cached case is marked recently used instead)."""
        if case in self._cache:
            self._cache.move_to_end(case)
        elif self._pool is not None and case not in self._pending:
            self._pending[case] = self._pool.submit(self._read, case)

    def get(self, case: str):
        """The Volume of ``case``; raises the read error (FileNotFoundError, VolumeReadError ...) again each time."""
        if case in self._cache:
            self._cache.move_to_end(case)
            found = self._cache[case]
        else:
            pending = self._pending.pop(case, None)
            found = pending.result() if pending is not None else self._read(case)
            self._cache[case] = found
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        if isinstance(found, Exception):
            raise found
        return found

    def _read(self, case: str):
        """The volume, or the exception that reading it raised (kept so every item gets the same message)."""
        from volprobe.segmentation.volume import load_volume

        path = self.resolve(case)
        t0 = time.perf_counter()
        try:
            if path is None:
                raise FileNotFoundError(f"volume missing: the item names no volume_path (case {case!r})")
            if not path.exists():
                raise FileNotFoundError(f"volume missing: {path} (no such file)")
            patient = self.paths[case][1]
            found: Any = (self.read(path, case, patient) if self.read is not None
                          else load_volume(path, patient=patient))
            self._check(case, path, found)
        except Exception as exc:
            return exc
        with self._lock:
            self.loaded += 1
            self.read_s += time.perf_counter() - t0
        return found

    def _check(self, case: str, path: Path, volume) -> None:
        if case not in self.expected:
            return
        want, item_id = self.expected[case]
        got = volume.content_hash
        if got == want:
            return
        if not self.allow_changed:
            raise VolumeChangedError(
                f"{path} is not the volume item {item_id!r} was made from (content SHA-256 {got[:16]}..., the item "
                f"says {want[:16]}...): the file changed after the items were generated, so their gold answers may "
                "be wrong; regenerate the items from it, or pass --allow-changed-volumes to run anyway (records "
                "tagged volume_changed)")
        with self._lock:
            self.changed[case] = got

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
