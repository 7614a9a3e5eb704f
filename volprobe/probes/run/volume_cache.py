"""The run engine's volume cache: each case's CT read once, the next case read ahead in a thread."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable


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
    """

    def __init__(self, paths: dict[str, tuple[str | None, str]], base_dir: Path | None, size: int = 4,
                 read_ahead: bool = True, read: Callable[[Path, str, str | None], Any] | None = None):
        self.paths = paths
        self.read = read
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
        except Exception as exc:
            return exc
        with self._lock:
            self.loaded += 1
            self.read_s += time.perf_counter() - t0
        return found

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
