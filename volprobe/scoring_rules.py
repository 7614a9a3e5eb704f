"""Scoring rules shared by the probes (which score runs) and the statistics (which report them).

**Mean of per-group accuracies** (:func:`mean_of_group_accuracies`): the unweighted mean over groups of
each group's accuracy — over subtasks (3D-RAD: CSV files) it is the score the 3D-RAD paper reports per
task; over gold classes, class-balanced accuracy.

**Spatial terms of a free-text answer** (CT-SpatialVQA), grouped by patient axis, and their agreement.
Terms (whole words, case-insensitive; ``-ly`` adverbs count as their adjective):

=========== ========================================================================================
side        left; right; bilateral / both / "left and right" (= left and right)
level       superior, upper, above, cranial, apical → superior; inferior, lower, below, caudal,
            basal → inferior
depth       anterior, front, ventral → anterior; posterior, behind, dorsal → posterior
centricity  medial → medial; lateral → lateral; central, midline → central
=========== ========================================================================================

**Agreement** (binary): the gold answer names terms on at least one axis, and on every axis where
it does, the prediction names exactly the same set (so "left and right" agrees with "bilateral", and a
prediction that hedges "left or right" disagrees with "left"). Axes the gold does not mention are not
checked. Negation is not understood ("not on the left" still names *left*), which errs towards
disagreement. A gold answer without any spatial term gives no agreement value (None).
"""


from __future__ import annotations

import re

import numpy as np

_TERMS: dict[str, tuple[str, tuple[str, ...]]] = {
    # word: (axis, values)
    "left": ("side", ("left",)),
    "right": ("side", ("right",)),
    "bilateral": ("side", ("left", "right")),
    "both": ("side", ("left", "right")),
    "superior": ("level", ("superior",)),
    "upper": ("level", ("superior",)),
    "above": ("level", ("superior",)),
    "cranial": ("level", ("superior",)),
    "apical": ("level", ("superior",)),
    "inferior": ("level", ("inferior",)),
    "lower": ("level", ("inferior",)),
    "below": ("level", ("inferior",)),
    "caudal": ("level", ("inferior",)),
    "basal": ("level", ("inferior",)),
    "anterior": ("depth", ("anterior",)),
    "front": ("depth", ("anterior",)),
    "ventral": ("depth", ("anterior",)),
    "posterior": ("depth", ("posterior",)),
    "behind": ("depth", ("posterior",)),
    "dorsal": ("depth", ("posterior",)),
    "medial": ("centricity", ("medial",)),
    "lateral": ("centricity", ("lateral",)),
    "central": ("centricity", ("central",)),
    "midline": ("centricity", ("central",)),
}
_ADVERBS = {word + "ly": word for word in _TERMS if word.endswith("al") or word in ("superior", "inferior")}
_ADVERBS.update({"anteriorly": "anterior", "posteriorly": "posterior"})
_WORD = re.compile(r"[a-z]+")

AXES = ("side", "level", "depth", "centricity")


def spatial_terms(text: str) -> dict[str, frozenset[str]]:
    """Axis → set of values named in ``text`` (axes with no term are absent)."""
    found: dict[str, set[str]] = {}
    for word in _WORD.findall((text or "").lower()):
        word = _ADVERBS.get(word, word)
        hit = _TERMS.get(word)
        if hit is not None:
            found.setdefault(hit[0], set()).update(hit[1])
    return {axis: frozenset(values) for axis, values in found.items()}


def spatial_agreement(gold: str, prediction: str) -> bool | None:
    """Binary agreement of spatial terms (module docstring); None when the gold names no spatial term."""
    gold_terms = spatial_terms(gold)
    if not gold_terms:
        return None
    pred_terms = spatial_terms(prediction)
    return all(pred_terms.get(axis) == values for axis, values in gold_terms.items())


def spatial_term_label(text: str) -> str:
    """The spatial terms of ``text`` as one comparable label, e.g. ``level=superior;side=left+right``
    (axes and values sorted; ``""`` when it names none)."""
    return ";".join(f"{axis}={'+'.join(sorted(values))}" for axis, values in sorted(spatial_terms(text).items()))


def mean_of_group_accuracies(correct, n, axis: int = -1):
    """Unweighted mean over groups (along ``axis``) of the accuracies ``correct / n``, leaving out groups
    with no items; NaN where no group has items. ``correct`` and ``n`` are counts (arrays broadcast)."""
    correct, n = np.asarray(correct, dtype=float), np.asarray(n, dtype=float)
    held = n > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        rates = np.where(held, correct / np.where(held, n, 1.0), 0.0)
        return rates.sum(axis=axis) / held.sum(axis=axis)
