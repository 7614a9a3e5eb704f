"""``probe report`` end to end on synthetic runs with a known truth: table contents and verdicts."""

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import stats
from statsmodels.stats.multitest import multipletests

from volprobe.cli import main
from volprobe.stats.analysis import P_COLUMNS, SECONDARY_P_COLUMNS, analyse
from volprobe.stats.clustered import cluster_paired_test, mde_cluster
from volprobe.stats.power import mde_mcnemar
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
SETTINGS = dict(by=("task",), n_perm=1000, seed=7)


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
    assert "all" not in set(report.verdicts.query("grouping == 'all'")["group"])  # closed and open apart
    reader, ignorer = v.loc[("reader", "all", "closed")], v.loc[("ignorer", "all", "closed")]
    assert reader.verdict == "uses the volume"
    assert re.fullmatch(r"uses the volume: −\d+\.\d points \[−\d+\.\d, −\d+\.\d\] without it, cluster-robust p < 1e-6 "
                        r"\(Holm\)", reader.summary), reader.summary
    assert ignorer.verdict == "no evidence of volume use"
    df = raw(runs)
    n_ignorer = len(df.query("model == 'ignorer' and control in ['full', 'text_only'] and error.isnull() "
                             "and answer_type != 'open'")
                    .groupby("item_id").filter(lambda g: len(g) == 2).item_id.unique())
    assert re.fullmatch(rf"no evidence of volume use \(n = {n_ignorer:,}; minimum detectable drop \d+\.\d points\)",
                        ignorer.summary), ignorer.summary
    assert "mirror_lr: answers follow the transformed anatomy" in reader.other_controls
    assert "mirror_lr: no evidence of tracking" in ignorer.other_controls
    assert reader.baseline_text.startswith("beats the blind baseline") and "prior" in reader.baseline_text
    assert ignorer.baseline_text.startswith("not shown above the blind baseline")
    assert ignorer.leakage and "leakage" in ignorer.leakage_text  # blind answers are 55% right
    assert reader.decided_by == "cluster-robust t test (CR2, {:.1f} df, 60 clusters), two-sided".format(
        report.analysis.paired.query("model == 'reader' and control == 'text_only' and grouping == 'all' "
                                     "and group == 'closed'").iloc[0].df)
    assert "decided by the cluster-robust t test" in reader.basis and "exact McNemar (secondary" in reader.basis
    assert "Holm over" in reader.basis
    assert set(report.verdicts["model"]) == {"reader", "ignorer"}  # baselines and random get no verdict


def test_accuracy_and_paired_tables_match_a_hand_count(report, runs):
    df = raw(runs)
    df["pool"] = np.where(df.answer_type == "open", "open", "closed")
    acc = pd.read_csv(report.out / "tables" / "accuracy.csv").query("grouping == 'all'")
    acc = acc.set_index(["model", "control", "group"])
    for (model, control, pool), g in df.groupby(["model", "control", "pool"]):
        ok = g[g.error.isnull()]
        row = acc.loc[(model, control, pool)]
        assert row.n == len(ok) and row.n_error == g.error.notnull().sum()
        assert row.accuracy == pytest.approx(ok.correct.mean(), rel=1e-12)
        assert row.refusal_rate == pytest.approx(ok.refused.mean(), rel=1e-12)
        closed = ok[ok.chance.notnull()]
        if len(closed):
            assert row.chance == pytest.approx(closed.chance.mean(), rel=1e-12)
    paired = pd.read_csv(report.out / "tables" / "paired.csv").query("grouping == 'all' and group == 'closed'")
    paired = paired.set_index(["model", "control"])
    full = df[(df.control == "full") & df.error.isnull() & (df.pool == "closed")].set_index(["model", "item_id"])
    for control in ("text_only", "mirror_lr"):
        other = df[(df.control == control) & df.error.isnull()].set_index(["model", "item_id"])
        both = full.join(other, how="inner", suffixes=("", "_c")).loc["reader"]
        row = paired.loc[("reader", control)]
        assert row.n == len(both)
        assert row.lost == (both.correct & ~both.correct_c).sum() and row.gained == (~both.correct & both.correct_c).sum()
        assert row.change == pytest.approx(both.correct_c.mean() - both.correct.mean(), rel=1e-12)
        flips = (both.parsed.fillna("\0") != both.parsed_c.fillna("\0")).mean()
        assert row.flip_rate == pytest.approx(flips, rel=1e-12)
        # the primary test, recomputed from the records with the library function on patients
        test = cluster_paired_test(both.correct.astype(float), both.correct_c.astype(float), both.patient)
        assert row.p_cluster == pytest.approx(test.pvalue, rel=1e-9, abs=1e-300)
        assert (row.ci_low, row.ci_high) == pytest.approx(test.ci, rel=1e-9)
        assert row.n_clusters == both.patient.nunique() and not row.exact
        assert row.ci_low < row.change < row.ci_high
    both = full.join(df[df.control == "mirror_lr"].set_index(["model", "item_id"]), how="inner", suffixes=("", "_c")).loc["reader"]
    changed = both[both.gold_c != both.gold]
    row = paired.loc[("reader", "mirror_lr")]
    assert row.n_changed == len(changed) and row.tracking_rate == pytest.approx((changed.parsed_c == changed.gold_c).mean())
    tracking = cluster_paired_test((changed.parsed == changed.gold_c).astype(float),
                                   (changed.parsed_c == changed.gold_c).astype(float), changed.patient, "greater")
    assert row.p_tracking == pytest.approx(tracking.pvalue, rel=1e-9, abs=1e-300)
    assert row.tracking_gain == pytest.approx(tracking.estimate, rel=1e-12)
    open_rows = pd.read_csv(report.out / "tables" / "paired.csv").query("grouping == 'all' and group == 'open'")
    assert row.n_not_in_control == 0 and len(open_rows.query("control == 'mirror_lr'")) == 0  # open: not transformable
    n_open = (df.query("model == 'reader' and control == 'full'").answer_type == "open").sum()
    assert f"reader · mirror_lr: {n_open:,} full items are not in this control (items whose answer cannot be " \
           "transformed)" in (report.out / "report.md").read_text()


def test_the_blind_baseline_is_compared_paired(report, runs):
    df = raw(runs)
    acc = report.analysis.accuracy.query("model == 'reader' and control == 'full' and grouping == 'all' "
                                         "and group == 'closed'").iloc[0]
    assert acc.baseline == "prior"
    ok = df[df.error.isnull() & (df.answer_type != "open") & (df.control == "full")]
    both = ok[ok.model == "reader"].set_index("item_id").join(ok[ok.model == "prior"].set_index("item_id"),
                                                                how="inner", suffixes=("", "_b"))
    assert acc.n_baseline_shared == len(both)
    assert acc.baseline_only == (both.correct_b & ~both.correct).sum()
    assert acc.model_only == (both.correct & ~both.correct_b).sum()
    test = cluster_paired_test(both.correct_b.astype(float), both.correct.astype(float), both.patient, "greater")
    assert acc.p_baseline == pytest.approx(test.pvalue, rel=1e-9, abs=1e-300)
    assert acc.baseline_change == pytest.approx(test.estimate, rel=1e-12)
    assert acc.p_baseline_mcnemar == pytest.approx(
        stats.binomtest(int(acc.model_only), int(acc.model_only + acc.baseline_only), 0.5, "greater").pvalue)


def test_subtask_mean_beside_pooled_accuracy(report, runs):
    from volprobe.probes.scoring.aggregate import subtask_mean_accuracy

    df = raw(runs)
    acc = report.analysis.accuracy.query("grouping == 'task'").set_index(["model", "control", "group"])
    for (model, control, task), g in df[df.error.isnull()].groupby(["model", "control", "task"]):
        row = acc.loc[(model, control, task)]
        assert row.subtask_mean == pytest.approx(subtask_mean_accuracy(list(g.subtask), list(g.correct)), rel=1e-12)
        assert row.n_subtasks == g.subtask.nunique()
    md = (report.out / "report.md").read_text()
    assert "Subtask mean %" in md and "3D-RAD paper's task score" in md


def test_primary_and_secondary_families(report):
    doc = json.loads((report.out / "report.json").read_text())
    for columns, size in [(P_COLUMNS, "family_size"), (SECONDARY_P_COLUMNS, "secondary_family_size")]:
        pvals, adjusted = [], []
        for table, col in columns:
            for r in doc["tables"][table]:
                if r.get(col) is not None:
                    pvals.append(r[col])
                    adjusted.append(r[col + "_adj"])
        assert doc[size] == len(pvals) > 50
        assert np.allclose(adjusted, multipletests(pvals, method="holm")[1], rtol=1e-12)
    assert doc["mde_level"] == pytest.approx(0.05 / doc["family_size"])
    primary = {c for _, c in P_COLUMNS}
    assert not primary & {c for _, c in SECONDARY_P_COLUMNS}
    md = (report.out / "report.md").read_text()
    assert f"Holm over {doc['family_size']:,} primary tests" in md and f"alpha/{doc['family_size']:,}" in md


def test_minimum_detectable_effects_are_at_the_adjusted_level(report):
    """The MDE beside a p-value uses the same family: at alpha/F, not alpha (n = 720: 8.5 points, not 5.8)."""
    a = report.analysis
    row = a.paired.query("model == 'ignorer' and control == 'text_only' and grouping == 'all' "
                         "and group == 'closed'").iloc[0]
    level = 0.05 / a.family_size
    discordance = (row.lost + row.gained) / row.n
    assert row.mde == pytest.approx(max(mde_mcnemar(int(row.n), discordance, level),
                                        float(mde_cluster(row.se, row.df, row.n_clusters, level))), rel=1e-9)
    assert row.mde > mde_mcnemar(int(row.n), discordance, 0.05)
    # a family of 50 tests: 8.5 points, not 5.8, at n = 720 (12.9, not 9.1, at n = 200)
    assert (mde_mcnemar(720, 0.3, 0.05), mde_mcnemar(720, 0.3, 0.05 / 50)) == pytest.approx((0.058, 0.085), abs=0.001)
    assert (mde_mcnemar(200, 0.2, 0.05), mde_mcnemar(200, 0.2, 0.05 / 50)) == pytest.approx((0.091, 0.129), abs=0.001)


def test_json_csv_markdown_latex_agree(report):
    doc = json.loads((report.out / "report.json").read_text())
    csv = pd.read_csv(report.out / "tables" / "paired.csv")
    from_json = pd.DataFrame(doc["tables"]["paired"])
    for col in ("n", "change", "ci_low", "ci_high", "p_cluster_adj", "p_mcnemar_adj", "flip_rate"):
        assert np.allclose(csv[col], from_json[col], rtol=1e-9, equal_nan=True), col
    md = (report.out / "report.md").read_text()
    assert "p vs chance (two-sided)" in md and "p vs baseline (one-sided)" in md and "McNemar p vs baseline" in md
    reader = report.verdicts.query("model == 'reader' and grouping == 'all' and group == 'closed'").iloc[0]
    assert reader.summary in md and "## How to read this report" in md and reader.decided_by in md
    words = " ".join(md.split())
    for reference in ("Obuchowski (1998)", "Durkalski et al.'s (2003)", "Bell & McCaffrey 2002"):
        assert reference in words
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
    assert manifest["seed"] == 7 and manifest["parameters"]["n_perm"] == 1000
    assert [r["records"] for r in manifest["runs"]] == [len(raw([r])) for r in runs]
    assert all(len(h) == 64 for h in manifest["input_hashes"].values())
    assert manifest["runs"][0]["manifest"]["command"].startswith("synthetic run")
    again = make_report(runs, tmp_path / "again", ReportSettings(**SETTINGS), figures=False)
    assert (again.out / "report.json").read_text() == (report.out / "report.json").read_text()


def test_cli_report_with_fdr_and_a_named_baseline(runs, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(main, ["report", *map(str, runs), "--out", str(out), "--correction", "fdr_bh",
                                       "--baseline", "ignorer", "--no-figures", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert "reader (all closed items): uses the volume" in result.output and "ignorer" not in result.output
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
    a = analyse(build_panel(read_runs(runs)), ReportSettings(by=("evidence", "prior_fixed")))
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
    rep = make_report([tmp_path / "judged"], tmp_path / "rep", ReportSettings(), figures=False)
    row = rep.analysis.pairwise.query("grouping == 'all'").iloc[0]
    right_a, right_b = a >= 0.5, b >= 0.5
    assert (row.model_a, row.model_b, row.n) == ("model_a", "model_b", n)
    assert row.lost == (right_a & ~right_b).sum() and row.gained == (~right_a & right_b).sum()
    assert row.acc_b == pytest.approx(right_b.mean())
