"""The run engine end to end with a tiny recording adapter, the random model, shards and merge, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from runfixtures import RecordingAdapter, make_items, write_cases
from volprobe.cli import main
from volprobe.seeding import derive_seed
from volprobe.controls.builtin import slice_permutation
from volprobe.errors import VolprobeError
from volprobe.probes.run.engine import run, select_items
from volprobe.items import write_items
from volprobe.probes.models.base import hash_bytes, load_model
from volprobe.records import read_records
from volprobe.probes.run.store import IncompleteRunError, Shard, merge_runs
from volprobe.probes.run.volume_cache import VolumeCache
from volprobe.segmentation.volume import load_volume

CONTROLS = ["full", "text_only", "blank", "shuffled_slices", "mirror_lr", "swapped_volume", "single_slice:evidence"]


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    return write_cases(tmp_path_factory.mktemp("cases"))


@pytest.fixture(scope="module")
def items(cases):
    return make_items(cases, per_case=3)


def expected_volume(control: str, case: str, cases, seed: int):
    """The volume the model must receive for ``case`` under ``control``, computed without the engine."""
    vol = load_volume(cases[case][0])
    axis = vol.axial_axis
    if control == "full":
        return vol
    if control == "blank":
        return vol.with_array(np.full(vol.shape, -1000, dtype=vol.array.dtype))
    if control == "mirror_lr":
        return vol.with_array(np.flip(vol.array, axis=vol.array_axis("lr")).copy())
    if control == "shuffled_slices":
        order = slice_permutation(derive_seed(seed, "shuffled_slices", case), vol.shape[axis])
        return vol.with_array(np.take(vol.array, order, axis=axis))
    raise AssertionError(control)


def test_end_to_end_records_volumes_and_preparations(tmp_path, cases, items):
    model = RecordingAdapter()
    summary = run(items, model, CONTROLS, tmp_path / "run", seed=3, batch_size=4, progress=False, volume_cache=4)
    records = read_records(tmp_path / "run" / "records.jsonl")
    excluded = [json.loads(line) for line in (tmp_path / "run" / "excluded.jsonl").read_text().splitlines()]

    # complete: every (item, control) pair has one record or one exclusion, none twice
    keys = [(r.control, r.item_id) for r in records] + [(e["control"], e["item_id"]) for e in excluded]
    assert sorted(keys) == sorted((c, it.id) for c in CONTROLS for it in items)
    # exclusions: mirror_lr on SI items is fine (axes ['si']); single_slice:evidence on items without a range
    assert {(e["control"], e["item_id"].split("-")[1]) for e in excluded} == {("single_slice:evidence", "x0")}
    assert summary.excluded == {"single_slice:evidence": {e["reason"]: 4 for e in excluded}}

    # each (volume, control) input prepared exactly once; text_only once for the whole run
    n_cases = len(cases)
    image_controls = [c for c in CONTROLS if c != "text_only"]
    singles = 2  # single_slice:evidence: the lat and si items have different ranges -> 2 inputs per case
    assert len(model.prepared) == n_cases * (len(image_controls) - 1) + n_cases * singles + 1
    assert summary.preparations == len(model.prepared) and summary.max_preparations_per_input == 1
    assert model.prepared.count(None) == 1 and model.loads == 1
    assert summary.volumes_loaded == n_cases  # each volume read once (swapped_volume's sources come from the cache)
    assert max(model.batches) == 4 and sum(model.batches) == len(records)

    by = {(r.control, r.item_id): r for r in records}
    for it in items:
        for control in ("full", "blank", "mirror_lr", "shuffled_slices"):
            vol = expected_volume(control, it.case, cases, seed=3)
            rec = by[(control, it.id)]
            assert rec.input_hash == hash_bytes(vol.content_hash, rec.prompt), (control, it.id)
        swapped = by[("swapped_volume", it.id)]
        source = swapped.control_params["source_case"]
        assert cases[source][1] != it.patient
        assert swapped.input_hash == hash_bytes(load_volume(cases[source][0]).content_hash, swapped.prompt)
        assert by[("text_only", it.id)].input_hash == hash_bytes("none", by[("text_only", it.id)].prompt)

    # record content
    for r in records:
        it = next(i for i in items if i.id == r.item_id)
        assert r.model == "test-recorder" and r.seed == 3 and r.error is None
        assert r.generation == {"do_sample": False, "max_new_tokens": 4}
        assert r.gold_original == it.answer and r.patient == it.patient and r.case == it.case
        assert r.evidence_axes == it.evidence["axes"] and r.prior_fixed == it.metadata.get("prior_fixed")
        assert r.category == (it.metadata.get("category") or it.subtask or it.task)
        assert r.no_image_mode == ("images=None" if r.control == "text_only" else None)
        assert r.prompt.startswith(it.question) and r.raw_output == f"{it.answer_letter}. {it.answer}"
        assert r.latency_s is not None and r.latency_s >= 0
        if r.control == "mirror_lr" and it.subtask == "laterality":
            assert r.gold == "left" and r.gold_original == "right" and not r.correct  # the adapter answered 'right'
        else:
            assert r.gold == it.answer and r.correct
        if r.control in ("shuffled_slices", "swapped_volume"):
            assert isinstance(r.control_seed, int)
        if r.control == "single_slice:evidence":
            lo, hi = it.evidence["axial_slices"]
            assert r.control_params["slice"] == (lo + hi) // 2

    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    section = manifest["run"]
    assert manifest["seed"] == 3 and section["status"] == "complete"
    assert section["preparations"] == summary.preparations
    assert section["exclusions"] == summary.excluded
    assert sorted(section["expected"]["items"]) == sorted(it.id for it in items)
    assert [c["label"] for c in section["identity"]["controls"]] == CONTROLS


def test_one_failing_item_is_recorded_and_the_run_goes_on(tmp_path, items):
    model = RecordingAdapter(fail_items=["c1-si"])
    summary = run(items, model, ["full", "text_only"], tmp_path / "run", batch_size=3, progress=False)
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert len(records) == 2 * len(items) and summary.errors == 2
    for r in records:
        if r.item_id == "c1-si":
            assert "generate failed" in r.error and "model crashed on c1-si" in r.error and not r.correct
        else:
            assert r.error is None and r.correct


def test_an_adapter_refusal_is_recorded_as_a_refusal_not_an_answer(tmp_path, items):
    run(items, RecordingAdapter(refuse_without_image=True), ["full", "text_only"], tmp_path / "run", progress=False)
    for r in read_records(tmp_path / "run" / "records.jsonl"):
        if r.control == "text_only":
            assert r.refused and not r.correct and r.parsed is None and not r.unparseable
        else:
            assert not r.refused and r.correct


def test_a_failing_prepare_marks_only_that_input(tmp_path, cases, items):
    model = RecordingAdapter(fail_prepare_shape=[24, 20, 1])  # single_slice inputs are 1 slice thick
    run(items, model, ["full", "single_slice"], tmp_path / "run", progress=False)
    records = read_records(tmp_path / "run" / "records.jsonl")
    assert all(("prepare failed" in (r.error or "")) == (r.control == "single_slice") for r in records)
    assert len(records) == 2 * len(items)


def test_a_missing_volume_is_an_error_under_image_controls_only(tmp_path, cases, items):
    gone = tmp_path / "gone.nii.gz"
    broken = [it for it in items if it.case != "c0"] + [
        type(items[0])(**{**items[0].__dict__, "case": "c9", "id": "lost", "volume_path": str(gone)})]
    run(broken, RecordingAdapter(), ["full", "text_only"], tmp_path / "run", progress=False)
    records = {(r.control, r.item_id): r for r in read_records(tmp_path / "run" / "records.jsonl")}
    assert "volume missing" in records[("full", "lost")].error and str(gone) in records[("full", "lost")].error
    assert records[("text_only", "lost")].error is None and records[("text_only", "lost")].correct
    assert sum(r.error is not None for r in records.values()) == 1


def test_random_model_is_uniform_seeded_and_blind(tmp_path, items):
    model = load_model("random")
    summary = run(items, model, ["full", "text_only", "mirror_lr"], tmp_path / "a", seed=5, progress=False)
    recs = read_records(tmp_path / "a" / "records.jsonl")
    assert summary.preparations == 1 and summary.volumes_loaded == 0  # blind: the volume is never read
    answers = {}
    for r in recs:
        answers.setdefault(r.item_id, set()).add(r.raw_output)
        assert r.no_image_mode == model.no_image_mode
    assert all(len(a) == 1 for a in answers.values())  # same answer under every control
    run(items, load_model("random"), ["full"], tmp_path / "b", seed=5, progress=False)
    again = {r.item_id: r.raw_output for r in read_records(tmp_path / "b" / "records.jsonl")}
    assert again == {r.item_id: r.raw_output for r in recs if r.control == "full"}
    # uniform: over many items each option is chosen about half the time
    from volprobe.items import Item

    many = [Item(id=f"q{n}", question="?", answer="a", options=["a", "b"]) for n in range(2000)]
    texts = [g.text for g in model.generate([(None, it) for it in many])]
    assert 900 < sum(t == "A. a" for t in texts) < 1100
    open_item = Item(id="o", question="Describe.", answer="a mass", answer_type="open")
    assert model.generate([(None, open_item)])[0].text == ""


def test_shards_split_by_case_and_merge_back(tmp_path, items):
    whole = run(items, RecordingAdapter(), ["full", "mirror_lr", "swapped_volume"], tmp_path / "whole",
                seed=1, progress=False)
    for i in range(3):
        part = select_items(items, None, Shard(i, 3))
        other = [it for j in range(3) if j != i for it in select_items(items, None, Shard(j, 3))]
        assert not {it.case for it in part} & {it.case for it in other}  # a case stays in one shard
        run(items, RecordingAdapter(), ["full", "mirror_lr", "swapped_volume"], tmp_path / f"s{i}",
            seed=1, shard=f"{i}/3", progress=False)
        assert (tmp_path / f"s{i}" / f"records.shard-{i}-of-3.jsonl").exists()
    result = merge_runs([tmp_path / f"s{i}" for i in range(3)], tmp_path / "merged")
    assert result.records == whole.written

    def content(path):
        out = {}
        for r in read_records(path):
            d = r.to_dict()
            d.pop("latency_s")
            out[r.key] = d
        return out

    assert content(tmp_path / "merged" / "records.jsonl") == content(tmp_path / "whole" / "records.jsonl")
    merged_manifest = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    assert len(merged_manifest["runs"]) == 1 and merged_manifest["runs"][0]["merged_shards"] == 3


def test_merge_names_missing_pairs_and_shards(tmp_path, items):
    for i in range(2):
        run(items, RecordingAdapter(), ["full"], tmp_path / "run", shard=f"{i}/2", progress=False)
    run(items, RecordingAdapter(), ["full"], tmp_path / "other", shard="0/3", progress=False)
    with pytest.raises(IncompleteRunError, match="shard\\(s\\) 1/3, 2/3 missing"):
        merge_runs([tmp_path / "other"], tmp_path / "m0")
    path = tmp_path / "run" / "records.shard-0-of-2.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    dropped = json.loads(lines[1])["item_id"]
    path.write_text("".join(lines[:1] + lines[2:] + lines[:1]))  # one pair lost, another doubled
    with pytest.raises(IncompleteRunError) as err:
        merge_runs([tmp_path / "run"], tmp_path / "m1")
    assert f"full / {dropped}" in str(err.value) and "1 (model / control / item) pair(s) missing" in str(err.value)
    assert "present more than once" in str(err.value)
    assert not (tmp_path / "m1" / "records.jsonl").exists()  # nothing written


def test_rerun_resumes_and_refuses_a_different_run(tmp_path, items):
    first = run(items, RecordingAdapter(), ["full"], tmp_path / "run", limit=5, progress=False)
    assert first.written == 5
    model = RecordingAdapter()
    again = run(items, model, ["full"], tmp_path / "run", limit=5, progress=False)
    assert again.written == 0 and again.already_done == 5 and model.loads == 0 and not model.prepared
    with pytest.raises(VolprobeError, match="different run.*limit"):
        run(items, RecordingAdapter(), ["full"], tmp_path / "run", limit=6, progress=False)
    with pytest.raises(VolprobeError, match="different run.*controls"):
        run(items, RecordingAdapter(), ["blank"], tmp_path / "run", limit=5, progress=False)
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert len(manifest["run"]["sessions"]) == 2


def test_a_torn_last_line_is_cut_and_redone(tmp_path, items):
    run(items, RecordingAdapter(), ["full"], tmp_path / "run", limit=4, progress=False)
    path = tmp_path / "run" / "records.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:3]) + lines[3][:40])  # killed while writing the 4th record
    summary = run(items, RecordingAdapter(), ["full"], tmp_path / "run", limit=4, progress=False)
    assert summary.written == 1
    recs = read_records(path)
    assert sorted(r.item_id for r in recs) == sorted(it.id for it in items[:4])


def test_bad_arguments_are_clear(tmp_path, items):
    with pytest.raises(VolprobeError, match="controls given twice"):
        run(items, RecordingAdapter(), ["full", "full"], tmp_path / "a", progress=False)
    with pytest.raises(VolprobeError, match="0 <= i < N"):
        run(items, RecordingAdapter(), ["full"], tmp_path / "a", shard="3/3", progress=False)
    with pytest.raises(VolprobeError, match="at least two different patients"):
        run([it for it in items if it.patient == "p1"], RecordingAdapter(), ["swapped_volume"], tmp_path / "b",
            progress=False)


def test_cli_run_merge_controls_models(tmp_path, items):
    items_path = tmp_path / "items.jsonl"
    write_items(items, items_path)
    runner = CliRunner()
    for i in range(2):
        res = runner.invoke(main, ["run", "--model", "random", "--items", str(items_path), "--control", "full",
                                   "--control", "single_slice", "--single-slice", "outside", "--out",
                                   str(tmp_path / "run"), "--shard", f"{i}/2", "--seed", "4", "--no-progress"])
        assert res.exit_code == 0, res.output
        assert "records written now" in res.output
    res = runner.invoke(main, ["merge", str(tmp_path / "run"), "--out", str(tmp_path / "all")])
    assert res.exit_code == 0, res.output
    recs = read_records(tmp_path / "all" / "records.jsonl")
    untagged = [it for it in items if "axial_slices" not in it.evidence]  # excluded, also for a blind model
    assert {r.control for r in recs} == {"full", "single_slice:outside"}
    assert len(recs) == 2 * len(items) - len(untagged) and len(untagged) == 4
    assert len((tmp_path / "all" / "excluded.jsonl").read_text().splitlines()) == len(untagged)
    res = runner.invoke(main, ["merge", str(tmp_path / "run"), "--out", str(tmp_path / "all")])
    assert res.exit_code == 2 and "already holds records.jsonl" in res.output
    res = runner.invoke(main, ["controls"])
    assert res.exit_code == 0 and "mirror_lr" in res.output and "counterfactual (lr)" in res.output
    res = runner.invoke(main, ["models"])
    assert res.exit_code == 0 and "random" in res.output
    res = runner.invoke(main, ["run", "--model", "nosuch", "--items", str(items_path), "--control", "full",
                               "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown model 'nosuch'" in res.output


def test_volume_cache_reads_ahead_keeps_errors_and_resolves_relative_paths(tmp_path, cases):
    paths = {c: (str(p), patient) for c, (p, patient) in cases.items()}
    paths["gone"] = ("nowhere.nii.gz", "q")
    paths["rel"] = (cases["c1"][0].name, "p1")  # relative to the items file's folder
    vc = VolumeCache(paths, base_dir=cases["c1"][0].parent, size=2)
    try:
        vc.prefetch("c0")
        first = vc.get("c0")
        assert vc.get("c0") is first and vc.loaded == 1
        for _ in range(2):
            with pytest.raises(FileNotFoundError, match="volume missing: .*nowhere.nii.gz"):
                vc.get("gone")
        assert vc.loaded == 1
        assert np.array_equal(vc.get("rel").array, load_volume(cases["c1"][0]).array)
        vc.get("c2")  # a cache of 2 has dropped c0 by now
        assert vc.get("c0") is not first and vc.loaded == 4
    finally:
        vc.close()


def test_merge_joins_different_models_and_a_merged_run_merges_again(tmp_path, items):
    run(items, RecordingAdapter(), ["full", "blank"], tmp_path / "rec", progress=False)
    run(items, load_model("random"), ["full", "blank"], tmp_path / "rnd", progress=False)
    both = merge_runs([tmp_path / "rec", tmp_path / "rnd"], tmp_path / "both")
    assert both.records == 4 * len(items) and both.runs == 2
    again = merge_runs([tmp_path / "both"], tmp_path / "again")
    assert again.records == both.records
    assert {r.model for r in read_records(tmp_path / "again" / "records.jsonl")} == {"test-recorder", "random"}
    with pytest.raises(IncompleteRunError, match="expected by two runs"):
        merge_runs([tmp_path / "rec", tmp_path / "both"], tmp_path / "twice")
