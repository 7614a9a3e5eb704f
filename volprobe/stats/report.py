"""``probe report``: run records in, a paper-ready statistics folder out.

Output folder::

    report.md           verdicts, every table, notes and definitions (Markdown)
    report.json         every number (all table columns, verdicts, settings, inputs)
    tables/NAME.csv     raw numbers, one file per table (accuracy, paired, cochran, pairwise,
                        scores, sensitivity, verdicts, errors)
    tables/NAME.tex     the formatted tables, LaTeX booktabs
    figures/*.png|pdf   accuracy per control with CIs per group; forest plots of changes (journal
                        column widths, one font size, vector PDF)
    manifest.json       versions, settings, seed, and the runs used (files, record counts, hashes,
                        each run's own manifest)
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import pandas as pd

import volprobe
from volprobe.stats.analysis import Analysis, analyse
from volprobe.stats.clustered import MIN_CLUSTERS
from volprobe.stats.load import RecordTable, read_runs
from volprobe.stats.multiple import correction_label
from volprobe.stats.panel import build_panel
from volprobe.stats.settings import ReportSettings
from volprobe.stats.tables import display_tables, error_summary, group_label, to_markdown, write_tables
from volprobe.stats.verdict import verdicts as make_verdicts


@dataclass
class Report:
    """A finished report: its tables, verdicts, where it was written and how long each stage took."""

    analysis: Analysis
    verdicts: pd.DataFrame
    records: RecordTable
    out: Path
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = [f"report written to {self.out} ({len(self.files)} files)"]
        overall = self.verdicts[self.verdicts["grouping"] == "all"] if not self.verdicts.empty else self.verdicts
        lines += [f"  {r.model}{'' if r.group == 'all' else f' ({group_label(r.grouping, r.group)})'}: {r.summary}"
                  for r in overall.itertuples()]
        return "\n".join(lines)


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}
        self._t = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._t
        self._t = now


def make_report(runs: Sequence[str | Path], out: str | Path, settings: ReportSettings | None = None,
                figures: bool = True, command: str = "probe report",
                extra: Callable[["Report"], list[Path]] | None = None) -> Report:
    """Read the runs (run directories or records files), compute every test, write the report
    folder ``out``; returns the :class:`Report`. ``extra``: called with the finished report before the
    manifest is written, returns the further files it wrote into ``out`` (listed in the manifest; e.g.
    ``report.html``, which needs the volumes and so lives outside the statistics)."""
    from volprobe.manifest import describe_inputs, write_manifest

    settings = settings or ReportSettings()
    out = Path(out)
    timer = _Timer()
    with ThreadPoolExecutor(max_workers=1) as pool:
        records = read_runs(runs)
        hashing = pool.submit(describe_inputs, [str(r) for r in runs])  # on the second core, beside the statistics
        timer.lap("read records")
        panel = build_panel(records)
        timer.lap("check and arrange")
        analysis = analyse(panel, settings)
        _add_notes(analysis, records)
        timer.lap("tests, power")
        verdicts = make_verdicts(analysis)
        timer.lap("verdicts")
        errors = panel.errors if panel.errors is not None else pd.DataFrame()
        files = [p for paths in write_tables(analysis, verdicts, errors, out / "tables").values() for p in paths]
        files.append(_write_json(out / "report.json", analysis, verdicts, errors, records))
        files.append(_write_markdown(out / "report.md", analysis, verdicts, errors, records))
        timer.lap("tables, JSON, Markdown")
        if figures:
            files += _figures(analysis, out / "figures", settings.figure_width)
            timer.lap("figures")
        report = Report(analysis=analysis, verdicts=verdicts, records=records, out=out, files=files,
                        timings=timer.timings)
        if extra is not None:
            files += extra(report)
            timer.lap("html")
        described = hashing.result()
    files.append(write_manifest(
        out, command, seed=settings.seed, parameters=analysis.settings.to_dict(),
        input_hashes={d["path"]: d["sha256"] for d in described},
        extra={"runs": [r.to_dict() for r in records.runs], "input_files": described,
               "outputs": [str(f.relative_to(out)) for f in files]}))
    timer.lap("manifest")
    return report


def _figures(analysis: Analysis, folder: Path, width: str) -> list[Path]:
    from volprobe.stats.figures import write_figures

    return write_figures(analysis, folder, width)


def _add_notes(a: Analysis, records: RecordTable) -> None:
    p = a.panel
    n_err = 0 if p.errors is None else len(p.errors)
    if n_err:
        a.notes.append(f"{n_err:,} records failed on the model side (error set): they are excluded from accuracy "
                       "and from every paired test, counted per row (Errors, Excluded) and listed in tables/errors.csv")
    torn = sum(r.skipped_torn_lines for r in records.runs)
    if torn:
        a.notes.append(f"skipped {torn} torn last line(s) of records files (a writer killed mid-line)")
    for run in records.runs:
        if run.manifest is None and Path(run.path).is_dir():
            a.notes.append(f"{run.path} has no manifest.json")
    if not a.paired.empty:  # over all items: a pool whose items are all left out has no row of its own
        r = p.controls.index(a.settings.reference)
        for model, control in dict.fromkeys(zip(a.paired["model"], a.paired["control"])):
            m, c = p.models.index(model), p.controls.index(control)
            missing = int((p.present[m, r] & ~p.present[m, c]).sum())
            if missing:
                why = ("items whose answer cannot be transformed" if control in p.counterfactual
                       else "missing items (--intersect)")
                shared = int((p.valid(m, r) & p.valid(m, c)).sum())
                a.notes.append(f"{model} · {control}: {missing:,} {a.settings.reference} items are not in this control "
                               f"({why}); its paired tests use the {shared:,} shared items")


def _records(frame: pd.DataFrame) -> list[dict]:
    return json.loads(frame.to_json(orient="records", double_precision=15)) if not frame.empty else []


def _write_json(path: Path, a: Analysis, verdicts, errors, records: RecordTable) -> Path:
    p = a.panel
    doc = {
        "volprobe_version": volprobe.__version__,
        "settings": a.settings.to_dict(),
        "correction": correction_label(a.settings.correction),
        "family_size": a.family_size,
        "secondary_family_size": a.secondary_family_size,
        "mde_level": a.mde_level,
        "min_clusters": MIN_CLUSTERS,
        "cluster_level": p.cluster_level,
        "models": a.roles, "controls": p.controls, "counterfactual_controls": sorted(p.counterfactual),
        "n_records": int(len(records.frame)), "n_items": int(len(p.items)),
        "n_error_records": 0 if errors is None else int(len(errors)),
        "runs": [r.to_dict() for r in records.runs],
        "notes": a.notes,
        "verdicts": _records(verdicts),
        "tables": {name: _records(t) for name, t in a.tables().items()},
        "errors": _records(errors) if errors is not None else [],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n", encoding="utf-8")
    return path


#: How to read the tables (ends the Markdown report).
DEFINITIONS = f"""\
- **Which test decides.** Questions about one patient share a volume, so their answers are correlated;
  a test that treats them as independent finds differences that are not there far more often than
  its level says. Every verdict and every `*` therefore comes from a **cluster-robust paired test**
  over clusters (patients; else cases; else items): the mean paired difference (the change in
  accuracy) with the cluster-robust variance of Obuchowski (1998) — the variance behind Durkalski et
  al.'s (2003) clustered McNemar test — with the CR2 small-sample correction (Bell & McCaffrey 2002),
  referred to Student's t with Bell–McCaffrey degrees of freedom (Imbens & Kolesár 2016; Pustejovsky &
  Tipton 2018). With fewer than {MIN_CLUSTERS} clusters the deciding test is the exact sign-flip
  randomisation test over the clusters (it cannot reach p below 2^(1−K) with K clusters) and no CI is
  given. The **Test** column and each verdict's "Decided by" name the test used.
- **Change** = accuracy under the control − under the reference, in points; its CI is the t interval
  with the same standard error and degrees of freedom, so a two-sided test and the CI agree. Simulations
  (type-I error and coverage under clustered nulls, tests/test_stats_simulation.py and
  benchmarks/stats_simulation.py) hold 5% and 95% from 8 to 60 clusters when patient effects vary
  smoothly from patient to patient; an effect confined to one or two patients defeats any method with
  few clusters.
- **McNemar** (secondary): exact binomial test on the discordant items (lost = right only with the
  reference, gained = right only with the control), items as independent; adjusted in a family of its
  own and never deciding. Where it is significant and the cluster-robust test is not, the verdict is
  *inconclusive*: the difference rests on few patients.
- **Accuracy** excludes records whose model failed (error); its CI is the Wilson score interval.
  **Subtask mean** (rows of one task with several subtasks): the unweighted mean of the per-subtask
  accuracies, the score the 3D-RAD paper reports per task, beside pooled accuracy.
- **Pools**: when a report holds closed items (options, yes/no) and open ones (free text, measurements),
  the rows over all items are split into *all closed items* and *all open items*; no row pools the two.
- **p vs chance**: exact binomial test when every item has the same chance level, Poisson-binomial
  (exact convolution) when chance varies; open items have no chance level and are left out of it.
  Its sidedness is in the column header (two-sided by default, so "below chance" is a valid claim). It
  treats items as independent.
- **vs baseline**: the model and the strongest blind baseline (highest accuracy on the shared items)
  answered the same items, so they are compared paired: change = model − baseline, cluster-robust test,
  one-sided (the model above the baseline), exact McNemar as the secondary test.
- **Paired tests** use the items answered (without model error) under both conditions. A control that
  lacks items of the reference is an error unless it is a counterfactual (untransformable items are
  left out) or --intersect was given; exclusions are counted in the table.
- **Flip rate**: share of paired items whose parsed answer differs between the two conditions.
- **Tracking** (counterfactual controls, items whose gold answer changes): share answered with the
  transformed gold. Null: the model ignores the image, so its answers to the original and the
  counterfactual volume are exchangeable; the gain (tracking − the share of reference answers already
  equal to the transformed gold) is tested one-sided with the cluster-robust test.
- **Cochran's Q** compares accuracy across the reference and every non-counterfactual control (items
  as independent: secondary, in the family of the McNemar tests).
- **Scores**: mean paired difference of a continuous score, cluster-robust test and CI as above; no
  MDE where the scores did not vary at all.
- **Answer sensitivity** (models run without controls, e.g. imported predictions): among items with the
  same question text on different volumes, how often the answer changes where the golds differ vs
  where they agree, for closed answers and for the spatial terms (left/right/bilateral,
  superior/inferior, ...) of free-text answers. Test: answers permuted among the volumes of each
  question text (the null "the answer ignores the volume"), one-sided; CI cluster-robust over question
  texts. Limits: only repeated question texts count, a subset chosen by the benchmark's templates; it
  detects insensitivity to the volume, not correctness (an answer can follow the volume and still be
  wrong); without pairs whose golds agree it cannot tell changes that follow the gold from changes
  that do not; volumes of one patient under different texts are treated as independent in the CI.
- **Models**: `prior`, `prior:*` and --baseline models are blind baselines; `random` is the random
  reference; neither gets paired tests or a verdict unless --assess-references. Every other model is
  evaluated; a model with no control paired with the reference gets one "not assessed" line.
- **Multiple comparisons**: the primary p-values of the report (cluster-robust tests, chance, answer
  sensitivity) are one family, adjusted by the method named in each header; `*` marks
  significance at alpha after adjustment. The secondary p-values (exact McNemar, Cochran's Q: items as
  independent) are adjusted as a separate family.
- **MDE** (beside non-significant results): the smallest effect found with the stated power at
  alpha / F, F the number of primary tests (the level a test must reach to be significant whatever the
  other tests show; the first step of Holm and of Benjamini–Hochberg): for paired tests the larger of
  the exact McNemar MDE at the observed discordance and (t(1 − level/2) + t(power)) × the cluster-robust
  SE, with the test's degrees of freedom; "not reachable" where too few clusters or items can reach
  that level at all.
- **References**: Obuchowski NA (1998), Statistics in Medicine 17:1495–1507. Durkalski VL et al. (2003),
  Statistics in Medicine 22:2417–2428. Bell RM, McCaffrey DF (2002), Survey Methodology 28:169–181.
  Imbens GW, Kolesár M (2016), Review of Economics and Statistics 98:701–712. Pustejovsky JE, Tipton E
  (2018), Journal of Business & Economic Statistics 36:672–683.
"""


#: Section titles of the report's tables (Markdown and HTML).
TABLE_TITLES = {"verdicts": "Verdicts by group", "accuracy": "Accuracy", "paired": "{reference} vs each control",
                "tracking": "Counterfactual tracking", "cochran": "Cochran's Q", "pairwise": "Model vs model",
                "scores": "Continuous scores", "sensitivity": "Answer sensitivity (runs without controls)"}


def headline(a: Analysis, records: RecordTable) -> str:
    """One line: records, items, models with their roles, controls."""
    p = a.panel
    return (f"{len(records.frame):,} records · {len(p.items):,} items · models: "
            + ", ".join(f"{m} ({role})" for m, role in a.roles.items()) + " · controls: " + ", ".join(p.controls))


def settings_line(a: Analysis) -> str:
    """The settings a reader needs to read the p-values (level, corrections, MDE level, reference, clusters)."""
    s, p = a.settings, a.panel
    return (f"Settings: alpha = {s.alpha:g}; {correction_label(s.correction)} over {a.family_size:,} primary tests "
            f"(cluster-robust paired tests, chance, answer sensitivity) and, separately, over "
            f"{a.secondary_family_size:,} secondary tests that treat items as independent (exact McNemar, "
            f"Cochran's Q); minimum detectable effects at "
            f"{s.power:.0%} power and alpha/{a.family_size:,} = {a.mde_level:.2g}; reference control "
            f"{s.reference}; clusters: {p.cluster_level} (CIs from {MIN_CLUSTERS} clusters); seed {s.seed}; "
            f"groupings: {', '.join(('all',) + s.by)}.")


def _write_markdown(path: Path, a: Analysis, verdicts: pd.DataFrame, errors, records: RecordTable) -> Path:
    s = a.settings
    lines = ["# Volume-reliance report", "", headline(a, records), "", settings_line(a)]
    lines += ["", "Runs:", ""] + [f"- `{r.path}`: {r.records:,} records in {len(r.files)} file(s)" for r in records.runs]
    if a.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in a.notes]
    overall = verdicts[verdicts["grouping"] == "all"] if not verdicts.empty else verdicts
    if not overall.empty:
        lines += ["", "## Verdicts (all items; closed and open items apart)", ""]
        for r in overall.itertuples():
            label = "" if r.group == "all" else f" ({group_label(r.grouping, r.group)})"
            lines.append(f"- **{r.model}**{label} — {r.summary}.")
            for extra in (r.leakage_text, r.baseline_text, r.other_controls):
                if extra:
                    lines.append(f"  - {extra}")
            if r.basis:
                lines.append(f"  - Basis: {r.basis}.")
    for name, (caption, table) in display_tables(a, verdicts).items():
        lines += ["", f"## {TABLE_TITLES[name].format(reference=s.reference)}", "", caption + ".", "",
                  to_markdown(table)]
    if errors is not None and not errors.empty:
        lines += ["", "## Model errors", "", f"{len(errors):,} records (all in tables/errors.csv):", "",
                  to_markdown(error_summary(errors)), "", "First ones:", "", to_markdown(errors.head(20))]
    lines += ["", "## How to read this report", "", DEFINITIONS]
    path.write_text("\n".join(lines).rstrip() + "\n", encoding="utf-8")
    return path
