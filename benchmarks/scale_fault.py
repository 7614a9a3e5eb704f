"""The oracle with a fault: the first Ray worker to answer kills its own process (as an out-of-memory kill
would), once per run (a marker file remembers). Used by ``engine_scale.py``; a module so workers import it."""

from __future__ import annotations

import os
from pathlib import Path

from volprobe.probes.models.oracle import OracleModel


class CrashAtFirstAnswer(OracleModel):
    """``oracle`` whose first answer in the run kills the worker process."""

    name = "oracle_crash_once"
    accepted_options = frozenset({"marker"}) | OracleModel.accepted_options

    def generate(self, batch):
        marker = Path(self.options["marker"])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)
        return super().generate(batch)
