"""Question families: which relations are asked, in which format, about which structures.

A :class:`Family` is one template family (``direction.lr.yes_no``, ``extreme.size.four_option``, ...):
its category, format, relation, the structures it may name, and how its items come in
counterbalanced *units*:

``swap``      two items asking "A vs B" and "B vs A" ("Is A left of B?" / "Is B left of A?"); the
              answers are opposite, so yes/no, left/right and option positions balance exactly;
``polarity``  two items asking a relation and its opposite about the same structures ("Does A touch
              B?" / "Is there a gap between A and B?"; "Which is larger?" / "Which is smaller?");
``single``    one item (four-option questions, "which of B or C does A touch"); its gold option's
              position is rotated by the generator.

Every family draws its keys (structure tuples) from one run-wide stream in a seeded order that does
not depend on any case, so the same questions recur across cases (which is what lets the answer
distribution per family show whether normal anatomy fixes it) and no key is chosen for its answer (the
generator only balances, across cases, the answers of families whose answer varies).
Pairs come mirror pairs first, then neighbouring structures, then the rest (:func:`_tier`); drawn
four-structure sets are a neighbourhood half the time.
Families that need nearby structures (contact, containment, size, extent) draw from run-wide *pools*
judged on a sample of cases, never on the case being asked about alone.

**Laterality giveaway rule**: no family whose answer is a side or a left/right position
(``side``, ``direction.lr``, ``extreme.axis.lr``, ``crosses_midline``) ever names a side-named
structure ("is the left kidney on the left?").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import numpy as np

from volprobe.seeding import stable_hash
from volprobe.segmentation.names import side_of, unsided
from volprobe.segmentation.relations.graph import RelationGraph
from volprobe.segmentation.volume import NEGATIVE_SIDE, POSITIVE_SIDE

CATEGORIES = ("laterality", "longitudinal", "anterior_posterior", "medial_lateral", "adjacency", "extent", "size")
FORMATS = ("yes_no", "two_option", "four_option")
OPTION_COUNT = {"yes_no": 2, "two_option": 2, "four_option": 4}
AXIS_CATEGORY = {"lr": "laterality", "si": "longitudinal", "ap": "anterior_posterior"}
#: Pools of structure pairs, judged on sample cases (see :func:`build_pools`).
POOLS = ("all", "near", "inside", "size", "reach")
#: Sizes at most this far apart (volume ratio) put a pair in the size pool (mirror pairs always are).
SIZE_POOL_RATIO = 4.0
#: Draws tried for a drawn stream (four-option sets, touches-which) before it counts as exhausted.
MAX_DRAWS = 4000


@dataclass(frozen=True)
class Family:
    """One template family. ``towards``: the polarity values its units use; ``size``: structures per
    question (choices for ``touches_which``); ``axes``: patient axes the answer depends on."""

    id: str
    category: str
    format: str
    kind: str
    criterion: str | None = None
    axis: str | None = None
    towards: tuple[str, ...] = ()
    size: int = 2
    unit: str = "swap"
    pool: str = "all"
    no_side_names: bool = False
    axes: tuple[str, ...] = ()

    @property
    def unit_size(self) -> int:
        return 1 if self.unit == "single" else 2

    @property
    def drawn(self) -> bool:
        """Keys drawn at random (sets of 4, touches-which) rather than enumerated (singles, pairs)."""
        return self.kind == "touches_which" or self.size > 2


def _all_families() -> tuple[Family, ...]:
    fams = [Family("side.yes_no", "laterality", "yes_no", "side", towards=("left", "right"), size=1,
                   unit="polarity", no_side_names=True, axes=("lr",))]
    for axis in ("lr", "ap", "si"):
        cat, sides, lr = AXIS_CATEGORY[axis], (NEGATIVE_SIDE[axis], POSITIVE_SIDE[axis]), axis == "lr"
        common = dict(axis=axis, towards=sides, no_side_names=lr, axes=(axis,))
        fams += [
            Family(f"direction.{axis}.yes_no", cat, "yes_no", "direction", unit="swap", **common),
            Family(f"direction.{axis}.two_option", cat, "two_option", "direction", unit="swap", **common),
            Family(f"extreme.axis.{axis}.two_option", cat, "two_option", "extreme", "axis", unit="polarity", **common),
            Family(f"extreme.axis.{axis}.four_option", cat, "four_option", "extreme", "axis", size=4, unit="single",
                   **common),
        ]
    mid = dict(kind="extreme", criterion="midline", axes=("lr",))
    fams += [
        Family("extreme.midline.yes_no", "medial_lateral", "yes_no", towards=("closer",), unit="swap", **mid),
        Family("extreme.midline.two_option", "medial_lateral", "two_option", towards=("closer", "farther"),
               unit="polarity", **mid),
        Family("extreme.midline.four_option", "medial_lateral", "four_option", towards=("closer", "farther"),
               size=4, unit="single", **mid),
        Family("contact.yes_no", "adjacency", "yes_no", "contact", towards=("yes", "no"), unit="polarity", pool="near"),
        Family("touches_which.two_option", "adjacency", "two_option", "touches_which", size=2, unit="single",
               pool="near"),
        Family("touches_which.four_option", "adjacency", "four_option", "touches_which", size=4, unit="single",
               pool="near"),
        Family("inside.yes_no", "adjacency", "yes_no", "inside", towards=("yes", "no"), unit="polarity", pool="inside"),
    ]
    reach = dict(kind="extreme", criterion="reach", axis="si", towards=("inferior", "superior"), pool="reach",
                 axes=("si",))
    fams += [
        Family("extreme.reach.si.yes_no", "extent", "yes_no", unit="swap", **reach),
        Family("extreme.reach.si.two_option", "extent", "two_option", unit="single", **reach),
        Family("extreme.reach.si.four_option", "extent", "four_option", size=4, unit="single", **reach),
        Family("crosses_midline.yes_no", "extent", "yes_no", "crosses_midline", towards=("yes", "no"), size=1,
               unit="polarity", no_side_names=True, axes=("lr",)),
    ]
    size = dict(kind="extreme", criterion="size", pool="size")
    fams += [
        Family("extreme.size.yes_no", "size", "yes_no", towards=("larger",), unit="swap", **size),
        Family("extreme.size.two_option", "size", "two_option", towards=("larger", "smaller"), unit="polarity", **size),
        Family("extreme.size.four_option", "size", "four_option", towards=("larger", "smaller"), size=4,
               unit="single", **size),
    ]
    return tuple(fams)


FAMILIES: tuple[Family, ...] = _all_families()
FAMILY_BY_ID = {f.id: f for f in FAMILIES}


def select_families(categories: Iterable[str], formats: Iterable[str]) -> list[Family]:
    cats, fmts = set(categories), set(formats)
    return [f for f in FAMILIES if f.category in cats and f.format in fmts]


# -- seeded, case-independent order --------------------------------------------------------------------

def unit_specs(fam: Family, key: tuple[str, ...], bits: int) -> list[dict]:
    """Relation specs of the unit ``fam`` asks about ``key`` (choice items get ``option_values`` later).

    ``bits`` (a hash of the key) picks, independently of any case, which structure is named first and
    which polarity a yes/no swap unit asserts.
    """
    base: dict = {"kind": fam.kind, "format": fam.format}
    if fam.criterion:
        base["criterion"] = fam.criterion
    if fam.axis:
        base["axis"] = fam.axis
    flip, pol = bits & 1, (bits >> 1) & 1
    names = list(key[::-1] if flip and len(key) == 2 and fam.kind != "inside" else key)
    if fam.kind == "touches_which":
        return [{**base, "anchor": key[0], "structures": list(key[1:])}]
    if fam.kind in ("side", "crosses_midline", "contact", "inside"):
        towards = fam.towards if not pol else fam.towards[::-1]
        return [{**base, "structures": names, "asserts": t} for t in towards]
    a, b = (names + [None])[:2]
    if fam.kind == "direction":
        if fam.format == "yes_no":
            s = fam.towards[pol]
            return [{**base, "structures": [a, b], "asserts": s}, {**base, "structures": [b, a], "asserts": s}]
        return [{**base, "structures": [a, b]}, {**base, "structures": [b, a]}]
    # extreme
    toward = fam.towards[pol % len(fam.towards)]
    if fam.unit == "swap":
        return [{**base, "toward": toward, "structures": [a, b], "asserts": a},
                {**base, "toward": toward, "structures": [b, a], "asserts": b}]
    if fam.unit == "polarity":
        return [{**base, "toward": t, "structures": [a, b]} for t in fam.towards]
    return [{**base, "toward": toward, "structures": sorted(key)}]


# -- pools ---------------------------------------------------------------------------------------

@dataclass
class Pools:
    """Structure pairs (a < b) fit for a family, judged on sample cases, and neighbours per structure.

    ``near``: exact surface distance computed (boxes within the graph's distance cutoff) in some sample
    case; ``inside``: one lies partly inside the other in some sample case (value: (contained, container));
    ``size``: mirror pairs (``kidney_left``/``kidney_right``) or volumes within :data:`SIZE_POOL_RATIO`;
    ``reach``: superior–inferior extents overlap in some sample case.
    """

    near: set[tuple[str, str]] = field(default_factory=set)
    inside: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)
    size: set[tuple[str, str]] = field(default_factory=set)
    reach: set[tuple[str, str]] = field(default_factory=set)
    neighbours: dict[str, set[str]] = field(default_factory=dict)
    sample_cases: list[str] = field(default_factory=list)
    #: (seed, key) → (hash, tier) of a key, shared by the run's streams (each family salts the hash)
    orders: dict[tuple, tuple[int, int]] = field(default_factory=dict, repr=False)

    def order(self, seed: int, key: tuple[str, ...]) -> tuple[int, int]:
        got = self.orders.get((seed, key))
        if got is None:
            got = self.orders[(seed, key)] = (stable_hash(seed, *sorted(key)), _tier(key, self))
        return got


def sample_graphs(graphs: Sequence[RelationGraph], n: int) -> list[RelationGraph]:
    """Up to ``n`` graphs spread evenly over ``graphs`` (all of them when there are fewer)."""
    if len(graphs) <= n:
        return list(graphs)
    idx = np.unique(np.linspace(0, len(graphs) - 1, n).round().astype(int))
    return [graphs[i] for i in idx]


def build_pools(graphs: Sequence[RelationGraph], universe: set[str]) -> Pools:
    pools = Pools(sample_cases=[g.case for g in graphs])
    for g in graphs:
        st, share_min = g.structures, g.thresholds.not_contained_share
        for (a, b), geo in g.pairs.items():
            if a not in universe or b not in universe:
                continue
            key = (a, b) if a < b else (b, a)
            if not geo.distance_is_lower_bound:
                pools.near.add(key)
            if max(geo.share_a_in_b, geo.share_b_in_a) > share_min and key not in pools.inside:
                pools.inside[key] = (a, b) if geo.share_a_in_b >= geo.share_b_in_a else (b, a)
            sa, sb = st[a], st[b]
            va, vb = sa.volume_ml, sb.volume_ml
            if max(va, vb) <= SIZE_POOL_RATIO * max(min(va, vb), 1e-9):
                pools.size.add(key)
            if sa.min_mm[2] < sb.max_mm[2] and sb.min_mm[2] < sa.max_mm[2]:
                pools.reach.add(key)
    names = sorted(universe)
    for i, a in enumerate(names):
        side = side_of(a)
        for b in names[i + 1:]:
            if side and side_of(b) and side_of(b) != side and unsided(a) == unsided(b):
                pools.size.add((a, b))
    for a, b in pools.near:
        pools.neighbours.setdefault(a, set()).add(b)
        pools.neighbours.setdefault(b, set()).add(a)
    return pools


# -- streams ------------------------------------------------------------------------------------------

def _tier(key: tuple[str, ...], pools: Pools) -> int:
    """Which keys a stream offers first: 0 mirror pairs (left/right kidney), 1 neighbours (surfaces within
    the graph's distance cutoff in some sample case), 2 the rest. Questions about neighbours need the
    image; "is the T1 vertebra above the bladder?" rarely does."""
    if len(key) != 2:
        return 0
    a, b = key
    if side_of(a) and side_of(b) and side_of(a) != side_of(b) and unsided(a) == unsided(b):
        return 0
    return 1 if ((a, b) if a < b else (b, a)) in pools.near else 2


class KeyStream:
    """A family's keys in the run-wide order: enumerated (singles, pairs) or drawn (sets, touches-which).

    Keys are produced as they are asked for; a drawn stream draws at most :data:`MAX_DRAWS` times. A key
    is kept only when ``accept(key)`` (the generator keeps keys whose relation is clear in one of a few
    sample cases, so that every case does not rediscover the hopeless ones, such as the side of a
    vertebra). Neither depends on the case being asked about.
    """

    def __init__(self, fam: Family, universe: Sequence[str], pools: Pools, seed: int,
                 accept: Callable[[tuple[str, ...]], bool] | None = None):
        self.fam = fam
        self.seed = seed
        self._accept = accept
        self.keys: list[tuple[str, ...]] = []
        names = sorted(n for n in universe if not (fam.no_side_names and side_of(n)))
        self._names = names
        self._rng = np.random.default_rng([seed, stable_hash("family", fam.id) % (2 ** 32)])
        self._tries = 0
        self._seen: set[tuple[str, ...]] = set()
        self._near, self._allowed = pools.neighbours, set(names)
        self._enumerated: list[tuple[str, ...]] = []
        if fam.kind == "touches_which":
            self._anchors = [n for n in names if len(pools.neighbours.get(n, ())) >= fam.size]
            self._neighbours = {n: sorted(pools.neighbours[n]) for n in self._anchors}
        elif not fam.drawn:
            self._enumerated = self._enumerate(names, pools)

    def _enumerate(self, names: list[str], pools: Pools) -> list[tuple[str, ...]]:
        fam = self.fam
        if fam.size == 1:
            keys = [(n,) for n in names]
        elif fam.pool == "all":
            keys = [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]
        elif fam.pool == "inside":
            allowed = set(names)
            keys = [pools.inside[k] for k in sorted(pools.inside) if k[0] in allowed and k[1] in allowed]
        else:
            allowed = set(names)
            keys = sorted(k for k in getattr(pools, fam.pool) if k[0] in allowed and k[1] in allowed)
        if not keys:
            return []
        base, tier = np.array([pools.order(self.seed, k) for k in keys], dtype=np.uint64).T
        salt = np.uint64(stable_hash("salt", fam.id))
        return [keys[i] for i in np.lexsort((base ^ salt, tier))]

    def _draw(self) -> tuple[str, ...] | None:
        fam, rng = self.fam, self._rng
        if fam.kind == "touches_which":
            if not self._anchors:
                return None
            anchor = self._anchors[int(rng.integers(len(self._anchors)))]
            near = self._neighbours[anchor]
            pick = rng.choice(len(near), size=fam.size, replace=False)
            return (anchor, *sorted(near[i] for i in pick))
        if len(self._names) < fam.size:
            return None
        anchor = self._names[int(rng.integers(len(self._names)))]
        near = [n for n in sorted(self._near.get(anchor, ())) if n in self._allowed]
        if len(near) >= fam.size - 1 and rng.random() < 0.5:  # a neighbourhood: the harder, image-bound sets
            pick = rng.choice(len(near), size=fam.size - 1, replace=False)
            return tuple(sorted([anchor, *(near[i] for i in pick)]))
        pick = rng.choice(len(self._names), size=fam.size, replace=False)
        return tuple(sorted(self._names[i] for i in pick))

    def _next_candidate(self) -> tuple[str, ...] | None:
        """The next key before ``accept`` (None when the stream is spent)."""
        if not self.fam.drawn:
            if self._tries >= len(self._enumerated):
                return None
            self._tries += 1
            return self._enumerated[self._tries - 1]
        while self._tries < MAX_DRAWS:
            self._tries += 1
            key = self._draw()
            if key is None:
                self._tries = MAX_DRAWS
            elif key not in self._seen:
                self._seen.add(key)
                return key
        return None

    def get(self, i: int) -> tuple[str, ...] | None:
        """The i-th key, or None past the end."""
        while i >= len(self.keys):
            key = self._next_candidate()
            if key is None:
                return None
            if self._accept is None or self._accept(key):
                self.keys.append(key)
        return self.keys[i]
