"""Benchmark aggregates of per-item outcomes: pooled accuracy, the paper's mean over subtask files,
class-balanced accuracy, and mean open-answer scores, per (model, control, task).

Definitions (``correct`` is a per-item 0/1 outcome; unparseable and refused count as wrong):

- pooled accuracy = mean of ``correct`` over all items of a task;
- subtask-mean accuracy = unweighted mean over subtasks (3D-RAD: CSV files) of each subtask's accuracy —
  the score the 3D-RAD paper reports per task;
- class-balanced accuracy = unweighted mean over gold answers of the accuracy on items with that gold
  answer (closed items only; 0.5 for always-"No" on a yes/no task whatever the prevalence).

A benchmark's own scoring rule (:data:`~volprobe.probes.scoring.answers.SECONDARY_RULES`, e.g. 3D-RAD's
substring rule) is averaged separately as ``secondary`` and printed with its label, next to (never
instead of) volprobe's accuracy.

The full statistical report (CIs, paired tests) is ``volprobe.stats``; these are only the
benchmark's own headline numbers.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Hashable, Iterable, Sequence

from volprobe.jsonio import write_json_atomic
from volprobe.manifest import write_manifest
from volprobe.probes.scoring.answers import SECONDARY_RULES
from volprobe.records import RunRecord
from volprobe.scoring_rules import mean_of_group_accuracies


def pooled_accuracy(correct: Sequence[bool]) -> float:
    """Share of correct items (NaN for none)."""
    return sum(map(bool, correct)) / len(correct) if len(correct) else float("nan")


def group_mean_accuracy(groups: Sequence[Hashable], correct: Sequence[bool]) -> float:
    """Unweighted mean over groups of each group's accuracy (NaN for no items); the rule is
    :func:`volprobe.scoring_rules.mean_of_group_accuracies`, which the report uses too."""
    if len(groups) != len(correct):
        raise ValueError(f"{len(groups)} groups for {len(correct)} outcomes")
    right: dict[Hashable, int] = defaultdict(int)
    total: dict[Hashable, int] = defaultdict(int)
    for g, c in zip(groups, correct):
        right[g] += bool(c)
        total[g] += 1
    if not total:
        return float("nan")
    return float(mean_of_group_accuracies([right[g] for g in total], [total[g] for g in total]))


def subtask_mean_accuracy(subtasks: Sequence[Hashable], correct: Sequence[bool]) -> float:
    """The 3D-RAD paper's task score: unweighted mean of per-subtask (per-CSV-file) accuracies."""
    return group_mean_accuracy(subtasks, correct)


def class_balanced_accuracy(golds: Sequence[Hashable], correct: Sequence[bool]) -> float:
    """Unweighted mean over gold classes of per-class accuracy (recall)."""
    return group_mean_accuracy(golds, correct)


@dataclass
class TaskSummary:
    """Headline numbers of one (model, control, task).

    Attributes:
        n: items; accuracy: pooled; subtask_mean_accuracy: the paper's score (over ``n_subtasks``);
        balanced_accuracy: class-balanced (closed items; None for open tasks);
        chance: mean chance level of the items (None for open tasks);
        unparseable, refused, errors: counts of those outcomes;
        scores: mean of each continuous score over the items that have it (``bleu1``, ``rouge1``, ...).
        secondary: mean of each benchmark's own rule over the items that have it (e.g. ``3drad_substring``:
            3D-RAD's published accuracy rule), labelled by :data:`SECONDARY_RULES`.
    """

    model: str
    control: str
    task: str
    n: int
    accuracy: float
    subtask_mean_accuracy: float
    n_subtasks: int
    balanced_accuracy: float | None = None
    chance: float | None = None
    unparseable: int = 0
    refused: int = 0
    errors: int = 0
    scores: dict[str, float] = field(default_factory=dict)
    secondary: dict[str, float] = field(default_factory=dict)

    def __str__(self) -> str:
        parts = [f"{self.model} [{self.control}] {self.task}: n={self.n}",
                 f"accuracy {100 * self.accuracy:.2f}% (pooled)",
                 f"{100 * self.subtask_mean_accuracy:.2f}% (mean of {self.n_subtasks} subtasks)"]
        if self.balanced_accuracy is not None:
            parts.append(f"{100 * self.balanced_accuracy:.2f}% (class-balanced)")
        if self.chance is not None:
            parts.append(f"chance {100 * self.chance:.1f}%")
        parts.append(f"unparseable {self.unparseable}, refused {self.refused}, errors {self.errors}")
        parts += [f"{k} {v:.4f}" for k, v in sorted(self.scores.items())]
        text = "; ".join(parts)
        for name, value in sorted(self.secondary.items()):
            text += f"\n    {100 * value:.2f}% by {SECONDARY_RULES.get(name, name)} [{name}]"
        return text


def summarise(records: Iterable[RunRecord]) -> list[TaskSummary]:
    """One :class:`TaskSummary` per (model, control, task), sorted by those keys."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for rec in records:
        groups[(rec.model, rec.control, rec.task)].append(rec)
    out = []
    for (model, control, task), recs in sorted(groups.items()):
        correct = [r.correct for r in recs]
        closed = [r for r in recs if r.answer_type in ("choice", "yes_no")]
        chances = [r.chance for r in recs if r.chance is not None]
        sums: dict[str, list[float]] = defaultdict(list)
        for r in recs:
            for k, v in r.scores.items():
                sums[k].append(v)
        out.append(TaskSummary(
            model=model, control=control, task=task, n=len(recs), accuracy=pooled_accuracy(correct),
            subtask_mean_accuracy=subtask_mean_accuracy([r.subtask for r in recs], correct),
            n_subtasks=len({r.subtask for r in recs}),
            balanced_accuracy=class_balanced_accuracy([r.gold for r in closed], [r.correct for r in closed])
            if closed else None,
            chance=sum(chances) / len(chances) if chances else None,
            unparseable=sum(r.unparseable for r in recs), refused=sum(r.refused for r in recs),
            errors=sum(r.error is not None for r in recs),
            scores={k: sum(v) / len(v) for k, v in sorted(sums.items()) if k not in SECONDARY_RULES},
            secondary={k: sum(v) / len(v) for k, v in sorted(sums.items()) if k in SECONDARY_RULES}))
    return out


def write_summaries(summaries: Sequence[TaskSummary], out: str | Path, *, inputs: Sequence[str | Path] = (),
                    command: str = "probe score", parameters: dict | None = None, note: str | None = None) -> Path:
    """Write the summaries as JSON (``{"summaries": [...], "bertscore": note}``) with a manifest beside them."""
    out = write_json_atomic(out, {"summaries": [asdict(s) for s in summaries], "bertscore": note})
    write_manifest(out, command, inputs=list(inputs), parameters=parameters or {})
    return out
