"""3D-RAD import: invented CSV fixtures in the real layout (tests/data/benchmarks/3drad)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.errors import FormatError, VolprobeWarning
from volprobe.probes.datasets.common import parse_ctrate_name, strip_volume_suffix
from volprobe.probes.datasets.threedrad import find_label, load_3drad, parse_history, task_of_folder
from volprobe.items import read_items, write_items

FIXTURE = Path(__file__).parent / "data" / "benchmarks" / "3drad"
HEADER = "Task,Subtask,VolumeName,Question,Answer,QuestionType,AnswerChoice,Choice A,Choice B,Choice C,Choice D"


@pytest.fixture(scope="module")
def items():
    return {it.id: it for it in load_3drad(FIXTURE, split="test").items}


def by_question(items, fragment):
    (hit,) = [it for it in items.values() if fragment in it.question]
    return hit


def test_folder_names_decide_paper_task_numbers():
    assert task_of_folder("Task1_Image_Observation") == 2
    assert task_of_folder("Task2_Anomaly_Detection") == 1
    assert task_of_folder("Task3_Medical_Computation") == 3
    assert task_of_folder("Task6_Longitudinal_Temporal_Diagnosis") == 6
    assert task_of_folder("Task7_Something_Else") is None


def test_all_six_tasks_with_swapped_folders(items):
    tasks = {it.task for it in items.values()}
    assert tasks == {f"3drad/T{n}" for n in range(1, 7)}
    anomaly = by_question(items, "What abnormality is present")
    assert anomaly.task == "3drad/T1" and anomaly.metadata["category"] == "Anomaly Detection"
    assert anomaly.metadata["source_file"] == "test/Task2_Anomaly_Detection/Abnormality.csv"
    assert anomaly.metadata["csv_task"] == "2"  # the released number is kept for reference
    observation = by_question(items, "What is seen in the lung parenchyma")
    assert observation.task == "3drad/T2" and observation.metadata["category"] == "Image Observation"
    types = {it.task: it.answer_type for it in items.values()}
    assert types == {"3drad/T1": "open", "3drad/T2": "open", "3drad/T3": "numeric", "3drad/T4": "yes_no",
                     "3drad/T5": "choice", "3drad/T6": "choice"}


def test_existence_item_fields(items):
    it = items["3drad/test/T4/Bronchiectasis/2"]
    assert it.question == "Is bronchiectasis visible in this CT volume?"
    assert it.options == ["Yes", "No"] and it.answer == "No" and it.answer_letter == "B"
    assert it.chance == 0.5 and it.subtask == "Bronchiectasis"
    assert (it.case, it.patient) == ("test_17_b_2", "test_17")
    assert it.metadata["scan_position"] == "b" and it.metadata["source_line"] == 2
    assert it.metadata["label"] == it.metadata["family"] == "Bronchiectasis"
    assert it.volume_path is None


def test_bom_and_crlf_file_reads_header(items):
    # Bronchiectasis.csv starts with a UTF-8 byte-order mark and uses CRLF line ends
    it = items["3drad/test/T4/Bronchiectasis/2"]
    assert it.metadata["csv_task"] == "4"  # the first header cell 'Task' was recognised despite the BOM
    assert not any("\r" in v for v in (it.question, it.answer, *it.options))


def test_quoted_commas_and_placeholders(items):
    it = by_question(items, "in any lobe")
    assert it.question == "Is bronchiectasis, in any lobe, visible in this CT volume?"
    assert it.answer == "Yes" and it.options == ["Yes", "No"]  # C and D are '-' placeholders
    open_item = by_question(items, "Describe the lungs")
    assert open_item.answer == "Mild emphysema in both upper lobes, no consolidation."
    assert open_item.options == [] and open_item.chance is None


def test_extra_column_is_ignored(items):
    it = items["3drad/test/T4/Lung_nodule/2"]
    assert it.options == ["Yes", "No"] and it.answer == "Yes"
    assert it.metadata["label"] == "Lung nodule"


def test_temporal_tasks(items):
    t5 = items["3drad/test/T5/c/2"]
    assert t5.subtask == "c" and t5.metadata["scan_position"] == "c"
    assert t5.answer.startswith("New Lesion") and t5.answer_letter == "C" and len(t5.options) == 4
    assert t5.metadata["label"] == "Lung nodule" and "history" not in t5.metadata
    histories = {it.metadata["label"]: it.metadata["history"] for it in items.values() if it.task == "3drad/T6"}
    assert histories == {"Emphysema": [1], "Cardiomegaly": [0], "Pleural effusion": [0, 1], "Lung nodule": [0, 0]}


def test_measurement_answers_kept_as_text(items):
    answers = sorted(it.answer for it in items.values() if it.task == "3drad/T3")
    assert answers == ["12mm", "3.4 cm", "30x13 mm", "6 mm"]
    assert {it.subtask for it in items.values() if it.task == "3drad/T3"} == {"Diameter", "Size", "Thickness"}


@pytest.mark.parametrize("question, expected", [
    ("Prior emphysema states: [1]. (Note: ...) What is emphysema now?", [1]),
    ("Earlier findings: [0, 1, 1]. (Note: 0 indicates absence)", [0, 1, 1]),
    ("Earlier findings: [ 0,0 ]. What now?", [0, 0]),
    ("Earlier findings: []. What now?", []),
    ("What is the status of emphysema now?", None),
])
def test_parse_history(question, expected):
    assert parse_history(question) == expected


def test_names():
    assert strip_volume_suffix("dir/test_17_b_2.nii.gz") == "test_17_b_2"
    name = parse_ctrate_name("train_1234_c_1.npy")
    assert (name.patient, name.scan, name.reconstruction) == ("train_1234", "c", "1")
    assert parse_ctrate_name("scan01.nii.gz") is None
    assert find_label("Is coronary artery wall calcification seen?") == "Coronary artery wall calcification"
    assert find_label("Lung_nodule") == "Lung nodule"


def test_items_round_trip(items, tmp_path):
    path = tmp_path / "items.jsonl"
    write_items(items.values(), path)
    assert {it.id: it for it in read_items(path)} == items


def test_missing_task_folder_warns_and_continues(tmp_path):
    shutil.copytree(FIXTURE, tmp_path / "3drad")
    shutil.rmtree(tmp_path / "3drad" / "test" / "Task5_Static_Temporal_Diagnosis")
    with pytest.warns(VolprobeWarning, match=r"no folder for T5 \(Static Temporal Diagnosis\)"):
        result = load_3drad(tmp_path / "3drad")
    assert "3drad/T5" not in result.counts and result.counts["3drad/T6"] == 4
    assert any("T5" in w for w in result.warnings)


def test_split_folder_given_directly_and_missing_split(tmp_path):
    direct = load_3drad(FIXTURE / "test", split="test")
    assert len(direct.items) == 19
    with pytest.raises(FormatError, match="no 3D-RAD task folders"):
        load_3drad(tmp_path)
    with pytest.raises(FileNotFoundError):
        load_3drad(tmp_path / "nowhere")


def test_volumes_resolved_by_name_and_missing_reported(tmp_path):
    vols = tmp_path / "vols"
    (vols / "test" / "test_17" / "test_17_b").mkdir(parents=True)
    (vols / "test" / "test_17" / "test_17_b" / "test_17_b_2.nii.gz").write_bytes(b"")
    (vols / "test_18_a_1.npy").write_bytes(b"")
    (vols / "test_18_a_1.nii.gz").write_bytes(b"")  # NIfTI preferred over .npy
    (vols / "notes.txt").write_text("not a volume")
    with pytest.warns(VolprobeWarning, match=r"3 of 5 volumes not found in .*first: test_18_b_1, test_19_c_1"):
        result = load_3drad(FIXTURE, volumes=vols)
    paths = {it.case: it.volume_path for it in result.items}
    assert paths["test_17_b_2"].endswith("test_17_b/test_17_b_2.nii.gz")
    assert paths["test_18_a_1"].endswith("test_18_a_1.nii.gz")
    assert paths["test_19_c_1"] is None
    assert result.missing_volumes == ["test_18_b_1", "test_19_c_1", "test_20_c_2"]
    assert len(result.items) == 19  # text-only use is not blocked


def _write(tmp_path, folder, rows, header=HEADER, name="x.csv"):
    path = tmp_path / "split" / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


GOOD_T4 = "4,3,test_1_a_1.nii.gz,Is emphysema visible?,No,Close,B,Yes,No,-,-"


@pytest.mark.parametrize("folder, bad_row, message", [
    ("Task4_Existence_Detection", "4,3,test_1_a_1.nii.gz,Is emphysema visible?,No,Close,B",
     r"7 fields, the header has 11"),
    ("Task4_Existence_Detection", "4,3,test_1_a_1.nii.gz,Is it, in fact, visible?,No,Close,B,Yes,No,-,-",
     r"13 fields, the header has 11 \(an unquoted comma\?\)"),
    ("Task4_Existence_Detection", "4,3,test_1_a_1.nii.gz,Is emphysema visible?,No,Close,C,Yes,No,-,-",
     r"AnswerChoice 'C' but only 2 choices"),
    ("Task4_Existence_Detection", "4,3,test_1_a_1.nii.gz,Is emphysema visible?,Yes,Close,B,Yes,No,-,-",
     r"disagrees with Answer 'Yes'"),
    ("Task4_Existence_Detection", "4,3,test_1_a_1.nii.gz,Is emphysema visible?,No,Close,B,Yes,-,No,-",
     r"a choice follows an empty"),
    ("Task6_Longitudinal_Temporal_Diagnosis",
     '6,1,test_1_b_1.nii.gz,What is emphysema now?,"Refractory Lesion (x)",Close,A,"Refractory Lesion (x)",'
     'Resolved Lesion (y),New Lesion (z),No Abnormality (w)', r"Task 6 question without a \[0/1, ...\] history"),
    ("Task3_Medical_Computation", "3,1,test_1_a_1.nii.gz,What is the diameter?,-,Open,-,-,-,-,-", r"empty Answer"),
])
def test_malformed_row_names_file_and_line(tmp_path, folder, bad_row, message):
    rows = [GOOD_T4, bad_row] if folder.startswith("Task4") else [bad_row]
    path = _write(tmp_path, folder, rows)
    line = len(rows) + 1
    with pytest.raises(FormatError, match=message) as err, pytest.warns(VolprobeWarning):
        load_3drad(tmp_path / "split")
    assert f"{path}:{line}:" in str(err.value)


def test_missing_column_is_an_error(tmp_path):
    header = HEADER.replace(",AnswerChoice", ",Key")
    path = _write(tmp_path, "Task4_Existence_Detection", [GOOD_T4], header=header)
    with pytest.raises(FormatError, match=r"missing column\(s\) answerchoice") as err, pytest.warns(VolprobeWarning):
        load_3drad(tmp_path / "split")
    assert f"{path}:1:" in str(err.value)


def test_multiline_quoted_question_reports_its_start_line(tmp_path):
    rows = ['4,3,test_1_a_1.nii.gz,"Is emphysema\nvisible?",No,Close,B,Yes,No,-,-',
            "4,3,test_2_a_1.nii.gz,Is it visible?,No,Close,Z,Yes,No,-,-"]
    path = _write(tmp_path, "Task4_Existence_Detection", rows)
    with pytest.raises(FormatError) as err, pytest.warns(VolprobeWarning):
        load_3drad(tmp_path / "split")
    assert f"{path}:4:" in str(err.value)  # record 2 starts on line 4 (record 1 spans lines 2-3)


def test_cli_import_3drad(tmp_path):
    out = tmp_path / "items.jsonl"
    res = CliRunner().invoke(main, ["import", "3drad", str(FIXTURE), "--split", "test", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert len(read_items(out)) == 19
    assert (tmp_path / "items.jsonl.manifest.json").exists()
    bad = tmp_path / "bad"
    _write(bad, "Task4_Existence_Detection", ["4,3,x.nii.gz,Q?,No,Close,B"])
    res = CliRunner().invoke(main, ["import", "3drad", str(bad / "split"), "--out", str(out)])
    assert res.exit_code == 2 and "x.csv:2:" in res.output
