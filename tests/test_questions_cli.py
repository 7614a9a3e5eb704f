"""`probe questions`: inputs, outputs, manifest, leakage check, and clear errors on bad input."""

from __future__ import annotations

import json
import random

import pytest
from click.testing import CliRunner

from conftest import FIXTURE_CT, FIXTURE_SEG
from test_questions_support import fixture_graph, phantom_graphs
from volprobe.cli import main
from volprobe.items import Item, read_items
from volprobe.probes.questions import leakage_check
from volprobe.probes.questions.leakage import POOLED
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.relations.graph import build_relation_graph


@pytest.fixture(scope="module")
def relations_dir(tmp_path_factory):
    """Relation JSONs of 12 phantoms and the real fixture, as `probe relations` writes them."""
    d = tmp_path_factory.mktemp("rel")
    for g in phantom_graphs(12):
        g.save(d / f"{g.case}.json")
    return d


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def test_cli_writes_items_and_a_manifest_with_balance_priors_and_leakage(relations_dir, tmp_path):
    out = tmp_path / "items.jsonl"
    r = _run("questions", relations_dir, "--out", out, "--per-case", 40, "--seed", 2, "--leakage-check",
             "--no-progress")
    assert r.exit_code == 0, r.output
    items = read_items(out)
    assert len(items) == 12 * 40
    m = json.loads((tmp_path / "items.jsonl.manifest.json").read_text())
    assert m["seed"] == 2 and m["generator_version"] == "volprobe.questions/3"
    assert m["counts"]["total"] == len(items) and sum(m["counts"]["category"].values()) == len(items)
    assert set(m["balance"]) == {f"{it.metadata['category']}/{it.metadata['format']}" for it in items}
    assert len(m["cases"]) == 12 and all(c["labels_hash"] for c in m["cases"])
    assert all(f"{c['case']}:labels" in m["input_hashes"] for c in m["cases"])
    fam = items[0].metadata["family"]
    assert m["families"][fam]["prior_fixed"] == items[0].metadata["prior_fixed"]
    assert sum(m["families"][fam]["answers"].values()) == sum(it.metadata["family"] == fam for it in items)
    assert "most frequent outcome" in m["prior_rule"] and "0.9" in m["prior_rule"]
    rows = m["leakage"]["rows"]
    assert {row["category"] for row in rows} == {it.metadata["category"] for it in items} | {POOLED}
    pooled = {row["subset"]: row for row in rows if row["category"] == POOLED}
    for subset, row in pooled.items():  # pools every category's predictions
        parts = [r for r in rows if r["subset"] == subset and r["category"] != POOLED]
        assert row["n"] == sum(r["n"] for r in parts) and row["correct"] == sum(r["correct"] for r in parts)
    assert pooled["all"]["n"] == len(items)
    assert all(row["ci_low"] <= row["accuracy"] <= row["ci_high"] for row in rows)
    assert "leakage check" in r.output and "wrote 480 items" in r.output
    # same command, same seed: the same items
    again = tmp_path / "again.jsonl"
    _run("questions", relations_dir, "--out", again, "--per-case", 40, "--seed", 2, "--no-progress")
    assert again.read_bytes() == out.read_bytes()
    # one case alone cannot judge priors; with the cohort's manifest as reference it can
    one = tmp_path / "one.jsonl"
    _run("questions", relations_dir / "ph00.json", "--out", one, "--per-case", 40, "--seed", 2, "--no-progress")
    assert {it.metadata["prior_fixed"] for it in read_items(one)} == {None}
    r = _run("questions", relations_dir / "ph00.json", "--out", one, "--per-case", 40, "--seed", 2, "--no-progress",
             "--prior-reference", tmp_path / "items.jsonl.manifest.json")
    assert r.exit_code == 0, r.output
    tagged = read_items(one)
    known = [it for it in tagged if it.metadata["family"] in m["families"]]
    assert len(known) > len(tagged) / 2
    for it in tagged:
        ref = m["families"].get(it.metadata["family"])
        if ref is None:
            assert it.metadata["prior_fixed"] is None and it.metadata["prior_cases"] <= 1
        else:
            n = sum(ref["outcomes"].values()) + 1
            assert it.metadata["prior_cases"] == n
            assert (it.metadata["prior_fixed"] is not None) == (n >= 10)
    assert any(it.metadata["prior_fixed"] is not None for it in tagged)


def test_cli_takes_ct_and_mask_pairs_and_filters(tmp_path):
    out = tmp_path / "sub" / "items.jsonl"
    r = _run("questions", FIXTURE_CT, "--masks-suffix", "_DOES_NOT_EXIST.nii.gz", "--out", out)
    assert r.exit_code == 2 and "masks for" in r.output
    pair = tmp_path / "pair"
    pair.mkdir()
    (pair / "scan.nii.gz").write_bytes(FIXTURE_CT.read_bytes())
    (pair / "scan_seg.nii.gz").write_bytes(FIXTURE_SEG.read_bytes())
    r = _run("questions", pair / "scan.nii.gz", "--masks-suffix", "_seg.nii.gz", "--out", out,
             "--categories", "size,longitudinal", "--formats", "yes_no", "--formats", "two_option",
             "--exclude", "rib_*", "--no-progress")
    assert r.exit_code == 0, r.output
    items = read_items(out)
    assert items and {it.metadata["category"] for it in items} <= {"size", "longitudinal"}
    assert {it.metadata["format"] for it in items} <= {"yes_no", "two_option"}
    assert not any(n.startswith("rib_") for it in items for n in it.evidence["structures"])
    assert all(it.volume_path == "../pair/scan.nii.gz" for it in items)
    assert all(it.metadata["prior_fixed"] is None for it in items)  # one case: unknown


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_bad_inputs_get_clear_messages(tmp_path):
    good = fixture_graph().to_dict()
    out = tmp_path / "items.jsonl"
    cases = {
        "version": (_write(tmp_path / "old.json", {**good, "version": 99}), "version 99"),
        "empty": (_write(tmp_path / "empty.json", {**good, "structures": {}, "pairs": []}), "no structures"),
        "not relations": (_write(tmp_path / "layout.json", {"format": "something else"}),
                          "not a volprobe relations file"),
        "corrupt": (tmp_path / "corrupt.json", "not valid JSON"),
        "missing": (tmp_path / "nope.json", "not found"),
        "ct without masks": (FIXTURE_CT, "--masks-suffix"),
    }
    (tmp_path / "corrupt.json").write_text('{"format": "volprobe.relations", ')
    import numpy as np

    one = np.zeros((6, 6, 6), np.uint8)
    one[2:4, 2:4, 2:4] = 5
    lone = build_relation_graph(LabelMap(one, np.eye(4), {5: "liver"}), None, case="lone")
    cases["no pairs"] = (lone.save(tmp_path / "lone.json"), "no structure pairs")
    (tmp_path / "nothing").mkdir()
    cases["empty folder"] = (tmp_path / "nothing", "no relations JSON files")
    for name, (path, message) in cases.items():
        r = _run("questions", path, "--out", out, "--no-progress")
        assert r.exit_code == 2, (name, r.output)
        assert message in r.output, (name, r.output)
        assert "Traceback" not in r.output
    assert not out.exists()  # nothing written on bad input
    r = _run("questions", tmp_path / "lone.json", FIXTURE_CT, "--out", out, "--categories", "colour")
    assert r.exit_code == 2 and "unknown categories" in r.output
    fixture_json = fixture_graph().save(tmp_path / "a" / "example.json")
    twin = fixture_graph().save(tmp_path / "b" / "example.json")
    r = _run("questions", fixture_json, twin, "--out", out)
    assert r.exit_code == 2 and "appears twice" in r.output


def _items(texts_answers, patients):
    return [Item(id=f"i{n}", question=q, answer=a, answer_type="yes_no", options=["yes", "no"], case=p, patient=p,
                 task="spatial", subtask="c", metadata={"category": "c", "prior_fixed": fixed, "prior_share": share})
            for n, ((q, a, fixed, share), p) in enumerate(zip(texts_answers, patients))]


def test_leakage_check_finds_text_that_gives_the_answer_away_and_not_otherwise():
    rng = random.Random(0)
    rows, patients = [], []
    for case in range(40):
        for organ in ("liver", "spleen", "kidney", "heart", "stomach"):
            yes = rng.random() < 0.5
            rows.append((f"Is the {organ} of this patient enlarged?", "yes" if yes else "no", False, 0.5))
            rows.append((f"Is the {organ} on the {'left' if organ in ('spleen', 'heart') else 'right'} side?",
                         "yes", True, 1.0))
            patients += [f"p{case}"] * 2
    result = leakage_check(_items(rows, patients), seed=0)
    fixed, free = result.row("c", "prior_fixed"), result.row("c", "not_prior_fixed")
    assert fixed.accuracy > 0.95 and fixed.excess_points > 40
    assert free.ci_low <= 0.5 + 0.02 and abs(free.excess_points) < 10
    assert result.row("c", "balanced").n == free.n
    assert "leakage check" in str(result)
    single = leakage_check(_items(rows[:4], ["p0"] * 4))
    assert single.skipped and "two patients" in single.skipped and single.to_dict()["rows"] == []
