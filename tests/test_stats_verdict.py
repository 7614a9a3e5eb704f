"""The volume-reliance verdict rule, case by case."""

import numpy as np
import pandas as pd
import pytest

from volprobe.stats.analysis import analyse
from volprobe.stats.load import read_runs
from volprobe.stats.panel import build_panel
from volprobe.stats.settings import ReportSettings
from volprobe.controls import get_control
from volprobe.stats.synthetic import SyntheticModel, synthetic_items, write_synthetic_runs
from volprobe.stats.verdict import _main, decide, verdicts


def row(change, lo, hi, p_adj, significant, n=500, mde=0.04, mcnemar_significant=None, exact=False, clusters=40):
    return pd.Series({"change": change, "ci_low": lo, "ci_high": hi, "p_cluster_adj": p_adj,
                      "p_cluster_significant": significant, "p_mcnemar_adj": 0.01 if mcnemar_significant else 0.5,
                      "p_mcnemar_significant": significant if mcnemar_significant is None else mcnemar_significant,
                      "n": n, "mde": mde, "exact": exact, "n_clusters": clusters, "df": clusters - 1.0})


@pytest.mark.parametrize("r,verdict,text", [
    (row(-0.231, -0.284, -0.180, 1e-9, True), "uses the volume",
     "uses the volume: −23.1 points [−28.4, −18.0] without it, cluster-robust p < 1e-6 (Holm)"),
    (row(0.052, 0.011, 0.090, 0.003, True), "does better without the volume",
     "does better without the volume: +5.2 points [+1.1, +9.0] without it, cluster-robust p = 0.003 (Holm)"),
    (row(-0.060, -0.131, 0.011, 0.21, False, mcnemar_significant=True), "inconclusive",
     "inconclusive: −6.0 points [−13.1, +1.1] without it; exact McNemar p = 0.010 treats the questions on one patient "
     "as independent, the cluster-robust p = 0.210 (Holm) does not"),
    (row(-0.010, -0.040, 0.020, 0.6, False, n=1304, mde=0.041), "no evidence of volume use",
     "no evidence of volume use (n = 1,304; minimum detectable drop 4.1 points)"),
    (row(0.0, 0.0, 0.0, 1.0, False, n=4, mde=np.nan), "no evidence of volume use", "not reachable with these items"),
    (row(-0.4, np.nan, np.nan, 1.0, False, mde=np.nan, exact=True, clusters=6, mcnemar_significant=True),
     "inconclusive", "(no CI: only 6 clusters) without it; exact McNemar"),
    (row(-0.1, np.nan, np.nan, 1.0, False, mde=np.nan, exact=True, clusters=6), "no evidence of volume use",
     "minimum detectable drop not reachable with 6 clusters"),
    (None, "not assessed", "no control without the image paired with full"),
])
def test_verdict_rule(r, verdict, text):
    got, sentence = _main(r, "Holm", "full")
    assert got == verdict and text in sentence, sentence


def test_the_rule_is_decided_by_the_cluster_test_alone():
    """decide() is what every verdict uses (and what the simulations check): only a significant
    cluster-robust test makes a claim, in the direction of the change; McNemar alone gives inconclusive."""
    sig, change, mcnemar = np.meshgrid([True, False], [-0.1, 0.0, 0.1, np.nan], [True, False], indexing="ij")
    got = decide(sig.ravel(), change.ravel(), mcnemar.ravel())
    for s_, c, m, g in zip(sig.ravel(), change.ravel(), mcnemar.ravel(), got):
        if np.isnan(c):
            assert g == "not assessed"
        elif s_ and c != 0:
            assert g == ("uses the volume" if c < 0 else "does better without the volume")
        else:
            assert g == ("inconclusive" if m else "no evidence of volume use")


def test_a_model_misled_by_the_image_does_better_without_it(tmp_path):
    models = [SyntheticModel("misled", accuracy=0.2, blind_accuracy=0.75, patient_sd=0.3),
              SyntheticModel("textonly", uses_volume=False, blind_accuracy=0.6)]
    runs = write_synthetic_runs(tmp_path, models, synthetic_items(400, 80, seed=2), _controls("full", "blank", "single_slice"))
    v = verdicts(analyse(build_panel(read_runs(runs)), ReportSettings()))
    assert set(v.query("grouping == 'all'")["group"]) == {"closed", "open"}  # never one pool of both kinds
    by_model = v.query("grouping == 'all' and group == 'closed'").set_index("model")
    assert by_model.loc["misled", "verdict"] == "does better without the volume"
    assert by_model.loc["misled", "no_image_control"] == "blank"  # no text_only: blank removes the image
    assert by_model.loc["textonly", "verdict"] == "no evidence of volume use"
    assert "single_slice" in by_model.loc["misled", "other_controls"]


def test_reference_models_are_assessed_only_when_asked(tmp_path):
    """``assess_references``: verdicts and paired tests for the blind baseline and the random model too."""
    models = [SyntheticModel("reader", accuracy=0.9, blind_accuracy=0.5),
              SyntheticModel("prior", uses_volume=False, blind_accuracy=0.7),
              SyntheticModel("random", uses_volume=False, blind_accuracy=0.5)]
    runs = write_synthetic_runs(tmp_path, models, synthetic_items(300, 60, seed=3), _controls("full", "text_only"))
    panel = build_panel(read_runs(runs))
    default = analyse(panel, ReportSettings())
    assert set(verdicts(default)["model"]) == {"reader"}
    assert set(default.paired["model"]) == {"reader"}
    both = analyse(panel, ReportSettings(assess_references=True))
    v = verdicts(both)
    overall = v.query("grouping == 'all' and group == 'closed'").set_index("model")["verdict"]
    assert overall.to_dict() == {"reader": "uses the volume", "prior": "no evidence of volume use",
                                 "random": "no evidence of volume use"}
    assert set(both.paired["model"]) == {"reader", "prior", "random"}


def _controls(*names):
    return [get_control(n) for n in names]


def test_a_model_without_controls_gets_one_line(tmp_path):
    """Judged predictions with no control: one "not assessed" verdict per model, not one per group."""
    models = [SyntheticModel("reader", accuracy=0.9), SyntheticModel("other", accuracy=0.6)]
    runs = write_synthetic_runs(tmp_path, models, synthetic_items(300, 60, seed=4), _controls("full"))
    a = analyse(build_panel(read_runs(runs)), ReportSettings(by=("task", "category")))
    v = verdicts(a)
    assert len(v) == 2 and set(v["model"]) == {"reader", "other"}
    assert (v["summary"] == "not assessed: no control paired with full").all()
    assert (v["grouping"] == "all").all() and (v["other_controls"] == "").all()
