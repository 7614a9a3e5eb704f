"""Answer sensitivity from predictions alone: counted by hand, tested against exact enumeration, and end to
end on CT-SpatialVQA-style files through `probe import` and `probe report`."""

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from volprobe.cli import main
from volprobe.stats.sensitivity import answer_sensitivity

L, R = 0, 1


def _pairs_agreeing(text, gold, answer):
    return sum(1 for i, j in itertools.combinations(range(len(text)), 2)
               if text[i] == text[j] and gold[i] == gold[j] and answer[i] == answer[j])


def test_counts_estimate_and_exact_permutation_p():
    text = [0, 0, 0, 0, 1, 1, 1, 2, 1]
    volume = [0, 1, 2, 3, 4, 5, 6, 7, 4]  # the last item repeats text 1 on volume 4: left out
    gold = [L, L, R, R, L, R, R, L, L]
    answer = [L, L, R, L, L, R, R, L, R]
    res = answer_sensitivity(text, volume, gold, answer, n_perm=20000, seed=1)
    assert (res.n_items, res.n_texts, res.n_compared, res.n_volumes) == (7, 2, 2, 7)
    assert (res.pairs_differ, res.changed_differ, res.pairs_agree, res.changed_agree) == (6, 4, 3, 1)
    # within text 0 the answers change as often where golds differ as where they agree; text 1 follows its
    # golds; Mantel-Haenszel weights 4/3 and 2/3
    assert res.sensitivity == pytest.approx((4 / 3 * 0 + 2 / 3 * 1) / 2)
    assert np.isnan(res.ci_low)  # 2 texts: no interval
    blocks = [(np.array([0, 1, 2, 3]), [L, L, R, R], [L, L, R, L]), (np.array([4, 5, 6]), [L, R, R], [L, R, R])]
    observed = sum(_pairs_agreeing([0] * len(g), g, a) for _, g, a in blocks)
    permuted = [sum(_pairs_agreeing([0] * len(g), g, [a[i] for i in order]) for (_, g, a), order in zip(blocks, orders))
                for orders in itertools.product(itertools.permutations(range(4)), itertools.permutations(range(3)))]
    exact = np.mean(np.array(permuted) >= observed)
    assert res.pvalue == pytest.approx(exact, abs=0.01)  # Monte-Carlo p within 3 SE of the exact one
    again = answer_sensitivity(text, volume, gold, answer, n_perm=20000, seed=1)
    assert again.pvalue == res.pvalue


def test_a_blind_model_is_not_sensitive_and_a_reader_is():
    rng = np.random.default_rng(0)
    text = np.repeat(np.arange(20), 5)
    gold = rng.integers(0, 3, text.size)
    blind = answer_sensitivity(text, np.arange(text.size), gold, np.zeros(text.size, int), n_perm=999)
    assert blind.sensitivity == 0 and blind.pvalue == 1.0 and blind.changed_differ == 0
    reader = answer_sensitivity(text, np.arange(text.size), gold, gold, n_perm=999)
    assert reader.sensitivity == 1.0 and reader.pvalue == pytest.approx(1 / 1000)
    assert reader.ci_low <= 1.0 <= reader.ci_high
    none = answer_sensitivity(np.arange(10), np.arange(10), np.zeros(10, int), np.zeros(10, int))
    assert none.n_texts == 0 and np.isnan(none.sensitivity) and np.isnan(none.pvalue)


SIDES = {"left": "The effusion is on the left only.", "right": "Right-sided effusion.",
         "bilateral": "Bilateral pleural effusions."}
LEVELS = {"above": "The nodule lies superior to the carina.", "below": "It is inferior to the carina."}


@pytest.fixture(scope="module")
def spatialvqa(tmp_path_factory):
    """CT-SpatialVQA-style files: 30 volumes × (two templated questions + one of their own); predictions of a
    model that reads the volume and of one that always says the same; judged correctness of two more."""
    folder = tmp_path_factory.mktemp("ctspatialvqa")
    rng = np.random.default_rng(3)
    qa, reader, blind, judged = [], [], [], ["question_id,Judged-A,Judged-B"]
    for v in range(30):
        case = f"valid_{v}_a_1.nii.gz"
        side, level = rng.choice(list(SIDES)), rng.choice(list(LEVELS))
        pairs = [("On which side is the pleural effusion?", SIDES[side]),
                 ("Is the nodule above or below the carina?", LEVELS[level]),
                 (f"What is the size of lesion {v}?", "About 2 cm.")]
        for i, (question, answer) in enumerate(pairs):
            qa.append({"case_id": case, "image_path": f"volumes/{case}", "question": question, "answer": answer})
            guess = answer if rng.random() < 0.85 else "Left side."
            reader.append({"image_path": f"volumes/{case}", "question": question, "prediction": guess})
            blind.append({"image_path": f"volumes/{case}", "question": question,
                          "prediction": ["Left pleural effusion.", "Above the carina.", "1 cm."][i]})
            judged.append(f"{case}::{i},{rng.choice([0, 0.33, 0.66, 1])},{rng.choice([0, 1])}")
    for name, rows in (("qa", qa), ("reader", reader), ("blind", blind)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "judged.csv").write_text("\n".join(judged) + "\n")
    return folder


def test_report_over_judged_csv_and_predictions_without_controls(spatialvqa, monkeypatch):
    monkeypatch.chdir(spatialvqa)
    runner = CliRunner()
    commands = [["import", "ctspatialvqa", "qa.jsonl", "--out", "items.jsonl"],
                ["import", "predictions", "reader.jsonl", "--items", "items.jsonl", "--model", "reader",
                 "--out", "reader.records.jsonl"],
                ["import", "predictions", "blind.jsonl", "--items", "items.jsonl", "--model", "blind",
                 "--out", "blind.records.jsonl"],
                ["import", "judged", "judged.csv", "--items", "items.jsonl", "--out", "judged.records.jsonl"],
                ["report", "reader.records.jsonl", "blind.records.jsonl", "judged.records.jsonl", "--by", "category",
                 "--out", "report", "--no-figures", "--n-perm", "2000"]]
    for args in commands:
        result = runner.invoke(main, args)
        assert result.exit_code == 0, f"probe {' '.join(args)}\n{result.output}"
    assert result.output.count("not assessed: no control paired with full") == 4  # one line per model
    md = (spatialvqa / "report" / "report.md").read_text()
    assert md.count("not assessed: no control") == 2 * 4  # the verdict list and the table by group: one per model
    assert "## Answer sensitivity (runs without controls)" in md
    table = pd.read_csv(spatialvqa / "report" / "tables" / "sensitivity.csv").set_index(["model", "answers"])
    reader, blind = table.loc[("reader", "spatial terms")], table.loc[("blind", "spatial terms")]
    assert reader.n_texts == 2 and reader.n_volumes == 30 and reader.p_sensitivity_significant
    assert reader.sensitivity > 0.5 and reader.changed_differ / reader.pairs_differ > 0.5
    assert blind.changed_differ == 0 and blind.sensitivity == 0 and not blind.p_sensitivity_significant
    for judged in ("Judged-A", "Judged-B"):
        assert table.loc[(judged, "spatial terms"), "note"] == "no answers to compare (correctness only)"
    words = " ".join(md.split())
    assert "it detects insensitivity to the volume, not correctness" in words  # the limits are stated
    assert "only repeated question texts count" in words
