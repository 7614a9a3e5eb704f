"""CT-SpatialVQA import, and imports of external predictions and judged-correctness CSVs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.errors import FormatError, VolprobeWarning
from volprobe.probes.datasets.ctspatialvqa import CATEGORIES, load_ctspatialvqa
from volprobe.probes.datasets.external import import_judged, import_predictions
from volprobe.records import write_records
from volprobe.items import read_items
from volprobe.records import read_records

FIXTURE = Path(__file__).parent / "data" / "benchmarks" / "ctspatialvqa"
QA, CATS, PREDS, JUDGED = (FIXTURE / n for n in ("qa.jsonl", "categories.json", "predictions.jsonl", "judged.csv"))


def load(*args, **kwargs):
    with pytest.warns(VolprobeWarning, match="volumes not found"):  # the fixture ships no volumes
        return load_ctspatialvqa(*args, **kwargs)


@pytest.fixture(scope="module")
def items():
    with pytest.warns(VolprobeWarning):
        return load_ctspatialvqa(QA, categories=CATS).items


def test_items_with_categories(items):
    assert len(items) == 5 and {it.task for it in items} == {"ctspatialvqa"}
    first = items[0]
    assert (first.id, first.case, first.patient) == ("ctspatialvqa/valid_12_a_1/0", "valid_12_a_1", "valid_12")
    assert first.answer_type == "open" and first.options == [] and first.answer == "Left side only."
    assert first.metadata["question_id"] == "valid_12_a_1.nii.gz::0"
    assert first.metadata["scoring"] == "spatial_terms"
    multi = items[2]
    assert multi.metadata["categories"] == ["Anterior-Posterior (Depth) Relations", "Laterality & Bilateral Symmetry"]
    assert multi.metadata["category"] == multi.subtask == "Anterior-Posterior (Depth) Relations"
    assert items[3].id == "ctspatialvqa/valid_40_b_2/0"  # index restarts per case
    assert {c for it in items for c in it.metadata["categories"]} <= set(CATEGORIES)


def test_without_categories_file():
    items = load(QA).items
    assert all(it.metadata["categories"] == [] and it.metadata["category"] is None for it in items)


def test_categories_file_alone_and_json_list(tmp_path):
    from_map = load(CATS).items
    assert [it.question for it in from_map] == [it.question for it in load(QA).items]
    assert from_map[2].metadata["categories"][1] == "Laterality & Bilateral Symmetry"
    rows = [json.loads(line) for line in QA.read_text().splitlines()]
    (tmp_path / "qa.json").write_text(json.dumps(rows, indent=1))
    assert [it.id for it in load(tmp_path / "qa.json").items] == [it.id for it in load(QA).items]


def test_unmatched_categories_warn(tmp_path):
    data = json.loads(CATS.read_text())
    data["valid_40_b_2.nii.gz"]["qa_pairs"][1]["question"] = "A different question?"
    (tmp_path / "cats.json").write_text(json.dumps(data))
    with pytest.warns(VolprobeWarning) as caught:
        result = load_ctspatialvqa(QA, categories=tmp_path / "cats.json")
    assert any("1 of 5 QA pairs have no entry" in str(w.message) for w in caught)
    assert result.items[4].metadata["categories"] == []


def test_volumes_from_image_path_and_folder(tmp_path):
    shutil.copy(QA, tmp_path / "qa.jsonl")
    (tmp_path / "volumes").mkdir()
    (tmp_path / "volumes" / "valid_12_a_1.nii.gz").write_bytes(b"")
    with pytest.warns(VolprobeWarning, match=r"1 of 2 volumes not found .*first: valid_40_b_2"):
        result = load_ctspatialvqa(tmp_path / "qa.jsonl")
    assert result.items[0].volume_path == str(tmp_path / "volumes" / "valid_12_a_1.nii.gz")
    assert result.items[3].volume_path is None and result.missing_volumes == ["valid_40_b_2"]
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "valid_40_b_2.nii.gz").write_bytes(b"")
    with pytest.warns(VolprobeWarning, match=r"1 of 2 volumes not found in .*other"):
        result = load_ctspatialvqa(tmp_path / "qa.jsonl", volumes=tmp_path / "other")
    assert result.items[3].volume_path.endswith("other/valid_40_b_2.nii.gz") and result.items[0].volume_path is None


@pytest.mark.parametrize("line, message", [
    ('{"case_id": "valid_1_a_1.nii.gz", "question": "Q?", "answer": "A."', "not valid JSON"),
    ('{"case_id": "valid_1_a_1.nii.gz", "question": "Q?"}', "missing or empty answer"),
    ('["valid_1_a_1.nii.gz", "Q?", "A."]', "expected a JSON object"),
])
def test_malformed_lines_name_file_and_line(tmp_path, line, message):
    good = QA.read_text().splitlines()[0]
    (tmp_path / "qa.jsonl").write_text(f"{good}\n\n{line}\n")
    with pytest.raises(FormatError, match=message) as err:
        load_ctspatialvqa(tmp_path / "qa.jsonl")
    assert f"{tmp_path / 'qa.jsonl'}:3:" in str(err.value)


def test_import_predictions(items):
    result = import_predictions(PREDS, items, "M3D")
    recs = {r.item_id: r for r in result.records}
    assert len(recs) == 5 and {r.model for r in recs.values()} == {"M3D"}
    assert recs["ctspatialvqa/valid_12_a_1/0"].correct  # "on the left" agrees with "Left side only."
    assert not recs["ctspatialvqa/valid_12_a_1/1"].correct  # below vs superior
    assert recs["ctspatialvqa/valid_40_b_2/0"].correct  # "right and left" = bilateral
    refusal = recs["ctspatialvqa/valid_40_b_2/1"]
    assert refusal.refused and not refusal.correct and refusal.category == "Adjacency & Containment"
    assert recs["ctspatialvqa/valid_12_a_1/2"].scores["exact"] == 1.0
    assert recs["ctspatialvqa/valid_12_a_1/0"].patient == "valid_12"


def test_import_predictions_problems(items, tmp_path):
    rows = [json.loads(line) for line in PREDS.read_text().splitlines()]
    extra = dict(rows[0], question="Something never asked?")
    rows[1]["answer"] = "A different gold."
    lines = [rows[0], rows[0], rows[1], extra, {"question_id": "valid_40_b_2.nii.gz::1", "prediction": "Yes."}]
    (tmp_path / "p.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    with pytest.raises(FormatError, match=r"p.jsonl:2: a prediction for item .* again \(first at line 1\).*--dedupe"):
        import_predictions(tmp_path / "p.jsonl", items, "x")
    with pytest.warns(VolprobeWarning) as caught:
        result = import_predictions(tmp_path / "p.jsonl", items, "x", dedupe="first")
    messages = " | ".join(str(w.message) for w in caught)
    assert "1 predictions match no item (line 4)" in messages and "1 repeated" in messages
    assert "differs from the item's" in messages and "2 of 5 items have no prediction" in messages
    assert sorted(r.item_id for r in result.records) == ["ctspatialvqa/valid_12_a_1/0", "ctspatialvqa/valid_12_a_1/1",
                                                         "ctspatialvqa/valid_40_b_2/1"]
    (tmp_path / "none.jsonl").write_text(json.dumps(extra) + "\n")
    with pytest.raises(FormatError, match="none of its 1 predictions"):
        import_predictions(tmp_path / "none.jsonl", items, "x")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"question": "q"}) + "\n")
    with pytest.raises(FormatError, match=r"bad.jsonl:1: expected an object with a string 'prediction'"):
        import_predictions(tmp_path / "bad.jsonl", items, "x")


def test_import_judged(items, tmp_path):
    with pytest.warns(VolprobeWarning, match="notes"), pytest.raises(FormatError,
                                                                     match=r"judged.csv:6: column 'RadFM' is blank"):
        import_judged(JUDGED, items)
    with pytest.warns(VolprobeWarning, match="column 'notes' skipped"):
        result = import_judged(JUDGED, items, skip_blank=True)
    got = {(r.model, r.item_id): (r.correct, r.scores["judge_fraction"]) for r in result.records}
    assert got[("M3D-LaMed", "ctspatialvqa/valid_12_a_1/0")] == (True, 1.0)
    assert got[("M3D-LaMed", "ctspatialvqa/valid_12_a_1/1")] == (True, 0.66)  # 2 of 3 judges
    assert got[("RadFM", "ctspatialvqa/valid_12_a_1/0")] == (False, 0.33)
    assert ("RadFM", "ctspatialvqa/valid_40_b_2/1") not in got  # empty cell read as not judged
    assert len(result.records) == 9
    strict = import_judged(JUDGED, items, threshold=0.9, models=["M3D-LaMed"])
    assert sum(r.correct for r in strict.records) == 2
    write_records(result.records, tmp_path / "r.jsonl")
    back = read_records(tmp_path / "r.jsonl")
    assert [r.to_dict() for r in back] == [r.to_dict() for r in result.records]
    assert back[0].gold == "Left side only." and back[0].control == "full"


def test_import_judged_one_based_and_without_items(items, tmp_path):
    lines = JUDGED.read_text().splitlines()
    shifted = [lines[0]] + [line.replace("::0,", "::1,", 1) if "::0," in line else line.replace("::1,", "::2,", 1)
                            if "::1," in line else line.replace("::2,", "::3,", 1) for line in lines[1:]]
    (tmp_path / "j.csv").write_text("\n".join(shifted) + "\n")
    with pytest.warns(VolprobeWarning, match="count from 1"):
        result = import_judged(tmp_path / "j.csv", items, models=["M3D-LaMed"])
    assert {r.item_id for r in result.records} == {it.id for it in items}
    bare = import_judged(JUDGED, None, models=["RadFM"], skip_blank=True)
    assert bare.records[0].item_id == "ctspatialvqa/valid_12_a_1/0" and bare.records[0].patient == "valid_12"


@pytest.mark.parametrize("row, message", [
    ("valid_12_a_1.nii.gz::2,1.5,0,", r"M3D-LaMed = 1.5, a judge fraction must lie in \[0, 1\]"),
    ("valid_12_a_1.nii.gz-0,1,0,", "is not '<case_id>::<index>'"),
])
def test_import_judged_bad_rows(items, tmp_path, row, message):
    lines = JUDGED.read_text().splitlines()
    (tmp_path / "j.csv").write_text("\n".join([lines[0], lines[1], row]) + "\n")
    with pytest.raises(FormatError, match=message) as err:
        import_judged(tmp_path / "j.csv", items, models=["M3D-LaMed", "RadFM"])
    assert "j.csv:3:" in str(err.value)
    (tmp_path / "k.csv").write_text("id,M\nx::0,1\n")
    with pytest.raises(FormatError, match="no 'question_id' column"):
        import_judged(tmp_path / "k.csv")


def test_cli_imports(tmp_path):
    runner = CliRunner()
    items_out = tmp_path / "items.jsonl"
    res = runner.invoke(main, ["import", "ctspatialvqa", str(QA), "--categories", str(CATS), "--out", str(items_out)])
    assert res.exit_code == 0, res.output
    assert len(read_items(items_out)) == 5 and "volumes not found" in res.output
    res = runner.invoke(main, ["import", "predictions", str(PREDS), "--items", str(items_out), "--model", "RadFM",
                               "--out", str(tmp_path / "p.jsonl")])
    assert res.exit_code == 0, res.output
    assert len(read_records(tmp_path / "p.jsonl")) == 5 and "spatial_agree" in res.output
    res = runner.invoke(main, ["import", "judged", str(JUDGED), "--items", str(items_out), "--out",
                               str(tmp_path / "j.jsonl"), "--skip-blank"])
    assert res.exit_code == 0, res.output
    assert {r.model for r in read_records(tmp_path / "j.jsonl")} == {"M3D-LaMed", "RadFM"}
    assert (tmp_path / "j.jsonl.manifest.json").exists()
