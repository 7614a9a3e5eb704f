"""The GPU-facing benchmark scripts run as they are (small sizes, CPU), so that they work the day a GPU is
lent: ``benchmarks/gpu_engine.py --tiny`` and ``benchmarks/engine_scale.py`` with a small model whose
vision tower is a ViT (the reuse path must give the same answers as recomputing)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return done.stdout


def test_gpu_engine_benchmark_runs_on_tiny_models():
    out = _run("benchmarks/gpu_engine.py", "--tiny")
    for kind in ("qwen", "m3d"):
        line = next(ln for ln in out.splitlines() if ln.lstrip().startswith(kind))
        assert "pairs" in line and "generate calls" in line
    assert out.count("bare generate loop") == 2


def test_engine_scale_reuse_gives_the_same_answers_with_a_vit():
    out = _run("benchmarks/engine_scale.py", "--cases", "2", "--questions", "3", "--hidden", "64", "--layers", "2",
               "--vision-dim", "64", "--vision-layers", "1", "--skip-ray")
    assert "ViT 64 x 1 layers" in out and "answers identical: True (6/6)" in out
