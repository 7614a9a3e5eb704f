"""``probe report`` end to end on synthetic runs with a known truth: table contents and verdicts."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from statsmodels.stats.multitest import multipletests

from volprobe.cli import main
from volprobe.stats.analysis import analyse
from volprobe.stats.settings import ReportSettings
from volprobe.stats.load import read_runs
from volprobe.stats.panel import build_panel
from volprobe.stats.report import make_report
from volprobe.controls import get_control
from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs

CONTROLS = [get_control(c) for c in ("full", "text_only", "blank", "single_slice", "mirror_lr")]
MODELS = [
    SyntheticModel("reader", accuracy=0.85, refusal_rate=0.02, unparseable_rate=0.03),
    SyntheticModel("ignorer", uses_volume=False, blind_accuracy=0.55, error_rate=0.02),
    SyntheticModel("prior", uses_volume=False, blind_accuracy=0.6),
    SyntheticModel("random", random=True),
]
SETTINGS = dict(by=("task",), n_boot=400, n_perm=1000, seed=7)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    return write_synthetic_runs(root, MODELS, synthetic_items(600, 60, seed=1), CONTROLS, seed=3, shards=2)


@pytest.fixture(scope="module")
def report(runs, tmp_path_factory):
    return make_report(runs, tmp_path_factory.mktemp("report") / "out", ReportSettings(**SETTINGS))


def raw(runs) -> pd.DataFrame:
    """All records, read independently of volprobe.stats."""
    rows = [json.loads(line) for run in runs for f in sorted(run.glob("records*.jsonl")) for line in open(f)]
    return pd.DataFrame(rows)


def test_verdicts_are_right_and_worded_with_their_basis(report, runs):
    v = report.verdicts.set_index(["model", "grouping", "group"])
    reader, ignorer = v.loc[("reader", "all", "all")], v.loc[("ignorer", "all", "all")]
    assert reader.verdict == "uses the volume"
    assert re.fullmatch(r"uses the volume: −\d+\.\d points \[−\d+\.\d, −\d+\.\d\] without it, McNemar p < 1e-6 \(Holm\)",
                        reader.summary), reader.summary
    assert ignorer.verdict == "no evidence of volume use"
    n_ignorer = len(raw(runs).query("model == 'ignorer' and control in ['full', 'text_only'] and error.isnull()")
                    .groupby("item_id").filter(lambda g: len(g) == 2).item_id.unique())
    assert re.fullmatch(rf"no evidence of volume use \(n = {n_ignorer:,}; minimum detectable drop \d+\.\d points\)",
                        ignorer.summary), ignorer.summary
    assert "mirror_lr: answers follow the transformed anatomy" in reader.other_controls
    assert "mirror_lr: no evidence of tracking" in ignorer.other_controls
    assert reader.baseline_text.startswith("beats the blind baseline") and "prior" in reader.baseline_text
    assert ignorer.baseline_text.startswith("not shown above the blind baseline")
    assert ignorer.leakage and "leakage" in ignorer.leakage_text  # blind answers are 55% right
    assert "exact McNemar" in reader.basis and "400 resamples" in reader.basis and "Holm over" in reader.basis
    assert set(report.verdicts["model"]) == {"reader", "ignorer"}  # baselines and random get no verdict


def test_accuracy_and_paired_tables_match_a_hand_count(report, runs):
    df = raw(runs)
    acc = pd.read_csv(report.out / "tables" / "accuracy.csv").query("grouping == 'all'").set_index(["model", "control"])
    for (model, control), g in df.groupby(["model", "control"]):
        ok = g[g.error.isnull()]
        row = acc.loc[(model, control)]
        assert row.n == len(ok) and row.n_error == g.error.notnull().sum()
        assert row.accuracy == pytest.approx(ok.correct.mean(), rel=1e-12)
        assert row.refusal_rate == pytest.approx(ok.refused.mean(), rel=1e-12)
        closed = ok[ok.chance.notnull()]
        assert row.chance == pytest.approx(closed.chance.mean(), rel=1e-12)
    paired = pd.read_csv(report.out / "tables" / "paired.csv").query("grouping == 'all'").set_index(["model", "control"])
    full = df[(df.control == "full") & df.error.isnull()].set_index(["model", "item_id"])
    for control in ("text_only", "mirror_lr"):
        other = df[(df.control == control) & df.error.isnull()].set_index(["model", "item_id"])
        both = full.join(other, how="inner", suffixes=("", "_c")).loc["reader"]
        row = paired.loc[("reader", control)]
        assert row.n == len(both)
        assert row.lost == (both.correct & ~both.correct_c).sum() and row.gained == (~both.correct & both.correct_c).sum()
        assert row.change == pytest.approx(both.correct_c.mean() - both.correct.mean(), rel=1e-12)
        flips = (both.parsed.fillna("\0") != both.parsed_c.fillna("\0")).mean()
        assert row.flip_rate == pytest.approx(flips, rel=1e-12)
        assert row.ci_low < row.change < row.ci_high
    both = full.join(df[df.control == "mirror_lr"].set_index(["model", "item_id"]), how="inner", suffixes=("", "_c")).loc["reader"]
    changed = both[both.gold_c != both.gold]
    row = paired.loc[("reader", "mirror_lr")]
    assert row.n_changed == len(changed) and row.tracking_rate == pytest.approx((changed.parsed_c == changed.gold_c).mean())
    assert row.n_not_in_control == (df.query("model == 'reader' and control == 'full'").answer_type == "open").sum()


def test_one_holm_family_over_every_test(report):
    doc = json.loads((report.out / "report.json").read_text())
    pvals, adjusted = [], []
    for table, col in [("accuracy", "p_chance"), ("accuracy", "p_baseline"), ("paired", "p_mcnemar"),
                       ("paired", "p_tracking"), ("cochran", "p_cochran"), ("pairwise", "p_mcnemar"), ("scores", "p")]:
        for r in doc["tables"][table]:
            if r.get(col) is not None:
                pvals.append(r[col])
                adjusted.append(r[col + "_adj"])
    assert doc["family_size"] == len(pvals) > 100
    assert np.allclose(adjusted, multipletests(pvals, method="holm")[1], rtol=1e-12)


def test_json_csv_markdown_latex_agree(report):
    doc = json.loads((report.out / "report.json").read_text())
    csv = pd.read_csv(report.out / "tables" / "paired.csv")
    from_json = pd.DataFrame(doc["tables"]["paired"])
    for col in ("n", "change", "ci_low", "ci_high", "p_mcnemar_adj", "flip_rate"):
        assert np.allclose(csv[col], from_json[col], rtol=1e-9, equal_nan=True), col
    md = (report.out / "report.md").read_text()
    assert "p vs chance (two-sided, Holm)" in md and "p vs baseline (one-sided, Holm)" in md
    reader = report.verdicts.query("model == 'reader' and grouping == 'all'").iloc[0]
    assert reader.summary in md and "## How to read this report" in md
    tex = (report.out / "tables" / "paired.tex").read_text()
    assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex and "−" not in tex
    assert "task: spatial" in tex and "text\\_only" in tex and "95\\% CI" in tex and "95% " not in tex
    assert "\\textless{} 1e-6" in tex  # '<' is not a text character in pdfLaTeX's default font encoding


def test_figures_manifest_and_determinism(report, runs, tmp_path):
    figures = sorted(p.name for p in (report.out / "figures").iterdir())
    assert figures == ["accuracy_task.pdf", "accuracy_task.png", "forest_task.pdf", "forest_task.png"]
    assert (report.out / "figures" / "forest_task.png").read_bytes()[:4] == b"\x89PNG"
    assert (report.out / "figures" / "forest_task.pdf").read_bytes()[:4] == b"%PDF"
    manifest = json.loads((report.out / "manifest.json").read_text())
    assert manifest["seed"] == 7 and manifest["parameters"]["n_boot"] == 400
    assert [r["records"] for r in manifest["runs"]] == [len(raw([r])) for r in runs]
    assert all(len(h) == 64 for h in manifest["input_hashes"].values())
    assert manifest["runs"][0]["manifest"]["command"].startswith("synthetic run")
    again = make_report(runs, tmp_path / "again", ReportSettings(**SETTINGS), figures=False)
    assert (again.out / "report.json").read_text() == (report.out / "report.json").read_text()


def test_cli_report_with_fdr_and_a_named_baseline(runs, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["report", *map(str, runs), "--out", str(out), "--correction", "fdr_bh",
                                       "--baseline", "ignorer", "--n-boot", "200", "--no-figures", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "reader: uses the volume" in result.output and "ignorer:" not in result.output
    doc = json.loads((out / "report.json").read_text())
    assert doc["correction"] == "Benjamini-Hochberg" and doc["models"]["ignorer"] == "baseline"
    assert "Benjamini-Hochberg" in (out / "report.md").read_text()
    assert not (out / "figures").exists()


def test_cli_reports_mixed_item_sets_clearly(runs, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    lines = (runs[0] / "records-000-of-002.jsonl").read_text().splitlines(keepends=True)
    (partial / "records.jsonl").write_text("".join(ln for ln in lines if '"control": "text_only"' not in ln
                                                   or not ln.startswith('{"format_version": 1, "item_id": "q00000')))
    result = CliRunner().invoke(main, ["report", str(partial), "--out", str(tmp_path / "r"), "--no-figures"])
    assert result.exit_code == 2
    assert "model reader: text_only and full were run on different item sets" in result.output
    assert "--intersect" in result.output


def test_grouping_by_evidence_and_prior(runs):
    a = analyse(build_panel(read_runs(runs)), ReportSettings(by=("evidence", "prior_fixed"), n_boot=100))
    labels = set(map(tuple, a.accuracy[["grouping", "group"]].drop_duplicates().to_numpy()))
    assert {("evidence", "lr"), ("evidence", "si"), ("evidence", "none"), ("prior_fixed", "prior-fixed"),
            ("prior_fixed", "not prior-fixed"), ("prior_fixed", "unknown")} <= labels
    cf = a.paired.query("model == 'reader' and control == 'mirror_lr' and grouping == 'evidence'").set_index("group")
    assert cf.loc["lr", "n_changed"] > 0 and cf.loc["si", "n_changed"] == 0  # mirroring changes only lr answers


def test_judged_csv_records_go_through_model_vs_model_tests(tmp_path):
    from volprobe.probes.datasets.external import import_judged
    from volprobe.records import write_records

    rng = np.random.default_rng(0)
    n = 120
    a = rng.choice([0, 0.33, 0.66, 1], n)
    b = np.where(rng.random(n) < 0.7, 1.0, a)  # B better than A on most disagreements
    csv = tmp_path / "judged.csv"
    csv.write_text("question_id,model_a,model_b\n" + "".join(
        f"case_{i // 4}_a_1::{i % 4},{x},{y}\n" for i, (x, y) in enumerate(zip(a, b))))
    records = import_judged(csv).records
    write_records(records, tmp_path / "judged" / "records.jsonl")
    rep = make_report([tmp_path / "judged"], tmp_path / "rep", ReportSettings(n_boot=200), figures=False)
    row = rep.analysis.pairwise.query("grouping == 'all'").iloc[0]
    right_a, right_b = a >= 0.5, b >= 0.5
    assert (row.model_a, row.model_b, row.n) == ("model_a", "model_b", n)
    assert row.lost == (right_a & ~right_b).sum() and row.gained == (~right_a & right_b).sum()
    assert row.acc_b == pytest.approx(right_b.mean())
