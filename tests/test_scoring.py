"""Scoring of model outputs: closed-answer parsing, refusals, open-text scores, Task 3 measurements,
spatial-term agreement, benchmark aggregates, BERTScore availability."""

from __future__ import annotations

import math

import pytest

from volprobe.probes.scoring.aggregate import (class_balanced_accuracy, pooled_accuracy, subtask_mean_accuracy,
                                                  summarise)
from volprobe.probes.scoring.bertscore import bertscore
from volprobe.probes.scoring.measurements import measurements_match, parse_measurement
from volprobe.probes.scoring.spatial_terms import spatial_agreement, spatial_terms
from volprobe.items import Item
from volprobe.records import RunRecord
from volprobe.probes.scoring.answers import (bleu1, is_refusal, parse_choice, record_from_output, rouge1, score_output,
                                     token_f1)

YES_NO = Item(id="t4", question="Is bronchiectasis visible?", answer="No", answer_type="yes_no", options=["Yes", "No"],
              task="3drad/T4", subtask="Bronchiectasis")
TEMPORAL_OPTIONS = ["Refractory Lesion (Persistent or recurrent, now present)",
                    "Resolved Lesion (Previously present or recurrent, now absent)",
                    "New Lesion (Absent previously, now present)", "No Abnormality (Always absent)"]
TEMPORAL = Item(id="t6", question="Prior emphysema states: [1]. What is emphysema now?", answer=TEMPORAL_OPTIONS[1],
                options=TEMPORAL_OPTIONS, task="3drad/T6", subtask="b")


@pytest.mark.parametrize("text, expected", [
    ("B", "No"), ("b", "No"), ("B.", "No"), ("(B)", "No"), ("[B]", "No"), ("**B**", "No"), (" B ", "No"),
    ("Answer: B", "No"), ("answer: b", "No"), ("The answer is (B).", "No"), ("Option B", "No"),
    ("The correct choice is B, because no dilated bronchi are seen.", "No"),
    ("B. No", "No"), ("B) No", "No"), ("(B) no", "No"), ("B: No", "No"),
    ("No", "No"), ("NO.", "No"), ("no", "No"), ("Yes", "Yes"), ("yes, it is visible", "Yes"),
    ("No, there is no bronchiectasis.", "No"), ("Yes. Bronchiectasis is present; no effusion.", "Yes"),
    ("A. Yes B. No\nAnswer: B", "No"), ("I think B.", "No"), ("<think>Maybe A? Looking again.</think> B", "No"),
    ("A", "Yes"),
])
def test_closed_parse_yes_no(text, expected):
    s = score_output(YES_NO, text)
    assert s.parsed == expected and not s.unparseable and not s.refused
    assert s.correct == (expected == "No")


@pytest.mark.parametrize("text, status", [
    ("A or B", "several"), ("A, B", "several"), ("A. Yes B. No", "several"), ("Yes and no", "several"),
    ("A. No", "several"), ("Answer: A. Answer: B.", "several"),
    ("", "none"), ("   ", "none"), ("The bronchi look normal.", "none"), ("A nodule is seen.", "none"),
    ("C", "none"), ("Answer: D", "none"),
])
def test_closed_unparseable(text, status):
    assert parse_choice(text, YES_NO.options) == (None, status)
    s = score_output(YES_NO, text)
    assert s.unparseable and not s.correct and s.parsed is None and not s.refused


@pytest.mark.parametrize("text, expected_index", [
    ("Refractory Lesion", 0), ("resolved lesion.", 1), ("New Lesion (Absent previously, now present)", 2),
    ("No Abnormality", 3), ("No abnormality (always absent)", 3), ("D", 3), ("The answer is B", 1),
    ("It is a resolved lesion: it was present before and is absent now.", 1),
    ("B. Resolved Lesion (Previously present or recurrent, now absent)", 1),
])
def test_closed_parse_option_texts(text, expected_index):
    s = score_output(TEMPORAL, text)
    assert s.parsed == TEMPORAL_OPTIONS[expected_index]
    assert s.correct == (expected_index == 1)


def test_spatial_option_words():
    side = Item(id="s", question="On which side is the liver?", answer="right", options=["left", "right"])
    assert score_output(side, "Right.").parsed == "right"
    assert score_output(side, "The liver lies on the patient's right side.").correct
    assert score_output(side, "B. right").correct
    assert score_output(side, "left and right").unparseable
    organs = Item(id="o", question="Which lies more to the left?", answer="spleen",
                  options=["liver", "spleen", "left kidney", "kidney"])
    assert score_output(organs, "Spleen").correct
    assert score_output(organs, "the left kidney").parsed == "left kidney"  # not also "kidney"
    assert score_output(organs, "C").parsed == "left kidney"
    assert score_output(organs, "The spleen is left of the liver").unparseable  # names two options


def test_refusals():
    s = score_output(YES_NO, "I cannot determine this without an image.")
    assert s.refused and not s.unparseable and not s.correct and s.parsed is None
    assert score_output(YES_NO, "I’m unable to view images.").refused  # typographic apostrophe
    hedge = score_output(YES_NO, "I can't see the image well, but the answer is B.")
    assert hedge.parsed == "No" and not hedge.refused  # an answer given is an answer
    assert not is_refusal("No, bronchiectasis is not visible.")
    assert not is_refusal("The lesion is likely benign.")
    open_item = Item(id="o", question="Describe.", answer="Emphysema.", answer_type="open")
    s = score_output(open_item, "As an AI, I cannot provide a diagnosis.")
    assert s.refused and not s.correct and s.parsed is None and "token_f1" in s.scores


def test_open_scores_hand_computed():
    assert token_f1("The left lung.", "left lung") == 1.0  # articles and punctuation dropped
    assert token_f1("x y z", "x y w") == pytest.approx(2 / 3)
    assert token_f1("x y", "a b") == 0.0
    assert rouge1("x y z", "x y w") == pytest.approx(2 / 3)
    assert bleu1("left lung", "left lung base") == pytest.approx(math.exp(1 - 3 / 2))  # precision 1 x brevity
    assert bleu1("Left Lung", "left lung") == pytest.approx(1.0)  # lower-cased
    assert bleu1("heart", "left lung") == 0.0


def test_open_correctness_rule():
    item = Item(id="o", question="Where is the nodule?", answer="right upper lobe nodule", answer_type="open")
    exact = score_output(item, "Right upper lobe nodule.")
    assert exact.correct and exact.scores["exact"] == 1.0 and exact.parsed == "right upper lobe nodule"
    half = score_output(item, "upper lobe")  # P=1, R=1/2 -> F1 = 2/3
    assert half.scores["token_f1"] == pytest.approx(2 / 3) and half.correct
    low = score_output(item, "a nodule in the left lower lung base")  # 1 shared token of 6 and 4
    assert low.scores["token_f1"] < 0.5 and not low.correct
    assert not score_output(item, "upper lobe", f1_threshold=0.7).correct
    empty = score_output(item, "")
    assert empty.unparseable and not empty.correct


@pytest.mark.parametrize("text, dims", [
    ("7 mm", (7.0,)), ("30x13 mm", (30.0, 13.0)), ("1.2 cm", (12.0,)), ("12mm", (12.0,)),
    ("3 x 4 x 5 mm", (3.0, 4.0, 5.0)), ("3 × 4 cm", (30.0, 40.0)), ("30 mm x 13 mm", (30.0, 13.0)),
    ("2.5 X 1 cm", (25.0, 10.0)), ("3 by 4 mm", (3.0, 4.0)), ("5 millimeters", (5.0,)), ("2 centimetres", (20.0,)),
    ("The nodule measures about 0.8cm.", (8.0,)), ("1 nodule, measuring 7 mm", (7.0,)),
    ("T12 level, 9 mm thick", (9.0,)), ("6", (6.0,)),
])
def test_parse_measurement(text, dims):
    m = parse_measurement(text)
    assert m is not None and m.dims_mm == pytest.approx(dims)


def test_parse_measurement_none():
    assert parse_measurement("It is small.") is None
    assert parse_measurement("") is None


@pytest.mark.parametrize("pred, gold, ok", [
    ("6.9 mm", "6 mm", True), ("7.1 mm", "6 mm", False),  # 1 mm floor for small sizes
    ("43.9 mm", "40 mm", True), ("44.5 mm", "40 mm", False),  # 10% for large ones
    ("4 cm", "40 mm", True), ("13x30 mm", "30x13 mm", True),  # units and dimension order
    ("30 mm", "30x13 mm", False), ("30x20 mm", "30x13 mm", False),
])
def test_measurement_tolerance(pred, gold, ok):
    assert measurements_match(parse_measurement(pred), parse_measurement(gold)) is ok


def test_numeric_item_scoring():
    item = Item(id="m", question="What is the size of the mass?", answer="30x13 mm", answer_type="numeric",
                task="3drad/T3", subtask="Size")
    s = score_output(item, "The mass measures 3.1 x 1.3 cm.")
    assert s.correct and s.parsed == "31x13 mm" and s.scores["abs_error_mm"] == pytest.approx(1.0)
    assert {"bleu1", "rouge1", "token_f1"} <= set(s.scores)
    wrong = score_output(item, "5 mm")
    assert not wrong.correct and "abs_error_mm" not in wrong.scores  # dimension counts differ
    none = score_output(item, "It is a large mass.")
    assert none.unparseable and not none.correct and none.parsed is None
    refused = score_output(item, "I cannot determine the size without the image.")
    assert refused.refused and not refused.unparseable


def test_spatial_terms_and_agreement():
    assert spatial_terms("Bilateral, more on the left") == {"side": frozenset({"left", "right"})}
    assert spatial_terms("lies superiorly and anteriorly") == {"level": frozenset({"superior"}),
                                                               "depth": frozenset({"anterior"})}
    assert spatial_terms("The heart is enlarged") == {}
    assert spatial_agreement("Bilateral pleural effusions.", "Right and left effusions") is True
    assert spatial_agreement("Left side only.", "On the left.") is True
    assert spatial_agreement("Left side only.", "Left or right, unclear") is False
    assert spatial_agreement("Left side only.", "No effusion") is False
    assert spatial_agreement("Superior to the carina", "above the carina, on the right") is True
    assert spatial_agreement("Posterior, in the left lower lobe", "posterior, left lobe") is False  # misses 'lower'
    assert spatial_agreement("Yes, it abuts the heart.", "Yes") is None


def test_spatial_scoring_in_score_output():
    item = Item(id="c", question="On which side is the effusion?", answer="Left side only.", answer_type="open",
                task="ctspatialvqa", metadata={"scoring": "spatial_terms"})
    s = score_output(item, "The effusion is on the left.")
    assert s.correct and s.scores["spatial_agree"] == 1.0 and s.scores["token_f1"] < 0.5
    assert not score_output(item, "left side only? no, right side only").correct


def _rec(subtask, gold, correct, task="T", model="m"):
    return RunRecord(item_id=f"{subtask}-{gold}-{correct}-{id(object())}", model=model, control="full", gold=gold,
                     correct=correct, task=task, subtask=subtask, answer_type="yes_no", chance=0.5)


def test_aggregates_hand_computed():
    correct = [True, True, True, False, False]
    subtasks = ["a", "a", "a", "a", "b"]  # a: 3/4, b: 0/1
    assert pooled_accuracy(correct) == pytest.approx(0.6)
    assert subtask_mean_accuracy(subtasks, correct) == pytest.approx((0.75 + 0.0) / 2)
    golds = ["No", "No", "No", "No", "Yes"]  # always-"No" on 4:1 prevalence
    assert class_balanced_accuracy(golds, [True, True, True, True, False]) == pytest.approx(0.5)
    assert math.isnan(pooled_accuracy([]))
    with pytest.raises(ValueError):
        subtask_mean_accuracy(["a"], [True, False])


def test_summarise_records():
    recs = [_rec("a", "No", True), _rec("a", "No", True), _rec("a", "Yes", False), _rec("b", "No", False),
            _rec("a", "No", True, model="other")]
    recs[3].unparseable = True
    (m, other) = summarise(recs)
    assert (m.model, m.n, m.n_subtasks) == ("m", 4, 2)
    assert m.accuracy == pytest.approx(0.5) and m.subtask_mean_accuracy == pytest.approx((2 / 3 + 0) / 2)
    assert m.balanced_accuracy == pytest.approx((2 / 3 + 0) / 2) and m.unparseable == 1 and m.chance == 0.5
    assert other.n == 1 and "mean of 1 subtasks" in str(other)


def test_record_from_output_copies_item():
    rec = record_from_output(YES_NO, "m", "B. No", control="full", seed=3)
    assert (rec.item_id, rec.gold, rec.parsed, rec.correct, rec.seed) == ("t4", "No", "No", True, 3)
    assert (rec.task, rec.subtask, rec.answer_type, rec.chance) == ("3drad/T4", "Bronchiectasis", "yes_no", 0.5)


def test_bertscore_skipped_without_local_model(tmp_path):
    result = bertscore(["left lung"], ["left lung"], model=str(tmp_path / "no-such-model"))
    assert result.f1 is None and "skipped" in result.note


def test_bertscore_with_tiny_local_model(tmp_path):
    pytest.importorskip("bert_score")
    torch = pytest.importorskip("torch")
    from transformers import BertConfig, BertModel, BertTokenizer

    words = "a the nodule in right left lobe upper lower no effusion".split()
    (tmp_path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words]) + "\n")
    BertTokenizer(str(tmp_path / "vocab.txt")).save_pretrained(tmp_path)  # model_max_length left unset (huge)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=16, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=32, max_position_embeddings=64)).save_pretrained(tmp_path)
    result = bertscore(["nodule in the right upper lobe", "no effusion"],
                       ["nodule in the left lower lobe", "no effusion"], model=str(tmp_path))
    assert result.f1 is not None and "layer 2" in result.note
    assert result.f1[1] == pytest.approx(1.0, abs=1e-5) and result.f1[0] < 1.0
