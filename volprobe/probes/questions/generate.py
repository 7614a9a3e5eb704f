"""Spatial question sets from relation graphs: :func:`generate_questions`.

Per case, items are drawn cell by cell (category × format, in turn) until ``per_case`` items; within a
cell the families take turns, each walking its run-wide key stream (see
:mod:`volprobe.probes.questions.families`) and taking the next key whose structures the case has (at
least ``min_volume_ml``; not excluded) and whose relation is clear there. A unit's items go in whole.
A family tagged prior_fixed false is asked in a case with a probability that balances its answers
across cases (:data:`~volprobe.probes.questions.balance.FAMILY_BALANCE_RULE`).

Gold answers, counterfactual golds (under every geometric control, see
:func:`~volprobe.controls.geometric_controls`) and the oracle all come from
:func:`~volprobe.probes.questions.relation.answer_from_graph` semantics: the gold is the spec's
outcome on the case's graph; a counterfactual gold is the same spec's outcome on the graph of the case's
label map transformed by that control (``graph.counterfactuals``, see
:mod:`volprobe.controls.counterfactuals`; None when that graph cannot decide it, or the case has no such
graph, with a warning), for every item whatever its axes. An item whose counterfactual gold changes only
because side names swap (the outcome on the transformed anatomy under the original names,
``CounterfactualGraph.geometry_only``, equals the original outcome) lists that control in
``metadata['name_swap_only']``; ``metadata['control_params']`` holds each transform's parameters on the
case's grid (e.g. the tilt of a flipped array axis), and ``metadata['volume_sha256']`` /
``metadata['masks_sha256']`` the content hashes of the CT and masks the item was computed from. A case
whose laterality audit failed gets no laterality item and no item naming a side-named structure (with a
warning).

Speed: few relations recur across many cases, so each relation is evaluated once for every case of the
run on a :class:`~volprobe.segmentation.relations.stack.RelationStack` of all the run's graphs
(:func:`~volprobe.probes.questions.relation.stack_outcomes`: the evaluation
:func:`~volprobe.probes.questions.relation.relation_outcome` does on a graph's stack of one), and
units, texts and counterfactual outcomes (on one stack of transformed graphs per geometric control) are
built once per run. Whether a key is clear in one of the first :data:`ACCEPT_CASES` sample cases is
asked of a stack of those cases, built once per run.

Determinism: every choice comes from the seed through stable hashes and seeded generators; cases are
processed in case-id order, so the same inputs and seed give identical items.
"""

from __future__ import annotations

import fnmatch
import gc
import itertools
from contextlib import contextmanager
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from typing import Any, Callable, Sequence

import numpy as np

from volprobe.controls import geometric_controls
from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.probes.questions.balance import (DEFAULT_PRIOR_MIN_CASES, DEFAULT_PRIOR_THRESHOLD,
                                               FAMILY_BALANCE_RULE, PRIOR_RULE, balance_table, counts_table,
                                               judge_prior)
from volprobe.probes.questions.cases import QuestionCase
from volprobe.probes.questions.families import (CATEGORIES, FORMATS, OPTION_COUNT, Family, KeyStream, build_pools,
                                                sample_graphs, select_families, unit_specs)
from volprobe.probes.questions.relation import opposite_side, option_for, outcome_labels, stack_outcomes
from volprobe.probes.questions.templates import open_answer, render, template_family
from volprobe.seeding import mix64, stable_hash
from volprobe.segmentation.names import side_of
from volprobe.segmentation.relations.graph import RelationGraph
from volprobe.segmentation.relations.stack import RelationStack
from volprobe.segmentation.volume import NEGATIVE_SIDE, PATIENT_AXES, POSITIVE_SIDE

GENERATOR_VERSION = "volprobe.questions/2"
TASK = "spatial"
#: Sample cases on which a key's relation must be clear once for the key to enter its family's stream.
ACCEPT_CASES = 8
#: A balanced family's answers never differ by more than this many items (FAMILY_BALANCE_RULE).
MAX_AHEAD = 2


class QuestionError(VolprobeError, ValueError):
    """Bad question-set settings."""


@dataclass(frozen=True)
class QuestionSettings:
    """How a question set is drawn.

    Attributes:
        per_case: at most this many items per case (units are never split).
        categories, formats: which to ask (see :data:`CATEGORIES`, :data:`FORMATS`).
        seed: every random choice derives from it.
        min_volume_ml: structures smaller than this in a case are not asked about there.
        include: glob patterns of the structure names to ask about (empty: all).
        exclude: glob patterns of structure names never asked about (e.g. ``rib_*``).
        prior_min_cases, prior_threshold: the prior_fixed rule (:data:`~volprobe.probes.questions.balance.PRIOR_RULE`).
        family_balance: balance the answers of every family tagged prior_fixed false across the cases
            that ask it (:data:`~volprobe.probes.questions.balance.FAMILY_BALANCE_RULE`).
        pool_cases: how many cases (spread over the run) judge the pair pools.
        prior_reference: per-family outcome counts from an earlier question set, added to this run's.
    """

    per_case: int = 60
    categories: tuple[str, ...] = CATEGORIES
    formats: tuple[str, ...] = FORMATS
    seed: int = 0
    min_volume_ml: float = 1.0
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    prior_min_cases: int = DEFAULT_PRIOR_MIN_CASES
    prior_threshold: float = DEFAULT_PRIOR_THRESHOLD
    pool_cases: int = 50
    family_balance: bool = True
    prior_reference: dict | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "categories", tuple(self.categories))
        object.__setattr__(self, "formats", tuple(self.formats))
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        bad = [c for c in self.categories if c not in CATEGORIES]
        if bad or not self.categories:
            raise QuestionError(f"unknown categories {bad}; choose from {', '.join(CATEGORIES)}")
        bad = [f for f in self.formats if f not in FORMATS]
        if bad or not self.formats:
            raise QuestionError(f"unknown formats {bad}; choose from {', '.join(FORMATS)}")
        if int(self.per_case) < 1:
            raise QuestionError(f"per_case must be at least 1, got {self.per_case}")
        if not 0.5 < self.prior_threshold <= 1.0:
            raise QuestionError(f"prior_threshold must be in (0.5, 1], got {self.prior_threshold}")
        if self.prior_min_cases < 1 or self.pool_cases < 1:
            raise QuestionError("prior_min_cases and pool_cases must be at least 1")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["prior_reference"] = None if self.prior_reference is None else f"{len(self.prior_reference)} families"
        return d


@dataclass
class QuestionSet:
    """Items plus everything the manifest reports about them."""

    items: list[Item]
    settings: QuestionSettings
    cases: list[dict]
    families: dict[str, dict]
    warnings: list[str] = field(default_factory=list)
    leakage: Any = None

    @cached_property
    def counts(self) -> dict:
        return counts_table(self.items)

    @cached_property
    def balance(self) -> dict:
        return balance_table(self.items)

    def manifest_extra(self) -> dict:
        return {
            "generator_version": GENERATOR_VERSION, "counts": self.counts,
            "balance": self.balance, "prior_rule": PRIOR_RULE,
            "family_balance_rule": FAMILY_BALANCE_RULE if self.settings.family_balance else None,
            "families": self.families, "cases": self.cases, "warnings": self.warnings,
            "leakage": self.leakage.to_dict() if self.leakage is not None else None,
        }

    def __str__(self) -> str:
        c = self.counts
        lines = [f"{c['total']} spatial items from {len(self.cases)} cases (seed {self.settings.seed}, "
                 f"{GENERATOR_VERSION})",
                 f"{'category/format':34s} {'n':>6s}  answers / positions"]
        for cell, b in self.balance.items():
            lines.append(f"{cell:34s} {b['n']:6d}  {b['answers']} / {b['positions']}")
        lines.append("prior_fixed: " + ", ".join(f"{k}: {v}" for k, v in c["prior_fixed"].items()))
        lines += [f"warning: {w}" for w in self.warnings]
        if self.leakage is not None:
            lines.append(str(self.leakage))
        return "\n".join(lines)


# -- units: the case-independent part of a question, built once per run --------------------------------------

@dataclass
class _Relation:
    """A relation to evaluate: its canonical spec and that spec's key (``core``). ``flip``: the outcome is
    read off a twin relation's (direction(b, a) is the opposite side of direction(a, b); of two
    structures, the one further right is the one not further left, the smaller the one not larger), so
    twins share one evaluation. Exact: every relation is antisymmetric in its two structures.
    ``values``/``margins``: the outcome (flipped) and margin in every case of the run, filled on first
    use (:meth:`_Builder.values`)."""

    core: tuple
    spec: dict
    flip: Callable | None = None
    values: list | None = None
    margins: list | None = None


@dataclass
class _Question:
    """One item of a unit, before a case fixes its answer and option order."""

    spec: dict  # without option_values
    relation: _Relation
    names: list[str]
    axes: list[str]
    family: str
    margin_unit: str
    #: (control, counterfactual outcome in every case of the run, per case: does it differ from the gold only
    #: by the renaming), filled on first use (:meth:`_Builder.counterfactuals`)
    cf_columns: list[tuple[str, list[str | None], list[bool]]] | None = None


@dataclass
class _Unit:
    fam: Family
    key: tuple
    bits: int
    questions: list[_Question]
    unit_id: str
    built: bool = False  # has it given items (in any case)?
    #: may each case of the run ask it (:meth:`_Builder.allowed`), filled on first use
    allowed: list[bool] | None = None
    #: the answer balance of its family (:meth:`_Builder.balance`; None: not balanced), set on first use
    balance: "_AnswerBalance | None | bool" = False


@dataclass
class _AnswerBalance:
    """The answer balance of a unit's family (:data:`~volprobe.probes.questions.balance.FAMILY_BALANCE_RULE`),
    on its first question's outcome (the unit's other question, swapped or opposite, follows).

    ``accept``: per outcome, the probability that a case with that outcome asks the unit: the rarest
    outcome's count over this outcome's (counts over the cases that may ask it), so every outcome is
    asked equally often in expectation; each case draws independently (from the seeded hashes of the
    case and the unit), so nothing ties one case's draw to another's answer or to option positions.
    ``asked``: times each outcome was asked so far; an outcome already :data:`MAX_AHEAD` ahead of the
    least asked one is not asked again until the others catch up (they may never: a case takes the
    first question it can answer, so some answers may seldom reach this one)."""

    accept: dict[str, float]
    asked: dict[str, int]

    def admits(self, outcome: str, unit: "_Unit", state: "_CaseState") -> bool:
        if self.asked[outcome] >= min(self.asked.values()) + MAX_AHEAD:
            return False
        p = self.accept[outcome]
        return p >= 1.0 or mix64(state.hash ^ unit.bits ^ _BALANCE_SALT) < p * 2.0 ** 64


_BALANCE_SALT = 0x5BD1E995D3A2646C


def _core(spec: dict) -> tuple:
    names = spec["structures"]
    if spec["kind"] in ("extreme", "touches_which"):
        names = sorted(names)
    return (spec["kind"], spec.get("criterion"), spec.get("axis"), spec.get("toward"), spec.get("anchor"),
            tuple(names))


#: toward → its twin, for extremes of two structures whose criterion compares one quantity
_TWIN_TOWARD = {"right": "left", "anterior": "posterior", "superior": "inferior", "farther": "closer",
                "smaller": "larger"}


def _relation(spec: dict) -> _Relation:
    names = spec["structures"]
    if spec["kind"] == "direction" and names[0] > names[1]:  # d(b, a) = −d(a, b) exactly
        canonical = {**spec, "structures": names[::-1]}
        return _Relation(_core(canonical), canonical, opposite_side)
    if (spec["kind"] == "extreme" and len(names) == 2 and spec["criterion"] in ("axis", "midline", "size")
            and spec["toward"] in _TWIN_TOWARD):
        canonical = {**spec, "toward": _TWIN_TOWARD[spec["toward"]]}
        a, b = names
        return _Relation(_core(canonical), canonical, lambda v: b if v == a else a)
    return _Relation(_core(spec), spec)


def _names_of(spec: dict) -> list[str]:
    return ([spec["anchor"]] if "anchor" in spec else []) + list(spec["structures"])


def _family_id(spec: dict) -> str:
    """The question family: the template family plus its structures and polarity (the same question across cases)."""
    ordered = spec["kind"] == "direction" or spec["format"] == "yes_no"
    names = spec["structures"] if ordered else sorted(spec["structures"])
    parts = [template_family(spec), ",".join(names)]
    parts += [f"{k}={spec[k]}" for k in ("anchor", "toward", "asserts") if k in spec]
    return ":".join(parts)


def _evidence_axes(fam: Family, names: Sequence[str]) -> list[str]:
    """The family's axes, plus 'lr' when a structure's name states a side (mirroring renames it)."""
    axes = set(fam.axes) | ({"lr"} if any(side_of(n) for n in names) else set())
    return [a for a in PATIENT_AXES if a in axes]


def _make_unit(fam: Family, key: tuple, seed: int) -> _Unit:
    bits = stable_hash(seed, "unit", fam.id, *key)
    questions = []
    for spec in unit_specs(fam, key, bits):
        names = _names_of(spec)
        axes = _evidence_axes(fam, names)
        unit = "ratio" if spec.get("criterion") == "size" else "share" if spec["kind"] == "inside" else "mm"
        questions.append(_Question(spec, _relation(spec), names, axes, _family_id(spec), unit))
    return _Unit(fam, key, bits, questions, f"{fam.id}:{','.join(key)}")


# -- per case ---------------------------------------------------------------------------------------------

class _CaseState:
    """One case during generation: its row ``i`` in the run's stack, and what its items share."""

    def __init__(self, i: int, case: QuestionCase, settings: QuestionSettings):
        self.i = i
        self.case = case
        self.graph = case.graph
        self.audit_failed = not self.graph.audit.passed
        self.hash = stable_hash(settings.seed, "case", case.case)
        self.id_prefix = f"{TASK}/{case.case}/"
        #: each geometric control's parameters on this case's grid (shared, read-only, by its items)
        self.control_params = {t: cf.params for t, cf in self.graph.counterfactuals.items()}


class _CounterfactualStacks:
    """The run's cases under one geometric control: ``named``, a stack of every case's transformed graph
    (row i: case i; an empty graph for a case without one, whose outcomes are then all None), and
    ``geometry``, the same graphs under the original names (None when no case renamed a structure)."""

    def __init__(self, graphs: Sequence[RelationGraph], transform: str):
        cfs = [g.counterfactuals.get(transform) for g in graphs]
        self.named = RelationStack([_empty(g) if cf is None else cf.graph for g, cf in zip(graphs, cfs)])
        renames = any(cf is not None and cf.renamed for cf in cfs)
        self.geometry = RelationStack([_empty(g) if cf is None else cf.geometry_only
                                       for g, cf in zip(graphs, cfs)]) if renames else None


def _empty(graph: RelationGraph) -> RelationGraph:
    """A graph of ``graph``'s case with no structure: every relation undecided."""
    return replace(graph, structures={}, pairs={}, counterfactuals={})


class _Builder:
    """Turns units into items: option order (rotated per cell), text, gold, counterfactuals, tags.

    Units and rendered texts are cached for the run (the same questions recur across cases); the cached
    spec dicts are shared by items and must be treated as read-only.
    """

    def __init__(self, settings: QuestionSettings, graphs: Sequence[RelationGraph], universe: set[str]):
        graphs = list(graphs)
        self.settings = settings
        self.stack = stack = RelationStack(graphs)  # row i: case i of the run
        #: the geometric controls whose gold answers the items carry (labels), and per control the stack of
        #: every case's transformed graph and of its geometry-only version (:class:`_CounterfactualStacks`)
        self.transforms = [c.label for c in geometric_controls()]
        self.cf_stacks = {t: _CounterfactualStacks(graphs, t) for t in self.transforms}
        #: cases without a counterfactual graph per control (their counterfactual golds are None)
        self.missing = {t: [g.case for g in graphs if t not in g.counterfactuals] for t in self.transforms}
        #: (case, structure): may the case ask about it (in the universe, at least min_volume_ml)
        self.eligible = (stack.present & (np.nan_to_num(stack.volume_ml, nan=-1.0) >= settings.min_volume_ml)
                         & np.array([n in universe for n in stack.names], dtype=bool))
        self.audit_failed = np.array([not g.audit.passed for g in graphs], dtype=bool)
        self._columns: dict[tuple, tuple[list, list]] = {}  # core → outcomes and margins in every case
        self.counters: Counter = Counter()
        self.units: dict[tuple, _Unit] = {}
        self.used: dict[str, tuple[_Unit, _Question]] = {}  # family id → its unit and question, for prior tagging
        self._rendered: dict[tuple, tuple[_Text, ...]] = {}
        self.units_by_position: dict[str, list[_Unit]] = defaultdict(list)
        self._offsets: dict[tuple, int] = {}
        self._blocks: dict[tuple, tuple[int, ...]] = {}  # cell → its current block of positions

    def values(self, rel: _Relation) -> list[str | None]:
        """The relation's outcome in every case (None: undecided there), evaluated for all cases at once on
        first use (:func:`stack_outcomes` on the run's stack); sets ``rel.margins`` too."""
        if rel.values is None:
            values, rel.margins = self.outcomes(rel, None, self.stack)
            rel.values = values
        return rel.values

    def outcomes(self, rel: _Relation, where: tuple | None, stack: RelationStack) -> tuple[list, list]:
        """The relation's outcomes (flipped for a twin) and margins in every case of ``stack``, evaluated once
        per (``where``, canonical relation)."""
        got = self._columns.get((where, rel.core))
        if got is None:
            got = self._columns[(where, rel.core)] = stack_outcomes(rel.spec, stack)
        values, margins = got
        return (values if rel.flip is None else _mapped(values, rel.flip)), margins

    def counterfactuals(self, q: _Question) -> list[tuple[str, list[str | None], list[bool]]]:
        """Per geometric control: ``q``'s outcome on every case's transformed graph (None: undecided there) and
        whether it differs from the original outcome only by the renaming (the outcome on the transformed
        anatomy under the original names equals the original one)."""
        if q.cf_columns is None:
            original = self.values(q.relation)
            q.cf_columns = []
            for t in self.transforms:
                stacks = self.cf_stacks[t]
                values, _ = self.outcomes(q.relation, (t, "named"), stacks.named)
                if stacks.geometry is None:
                    swap = [False] * len(values)
                else:
                    geometry, _ = self.outcomes(q.relation, (t, "geometry"), stacks.geometry)
                    swap = [v is not None and o is not None and v != o and g == o
                            for v, o, g in zip(values, original, geometry)]
                q.cf_columns.append((t, values, swap))
        return q.cf_columns

    def allowed(self, unit: _Unit) -> list[bool]:
        """Per case: may it ask the unit? Its structures must all be eligible there, and a case whose
        laterality audit failed asks no laterality question and names no side-named structure."""
        if unit.allowed is None:
            cols = [self.stack.index.get(n) for n in unit.key]
            if None in cols:
                ok = np.zeros(len(self.stack), dtype=bool)
            else:
                ok = self.eligible[:, cols].all(axis=1)
            if unit.fam.category == "laterality" or any(side_of(n) for n in unit.key):
                ok &= ~self.audit_failed
            unit.allowed = ok.tolist()
        return unit.allowed

    def family_outcomes(self, unit: _Unit, q: _Question) -> Counter:
        """How often each outcome of ``q`` occurs over the cases that may ask it (asked there or not)."""
        return Counter(v for v, ok in zip(self.values(q.relation), self.allowed(unit)) if ok and v is not None)

    def prior(self, unit: _Unit, q: _Question) -> tuple[Counter, tuple[bool | None, float | None, int]]:
        """This run's outcome counts of ``q``'s family and :func:`judge_prior` of them plus the reference's."""
        own = self.family_outcomes(unit, q)
        counts = own + Counter((self.settings.prior_reference or {}).get(q.family, {}))
        return own, judge_prior(counts, self.settings.prior_min_cases, self.settings.prior_threshold)

    def balance(self, unit: _Unit) -> _AnswerBalance | None:
        """The unit's answer balance when its family is tagged prior_fixed false (and balancing is on)."""
        if unit.balance is False:
            unit.balance = None
            if self.settings.family_balance:
                own, (fixed, _, _) = self.prior(unit, unit.questions[0])
                if fixed is False:
                    rarest = min(own.values())
                    unit.balance = _AnswerBalance({o: rarest / n for o, n in own.items()}, dict.fromkeys(own, 0))
        return unit.balance

    def unit(self, fam: Family, key: tuple) -> _Unit:
        u = self.units.get((fam.id, key))
        if u is None:
            u = self.units[(fam.id, key)] = _make_unit(fam, key, self.settings.seed)
        return u

    def unit_at(self, fam: Family, stream: KeyStream, position: int) -> _Unit | None:
        """The unit of the key at ``position`` in the family's stream (None past its end)."""
        units = self.units_by_position[fam.id]
        if position < len(units):
            return units[position]
        key = stream.get(position)
        if key is None:
            return None
        unit = self.unit(fam, key)
        if position == len(units):  # cases walk a stream from its start, so positions come in order
            units.append(unit)
        return unit

    def _texts(self, unit: _Unit, outcomes: list[tuple], state: _CaseState, p: int) -> tuple["_Text", ...]:
        """The unit's texts with paraphrase ``p`` and option values rotated per cell (:meth:`_position`;
        pairs share one order; a single item's gold goes to the cell's next position, the other options
        in a seeded order)."""
        fam = unit.fam
        if fam.format == "yes_no":
            order = None
        else:
            turn = self._position(fam)
            if fam.unit == "single":  # the gold's position, the gold, and how the others are rotated
                others = len(unit.questions[0].spec["structures"]) - 1
                order = (turn, outcomes[0][0], (state.hash ^ unit.bits) % others)
            else:
                order = turn
        key = (id(unit), p, order)  # units live as long as the builder
        got = self._rendered.get(key)
        if got is None:
            seed = self.settings.seed
            got = self._rendered[key] = tuple(_Text(unit, i, p, vals, seed)
                                              for i, vals in enumerate(self._option_values(unit, order)))
        return got

    def _position(self, fam: Family) -> int:
        """The cell's next rotation: the gold's position for a single item, the option order (0: negative
        side or first structure first) for a pair. The cell's units take the k values in blocks of k, each
        block a seeded permutation, so positions balance to within one per cell and follow no fixed
        cycle (a fixed cycle can fall into step with a family's answers and give them away)."""
        cell, k = (fam.category, fam.format), OPTION_COUNT[fam.format]
        n = self.counters[cell]
        if n % k == 0:
            offset = self._offsets.get(cell)
            if offset is None:
                offset = self._offsets[cell] = stable_hash(self.settings.seed, "cell", *cell)
            self._blocks[cell] = _permutation(k, mix64(offset + n // k))
        return self._blocks[cell][n % k]

    @staticmethod
    def _option_values(unit: _Unit, order) -> list[tuple | None]:
        fam = unit.fam
        if order is None:
            return [None] * len(unit.questions)
        if fam.kind == "direction":
            sides = (NEGATIVE_SIDE[fam.axis], POSITIVE_SIDE[fam.axis])
            return [sides if order == 0 else sides[::-1]] * 2
        if fam.unit == "polarity":  # two items, opposite answers: one option order for both
            a, b = unit.questions[0].spec["structures"]
            return [(a, b) if order == 0 else (b, a)] * 2
        turn, gold, r = order
        others = sorted(n for n in unit.questions[0].spec["structures"] if n != gold)
        others = others[r:] + others[:r]
        others.insert(turn, gold)
        return [tuple(others)]

    def build(self, unit: _Unit, outcomes: list[tuple], state: _CaseState, seen: set) -> list[Item]:
        fam, case = unit.fam, state.case
        p = (unit.bits // 4 + state.hash) % 3
        texts = self._texts(unit, outcomes, state, p)
        digests = [t.digest for t in texts]
        if not seen.isdisjoint(digests):
            return []
        structures, i, case_id = case.graph.structures, state.i, case.case
        items = []
        for q, (outcome, margin), t in zip(unit.questions, outcomes, texts):
            answer = t.answers.get(outcome, t.otherwise)
            counterfactual, name_swap_only = {}, []
            for control, column, swap in (q.cf_columns or self.counterfactuals(q)):
                cf = column[i]
                counterfactual[control] = None if cf is None else t.answers.get(cf, t.otherwise)
                if swap[i]:
                    name_swap_only.append(control)
            first, last = structures[q.names[0]].axial_slices
            shared_first, shared_last = first, last
            for n in q.names[1:]:
                a, b = structures[n].axial_slices
                first, last = min(first, a), max(last, b)
                shared_first, shared_last = max(shared_first, a), min(shared_last, b)
            margin = round(margin, 3)
            names = list(q.names)
            items.append(Item(
                id=state.id_prefix + t.digest, question=t.question, answer=answer, answer_type=t.answer_type,
                options=list(t.options), chance=t.chance, case=case_id, volume_path=case.volume_path,
                patient=case.patient, task=TASK, subtask=fam.category,
                evidence={"axes": list(q.axes), "axial_slices": [first, last],
                          "axial_slices_shared": ([shared_first, shared_last]
                                                  if shared_first <= shared_last else None),
                          "structures": names},
                counterfactual=counterfactual,
                metadata={**t.static, "margin": margin, "margin_mm": margin if t.in_mm else None,
                          "structures": names, "case": case_id, "open_answer": t.open_answers[outcome],
                          "name_swap_only": name_swap_only, "control_params": state.control_params,
                          "volume_sha256": case.graph.ct_hash, "masks_sha256": case.graph.labels_hash,
                          "prior_fixed": None, "prior_share": None, "prior_cases": 0}))
        seen.update(digests)
        if unit.balance:
            unit.balance.asked[outcomes[0][0]] += 1
        if not unit.built:
            unit.built = True
            for q in unit.questions:
                self.used.setdefault(q.family, (unit, q))
        self.counters[(fam.category, fam.format)] += 1
        return items


_PERMUTATIONS = {k: list(itertools.permutations(range(k))) for k in set(OPTION_COUNT.values())}


def _permutation(k: int, h: int) -> tuple[int, ...]:
    """The (h mod k!)-th permutation of 0..k-1."""
    return _PERMUTATIONS[k][h % len(_PERMUTATIONS[k])]


def _mapped(values: list[str | None], fn: Callable[[str], str]) -> list[str | None]:
    """``fn`` applied to every value but None (values come from a handful of outcomes)."""
    table = {v: None if v is None else fn(v) for v in set(values)}
    return [table[v] for v in values]


class _Text:
    """Everything about one question that does not depend on the case: its spec with option order, text,
    id digest, metadata, and the option each possible outcome makes correct."""

    __slots__ = ("spec", "question", "options", "digest", "static", "answers", "otherwise", "open_answers",
                 "answer_type", "chance", "in_mm")

    def __init__(self, unit: _Unit, i: int, p: int, values: tuple | None, seed: int):
        q, fam = unit.questions[i], unit.fam
        spec = self.spec = q.spec if values is None else {**q.spec, "option_values": list(values)}
        r = render(spec, p)
        self.question, self.options = r.question, r.options
        self.digest = f"{stable_hash(seed, q.family, r.question, *r.options):016x}"
        self.static = {"category": fam.category, "family": q.family, "template_family": fam.id,
                       "format": fam.format, "template": p, "unit": unit.unit_id, "relation": spec,
                       "margin_unit": q.margin_unit, "open_question": r.open_question,
                       "generator_version": GENERATOR_VERSION, "seed": seed}
        outcomes = outcome_labels(spec)
        options = list(r.options)
        self.answers = {o: option_for(spec, o, options) for o in outcomes}  # the same mapping, tabulated
        self.otherwise = "no" if fam.format == "yes_no" else None
        self.open_answers = {o: open_answer(spec, o) for o in outcomes}
        self.answer_type = "yes_no" if fam.format == "yes_no" else "choice"
        self.chance = 1.0 / len(options)
        self.in_mm = q.margin_unit == "mm"


def _next_unit(fam: Family, stream: KeyStream, cursor: dict, state: _CaseState, builder: _Builder):
    """The next (unit, outcomes) of ``fam`` this case can ask, or None when its stream is spent."""
    i, units = state.i, builder.units_by_position[fam.id]
    while True:
        at = cursor[fam.id]
        unit = units[at] if at < len(units) else builder.unit_at(fam, stream, at)
        if unit is None:
            return None
        cursor[fam.id] = at + 1
        if not (unit.allowed or builder.allowed(unit))[i]:
            continue
        outcomes = []
        for q in unit.questions:
            rel = q.relation
            v = (rel.values or builder.values(rel))[i]
            if v is None:
                break
            outcomes.append((v, rel.margins[i]))
        else:
            balance = unit.balance if unit.balance is not False else builder.balance(unit)
            if balance is None or balance.admits(outcomes[0][0], unit, state):
                return unit, outcomes


def _select_case(state: _CaseState, cells: list[tuple[str, str]], cell_families: dict, streams: dict,
                 builder: _Builder, per_case: int, start: int) -> list[Item]:
    """Up to ``per_case`` items: one unit per cell in turn (cells rotated by ``start``), families taking
    turns within a cell, until the quota is met or every stream is spent."""
    cursor = {f.id: 0 for fams in cell_families.values() for f in fams}
    spent = {f.id for fams in cell_families.values() for f in fams
             if state.audit_failed and f.category == "laterality"}
    turn: Counter = Counter()
    order = cells[start % len(cells):] + cells[:start % len(cells)]
    items: list[Item] = []
    seen: set = set()

    def take(cell) -> list[Item]:
        fams = cell_families[cell]
        for j in range(len(fams)):
            fam = fams[(turn[cell] + j) % len(fams)]
            if fam.id in spent or fam.unit_size > per_case - len(items):
                continue
            while (unit := _next_unit(fam, streams[fam.id], cursor, state, builder)) is not None:
                built = builder.build(*unit, state, seen)
                if built:
                    turn[cell] += j + 1
                    return built
            spent.add(fam.id)
        return []

    while len(items) < per_case:
        progressed = False
        for cell in order:
            if len(items) >= per_case:
                break
            built = take(cell)
            items += built
            progressed |= bool(built)
        if not progressed:
            break
    return items


# -- the run -------------------------------------------------------------------------------------------------

def _universe(cases: Sequence[QuestionCase], include: Sequence[str], exclude: Sequence[str]) -> set[str]:
    names = {n for c in cases for n in c.graph.structures}
    return {n for n in names if (not include or any(fnmatch.fnmatchcase(n, pat) for pat in include))
            and not any(fnmatch.fnmatchcase(n, pat) for pat in exclude)}


@contextmanager
def _gc_paused():
    """Pause the cyclic garbage collector: generation makes ~10 small acyclic objects per item, and the
    collector would rescan the growing heap again and again (a third of the run time). On the way out
    the objects made meanwhile (the items: long-lived) go straight to the oldest generation
    (``gc.freeze`` + ``gc.unfreeze``) instead of through one scan of the youngest (a tenth of the run
    time); full collections still see them. Not when the caller keeps objects frozen itself."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def generate_questions(cases: Sequence[QuestionCase], settings: QuestionSettings | None = None,
                       progress: bool = False) -> QuestionSet:
    """Draw a balanced, mask-verified spatial question set from the cases' relation graphs."""
    with _gc_paused():
        return _generate(cases, settings or QuestionSettings(), progress)


def _generate(cases: Sequence[QuestionCase], settings: QuestionSettings, progress: bool) -> QuestionSet:
    from tqdm import tqdm

    if not cases:
        raise QuestionError("no cases to ask questions about")
    cases = sorted(cases, key=lambda c: c.case)
    dup = [c for c, n in Counter(c.case for c in cases).items() if n > 1]
    if dup:
        raise QuestionError(f"case ids must be unique; repeated: {dup[:5]}")
    universe = _universe(cases, settings.include, settings.exclude)
    if len(universe) < 2:
        raise QuestionError(f"only {len(universe)} structure(s) left to ask about after --structures/--exclude "
                            f"({', '.join(sorted(universe)) or 'none'}); spatial questions need at least two")
    sample = sample_graphs([c.graph for c in cases], settings.pool_cases)
    pools = build_pools(sample, universe)
    families = select_families(settings.categories, settings.formats)
    cells = [(cat, fmt) for cat in CATEGORIES for fmt in FORMATS
             if any(f.category == cat and f.format == fmt for f in families)]
    cell_families = {cell: [f for f in families if (f.category, f.format) == cell] for cell in cells}
    builder = _Builder(settings, [c.graph for c in cases], universe)
    accept_stack = RelationStack(sample[:ACCEPT_CASES])

    def clear_somewhere(fam: Family):  # a key whose relation is clear in one of a few sample cases
        def accept(key: tuple) -> bool:
            rel = builder.unit(fam, key).questions[0].relation
            return any(v is not None for v in stack_outcomes(rel.spec, accept_stack)[0])
        return accept

    streams = {f.id: KeyStream(f, sorted(universe), pools, settings.seed, accept=clear_somewhere(f))
               for f in families}
    warnings: list[str] = []
    items, case_rows = [], []
    for i, case in enumerate(tqdm(cases, desc="questions", unit="case", disable=not progress)):
        state = _CaseState(i, case, settings)
        got = _select_case(state, cells, cell_families, streams, builder, int(settings.per_case), i)
        items += got
        if state.audit_failed:
            warnings.append(f"{case.case}: laterality audit failed ({case.graph.audit.summary()}); no laterality "
                            "questions and no side-named structures for this case")
        if not got:
            warnings.append(f"{case.case}: no clear relation to ask about (all indeterminate or filtered)")
        case_rows.append({"case": case.case, "patient": case.patient, "source": case.source,
                          "ct": case.ct_as_given, "volume_path": case.volume_path,
                          "labels_hash": case.graph.labels_hash, "ct_hash": case.graph.ct_hash,
                          "laterality_audit_passed": case.graph.audit.passed, "items": len(got)})
    for transform, missing in builder.missing.items():
        if missing:
            warnings.append(f"{len(missing)} case(s) without a counterfactual graph for {transform}: their items carry "
                            f"no gold under it (null; excluded from it in runs): {', '.join(missing[:5])}"
                            f"{' ...' if len(missing) > 5 else ''}; compute the relations with `probe relations` "
                            "(or give CT + masks) to have them")
    missing_ct = [c.case for c in cases if c.volume_path is None]
    if missing_ct:
        warnings.append(f"{len(missing_ct)} case(s) without a readable CT (volume_path is null; text-only use): "
                        f"{', '.join(missing_ct[:5])}{' ...' if len(missing_ct) > 5 else ''}")
    family_info = tag_priors(items, builder, settings)
    return QuestionSet(items=items, settings=settings, cases=case_rows, families=family_info, warnings=warnings)


def tag_priors(items: list[Item], builder: _Builder, settings: QuestionSettings) -> dict[str, dict]:
    """Set ``prior_fixed``/``prior_share``/``prior_cases`` on every item; returns the per-family table.

    Each family's outcome is counted on every case that could ask it, not only where it was drawn
    (:data:`~volprobe.probes.questions.balance.PRIOR_RULE`).
    """
    answers: dict[str, Counter] = defaultdict(Counter)
    for it in items:
        answers[it.metadata["family"]][it.answer] += 1
    reference = settings.prior_reference or {}
    table = {}
    for fam_id in sorted(builder.used):
        unit, q = builder.used[fam_id]
        fam = unit.fam
        own, (fixed, share, n) = builder.prior(unit, q)
        table[fam_id] = {"category": fam.category, "answers": dict(sorted(answers[fam_id].items())),
                         "outcomes": dict(sorted(own.items())), "reference_outcomes": reference.get(fam_id),
                         "prior_fixed": fixed, "prior_share": None if share is None else round(share, 4),
                         "prior_cases": n, "answers_balanced": bool(unit.balance)}
    for it in items:
        row = table[it.metadata["family"]]
        it.metadata.update(prior_fixed=row["prior_fixed"], prior_share=row["prior_share"],
                           prior_cases=row["prior_cases"])
    return table
