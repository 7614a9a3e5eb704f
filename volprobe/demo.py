"""``probe demo``: the whole pipeline on volprobe's embedded default data (synthetic phantoms).

Steps (each writes into ``out``; a rerun with the same settings reuses finished steps):

1. ``phantoms/``: 2 × ``n_cases`` synthetic torso CTs with TotalSegmentator-named masks, orientations
   cycling RAS, LPS, LAS and oblique (:func:`~volprobe.segmentation.phantoms.generate.generate_phantoms`);
2. ``relations/``: one relation graph per case, from its masks (patient frame, mm);
3. ``items/``: one spatial question set over all cases, split by case into ``train.jsonl`` (to fit
   the blind prior) and ``test.jsonl`` (the ``n_cases`` evaluation cases);
4. ``prior.json``: the blind ``text-classifier`` baseline fitted on the training items;
5. ``runs/<model>/``: ``oracle`` (segments the volume it is given), ``prior`` (blind) and ``random``
   under the standard controls (:data:`~volprobe.controls.STANDARD_CONTROLS`: every built-in control);
6. ``report/``: the full report, grouped by category and evidence axes, with verdicts for the
   reference models too, and ``report.html`` with its item browser (12 items per category).

Then :func:`check_expectations` compares the report with the honest expected outcome, reading what each
control does from the control itself: the oracle loses accuracy under every control that removes or
degrades the image (all but the reference and the counterfactuals), its answers follow every
counterfactual, and the blind and random models show no volume use. Each expectation is printed as met
or NOT met; nothing is hidden.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

#: Structures the phantom oracle's threshold segmenter cannot tell apart (it finds the vertebrae as one).
DEMO_EXCLUDE = ("vertebrae_*",)
DEFAULT_OUT = "probe-demo"
DEFAULT_N_CASES = 12


@dataclass
class Expectation:
    """One expected outcome of the demo and whether the report shows it."""

    name: str
    met: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'met' if self.met else 'NOT met'}] {self.name}: {self.detail}"


@dataclass
class DemoResult:
    """What :func:`run_demo` made: folders, the report, expectation checks and stage timings (s)."""

    out: Path
    report: object
    expectations: list[Expectation]
    key_table: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def all_met(self) -> bool:
        return all(e.met for e in self.expectations)


def run_demo(out: str | Path = DEFAULT_OUT, n_cases: int = DEFAULT_N_CASES, seed: int = 0, progress: bool = True,
             echo=print) -> DemoResult:
    """Run the demo into ``out`` with ``n_cases`` evaluation cases (and as many training cases)."""
    from volprobe.controls import STANDARD_CONTROLS, get_control
    from volprobe.controls.counterfactuals import relations_for_case
    from volprobe.errors import VolprobeError
    from volprobe.manifest import write_manifest
    from volprobe.probes.baselines import fit_baseline, save_baseline
    from volprobe.probes.run.engine import run
    from volprobe.items import read_items, write_items
    from volprobe.probes.models.base import load_model
    from volprobe.probes.questions import QuestionSettings, generate_questions, load_cases, write_question_set
    from volprobe.segmentation.phantoms.generate import generate_phantoms
    from volprobe.stats import ReportSettings, make_report
    from volprobe.viewer import BrowserSettings, html_report_writer

    if int(n_cases) < 2:
        raise VolprobeError(f"--n-cases must be at least 2, got {n_cases}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t = time.perf_counter()

    def stage(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        timings[name] = round(now - t, 2)
        t = now

    echo(f"[1/6] phantoms: {2 * n_cases} synthetic CTs with masks -> {out / 'phantoms'}")
    cases = generate_phantoms(out / "phantoms", 2 * int(n_cases), seed=seed, orientation="mixed", progress=progress)
    stage("phantoms")

    echo("[2/6] relation graphs from the masks (patient frame, mm)")
    rel_dir = out / "relations"
    rel_dir.mkdir(exist_ok=True)
    from tqdm import tqdm

    graphs = []
    for c in tqdm(cases, desc="relations", unit="case", disable=not progress):
        target, seg = rel_dir / f"{c['case_id']}.json", out / "phantoms" / c["files"]["seg"]["path"]
        if not _reusable_relations(target, seg):
            relations_for_case(out / "phantoms" / c["files"]["ct"]["path"], seg, target, case=c["case_id"])
        graphs.append(target)
    stage("relations")

    echo("[3/6] spatial questions (balanced, mask-verified), split by case into train/test")
    question_cases = load_cases(graphs)  # only this run's cases, whatever else the folder holds
    settings = QuestionSettings(per_case=60, seed=seed, exclude=DEMO_EXCLUDE)
    qs = generate_questions(question_cases, settings)
    all_path, _ = write_question_set(qs, out / "items" / "all.jsonl", command="probe demo", inputs=graphs)
    # cases alternate between the splits so that both get every orientation (mixed cycles 4 of them)
    test_cases = {c["case_id"] for i, c in enumerate(cases) if (i + i // 4) % 2 == 1}
    items = read_items(all_path)
    test = [i for i in items if i.case in test_cases]
    train = [i for i in items if i.case not in test_cases]
    write_items(test, out / "items" / "test.jsonl")
    write_items(train, out / "items" / "train.jsonl")
    stage("questions")

    echo(f"[4/6] blind prior fitted on {len(train)} training items")
    prior_path = save_baseline(fit_baseline(train, "text-classifier", seed=seed), out / "prior.json",
                               command="probe demo", inputs=[out / "items" / "train.jsonl"])
    stage("prior")

    controls = [get_control(spec) for spec in STANDARD_CONTROLS]
    echo(f"[5/6] reference models on {len(test)} test items x {len(controls)} controls")
    runs = []
    for label, spec in (("oracle", "oracle"), ("prior", f"prior:{prior_path}"), ("random", "random")):
        run_dir = out / "runs" / label
        run(test, load_model(spec), controls, run_dir, seed=seed, model_label=label,
            items_path=out / "items" / "test.jsonl", progress=progress, command="probe demo",
            settings={"model_spec": spec})
        runs.append(run_dir)
    stage("runs")

    echo("[6/6] report")
    report = make_report(runs, out / "report", ReportSettings(by=("category", "evidence"), assess_references=True,
                                                             seed=seed), command="probe demo",
                         extra=html_report_writer(runs, BrowserSettings(seed=seed)))
    stage("report")

    expectations = check_expectations(report.analysis.paired, report.verdicts, controls)
    key = key_table(report.analysis.accuracy, [c.label for c in controls])
    write_manifest(out, "probe demo", inputs=[], seed=seed,
                   parameters={"n_cases": int(n_cases), "controls": [c.label for c in controls],
                               "exclude": list(DEMO_EXCLUDE), "prior": "text-classifier"},
                   extra={"timings_s": timings, "expectations": [vars(e) for e in expectations],
                          "items": {"train": len(train), "test": len(test)}})
    return DemoResult(out=out, report=report, expectations=expectations, key_table=key, timings=timings)


def key_table(accuracy: pd.DataFrame, controls: list[str]) -> pd.DataFrame:
    """Accuracy (%) of each model (rows) under each control (columns, in the order given), over all items."""
    acc = accuracy[(accuracy["grouping"] == "all")]
    table = acc.pivot_table(index="model", columns="control", values="accuracy", aggfunc="first") * 100
    order = [c for c in controls if c in table.columns]
    return table[order].round(1)


def _paired(paired: pd.DataFrame, model: str, control: str):
    """The paired row of ``model`` under ``control`` over all items (None when there is none)."""
    rows = paired[(paired["model"] == model) & (paired["control"] == control) & (paired["grouping"] == "all")]
    return None if rows.empty else rows.iloc[0]


def _drop(paired: pd.DataFrame, name: str, control: str) -> Expectation:
    row = _paired(paired, "oracle", control)
    if row is None:
        return Expectation(name, False, f"no paired test of oracle under {control}")
    met = bool(row.p_cluster_significant) and row.change < 0
    return Expectation(name, met, f"change {row.change * 100:+.1f} points (n = {row.n}, {row.n_clusters} patients), "
                                  f"adjusted cluster-robust p = {row.p_cluster_adj:.2g}")


def _reusable_relations(target: Path, seg: Path) -> bool:
    """A relations file from an earlier run: newer than its masks and in this volprobe's format version."""
    from volprobe.jsonio import read_json
    from volprobe.segmentation.relations.graph import RELATIONS_VERSION

    if not target.exists() or target.stat().st_mtime < seg.stat().st_mtime:
        return False
    try:
        return read_json(target).get("version") == RELATIONS_VERSION
    except (OSError, ValueError):
        return False


def check_expectations(paired: pd.DataFrame, verdicts: pd.DataFrame, controls) -> list[Expectation]:
    """The demo's honest expected outcome, checked against the report's tables. What each control does is
    read from the control (``reference``, ``changes_gold``): the oracle drops under every other control
    and follows every counterfactual."""
    out = [_drop(paired, f"oracle drops under {c.label}", c.label) for c in controls
           if not c.reference and not c.changes_gold]
    for c in controls:
        if not c.changes_gold:
            continue
        name = f"oracle follows {c.label}"
        row = _paired(paired, "oracle", c.label)
        if row is None or pd.isna(row.get("tracking_rate")):
            out.append(Expectation(name, False, f"no tracking test of oracle under {c.label}"))
        else:
            out.append(Expectation(name, bool(row.p_tracking_significant),
                                   f"tracking rate {row.tracking_rate * 100:.1f}% of changed answers, "
                                   f"adjusted p = {row.p_tracking_adj:.2g}"))
    overall = verdicts[verdicts["grouping"] == "all"].set_index("model") if not verdicts.empty else verdicts
    for model in ("prior", "random"):
        if model not in overall.index:
            out.append(Expectation(f"{model} shows no volume use", False, "no verdict"))
            continue
        rows = paired[(paired["model"] == model) & (paired["grouping"] == "all")]
        # A counterfactual control changes the gold answer, so a blind model's accuracy moves with it;
        # volume use there means *following* the change (tracking), not a change in accuracy.
        counterfactual = rows["tracking_rate"].notna()
        changed = rows[~counterfactual & rows["p_cluster_significant"].astype(bool)]
        tracked = rows[counterfactual & rows["p_tracking_significant"].astype(bool)]
        met = overall.loc[model, "verdict"] == "no evidence of volume use" and changed.empty and tracked.empty
        detail = overall.loc[model, "verdict"]
        if not changed.empty:
            detail += f"; accuracy changes significantly under {', '.join(changed['control'])}"
        if not tracked.empty:
            detail += f"; answers follow {', '.join(tracked['control'])}"
        if met:
            detail += "; no control changes its accuracy and it follows no counterfactual"
        out.append(Expectation(f"{model} shows no volume use", met, detail))
    return out


def format_result(result: DemoResult) -> str:
    """The summary ``probe demo`` prints: key table, expectations, timings, where the report is."""
    lines = ["", "Accuracy (%) by model and control, all test items:", result.key_table.to_string(), "",
             "Expected outcome:"]
    lines += [f"  {e}" for e in result.expectations]
    if not result.all_met:
        lines.append("  The outcome differs from what was expected; see the report before trusting it.")
    total = sum(result.timings.values())
    lines += ["", "Stage times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in result.timings.items())
              + f"; total {total:.1f}",
              f"Report: {result.out / 'report' / 'report.md'} and {result.out / 'report' / 'report.html'}"]
    return "\n".join(lines)
