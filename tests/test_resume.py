"""Resume after a real SIGKILL: `probe run` in a subprocess, killed several times midway, then finished.

The final records must equal an uninterrupted run's (as a set of keys and content, latency aside),
with no pair written twice and none lost.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from runfixtures import make_items, write_cases
from volprobe.probes.run.engine import run_from_files
from volprobe.items import write_items

TESTS = Path(__file__).resolve().parent
CONTROLS = ["full", "mirror_lr", "shuffled_slices", "single_slice:evidence"]
SCRIPT = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
import runfixtures  # registers the 'test-recorder' model
from volprobe.cli import main
main()
"""


def probe_run(script: Path, items: Path, out: Path) -> subprocess.Popen:
    args = [sys.executable, str(script), "run", "--model", "test-recorder", "--items", str(items), "--out", str(out),
            "--batch-size", "2", "--seed", "2", "--model-option", "sleep_s=0.04", "--no-progress"]
    for c in CONTROLS:
        args += ["--control", c]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def content(path: Path) -> tuple[dict, int]:
    """key -> record without latency, and the number of lines."""
    lines = path.read_text().splitlines()
    out = {}
    for line in lines:
        d = json.loads(line)
        d.pop("latency_s")
        out[(d["model"], d["control"], d["item_id"])] = d
    return out, len(lines)


def test_killed_run_resumes_to_the_same_records(tmp_path):
    items = make_items(write_cases(tmp_path / "cases"), per_case=4)
    items_path = tmp_path / "items.jsonl"
    write_items(items, items_path)
    script = tmp_path / "probe_entry.py"
    script.write_text(SCRIPT)
    out = tmp_path / "killed"
    records = out / "records.jsonl"

    kills = 0
    for threshold in (4, 18, 34):  # kill after at least this many records are on disk
        proc = probe_run(script, items_path, out)
        deadline = time.monotonic() + 60
        while count_lines(records) < threshold and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()}"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        kills += 1
        assert count_lines(records) < len(items) * len(CONTROLS)  # really midway
    proc = probe_run(script, items_path, out)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, output
    assert "already done" in output and kills == 3

    reference = tmp_path / "reference"
    run_from_files("test-recorder", items_path, CONTROLS, reference, seed=2, batch_size=2, progress=False)
    got, n_lines = content(records)
    want, _ = content(reference / "records.jsonl")
    assert n_lines == len(got)  # nothing written twice
    assert got == want  # nothing lost, and the same content
    excluded = (out / "excluded.jsonl").read_text().splitlines()
    assert len(excluded) == len(set(excluded)) == len((reference / "excluded.jsonl").read_text().splitlines())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["run"]["status"] == "complete"
