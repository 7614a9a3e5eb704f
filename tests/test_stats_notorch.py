"""volprobe.stats and ``probe report`` never import torch, not even indirectly."""

import subprocess
import sys
import textwrap


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120)


def test_stats_library_and_report_path_do_not_import_torch(tmp_path):
    result = _run("""
        import sys
        import volprobe.stats
        from volprobe.stats import make_report, ReportSettings
        from volprobe.controls import get_control
        from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs
        runs = write_synthetic_runs("runs", [SyntheticModel("reader"), SyntheticModel("prior", uses_volume=False)],
                                    synthetic_items(60, 10),
                                    [get_control(c) for c in ("full", "text_only", "mirror_lr")])
        make_report(runs, "report", ReportSettings(by=("task",), n_perm=100))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "monai", "totalsegmentator"))
        assert not heavy, heavy
        print("ok")
    """, tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr


def test_probe_report_command_does_not_import_torch(tmp_path):
    result = _run("""
        import sys
        from volprobe.controls import get_control
        from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs
        runs = write_synthetic_runs("runs", [SyntheticModel("reader")], synthetic_items(40, 8),
                                    [get_control(c) for c in ("full", "blank")])
        from volprobe.cli import main
        try:
            main(["report", *map(str, runs), "--out", "report", "--n-perm", "50"], standalone_mode=False)
        finally:
            assert "torch" not in sys.modules, "probe report imported torch"
        print("ok")
    """, tmp_path)
    assert result.returncode == 0 and "ok" in result.stdout, result.stderr
