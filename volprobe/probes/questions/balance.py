"""Answer balance and prior tagging of a question set.

The ``prior_fixed`` rule is :data:`PRIOR_RULE` (stored in every question-set manifest).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Mapping

from volprobe.errors import FormatError
from volprobe.items import Item

DEFAULT_PRIOR_MIN_CASES = 10
DEFAULT_PRIOR_THRESHOLD = 0.9

PRIOR_RULE = """\
For each question family (one question asked across cases, e.g. "Is the liver on the patient's right
side?"), the relation's outcome is evaluated on every case that could ask it (its structures present,
large enough, not blocked by a failed laterality audit), whether or not the question was drawn there.
With n such cases with a clear outcome and the most frequent outcome in a share s of them:
n >= min_cases (default 10) and s >= threshold (default 0.9) -> prior_fixed = true;
n >= min_cases and s < threshold -> prior_fixed = false;
n < min_cases (e.g. a single case) -> prior_fixed = null (unknown; reports group it as 'unknown'),
unless a reference question-set manifest (--prior-reference) supplies counts for the family, which are
added to this run's before the rule is applied. metadata['prior_share'] and metadata['prior_cases']
keep s and n. A family that is not prior-fixed can still lean one way (s = 0.8); family balancing
(FAMILY_BALANCE_RULE) keeps such a lean out of the items."""

FAMILY_BALANCE_RULE = """\
A family tagged prior_fixed = false has answers that vary across cases but may still lean one way
(say s = 0.8), which a model reading only the question text could learn. So its answers are balanced
across the cases that ask it: with n_o the cases (of those that could ask it) where the answer is o, a
case whose answer is o asks the family with probability min(n) / n_o, drawn independently per case
from a stable hash of the seed, the question and the case. Every answer is then asked equally often
in expectation, and nothing ties one case's draw to another's answers or to option positions. As a
case takes the first question it can answer, some answers may seldom reach a family; so, in case-id
order, an answer already asked 2 times more than the least asked one is not asked again until the
others catch up: a family's asked answers never differ by more than 2. Cases that skip the family
take the next question in the stream. The manifest's 'answers' show what was asked; 'outcomes' (over
all cases) are not changed. prior_fixed = true and unknown families are not balanced (they are
tagged instead). Off with --no-family-balance."""


def judge_prior(counts: Mapping[str, int], min_cases: int = DEFAULT_PRIOR_MIN_CASES,
                threshold: float = DEFAULT_PRIOR_THRESHOLD) -> tuple[bool | None, float | None, int]:
    """(prior_fixed, majority share, cases) for one family's outcome counts (see the module docstring)."""
    n = int(sum(counts.values()))
    if n == 0:
        return None, None, 0
    share = max(counts.values()) / n
    if n < min_cases:
        return None, share, n
    return share >= threshold, share, n


def load_prior_reference(path: str | Path) -> dict[str, dict[str, int]]:
    """Per-family outcome counts (``families[F]['outcomes']``) from an earlier ``probe questions`` manifest."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prior reference not found: {path}")
    try:
        data = json.loads(path.read_text())
        return {fam: {str(k): int(v) for k, v in entry["outcomes"].items()}
                for fam, entry in data["families"].items()}
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise FormatError(f"{path}: not a `probe questions` manifest with per-family outcome counts "
                          f"({type(exc).__name__}: {exc})") from exc


def answer_label(item: Item) -> str:
    """What balance is judged on: yes/no; the side for direction options (left/right, superior/inferior,
    anterior/posterior, however worded); the option letter for structure-name options."""
    spec = item.metadata.get("relation", {})
    if item.answer_type == "yes_no":
        return item.answer
    if spec.get("kind") == "direction":  # the side the option stands for, whatever its wording
        return spec["option_values"][item.answer_index]
    return item.answer_letter or ""


def balance_table(items: Iterable[Item]) -> dict[str, dict]:
    """Per ``category/format``: item count, answer-label counts, gold-position counts and the largest
    deviation of a position's share from uniform, with a chi-square test of uniform positions."""
    from scipy.stats import chisquare

    groups: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        groups[f"{it.metadata['category']}/{it.metadata['format']}"].append(it)
    out = {}
    for cell in sorted(groups):
        its = groups[cell]
        k = len(its[0].options)
        pos = Counter(it.answer_letter for it in its)
        observed = [pos.get(chr(65 + i), 0) for i in range(k)]
        n = len(its)
        p = float(chisquare(observed).pvalue) if n > 0 and len(set(observed)) > 1 else 1.0
        out[cell] = {
            "n": n, "answers": dict(sorted(Counter(answer_label(it) for it in its).items())),
            "positions": {chr(65 + i): observed[i] for i in range(k)},
            "max_position_deviation": round(max(abs(o / n - 1 / k) for o in observed), 4),
            "position_chisquare_p": round(p, 4),
        }
    return out


def counts_table(items: Iterable[Item]) -> dict[str, dict]:
    """Counts per category, format, category/format and answer."""
    items = list(items)
    return {
        "total": len(items),
        "category": dict(sorted(Counter(it.metadata["category"] for it in items).items())),
        "format": dict(sorted(Counter(it.metadata["format"] for it in items).items())),
        "category_format": dict(sorted(Counter(f"{it.metadata['category']}/{it.metadata['format']}"
                                               for it in items).items())),
        "answer": dict(sorted(Counter(answer_label(it) for it in items).items())),
        "prior_fixed": {str(k): v for k, v in sorted(Counter(str(it.metadata.get("prior_fixed"))
                                                             for it in items).items())},
    }
