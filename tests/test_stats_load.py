"""Reading run records and checking they fit together: clear errors naming the mismatch."""

import json

import numpy as np
import pytest

from volprobe.controls import get_control
from volprobe.errors import FormatError
from volprobe.records import RunRecord
from volprobe.stats import load
from volprobe.stats.analysis import analyse
from volprobe.stats.settings import ReportSettings
from volprobe.stats.load import find_record_files, read_record_file, read_runs
from volprobe.stats.panel import build_panel


def rec(item, model="m", control="full", correct=True, **kw):
    """A record as a run writes it (with the control's facts, as the control states them)."""
    base = dict(item_id=item, model=model, control=control, gold=kw.pop("gold", "left"), correct=correct,
                parsed=kw.pop("parsed", "left" if correct else "right"), case=f"c{item}", patient=f"p{item}",
                task="spatial", chance=0.5, evidence_axes=["lr"], control_facts=get_control(control).facts())
    base.update(kw)
    return RunRecord(**base).to_dict()


def write(path, records, tail=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)
    return path


def test_fast_and_careful_readers_agree(tmp_path):
    records = [rec(f"q{i}", correct=i % 3 > 0, evidence_axes=["si", "lr"] if i % 2 else [],
                   prior_fixed=None if i % 4 == 0 else bool(i % 2)) for i in range(30)]
    records += [rec("open1", answer_type="open", chance=None, gold="a finding", parsed="a finding",
                    evidence_axes=[], scores={"token_f1": 0.75, "rouge1": 0.5})]
    path = write(tmp_path / "run" / "records.jsonl", records)
    fast = load._read_fast(path.read_bytes())  # Arrow, without any fallback
    assert load._values_ok(fast)
    table, torn = read_record_file(path)
    careful = load._read_careful(load._LineIndex(path.read_bytes()), path)
    assert torn == 0
    assert table.column_names == careful.column_names
    for name in table.column_names:
        assert table.column(name).to_pylist() == careful.column(name).to_pylist(), name
        if name in fast.column_names:
            assert fast.column(name).to_pylist() == careful.column(name).to_pylist(), name
    frame = read_runs([tmp_path / "run"]).frame
    assert set(frame["evidence"].astype(str)) == {"lr+si", "none"}
    assert frame["score:token_f1"].iloc[-1] == 0.75 and np.isnan(frame["score:token_f1"].iloc[0])
    assert frame["prior_fixed"].isna().sum() == 9  # i % 4 == 0, and the open item


def test_torn_last_line_is_skipped_and_counted(tmp_path):
    path = write(tmp_path / "records.jsonl", [rec("q1"), rec("q2")], tail='{"item_id": "q3", "mod')
    table, torn = read_record_file(path)
    assert table.num_rows == 2 and torn == 1
    info = read_runs([path]).runs[0]
    assert info.records == 2 and info.skipped_torn_lines == 1


@pytest.mark.parametrize("bad,message", [
    ('{"item_id": "q2", "model": "m"', r"records.jsonl:2: not valid JSON"),
    (json.dumps({**rec("q2"), "correct": "yes"}), r"records.jsonl:2: field 'correct' must be bool"),
    (json.dumps({k: v for k, v in rec("q2").items() if k != "gold"}), r"records.jsonl:2: missing record fields"),
    (json.dumps({**rec("q2"), "model": None}), r"records.jsonl:2: required field 'model' is null"),
    (json.dumps({**rec("q2"), "format_version": 2}), r"format version 2"),
    (json.dumps({**rec("q2"), "evidence_axes": "lr"}), r"records.jsonl:2: field 'evidence_axes'"),
    ("[1, 2]", r"records.jsonl:2: expected a JSON object"),
])
def test_malformed_records_name_file_and_line(tmp_path, bad, message):
    path = tmp_path / "records.jsonl"
    path.write_text(json.dumps(rec("q1")) + "\n" + bad + "\n" + json.dumps(rec("q3")) + "\n")
    with pytest.raises(FormatError, match=message):
        read_runs([path])


def test_unknown_field_in_the_first_record_is_caught_by_the_fast_reader(tmp_path):
    path = write(tmp_path / "records.jsonl", [{**rec("q1"), "colour": "red"}, rec("q2")])
    with pytest.raises(FormatError, match=r"records.jsonl:1: unknown record fields \['colour'\]"):
        read_runs([path])


def test_missing_runs_and_empty_run_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope"):
        find_record_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FormatError, match="no records"):
        read_runs([tmp_path / "empty"])


def test_sharded_run_and_its_manifest_are_read(tmp_path):
    write(tmp_path / "run" / "records-000.jsonl", [rec("q1"), rec("q2")])
    write(tmp_path / "run" / "records-001.jsonl", [rec("q3")])
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"command": "probe run", "seed": 3}))
    table = read_runs([tmp_path / "run"])
    assert len(table.frame) == 3 and table.runs[0].manifest["seed"] == 3 and len(table.runs[0].files) == 2


def test_duplicate_records_across_runs_name_both_files(tmp_path):
    a = write(tmp_path / "a" / "records.jsonl", [rec("q1"), rec("q2")])
    b = write(tmp_path / "b" / "records.jsonl", [rec("q2")])
    with pytest.raises(FormatError, match=rf"item 'q2', model m, control full appears in {a}.* and {b}"):
        build_panel(read_runs([a.parent, b.parent]))


@pytest.mark.parametrize("field,value,shown", [
    ("task", "3drad/T4", "task 'spatial'"),
    ("chance", 0.25, "chance 0.25"),
    ("gold", "right", "gold 'left'"),
    ("patient", "other", "patient"),
])
def test_items_that_disagree_across_records_are_an_error(tmp_path, field, value, shown):
    a = write(tmp_path / "a" / "records.jsonl", [rec("q1", model="a"), rec("q2", model="a")])
    b = write(tmp_path / "b" / "records.jsonl", [rec("q1", model="b"), rec("q2", model="b", **{field: value})])
    with pytest.raises(FormatError, match=r"item 'q2' has .*different item sets") as err:
        build_panel(read_runs([a.parent, b.parent]))
    assert shown in str(err.value) and "model b" in str(err.value)


def test_nulls_do_not_conflict_and_counterfactual_gold_is_checked(tmp_path):
    ok = [rec("q1"), rec("q1", control="text_only", patient=None),
          rec("q1", control="mirror_lr", gold="right", gold_original="left", parsed="right")]
    panel = build_panel(read_runs([write(tmp_path / "ok.jsonl", ok)]))
    assert panel.counterfactual == {"mirror_lr"}
    assert panel.items["patient"].iloc[0] == "pq1" and panel.items["cluster_by"].iloc[0] == "patient"
    bad = ok + [rec("q1", model="other", control="mirror_lr", gold="left", gold_original="left")]
    with pytest.raises(FormatError, match="transformed gold"):
        build_panel(read_runs([write(tmp_path / "bad.jsonl", bad)]))
    wrong_original = [rec("q2"), rec("q2", control="flip_si", gold="left", gold_original="right")]
    with pytest.raises(FormatError, match="gold_original 'right' under flip_si"):
        build_panel(read_runs([write(tmp_path / "orig.jsonl", wrong_original)]))


def _mismatched_run(tmp_path):
    records = [rec(f"q{i}") for i in range(6)] + [rec(f"q{i}", control="text_only") for i in range(4)]
    records += [rec(f"q{i}", control="mirror_lr", gold="right", gold_original="left", parsed="right")
                for i in range(3)]  # counterfactual: untransformable items legitimately left out
    return build_panel(read_runs([write(tmp_path / "records.jsonl", records)]))


def test_item_set_mismatch_between_controls_is_an_error_naming_it(tmp_path):
    panel = _mismatched_run(tmp_path)
    with pytest.raises(FormatError) as err:
        analyse(panel, ReportSettings())
    text = str(err.value)
    assert "model m: text_only and full were run on different item sets" in text
    assert "2 item(s) of full are missing under text_only (e.g. q4, q5)" in text and "--intersect" in text


def test_intersect_compares_shared_items_and_counts_exclusions(tmp_path):
    a = analyse(_mismatched_run(tmp_path), ReportSettings(intersect=True))
    rows = a.paired[a.paired["grouping"] == "all"].set_index("control")
    assert rows.loc["text_only", "n"] == 4 and rows.loc["text_only", "n_not_in_control"] == 2
    assert rows.loc["mirror_lr", "n"] == 3 and rows.loc["mirror_lr", "n_not_in_control"] == 3
    assert rows.loc["mirror_lr", "tracking_rate"] == 1.0


def test_model_errors_are_excluded_and_counted(tmp_path):
    records = [rec(f"q{i}") for i in range(5)] + [rec(f"q{i}", control="text_only", correct=False) for i in range(4)]
    records.append(rec("q4", control="text_only", correct=False, error="CUDA out of memory", parsed=None))
    panel = build_panel(read_runs([write(tmp_path / "records.jsonl", records)]))
    assert list(panel.errors["error"]) == ["CUDA out of memory"]
    a = analyse(panel, ReportSettings())
    acc = a.accuracy[a.accuracy["grouping"] == "all"].set_index("control")
    assert acc.loc["text_only", "n"] == 4 and acc.loc["text_only", "n_error"] == 1
    paired = a.paired.iloc[0]
    assert paired["n"] == 4 and paired["n_error_excluded"] == 1 and paired["lost"] == 4


def _open(item, scores, **kw):
    return rec(item, answer_type="open", chance=None, gold="g", parsed="g", evidence_axes=[], scores=scores, **kw)


@pytest.mark.parametrize("extra", [
    {},  # every scores object cut out and parsed by Arrow
    {"control_params": {"scores": {"x": 1}}},  # a nested 'scores' key: that line is parsed as JSON
])
def test_open_item_scores_are_read_with_mixed_ints_and_missing_names(tmp_path, extra):
    records = [_open("o1", {"token_f1": 1, "rouge1": 0.5}), rec("c1"),
               _open("o2", {"token_f1": 0.25}, **extra), _open("o3", {})]
    frame = read_runs([write(tmp_path / "records.jsonl", records)]).frame.set_index("item_id")
    assert frame.loc["o1", "score:token_f1"] == 1.0 and frame.loc["o2", "score:token_f1"] == 0.25
    assert frame.loc["o1", "score:rouge1"] == 0.5 and np.isnan(frame.loc["o2", "score:rouge1"])
    assert np.isnan(frame.loc["c1", "score:token_f1"]) and np.isnan(frame.loc["o3", "score:token_f1"])


def test_a_score_that_is_not_a_number_names_its_line(tmp_path):
    records = [_open("o1", {"token_f1": 0.5}), _open("o2", {"token_f1": "high"})]
    with pytest.raises(FormatError, match=r"records.jsonl:2: field 'scores' must map score names to numbers"):
        read_runs([write(tmp_path / "records.jsonl", records)])


def test_blank_and_crlf_lines(tmp_path):
    path = tmp_path / "records.jsonl"
    path.write_bytes(b"\n" + json.dumps(rec("q1")).encode() + b"\r\n   \n" + json.dumps(rec("q2")).encode() + b"\r\n")
    assert list(read_runs([path]).frame["item_id"]) == ["q1", "q2"]
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n\n" + json.dumps(rec("q1")).encode() + b"\n  \n{oops\n")
    with pytest.raises(FormatError, match=r"bad.jsonl:5: not valid JSON"):
        read_runs([bad])


def test_prompts_are_read_on_demand_for_the_right_records(tmp_path):
    """The first read skips prompts; the panel reads them again, file by file, aligned with its records
    (across shards and runs, past blank lines and a torn last line, and through the line-by-line reader)."""
    a = [rec(f"q{i}", prompt=f"Question {i}?") for i in range(6)]
    b = [rec(f"q{i}", model="n", prompt=f"Other {i}") for i in range(6)]
    write(tmp_path / "a" / "records-000-of-002.jsonl", a[::2], tail='{"item_id": "q9", "mod')
    write(tmp_path / "a" / "records-001-of-002.jsonl", a[1::2])
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "records.jsonl").write_text("\n".join(json.dumps(r) for r in b[:3]) + "\n\n"
                                                  + "\n".join(json.dumps({**r, "prompt": 7}) for r in b[3:]) + "\n")
    panel = build_panel(read_runs([tmp_path / "a", tmp_path / "b"]))
    ids = list(panel.items["item_id"])
    got_a = panel.prompts(panel.models.index("m"), 0)
    assert [got_a[ids.index(f"q{i}")] for i in range(6)] == [f"Question {i}?" for i in range(6)]
    got_b = panel.prompts(panel.models.index("n"), 0)  # a prompt that is not text: read line by line
    assert [got_b[ids.index(f"q{i}")] for i in range(6)] == ["Other 0", "Other 1", "Other 2", 7, 7, 7]
