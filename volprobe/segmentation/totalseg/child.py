"""TotalSegmentator's side of :mod:`volprobe.segmentation.totalseg.runner`: the child process.

``python -m volprobe.segmentation.totalseg.child JOB.json`` runs TotalSegmentator (task ``total``) on
one CT with the weights path, home folder and options of the job file, with no network (sockets
reach only this machine), no weight download (replaced by a presence check) and no usage statistics.
Exit status 3 means weights were missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Iterator, Sequence

from volprobe.errors import WeightsMissingError

TASK = "total"
EXIT_WEIGHTS_MISSING = 3


def write_private_config(home: Path) -> Path:
    """TotalSegmentator's ``config.json`` in ``home`` with usage statistics off (kept if present, the flag forced)."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    config.setdefault("totalseg_id", "volprobe_offline")
    config.setdefault("prediction_counter", 0)
    config["send_usage_stats"] = False
    config["statistics_disclaimer_shown"] = True
    path.write_text(json.dumps(config, indent=4))
    return path


_LOCAL_HOSTS = {None, "", "localhost", "127.0.0.1", "::1", "0.0.0.0"}


@contextlib.contextmanager
def network_blocked() -> Iterator[None]:
    """Within the block, sockets reach only this machine: other addresses and name look-ups fail at once."""
    import socket

    original = socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo, socket.create_connection

    def _local(address) -> bool:
        host = address[0] if isinstance(address, tuple) else None
        return isinstance(address, (str, bytes)) or host in _LOCAL_HOSTS or str(host).startswith("127.")

    def refuse(what) -> OSError:
        return ConnectionRefusedError(f"volprobe blocks network access while TotalSegmentator runs "
                                      f"(patient data stays on this machine): {what}")

    def connect(self, address):
        if not _local(address):
            raise refuse(address)
        return original[0](self, address)

    def connect_ex(self, address):
        if not _local(address):
            raise refuse(address)
        return original[1](self, address)

    def getaddrinfo(host, *args, **kwargs):
        if host not in _LOCAL_HOSTS and not str(host).startswith("127."):
            raise socket.gaierror(socket.EAI_NONAME, str(refuse(host)))
        return original[2](host, *args, **kwargs)

    def create_connection(address, *args, **kwargs):
        if not _local(address):
            raise refuse(address)
        return original[3](address, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex  # type: ignore[method-assign]
    socket.getaddrinfo, socket.create_connection = getaddrinfo, create_connection
    try:
        yield
    finally:
        socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo, socket.create_connection = original


@contextlib.contextmanager
def totalsegmentator_offline(weights_root: Path) -> Iterator[None]:
    """Replace TotalSegmentator's weight download by a presence check and its usage ping by a no-op."""
    from totalsegmentator import config as ts_config
    from totalsegmentator import libs, python_api
    from totalsegmentator.map_tasks_config import TASK_ID_WEIGHTS_CONFIGS

    def no_download(task_id):
        folder = TASK_ID_WEIGHTS_CONFIGS.get(task_id, {}).get("foldername", f"task {task_id}")
        if not (weights_root / folder).is_dir():
            raise WeightsMissingError(f"TotalSegmentator asked for {folder} (task {task_id}), which is not in "
                                      f"{weights_root}; volprobe never downloads weights")

    def no_stats(*_args, **_kwargs):
        return None

    patched = [(python_api, "download_pretrained_weights", no_download), (libs, "download_pretrained_weights", no_download),
               (python_api, "send_usage_stats", no_stats), (ts_config, "send_usage_stats", no_stats),
               (ts_config, "send_usage_stats_application", no_stats)]
    saved = [(mod, attr, getattr(mod, attr)) for mod, attr, _ in patched]
    for mod, attr, new in patched:
        setattr(mod, attr, new)
    try:
        yield
    finally:
        for mod, attr, old in saved:
            setattr(mod, attr, old)


def main(argv: Sequence[str] | None = None) -> int:
    """Child-process entry: ``python -m volprobe.segmentation.totalseg.child JOB.json``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m volprobe.segmentation.totalseg.child JOB.json (written by run_totalsegmentator)",
              file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    os.environ["TOTALSEG_WEIGHTS_PATH"] = job["weights_root"]
    os.environ["TOTALSEG_HOME_DIR"] = job["home"]
    write_private_config(Path(job["home"]))
    with network_blocked(), totalsegmentator_offline(Path(job["weights_root"])):
        from totalsegmentator.python_api import totalsegmentator

        try:
            totalsegmentator(job["input"], job["output"], ml=True, task=TASK, fast=job["fast"],
                             roi_subset=job["roi_subset"], device=job["device"], quiet=True,
                             nr_thr_resamp=1, nr_thr_saving=1)
        except WeightsMissingError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_WEIGHTS_MISSING
    return 0


if __name__ == "__main__":
    sys.exit(main())
