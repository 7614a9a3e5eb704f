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
from volprobe.stats.verdict import _main, verdicts


def row(change, lo, hi, p_adj, significant, n=500, mde=0.04):
    return pd.Series({"change": change, "ci_low": lo, "ci_high": hi, "p_mcnemar_adj": p_adj,
                      "p_mcnemar_significant": significant, "n": n, "mde": mde})


@pytest.mark.parametrize("r,verdict,text", [
    (row(-0.231, -0.284, -0.180, 1e-9, True), "uses the volume",
     "uses the volume: −23.1 points [−28.4, −18.0] without it, McNemar p < 1e-6 (Holm)"),
    (row(0.052, 0.011, 0.090, 0.003, True), "does better without the volume",
     "does better without the volume: +5.2 points [+1.1, +9.0] without it, McNemar p = 0.003 (Holm)"),
    (row(-0.060, -0.131, 0.004, 0.012, True), "inconclusive", "includes 0"),
    (row(-0.010, -0.040, 0.020, 0.6, False, n=1304, mde=0.041), "no evidence of volume use",
     "no evidence of volume use (n = 1,304; minimum detectable drop 4.1 points)"),
    (row(0.0, 0.0, 0.0, 1.0, False, n=4, mde=np.nan), "no evidence of volume use", "not reachable with these items"),
    (None, "not assessed", "no control without the image paired with full"),
])
def test_verdict_rule(r, verdict, text):
    got, sentence = _main(r, "Holm", "full")
    assert got == verdict and text in sentence


def test_a_model_misled_by_the_image_does_better_without_it(tmp_path):
    models = [SyntheticModel("misled", accuracy=0.2, blind_accuracy=0.75, patient_sd=0.3),
              SyntheticModel("textonly", uses_volume=False, blind_accuracy=0.6)]
    runs = write_synthetic_runs(tmp_path, models, synthetic_items(400, 80, seed=2), _controls("full", "blank", "single_slice"))
    v = verdicts(analyse(build_panel(read_runs(runs)), ReportSettings(n_boot=300)))
    by_model = v[v["grouping"] == "all"].set_index("model")
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
    default = analyse(panel, ReportSettings(n_boot=200))
    assert set(verdicts(default)["model"]) == {"reader"}
    assert set(default.paired["model"]) == {"reader"}
    both = analyse(panel, ReportSettings(n_boot=200, assess_references=True))
    v = verdicts(both)
    overall = v[v["grouping"] == "all"].set_index("model")["verdict"]
    assert overall.to_dict() == {"reader": "uses the volume", "prior": "no evidence of volume use",
                                 "random": "no evidence of volume use"}
    assert set(both.paired["model"]) == {"reader", "prior", "random"}


def _controls(*names):
    return [get_control(n) for n in names]
