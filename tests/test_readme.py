"""README.md stays true: its fresh-machine commands are what CI runs, every `probe` command in it parses
against the CLI, and its quickstart, benchmark and adapter examples run (on the real TotalSegmentator
fixture, invented benchmark files and a tiny M3D model; commands that need weights must fail at once
with a clear message)."""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from conftest import FIXTURE_CT, FIXTURE_SEG, REPO
from volprobe.cli import main

README = (REPO / "README.md").read_text()
BENCH_FIXTURE = REPO / "tests" / "data" / "benchmarks" / "ctspatialvqa"


def section(title: str) -> str:
    start = README.index(f"## {title}")
    end = README.find("\n## ", start + 3)
    return README[start:end if end > 0 else None]


def blocks(text: str, lang: str = "bash") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def probe_lines(text: str) -> list[list[str]]:
    """Every `probe ...` command in the bash blocks of ``text``, as argument lists (comments dropped)."""
    out = []
    for block in blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            for part in line.split("&&"):
                args = shlex.split(part, comments=True)
                if args and args[0] == "probe":
                    out.append(args[1:])
    return out


def invoke(args: list[str]):
    return CliRunner().invoke(main, args, catch_exceptions=False)


def test_fresh_machine_commands_are_what_ci_runs():
    commands = [b.strip() for b in blocks(section("On a fresh machine"))[:2]]
    assert len(commands) == 2 and commands[0].endswith("probe demo") and "pytest" in commands[1]
    assert "pip install torch==2.14.1 torchvision==0.29.1" in commands[0]
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert commands[0] in ci and commands[1] in ci


def _resolve(args: list[str]) -> tuple[click.Command, list[str]]:
    cmd: click.Command = main
    while isinstance(cmd, click.Group):
        assert args and args[0] in cmd.commands, f"no command {args[:1]} under {cmd.name}"
        cmd, args = cmd.commands[args[0]], args[1:]
    return cmd, args


def test_every_readme_probe_command_parses():
    lines = probe_lines(README)
    assert len(lines) >= 19
    for args in lines:
        cmd, rest = _resolve(list(args))
        known = {o for p in cmd.params for o in p.opts + p.secondary_opts}
        given = [a for a in rest if a.startswith("--")]
        assert not set(given) - known, f"probe {' '.join(args)}: unknown options {set(given) - known}"
        for p in cmd.params:
            if isinstance(p, click.Option) and p.required:
                assert set(p.opts) & set(given), f"probe {' '.join(args)}: missing {p.opts[0]}"
        n_args = sum(isinstance(p, click.Argument) for p in cmd.params)
        if n_args:
            assert any(not a.startswith("-") for a in rest), f"probe {' '.join(args)}: missing arguments"


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    """A working folder with no TotalSegmentator weights or Hugging Face cache anywhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("TOTALSEG_WEIGHTS_PATH", "TOTALSEG_HOME_DIR", "HF_HOME", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        monkeypatch.delenv(var, raising=False)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return work


def test_quickstart_runs_on_the_real_fixture(no_weights, tmp_path_factory):
    from tinymodels import cached_build
    from tinymodels.lamed import build_lamed

    lines = probe_lines(section("Quickstart on real data"))
    assert [a[0] for a in lines] == ["segment", "relations", "questions", "run", "run", "report"]
    shutil.copy(FIXTURE_CT, "ct.nii.gz")

    # 1. TotalSegmentator without weights: fails at once and says what is missing; its output is the fixture's.
    result = CliRunner().invoke(main, lines[0])
    assert result.exit_code == 2 and "weights are not installed" in result.output
    Path("masks").mkdir()
    shutil.copy(FIXTURE_SEG, "masks/ct.nii.gz")
    for args in lines[1:4]:
        result = invoke(args)
        assert result.exit_code == 0, result.output

    # the M3D run, on a tiny M3D-LaMed of the real architecture (CPU, short answers) instead of the 4B weights
    m3d = list(lines[4])
    assert "m3d:/weights/M3D-LaMed-Phi-3-4B" in m3d
    # the missing weights path fails at once
    result = CliRunner().invoke(main, m3d)
    assert result.exit_code == 2 and "/weights/M3D-LaMed-Phi-3-4B" in result.output
    tiny = cached_build(tmp_path_factory, "lamed_m3d", build_lamed)
    m3d = [f"m3d:{tiny}" if a.startswith("m3d:") else {"cuda": "cpu", "bf16": "fp32"}.get(a, a) for a in m3d]
    shutil.rmtree("runs/m3d", ignore_errors=True)
    result = invoke(m3d + ["--model-option", "max_new_tokens=4", "--no-progress"])
    assert result.exit_code == 0, result.output

    result = invoke(lines[5])
    assert result.exit_code == 0, result.output
    report = json.loads(Path("report/report.json").read_text())
    verdicts = {r["model"]: r["verdict"] for r in report["verdicts"] if r["grouping"] == "all"}
    assert list(verdicts) == [f"m3d:{tiny}"]  # the model gets a verdict; reference models are compared with it
    acc = {(r["model"], r["control"]): r["accuracy"] for r in report["tables"]["accuracy"] if r["grouping"] == "all"}
    assert acc[("random", "full")] == acc[("random", "text_only")]  # blind: same seeded guesses without the image
    items = [json.loads(line) for line in open("items.jsonl")]
    assert len(items) == 60 and all(i["case"] == "ct" for i in items)

    # "Seeing what the model saw", on these runs: the page with every item, and one item's figure
    seeing = probe_lines(section("Seeing what the model saw"))
    assert [a[0] for a in seeing] == ["report", "figure"]
    seeing[1][1] = items[0]["id"]  # the README's id stands for any item id
    for args in seeing:
        result = invoke(args)
        assert result.exit_code == 0, f"probe {' '.join(args)}\n{result.output}"
    page = Path("report/report.html").read_text(encoding="utf-8")
    data = json.loads(re.search(r'id="browser-data">(.*?)</script>', page, flags=re.S).group(1))
    assert len(data["items"]) == 60 and not any(it["notes"] for it in data["items"])  # volume and masks found
    assert all(row["shown"][0]["images"] for it in data["items"] for row in it["rows"] if row["control"] == "full")
    assert Path("figures/item.pdf").read_bytes()[:4] == b"%PDF" and Path("figures/item.png").exists()


def test_controls_apply_runs_on_the_real_fixture(no_weights):
    from volprobe.segmentation.masks import load_masks
    from volprobe.segmentation.volume import load_volume

    lines = probe_lines(section("Looking at what a model sees"))
    assert [a[:2] for a in lines] == [["controls", "apply"]]
    shutil.copy(FIXTURE_CT, "ct.nii.gz")
    Path("masks").mkdir()
    shutil.copy(FIXTURE_SEG, "masks/ct.nii.gz")
    result = invoke(lines[0])
    assert result.exit_code == 0, result.output
    volume = load_volume("mirrored.nii.gz")
    moved = load_masks("mirrored_seg.nii.gz", volume)
    original = load_masks("masks/ct.nii.gz", load_volume("ct.nii.gz"))
    left = next(i for i, n in original.names.items() if n == "kidney_left")
    assert moved.names[left] == "kidney_right" and (moved.labels == left).sum() == (original.labels == left).sum()


def test_benchmark_commands_run_on_invented_files(no_weights):
    from volprobe.probes.datasets.synthetic import write_synthetic_3drad

    write_synthetic_3drad("3D-RAD", 300, split="train", seed=1)
    write_synthetic_3drad("3D-RAD", 200, split="test", seed=2)
    Path("ct_rate").mkdir()
    shutil.copy(BENCH_FIXTURE / "qa.jsonl", "ct_spatialvqa.jsonl")
    shutil.copy(BENCH_FIXTURE / "categories.json", "ct_spatialvqa_categories.json")
    shutil.copy(BENCH_FIXTURE / "predictions.jsonl", "other_harness_predictions.jsonl")
    lines = probe_lines(section("Benchmarks: 3D-RAD and CT-SpatialVQA"))
    assert len(lines) == 7
    for args in lines:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, f"probe {' '.join(args)}\n{result.output}"
    assert sum(1 for _ in open("spatial.jsonl")) == 5
    assert sum(1 for _ in open("their_records.jsonl")) >= 1
    records = [json.loads(line) for line in open("runs/rad_prior/records.jsonl")]
    assert len(records) == sum(1 for _ in open("rad_test.jsonl"))


def test_adapter_example_registers_and_runs(tmp_path):
    from volprobe.probes.run.engine import run
    from volprobe.items import Item
    from volprobe.probes.models.base import MODELS, load_model

    (code,) = blocks(section("Adding a model or a control"), "python")
    namespace: dict = {}
    exec(code, namespace)
    try:
        model = load_model("always_a")
        items = [Item(id=f"q{i}", question="Which side?", answer=["left", "right"][i % 2], options=["left", "right"],
                      case="c") for i in range(6)]
        run(items, model, ["full", "text_only"], tmp_path / "run", progress=False)
        records = [json.loads(line) for line in open(tmp_path / "run" / "records.jsonl")]
        assert len(records) == 12
        assert sum(r["correct"] for r in records) == 6  # right exactly when the gold is the first option
    finally:
        MODELS.unregister("always_a")


def test_planning_commands_run_on_a_pilot(tmp_path, monkeypatch):
    """The "Planning a study" commands, on a pilot written in probe run's record format (a model with
    patient-correlated answers under full and blank), and the figures the section quotes."""
    from volprobe.stats.power import mde_clustered, mde_mcnemar
    from volprobe.stats.synthetic import SyntheticControl, SyntheticModel, synthetic_items, write_synthetic_runs

    monkeypatch.chdir(tmp_path)
    controls = [SyntheticControl("full", reference=True), SyntheticControl("blank", removes_image=True)]
    write_synthetic_runs(Path("runs"), [SyntheticModel("m3d")], synthetic_items(400, 20, seed=2), controls)
    lines = probe_lines(section("Planning a study"))
    assert [a[0] for a in lines] == ["power", "power"] and "--pilot" in lines[0]
    for args in lines:
        result = invoke(args)
        assert result.exit_code == 0, result.output
        assert "cluster-robust paired t test over patients" in result.output and "200 patients" in result.output
    text = " ".join(section("Planning a study").split())
    assert f"plans for a {100 * mde_mcnemar(400, 0.3):.1f}-point drop" in text
    assert f"the plan over patients says {100 * mde_clustered(400, 10, 0.3, 0.05):.1f} points" in text
