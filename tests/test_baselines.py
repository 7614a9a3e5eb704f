"""Blind baselines: fitted on invented training splits, saved, reloaded, used as the `prior` model."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.errors import FormatError, VolprobeError
from volprobe.probes.baselines import (fit_baseline, history_state, load_baseline, option_roles, save_baseline)
from volprobe.probes.datasets.synthetic import TEMPORAL_CHOICES, write_synthetic_3drad
from volprobe.probes.datasets.threedrad import load_3drad
from volprobe.items import Item, read_items, write_items
from volprobe.probes.models.base import MODELS, Prepared
from volprobe.probes.models.prior import PriorModel
from volprobe.probes.scoring.answers import score_output

REFRACTORY, RESOLVED, NEW, ABSENT = TEMPORAL_CHOICES


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    root = tmp_path_factory.mktemp("3drad")
    write_synthetic_3drad(root, 4000, split="train", seed=1)
    write_synthetic_3drad(root, 1500, split="test", seed=2)
    return load_3drad(root, "train").items, load_3drad(root, "test").items


def accuracy(baseline, items):
    preds = baseline.predict_many(items)
    return sum(score_output(it, p).correct for it, p in zip(items, preds)) / len(items)


def yes_no(i, answer, task="T", subtask="s", family=None, options=("Yes", "No")):
    return Item(id=f"{task}-{subtask}-{family}-{i}-{answer}", question="Is it there?", answer=answer,
                answer_type="yes_no", options=list(options), task=task, subtask=subtask,
                metadata={"family": family} if family else {})


def test_majority_groups_and_fallbacks():
    train = ([yes_no(i, "Yes", family="f1") for i in range(6)] + [yes_no(i, "No", family="f1") for i in range(2)]
             + [yes_no(i, "No", family="f2") for i in range(20)] + [yes_no(i, "Yes", family="f3") for i in range(2)])
    b = fit_baseline(train, "majority", min_count=5)
    assert b.predict(yes_no(0, "No", family="f1")) == "Yes"  # its own (task, subtask, family)
    assert b.predict(yes_no(0, "No", family="f2")) == "No"
    assert b.predict(yes_no(0, "No", family="f3")) == "No"  # 2 < min_count: falls back to (task, subtask)
    assert fit_baseline(train, "majority", min_count=1).predict(yes_no(0, "No", family="f3")) == "Yes"
    assert b.predict(yes_no(0, "No", task="unseen")) == "No"  # overall majority
    # only answers among the item's own options; ties go to the earlier option
    assert b.predict(yes_no(0, "Maybe", family="f1", options=("Maybe", "No"))) == "No"
    assert b.predict(yes_no(0, "Maybe", task="unseen", options=("Maybe", "Perhaps"))) == "Maybe"
    tie = fit_baseline([yes_no(0, "Yes"), yes_no(1, "No")], "majority", min_count=1)
    assert tie.predict(yes_no(0, "No", options=("No", "Yes"))) == "No"
    assert tie.predict(yes_no(0, "No", options=("Yes", "No"))) == "Yes"


def test_majority_open_items():
    items = [Item(id=f"o{i}", question="Size?", answer=a, answer_type="numeric", task="3drad/T3", subtask="Size")
             for i, a in enumerate(["5 mm", "5 mm", "7 mm", "5 mm", "9 mm", "5 mm"])]
    assert fit_baseline(items, "majority").predict(items[2]) == "5 mm"


def test_majority_uses_spatial_family_over_rotated_options():
    def side(i, answer, options):
        return Item(id=f"s{i}", question="Which side is the liver on?", answer=answer, options=options,
                    task="spatial", subtask="laterality", metadata={"family": "side_of:liver"})

    train = [side(i, "right", ["left", "right"] if i % 2 else ["right", "left"]) for i in range(10)]
    b = fit_baseline(train, "majority")
    assert b.predict(side(99, "left", ["left", "right"])) == "right"
    assert b.predict(side(98, "left", ["right", "left"])) == "right"


def test_history_rule_never_predicts_new_after_a_one(splits):
    train, test = splits
    b = fit_baseline(train, "history-rule")
    t6 = [it for it in test if it.task == "3drad/T6"]
    assert t6
    labels = sorted({it.metadata["label"] for it in t6})
    probes = [Item(id=f"h{i}", question="q", answer=NEW, options=TEMPORAL_CHOICES, task="3drad/T6", subtask="b",
                   metadata={"history": list(h), "family": lab})
              for i, (h, lab) in enumerate(itertools.product(
                  [h for n in range(1, 5) for h in itertools.product([0, 1], repeat=n)], labels))]
    for it in t6 + probes:
        pred = b.predict(it)
        if 1 in it.metadata["history"]:
            assert pred in (REFRACTORY, RESOLVED), (it.metadata["history"], pred)
        else:
            assert pred in (NEW, ABSENT)


def test_history_rule_defaults_to_persistence_and_follows_training():
    def t6(i, history, answer, label="Emphysema"):
        return Item(id=f"t{i}", question="q", answer=answer, options=TEMPORAL_CHOICES, task="3drad/T6",
                    subtask="b", metadata={"history": history, "family": label})

    unfitted = fit_baseline([yes_no(0, "No")], "history-rule")  # no Task 6 data at all
    assert [unfitted.predict(t6(0, h, NEW)) for h in ([1], [0, 1], [1, 0], [0, 0], [])] == \
        [REFRACTORY, REFRACTORY, RESOLVED, ABSENT, ABSENT]
    # in training, a finding present at the last prior usually resolves; never-present ones usually appear
    train = ([t6(i, [1], RESOLVED) for i in range(8)] + [t6(10 + i, [1], REFRACTORY) for i in range(3)]
             + [t6(20 + i, [0], NEW) for i in range(6)] + [t6(30 + i, [0], ABSENT) for i in range(2)]
             + [yes_no(i, "No") for i in range(3)])
    b = fit_baseline(train, "history-rule")
    assert b.predict(t6(0, [0, 1], REFRACTORY)) == RESOLVED
    assert b.predict(t6(0, [0, 0], ABSENT)) == NEW
    assert b.predict(t6(0, [0, 0], ABSENT, label="Cardiomegaly")) == NEW  # pooled over labels
    assert b.predict(t6(0, [1, 0], ABSENT)) == RESOLVED  # no data for this state: persistence
    assert b.predict(yes_no(0, "No")) == "No"  # not a history item: majority


def test_history_helpers():
    assert history_state([0, 1]) == "last_present" and history_state([1, 0]) == "earlier_present"
    assert history_state([0, 0]) == history_state([]) == "never_present"
    assert option_roles(TEMPORAL_CHOICES)["new"] == NEW
    assert option_roles(["Yes", "No"]) is None


def test_baselines_beat_majority_where_text_carries_signal(splits):
    train, test = splits
    t6 = [it for it in test if it.task == "3drad/T6"]
    majority = accuracy(fit_baseline(train, "majority"), t6)
    history = accuracy(fit_baseline(train, "history-rule"), t6)
    text = accuracy(fit_baseline(train, "text-classifier"), t6)
    assert history > majority + 0.15 and text > majority + 0.15
    t4 = [it for it in test if it.task == "3drad/T4"]
    assert accuracy(fit_baseline(train, "majority"), t4) > 0.6  # label prevalences are learnable


def test_text_classifier_learns_a_word_cue():
    def item(i, word):
        answer = "left" if word in ("spleen", "stomach") else "right"
        return Item(id=f"w{i}-{word}", question=f"On which side is the {word} in this scan {i}?", answer=answer,
                    options=["left", "right"] if i % 2 else ["right", "left"], task="spatial", subtask="side")

    words = ["spleen", "stomach", "liver", "gallbladder"]
    train = [item(i, w) for i in range(20) for w in words]
    b = fit_baseline(train, "text-classifier")
    test = [item(100 + i, w) for i in range(5) for w in words]
    assert accuracy(b, test) == 1.0
    assert accuracy(fit_baseline(train, "majority"), test) == 0.5


@pytest.mark.parametrize("kind", ["majority", "history-rule", "text-classifier"])
def test_save_load_reproduces_predictions(splits, tmp_path, kind):
    train, test = splits
    b = fit_baseline(train, kind, seed=7)
    path = save_baseline(b, tmp_path / "b.json")
    again = load_baseline(path)
    assert (again.kind, again.seed, again.n_fitted) == (kind, 7, len(train))
    assert again.predict_many(test) == b.predict_many(test)
    assert path.stat().st_size < 1_000_000


def test_bad_baseline_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_baseline(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(FormatError, match="not a volprobe baseline"):
        load_baseline(tmp_path / "bad.json")
    (tmp_path / "old.json").write_text(json.dumps({"format_version": 99, "kind": "majority"}))
    with pytest.raises(FormatError, match="version 99"):
        load_baseline(tmp_path / "old.json")
    with pytest.raises(VolprobeError, match="unknown baseline kind"):
        fit_baseline([yes_no(0, "No")], "oracle")
    with pytest.raises(VolprobeError, match="no items"):
        fit_baseline([], "majority")


def test_prior_adapter_answers_with_letter_and_text(splits, tmp_path):
    train, test = splits
    b = fit_baseline(train, "history-rule")
    path = save_baseline(b, tmp_path / "history.json")
    assert MODELS.get("prior") is PriorModel and PriorModel.uses_image is False
    model = PriorModel(path=str(path))
    model.load()
    prepared = model.prepare(None)
    assert prepared.no_image and isinstance(prepared, Prepared)
    some = [it for it in test if it.task in ("3drad/T4", "3drad/T6", "3drad/T3")][:60]
    outputs = model.generate([(prepared, it) for it in some])
    expected = b.predict_many(some)
    for it, out, exp in zip(some, outputs, expected):
        if it.is_closed:
            assert out.text == f"{it.letter_of(exp)}. {exp}"
        assert score_output(it, out.text).parsed == score_output(it, exp).parsed
    assert model.revision and len(model.revision) == 64
    with pytest.raises(VolprobeError, match="needs a baseline file"):
        PriorModel(path=None)


def test_cli_baseline_fit_and_eval(splits, tmp_path):
    train, test = splits
    write_items(train, tmp_path / "train.jsonl")
    write_items(test[::5][:300], tmp_path / "test.jsonl")
    runner = CliRunner()
    res = runner.invoke(main, ["baseline", "fit", "--items", str(tmp_path / "train.jsonl"), "--kind", "majority",
                               "--seed", "3", "--out", str(tmp_path / "m.json")])
    assert res.exit_code == 0, res.output
    manifest = json.loads((tmp_path / "m.json.manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["parameters"]["kind"] == "majority"
    res = runner.invoke(main, ["baseline", "eval", "--baseline", str(tmp_path / "m.json"), "--items",
                               str(tmp_path / "test.jsonl"), "--out", str(tmp_path / "r.jsonl")])
    assert res.exit_code == 0, res.output
    lines = [json.loads(line) for line in (tmp_path / "r.jsonl").read_text().splitlines()]
    assert len(lines) == 300 and Counter(r["control"] for r in lines) == {"full": 300}
    assert "3drad/T4" in res.output and "class-balanced" in res.output
    res = runner.invoke(main, ["score", str(tmp_path / "r.jsonl"), "--out", str(tmp_path / "s.json")])
    assert res.exit_code == 0 and json.loads((tmp_path / "s.json").read_text())["summaries"]
    assert len(read_items(tmp_path / "test.jsonl")) == 300
