"""3D-RAD's own scoring rule as a secondary, labelled score (comparable with the paper, never the outcome)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.items import Item
from volprobe.probes.scoring.aggregate import summarise
from volprobe.probes.scoring.answers import THREEDRAD_SUBSTRING, record_from_output, score_output, threedrad_substring
from volprobe.records import write_records

T5 = Item(id="3drad/test/T5/b/2", question="How would you classify the atelectasis in the current CT scan?",
          answer="New Lesion (Absent previously, now present)", task="3drad/T5", subtask="b",
          options=["Refractory Lesion (Persistent or recurrent, now present)",
                   "Resolved Lesion (Previously present or recurrent, now absent)",
                   "New Lesion (Absent previously, now present)", "No Abnormality (Always absent)"],
          metadata={"benchmark": "3drad"})
ECHO = "A. Refractory Lesion B. Resolved Lesion C. New Lesion D. No Abnormality"


def test_the_substring_rule_counts_an_echoed_option_list_volprobe_does_not():
    """eval_3DRAD.py: ``answer_choice + '.' in generated_text``; the gold here is C."""
    assert threedrad_substring(T5, ECHO) == 1.0 and threedrad_substring(T5, "C") == 0.0
    assert threedrad_substring(T5, "The answer is C. New Lesion") == 1.0
    echoed = score_output(T5, ECHO)
    assert echoed.correct is False and echoed.unparseable and echoed.scores == {THREEDRAD_SUBSTRING: 1.0}
    bare = score_output(T5, "C")
    assert bare.correct is True and bare.scores == {THREEDRAD_SUBSTRING: 0.0}


def test_only_3drad_closed_items_get_it():
    other = Item(id="q", question="Left or right?", answer="left", options=["left", "right"])
    assert score_output(other, "A.").scores == {}
    open_item = Item(id="o", question="Where?", answer="left", answer_type="open", metadata={"benchmark": "3drad"})
    assert threedrad_substring(open_item, "A. left") is None and THREEDRAD_SUBSTRING not in score_output(open_item, "x").scores


def test_probe_score_prints_it_labelled_next_to_accuracy(tmp_path):
    texts = (ECHO, "C", "C. New Lesion", "B")
    records = [record_from_output(replace(T5, id=f"{T5.id}/{n}"), "m3d", text, control="full")
               for n, text in enumerate(texts)]  # one record per item: duplicates are refused
    (summary,) = summarise(records)
    assert summary.accuracy == 0.5 and summary.secondary == {THREEDRAD_SUBSTRING: 0.5}
    assert THREEDRAD_SUBSTRING not in summary.scores
    write_records(records, tmp_path / "r.jsonl")
    result = CliRunner().invoke(main, ["score", str(tmp_path / "r.jsonl")])
    assert result.exit_code == 0, result.output
    assert "accuracy 50.00% (pooled)" in result.output
    assert "50.00% by 3D-RAD's own rule (secondary, as in its published numbers)" in result.output
    assert "echoed option list counts as correct" in result.output


def test_probe_report_shows_it_beside_accuracy_and_never_as_an_open_score(tmp_path):
    """A run of 3D-RAD closed items (the rule on each record) and open items (continuous scores): the report's
    accuracy table gains the rule's rate per model and control, over the closed items that carry it, labelled
    secondary; the open items' score table is unchanged by it. Records of other benchmarks get no column."""
    import json

    from volprobe.controls import get_control

    facts = {name: get_control(name).facts() for name in ("full", "text_only")}
    outputs = {"full": (ECHO, "C", "C. New Lesion", "B", "C", "A. x"), "text_only": (ECHO, ECHO, "B", "B", "D", "C")}
    records = []
    for control, texts in outputs.items():
        for n, text in enumerate(texts):
            item = replace(T5, id=f"{T5.id}/{n}", patient=f"p{n % 3}")
            records.append(record_from_output(item, "m3d", text, control=control, control_facts=facts[control]))
        for n in range(4):
            item = Item(id=f"3drad/open/{n}", question="Describe the finding.", answer="a small nodule",
                        answer_type="open", task="3drad/T1", patient=f"p{n % 3}", metadata={"benchmark": "3drad"})
            text = "a small nodule" if (n + (control == "full")) % 2 else "no finding"
            records.append(record_from_output(item, "m3d", text, control=control, control_facts=facts[control]))
    run = tmp_path / "run"
    run.mkdir()
    write_records(records, run / "records.jsonl")
    result = CliRunner().invoke(main, ["report", str(run), "--out", str(tmp_path / "report"), "--no-html"])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report" / "report.json").read_text())
    rows = {(r["control"], r["group"]): r for r in report["tables"]["accuracy"] if r["grouping"] == "all"}
    for control, texts in outputs.items():
        expected = [threedrad_substring(T5, t) for t in texts]
        row = rows[control, "closed"]
        assert row[f"rule_n:{THREEDRAD_SUBSTRING}"] == len(expected)  # the closed items, not the open ones
        assert row[f"rule:{THREEDRAD_SUBSTRING}"] == pytest.approx(sum(expected) / len(expected))
    assert rows["full", "closed"][f"rule:{THREEDRAD_SUBSTRING}"] != rows["full", "closed"]["accuracy"]
    assert rows["full", "open"][f"rule_n:{THREEDRAD_SUBSTRING}"] == 0
    assert THREEDRAD_SUBSTRING not in {r["score"] for r in report["tables"]["scores"]}
    assert "token_f1" in {r["score"] for r in report["tables"]["scores"]}
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"{THREEDRAD_SUBSTRING} % (items), secondary" in markdown and "the benchmark's own scoring rule" in markdown
