"""Benchmark: a full ``probe report`` over about 1,000,000 run records (target: at most 10 s).

Writes synthetic runs in the exact ``probe run`` format (10 models × 9 controls × ~11,000 items;
counterfactual controls leave out the open items), then times ``make_report`` — reading, checks,
every test (cluster-robust paired tests over up to 2,300 patients per group), Markdown/LaTeX/CSV/JSON
and PNG+PDF figures — and prints the time of each stage. The generated runs are kept in ``--data`` for reuse.

    python benchmarks/report.py                    # data in /tmp/volprobe-bench-report
    python benchmarks/report.py --records 200000   # a smaller run
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from volprobe.stats.settings import ReportSettings
from volprobe.stats.report import make_report
from volprobe.controls import STANDARD_CONTROLS, get_control
from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs

ALL_CONTROLS = [get_control(c) for c in STANDARD_CONTROLS]

TARGET_S = 10.0
MODELS = [
    SyntheticModel("qwen2.5-vl", accuracy=0.62, refusal_rate=0.01, unparseable_rate=0.03),
    SyntheticModel("qwen3-vl", accuracy=0.70, unparseable_rate=0.02),
    SyntheticModel("lingshu", accuracy=0.66, error_rate=0.002),
    SyntheticModel("medgemma", accuracy=0.64, refusal_rate=0.03),
    SyntheticModel("m3d-lamed", uses_volume=False, blind_accuracy=0.52, unparseable_rate=0.05),
    SyntheticModel("m3d-rad", uses_volume=False, blind_accuracy=0.60),
    SyntheticModel("med3dvlm", accuracy=0.58, uses_volume=True, blind_accuracy=0.5),
    SyntheticModel("radfm", uses_volume=False, blind_accuracy=0.45, error_rate=0.01),
    SyntheticModel("prior", uses_volume=False, blind_accuracy=0.6),
    SyntheticModel("random", random=True),
]
RECORDS_PER_ITEM = len(MODELS) * (len(ALL_CONTROLS) - 3 * 0.1)  # counterfactuals skip the 10% open items


def ensure_data(folder: Path, n_records: int, seed: int = 0) -> list[Path]:
    """Generate the runs once (about 15 s per million records); reuse them when the spec matches."""
    n_items = int(round(n_records / RECORDS_PER_ITEM))
    spec = {"items": n_items, "patients": n_items // 5, "models": [m.name for m in MODELS], "seed": seed,
            "controls": [c.label for c in ALL_CONTROLS]}
    stamp = folder / "spec.json"
    runs = [folder / m.name for m in MODELS]
    if stamp.exists() and json.loads(stamp.read_text()) == spec:
        return runs
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t = time.perf_counter()
    items = synthetic_items(n_items, spec["patients"], seed=seed)
    runs = write_synthetic_runs(folder, MODELS, items, ALL_CONTROLS, seed=seed, shards=2)
    stamp.write_text(json.dumps(spec))
    print(f"generated {n_items:,} items × {len(MODELS)} models × {len(ALL_CONTROLS)} controls "
          f"in {time.perf_counter() - t:.1f} s")
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "volprobe-bench-report")
    parser.add_argument("--by", default="task", help="grouping for the report (default: task)")
    parser.add_argument("--repeat", type=int, default=1, help="time the report this many times (best is shown)")
    args = parser.parse_args()

    runs = ensure_data(args.data, args.records)
    size = sum(f.stat().st_size for r in runs for f in r.glob("records*.jsonl"))
    settings = ReportSettings(by=(args.by,) if args.by else (), seed=0)
    best = None
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            t = time.perf_counter()
            report = make_report(runs, Path(out) / "report", settings)
            total = time.perf_counter() - t
        if best is None or total < best[0]:
            best = (total, report)
    total, report = best
    a = report.analysis
    print(f"records: {len(report.records.frame):,} ({size / 1e6:,.0f} MB in {sum(len(r.files) for r in report.records.runs)}"
          f" files); items {len(a.panel.items):,}; models {len(a.panel.models)}; controls {len(a.panel.controls)}; "
          f"groups {len(a.groups.labels)}; primary tests {a.family_size:,} (cluster-robust), secondary "
          f"{a.secondary_family_size:,} (McNemar, Cochran)")
    for stage, seconds in report.timings.items():
        print(f"  {stage:<26s} {seconds:6.2f} s")
    verdict = "within" if total <= TARGET_S else "OVER"
    print(f"total {total:.2f} s ({len(report.records.frame) / total / 1e6:.2f} M records/s): {verdict} the {TARGET_S:.0f} s target")


if __name__ == "__main__":
    main()
