"""Answer sensitivity: does a model's answer move with the volume? Estimated from predictions alone.

Many published results exist only as predictions, with no control run. When the same question text is
asked about several volumes and its gold answer differs between them, a model that reads the volume must
change its answer with it; a model that ignores the volume answers alike (or varies regardless of the
volume). For each model without a control paired with the reference, and each kind of answer —
**closed answers** (the option chosen; no answer counts as one more value) and the **spatial terms** of
free-text answers (left/right/bilateral, superior/inferior, anterior/posterior, medial/lateral/central,
:mod:`volprobe.scoring_rules`; items whose gold names none are left out) — take every pair of items with
the same question text (the prompt the model was sent, case and spacing ignored) on different volumes
(the first item per text and volume):

- **changed where golds differ**: share of the pairs whose golds differ in which the answers differ too;
- **changed where golds agree**: the same among the pairs whose golds agree (both pooled over texts);
- **sensitivity**: the difference of the two, taken within each question text that has pairs of both
  kinds and averaged with Mantel–Haenszel weights n_differ·n_agree / (n_differ + n_agree) — near 0 when
  the answer ignores the volume, up to 1 when it follows the gold exactly. (The pooled shares are not
  compared directly: a text whose golds vary may also be one whose answers vary for other reasons.)

**Test** of "the answer ignores the volume": the answers to a question text are then exchangeable among
its volumes, so permuting them within each text (Monte-Carlo, ``n_perm`` permutations, seeded) gives the
null distribution of the number of pairs whose answers agree where the golds agree — with these weights,
the sensitivity is that number up to a constant, so test and estimate are one. One-sided;
p = (1 + #{permuted ≥ observed}) / (1 + n_perm).

**Interval**: the weighted mean over the compared texts, each text one cluster, with the interval of
:func:`~volprobe.stats.clustered.cluster_paired` (CR2 variance, Bell–McCaffrey t), given from
:data:`~volprobe.stats.clustered.MIN_CLUSTERS` compared texts on. In simulations
(``benchmarks/stats_simulation.py``) it covers 93–94% of the time for a model that follows the gold, but
only 90% with 15 compared texts (94% with 50) under the null when a blind model's answers are random
exactly where the golds vary; the permutation test, not the interval, decides.

**Limits** (stated in the report): only questions asked on several volumes count, a subset of the items
chosen by the benchmark's templates, not at random; it detects insensitivity to the volume, not
correctness (answers may change with the volume and still be wrong); without pairs whose golds agree,
changes that follow the gold cannot be told from changes that do not; volumes of one patient under
different question texts are treated as independent in the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from volprobe.scoring_rules import spatial_term_label
from volprobe.seeding import seed_sequence
from volprobe.stats.clustered import MIN_CLUSTERS, cluster_paired
from volprobe.stats.load import OPEN_TYPES
from volprobe.stats.panel import Panel
from volprobe.stats.settings import ReportSettings

#: Largest permutation block (permutations × items) built at once.
MAX_CELLS = 1 << 22
KINDS = ("closed answers", "spatial terms")


@dataclass
class Sensitivity:
    """Answer sensitivity of one model and kind of answer (module docstring); rates are fractions."""

    n_items: int
    n_texts: int
    n_compared: int
    n_volumes: int
    pairs_differ: int
    changed_differ: int
    pairs_agree: int
    changed_agree: int
    sensitivity: float
    ci_low: float
    ci_high: float
    pvalue: float
    permutations: int

    def to_dict(self) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            return {**vars(self), "rate_differ": self.changed_differ / self.pairs_differ if self.pairs_differ else np.nan,
                    "rate_agree": self.changed_agree / self.pairs_agree if self.pairs_agree else np.nan}


def _pairs(counts: np.ndarray) -> np.ndarray:
    return counts * (counts - 1) // 2


def _pairs_per(text: np.ndarray, *labels: np.ndarray, n_texts: int) -> np.ndarray:
    """Per text, the number of item pairs equal in every one of ``labels``."""
    key = np.stack([text, *labels], axis=1)
    cells, inverse = np.unique(key, axis=0, return_inverse=True)
    return np.bincount(cells[:, 0], weights=_pairs(np.bincount(inverse.ravel())), minlength=n_texts).astype(np.int64)


def answer_sensitivity(text, volume, gold, answer, n_perm: int = 10000, seed=0, alpha: float = 0.05) -> Sensitivity:
    """Answer sensitivity (module docstring) from integer codes per item: question ``text``, ``volume``,
    ``gold`` label and ``answer`` label (codes >= 0 for text and volume; items with a negative text or
    volume code are left out)."""
    text, volume, gold, answer = (np.asarray(x, dtype=np.int64) for x in (text, volume, gold, answer))
    keep = (text >= 0) & (volume >= 0)
    first = np.unique(np.stack([text[keep], volume[keep]], 1), axis=0, return_index=True)[1]
    rows = np.flatnonzero(keep)[first]  # one item per (text, volume)
    t_code, per_text = np.unique(text[rows], return_inverse=True, return_counts=True)[1:]
    repeated = per_text[t_code] >= 2
    rows, t_code = rows[repeated], t_code[repeated]
    t_code = np.unique(t_code, return_inverse=True)[1].ravel()
    g = int(t_code.max()) + 1 if t_code.size else 0
    gold, answer = gold[rows], answer[rows]
    all_pairs = _pairs(np.bincount(t_code, minlength=g))
    same_gold = _pairs_per(t_code, gold, n_texts=g)
    same_answer = _pairs_per(t_code, answer, n_texts=g)
    same_both = _pairs_per(t_code, gold, answer, n_texts=g)
    n_agree, n_differ = same_gold, all_pairs - same_gold
    c_agree, c_differ = same_gold - same_both, n_differ - (same_answer - same_both)
    compared = (n_agree > 0) & (n_differ > 0)
    k = int(compared.sum())
    estimate, low, high, pvalue, done = np.nan, np.nan, np.nan, np.nan, 0
    if k:
        nd, na = n_differ[compared], n_agree[compared]
        weight = nd * na / (nd + na)
        delta = c_differ[compared] / nd - c_agree[compared] / na
        interval = cluster_paired(weight * delta, weight, alpha)  # a weighted mean over texts, CR2 as for items
        estimate, low, high = float(interval.estimate[0]), float(interval.ci_low[0]), float(interval.ci_high[0])
        pvalue, done = _permutation_pvalue(t_code, gold, answer, compared, n_perm, seed)
    return Sensitivity(n_items=int(rows.size), n_texts=g, n_compared=k, n_volumes=int(np.unique(volume[rows]).size),
                       pairs_differ=int(n_differ.sum()), changed_differ=int(c_differ.sum()),
                       pairs_agree=int(n_agree.sum()), changed_agree=int(c_agree.sum()), sensitivity=estimate,
                       ci_low=float(low), ci_high=float(high), pvalue=float(pvalue), permutations=done)


def _permutation_pvalue(t_code, gold, answer, compared, n_perm: int, seed) -> tuple[float, int]:
    """One-sided p of the pairs agreeing in gold and answer, answers permuted within each text; only the
    compared texts (pairs of both kinds) with two answers or more can change the count. Returns
    (p, permutations drawn)."""
    informative = compared & (_distinct(t_code, answer, compared.size) >= 2)
    if not informative.any():
        return 1.0, 0
    rows = np.flatnonzero(informative[t_code])
    rows = rows[np.argsort(t_code[rows], kind="stable")]  # items of a text side by side
    text = np.unique(t_code[rows], return_inverse=True)[1].ravel()
    gold_local = _local_codes(text, gold[rows])
    answer_local = _local_codes(text, answer[rows])
    n_gold = np.maximum.reduceat(gold_local, _starts(text)) + 1
    n_answer = np.maximum.reduceat(answer_local, _starts(text)) + 1
    offset = np.r_[0, np.cumsum(n_gold * n_answer)[:-1]]
    base = offset[text] + gold_local * n_answer[text]  # cell of (text, gold) at each position
    cells = int((n_gold * n_answer).sum())
    observed = int(_pairs(np.bincount(base + answer_local, minlength=cells)).sum())
    rng = np.random.default_rng(seed)
    n = rows.size
    chunk = max(1, min(n_perm, MAX_CELLS // max(n, cells)))
    extreme = 0
    for start in range(0, n_perm, chunk):
        b = min(chunk, n_perm - start)
        order = np.argsort(rng.random((b, n)) + text, axis=1)  # a random order within each text
        codes = base + answer_local[order] + (np.arange(b) * cells)[:, None]
        counts = np.bincount(codes.ravel(), minlength=b * cells).reshape(b, cells)
        extreme += int((_pairs(counts).sum(axis=1) >= observed).sum())
    return (1.0 + extreme) / (1.0 + n_perm), n_perm


def _starts(sorted_codes: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])


def _distinct(t_code: np.ndarray, labels: np.ndarray, g: int) -> np.ndarray:
    cells = np.unique(np.stack([t_code, labels], 1), axis=0)
    return np.bincount(cells[:, 0], minlength=g)


def _local_codes(text: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Codes 0, 1, ... of ``labels`` within each text (``text`` sorted)."""
    cells, inverse = np.unique(np.stack([text, labels], 1), axis=0, return_inverse=True)
    first = np.r_[0, np.flatnonzero(cells[1:, 0] != cells[:-1, 0]) + 1]
    rank = np.arange(len(cells)) - np.repeat(first, np.diff(np.r_[first, len(cells)]))
    return rank[inverse.ravel()]


def _factorize(values) -> np.ndarray:
    return pd.factorize(pd.Series(values, dtype=object), use_na_sentinel=True)[0].astype(np.int64)


def sensitivity_table(panel: Panel, models: list[str], s: ReportSettings, notes: list[str]) -> pd.DataFrame:
    """One row per model (of ``models``) and kind of answer, under the reference control; a row whose
    analysis cannot be done says why (``note``)."""
    if not models or s.reference not in panel.controls:
        return pd.DataFrame()
    r = panel.controls.index(s.reference)
    items = panel.items
    volume = items["case"].cat.codes.to_numpy().astype(np.int64)
    is_open = items["answer_type"].astype(object).isin(OPEN_TYPES).to_numpy()
    answers = np.asarray(panel.answers, dtype=object)
    rows = []
    for model in models:
        m = panel.models.index(model)
        valid = panel.valid(m, r) & (panel.gold[m, r] >= 0)
        prompt = panel.prompts(m, r)
        text = _factorize([" ".join(p.lower().split()) if isinstance(p, str) and p.strip() else None for p in prompt])
        answer = panel.answer[m, r]
        for kind in KINDS:
            use = valid & (is_open if kind == "spatial terms" else ~is_open)
            if not use.any():
                continue
            row = {"model": model, "answers": kind}
            if (answer[use] < 0).all():
                rows.append({**row, "note": "no answers to compare (correctness only)"})
                continue
            gold_label, answer_label = panel.gold[m, r], answer
            if kind == "spatial terms":
                gold_terms = _terms(answers, panel.gold[m, r])
                use &= gold_terms != ""
                gold_label, answer_label = _factorize(gold_terms), _factorize(_terms(answers, answer, "(no answer)"))
            key = seed_sequence(s.seed, "sensitivity", model, kind)
            res = answer_sensitivity(np.where(use, text, -1), volume, gold_label, answer_label, s.n_perm, key, s.alpha)
            note = ""
            if res.n_texts == 0:
                note = "no question text asked on two volumes"
            elif res.n_compared == 0:
                note = "no question text has volumes whose golds agree and volumes whose golds differ"
            elif res.n_compared < MIN_CLUSTERS:
                note = f"no CI: {res.n_compared} question texts compared"
            rows.append({**row, **res.to_dict(), "p_sensitivity": res.pvalue, "note": note})
    table = pd.DataFrame(rows)
    if not table.empty:
        notes.append("answer sensitivity (models without a control paired with "
                     f"{s.reference}): {', '.join(sorted(set(table['model'])))}; see its section for what it can and "
                     "cannot show")
    return table


def _terms(answers: np.ndarray, codes: np.ndarray, missing: str = "") -> np.ndarray:
    """The spatial-term label of each coded answer text (``missing`` for code -1)."""
    out = np.full(codes.size, missing, dtype=object)
    has = codes >= 0
    unique, inverse = np.unique(codes[has], return_inverse=True)
    out[has] = np.array([spatial_term_label(str(answers[c])) for c in unique], dtype=object)[inverse]
    return out
