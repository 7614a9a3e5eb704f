"""``probe demo`` at a reduced size: the report's verdicts, not just its files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.controls import STANDARD_CONTROLS, get_control
from volprobe.demo import check_expectations, run_demo

CONTROLS = [get_control(c) for c in STANDARD_CONTROLS]
#: Patients in the reduced demo: a report's cluster-robust t test needs 8 (fewer get the exact sign-flip test,
#: which cannot reach significance after the correction), and with 8 the oracle's drop under swapped_volume,
#: which varies from patient to patient, is not significant over the demo's several hundred tests.
N_CASES = 10


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    return run_demo(out, n_cases=N_CASES, seed=0, progress=False, echo=lambda *_: None)


def test_demo_meets_every_expectation(demo):
    failed = [str(e) for e in demo.expectations if not e.met]
    assert not failed, failed
    # a drop under each of the 5 controls that remove or degrade the image, tracking of the 3
    # counterfactuals, no volume use by the 2 blind models
    assert len(demo.expectations) == 10


def test_demo_verdicts(demo):
    overall = demo.report.verdicts.query("grouping == 'all'").set_index("model")["verdict"]
    assert overall["oracle"] == "uses the volume"
    assert overall["prior"] == "no evidence of volume use"
    assert overall["random"] == "no evidence of volume use"


def test_demo_key_table(demo):
    table = demo.key_table
    assert list(table.index) == ["oracle", "prior", "random"]
    assert table.loc["oracle", "full"] == 100.0  # the oracle reads the masks' own geometry back
    # the blind models answer identically whatever the image; the oracle without an image guesses
    for model in ("prior", "random"):
        assert table.loc[model, ["full", "text_only", "blank", "shuffled_slices"]].nunique() == 1
    assert table.loc["oracle", "blank"] < 70


def test_demo_outputs_and_split(demo):
    out = demo.out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["parameters"]["n_cases"] == N_CASES
    assert (out / "report" / "report.md").exists()
    page = (out / "report" / "report.html").read_text(encoding="utf-8")  # with the item browser
    data = json.loads(page.split('id="browser-data">', 1)[1].split("</script>", 1)[0])
    per_category: dict[str, int] = {}
    for it in data["items"]:
        per_category[it["category"]] = per_category.get(it["category"], 0) + 1
    assert set(per_category.values()) == {12} and len(per_category) == len(data["categories"])
    assert data["total_items"] == sum(1 for _ in (out / "items" / "test.jsonl").open())
    assert len(data["thumbnails"]) > 100 and len(page) < 20_000_000
    train = {json.loads(line)["case"] for line in (out / "items" / "train.jsonl").open()}
    test = {json.loads(line)["case"] for line in (out / "items" / "test.jsonl").open()}
    assert len(test) == N_CASES and len(train) == N_CASES and not train & test
    layouts = [json.loads(p.read_text())["params"]["orientation"] for p in (out / "phantoms").glob("*_layout.json")]
    assert set(layouts) == {"RAS", "LPS", "LAS", "oblique"}


def test_expectations_report_a_failure(demo):
    """An oracle that did not drop under blank must be reported as NOT met."""
    paired = demo.report.analysis.paired.copy()
    blank = (paired["model"] == "oracle") & (paired["control"] == "blank")
    paired.loc[blank, "p_cluster_significant"] = False
    results = {e.name: e for e in check_expectations(paired, demo.report.verdicts, CONTROLS)}
    assert not results["oracle drops under blank"].met
    assert results["oracle drops under shuffled_slices"].met
    prior_tracks = (paired["model"] == "prior") & (paired["control"] == "mirror_lr")
    paired.loc[prior_tracks, "p_tracking_significant"] = True
    results = {e.name: e for e in check_expectations(paired, demo.report.verdicts, CONTROLS)}
    assert not results["prior shows no volume use"].met
    assert "follow mirror_lr" in results["prior shows no volume use"].detail


def test_demo_cli_resumes_and_prints_the_table(demo):
    result = CliRunner().invoke(main, ["demo", "--out", str(demo.out), "--n-cases", str(N_CASES), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "Accuracy (%) by model and control" in result.output
    assert "NOT met" not in result.output
    assert "[met] oracle follows mirror_lr" in result.output


def test_demo_refuses_too_few_cases(tmp_path):
    result = CliRunner().invoke(main, ["demo", "--out", str(tmp_path), "--n-cases", "1"])
    assert result.exit_code == 2


def test_oracle_is_near_chance_on_superior_inferior_items_without_through_plane_order(demo):
    acc = demo.report.analysis.accuracy
    si = acc[(acc["model"] == "oracle") & (acc["grouping"] == "category") & (acc["group"] == "longitudinal")]
    si = si.set_index("control")
    assert si.loc["full", "accuracy"] == 1.0
    for control in ("shuffled_slices", "single_slice:evidence", "blank"):
        assert abs(si.loc[control, "accuracy"] - si.loc[control, "chance"]) < 0.2, control
    # left/right items keep their evidence in one axial slice: the oracle stays well above chance there
    lr = acc[(acc["model"] == "oracle") & (acc["grouping"] == "category") & (acc["group"] == "laterality")]
    assert lr.set_index("control").loc["shuffled_slices", "accuracy"] > 0.8
