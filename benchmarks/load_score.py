"""Benchmark: load and score 170,000 3D-RAD-sized items (target: < 30 s together on the dev machine).

Writes an invented 3D-RAD split in the real CSV layout to a temporary folder (not timed), loads it
with :func:`volprobe.probes.datasets.threedrad.load_3drad`, makes one model-like output per item
(letters, ``Answer: B``, option texts, yes/no sentences, refusals, unparseable text, free-text
findings, measurements in mm/cm; not timed), and scores every output with
:func:`volprobe.probes.scoring.answers.score_output`.

    python benchmarks/load_score.py [--items 170000] [--seed 0]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter, defaultdict

import numpy as np

from volprobe.probes.datasets.synthetic import write_synthetic_3drad
from volprobe.probes.datasets.threedrad import load_3drad
from volprobe.items import Item
from volprobe.probes.scoring.answers import score_output

CLOSED_FORMS = ["{L}", "{L}.", "({L})", "Answer: {L}", "The answer is {L}.", "{L}. {T}", "{T}",
                "{T}, based on the scan.", "I cannot determine this without an image.", "A or B",
                "The scan is unremarkable."]


def fake_output(item: Item, rng: np.random.Generator) -> str:
    """A plausible model output: right about half the time, in one of many formats."""
    if item.is_closed:
        option = item.answer if rng.random() < 0.5 else item.options[rng.integers(len(item.options))]
        form = CLOSED_FORMS[rng.integers(len(CLOSED_FORMS))]
        return form.format(L=item.letter_of(option), T=option)
    if item.answer_type == "numeric":
        value = float(rng.uniform(2, 60))
        return [f"{value:.0f} mm", f"approximately {value / 10:.1f} cm", item.answer, "It is small."][rng.integers(4)]
    words = item.answer.split()
    rng.shuffle(words)
    return " ".join(words[: max(1, len(words) // 2)]) + " with no other abnormality."


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=170_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_synthetic_3drad(tmp, args.items, split="test", seed=args.seed)
        t_write = time.perf_counter() - t0

        t0 = time.perf_counter()
        items = load_3drad(tmp, split="test").items
        t_load = time.perf_counter() - t0
    outputs = [fake_output(it, rng) for it in items]

    t0 = time.perf_counter()
    scored = [score_output(it, text) for it, text in zip(items, outputs)]
    t_score = time.perf_counter() - t0

    per_task: dict[str, Counter] = defaultdict(Counter)
    for it, s in zip(items, scored):
        per_task[it.task].update(n=1, correct=s.correct, unparseable=s.unparseable, refused=s.refused)
    n = len(items)
    print(f"items: {n} (seed {args.seed}); writing the CSVs (not timed): {t_write:.2f} s")
    print(f"load:  {t_load:6.2f} s  ({n / t_load:,.0f} items/s)")
    print(f"score: {t_score:6.2f} s  ({n / t_score:,.0f} items/s, {1e6 * t_score / n:.1f} us/item)")
    print(f"total: {t_load + t_score:6.2f} s  (target < 30 s)")
    for task, c in sorted(per_task.items()):
        share = {k: c[k] / c["n"] for k in ("correct", "unparseable", "refused")}
        print(f"  {task}: n={c['n']:6d} correct {share['correct']:.3f} unparseable {share['unparseable']:.3f} "
              f"refused {share['refused']:.3f}")


if __name__ == "__main__":
    main()
