"""``probe run --ray``: a local Ray instance on the CPU (2 slots) gives the records of a plain run, a worker
that dies has its units sent again, and a killed driver resumes. Ray starts once for the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is an optional extra: pip install 'volprobe[ray]'")

from runfixtures import make_items, write_cases  # noqa: E402
from volprobe.cli import main  # noqa: E402
from volprobe.items import write_items  # noqa: E402
from volprobe.probes.models.base import MODELS, Generation, ModelAdapter, Prepared  # noqa: E402
from volprobe.probes.run.distributed import RayOptions, _Scheduler, _Unit  # noqa: E402
from volprobe.probes.run.engine import run  # noqa: E402

TESTS = Path(__file__).resolve().parent
CONTROLS = ["full", "text_only", "shuffled_slices", "mirror_lr", "swapped_volume", "single_slice:evidence"]


class CrashOnce(ModelAdapter):
    """Answers the gold (a perfect reader), but the first worker process to generate kills itself."""

    name = "crash_once"
    accepted_options = frozenset({"marker"})

    def prepare(self, volume) -> Prepared:
        return Prepared(data=None, input_hash="x" if volume is None else volume.content_hash, no_image=volume is None)

    def generate(self, batch):
        marker = Path(self.options["marker"])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the process dies mid-unit, as an out-of-memory kill would
        return [Generation(item.as_output(item.answer)) for _, item in batch]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module; workers import the test helpers through PYTHONPATH."""
    paths = [str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def items(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cases")
    return make_items(write_cases(folder, patients=("p1", "p2", "p3", "p4", "p5", "p6")), per_case=3)


def _records(folder: Path) -> dict:
    out = {}
    for line in open(folder / "records.jsonl"):
        d = json.loads(line)
        d.pop("latency_s")
        out[(d["model"], d["control"], d["item_id"])] = d
    return out


def _excluded(folder: Path) -> list[str]:
    return sorted(open(folder / "excluded.jsonl")) if (folder / "excluded.jsonl").exists() else []


@pytest.mark.parametrize("model", ["random", "oracle"])
def test_ray_records_equal_a_plain_run(local_ray, items, tmp_path, model):
    plain = run(items, MODELS.get(model)(), CONTROLS, tmp_path / "plain", seed=3, progress=False)
    spread = run(items, MODELS.get(model)(), CONTROLS, tmp_path / "ray", seed=3, progress=False,
                 ray=RayOptions(workers=2))
    assert _records(tmp_path / "plain") == _records(tmp_path / "ray")
    assert _excluded(tmp_path / "plain") == _excluded(tmp_path / "ray")
    assert spread.written == plain.written > 0 and spread.errors == 0
    session = json.loads((tmp_path / "ray" / "manifest.json").read_text())["run"]["sessions"][-1]
    assert session["ray"]["workers"] == 2 and len(session["ray"]["per_worker"]) == 2
    assert session["ray"]["units_resent"] == 0


def test_each_input_is_prepared_once_per_worker(local_ray, items, tmp_path):
    summary = run(items, MODELS.get("oracle")(), ["full", "shuffled_slices"], tmp_path / "ray", progress=False,
                  ray=RayOptions(workers=2))
    cases = len({it.case for it in items})
    assert summary.distinct_inputs == 2 * cases and summary.max_preparations_per_input == 1


def test_a_dead_worker_has_its_units_sent_again(local_ray, items, tmp_path):
    MODELS.register(CrashOnce)
    try:
        marker = tmp_path / "crashed"
        summary = run(items, CrashOnce(marker=str(marker)), ["full", "blank"], tmp_path / "ray", progress=False,
                      ray=RayOptions(workers=2))
    finally:
        MODELS.unregister("crash_once")
    assert marker.exists()  # a worker did die
    records = _records(tmp_path / "ray")
    assert summary.errors == 0 and all(r["correct"] for r in records.values())
    excluded = len(_excluded(tmp_path / "ray"))
    assert len(records) + excluded == 2 * len(items)
    session = json.loads((tmp_path / "ray" / "manifest.json").read_text())["run"]["sessions"][-1]
    assert session["ray"]["units_resent"] >= 1


def test_scheduler_keeps_a_worker_on_its_case_then_helps():
    units = [_Unit(case, control, []) for case in ("a", "b") for control in ("full", "blank", "flip_si")]
    s = _Scheduler(units)
    assert [s.next_for(0).case for _ in range(2)] == ["a", "a"]
    assert s.next_for(1).case == "b"
    assert s.next_for(0).case == "a"  # its case's last unit
    assert s.next_for(0).case == "b"  # nothing untouched left: helps with b
    s.give_back(units[0])
    assert s.next_for(1) is units[0] or s.next_for(1) is units[0]


def test_cli_ray_options(items, tmp_path):
    path = tmp_path / "items.jsonl"
    write_items(items, path)
    result = CliRunner().invoke(main, ["run", "--model", "random", "--items", str(path), "--control", "full",
                                       "--out", str(tmp_path / "r"), "--workers", "2"])
    assert result.exit_code == 2 and "need --ray" in result.output


def test_killed_driver_resumes_to_the_same_records(local_ray, items, tmp_path):
    """A driver killed with SIGKILL mid-run; the same command finishes it, with the records of a plain run."""
    path = tmp_path / "items.jsonl"
    write_items(items, path)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")])}
    script = ("import runfixtures; from volprobe.cli import main; main()")
    args = [sys.executable, "-c", script, "run", "--model", "test-recorder", "--items", str(path),
            "--control", "full", "--control", "blank", "--out", str(tmp_path / "ray"), "--ray", "--workers", "2",
            "--model-option", "sleep_s=0.05", "--no-progress"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    records = tmp_path / "ray" / "records.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and (not records.exists() or len(records.read_text().splitlines()) < 4):
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(records.read_text().splitlines())
    assert 0 < written < 2 * len(items), "the kill should land mid-run"
    finished = subprocess.run(args[:-1], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    assert f"{written} already done" in finished.stdout
    subprocess.run([sys.executable, "-c", script, "run", "--model", "test-recorder", "--items", str(path),
                    "--control", "full", "--control", "blank", "--out", str(tmp_path / "plain"),
                    "--model-option", "sleep_s=0.05", "--no-progress"], env=env, check=True, capture_output=True)
    assert _records(tmp_path / "ray") == _records(tmp_path / "plain")


def test_readme_large_runs_local_ray_line_runs(local_ray, tmp_path, monkeypatch):
    """The README's `--ray` line, with the blind random model on phantoms instead of M3D on a GPU."""
    from test_readme import probe_lines, section

    lines = probe_lines(section("Large runs"))
    local = next(a for a in lines if "--ray" in a and a[a.index("--ray") + 1:][:1] == [])
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["phantom", "--out", "ph", "--n", 2, "--seed", 2]).exit_code == 0
    assert runner.invoke(main, ["questions", "ph", "--out", "items.jsonl", "--per-case", 10,
                                "--no-progress"]).exit_code == 0
    args = ["random" if a.startswith("m3d:") else {"cuda": "cpu", "bf16": "fp32"}.get(a, a) for a in local]
    result = runner.invoke(main, args + ["--no-progress"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "runs" / "m3d" / "manifest.json").read_text())
    assert manifest["run"]["settings"]["ray"]["address"] == "local"
