"""Records as dense (model × control × item) arrays, after checking they fit together.

Checks (each failure is a :class:`FormatError` naming the item, the conflicting values and the
records they came from):

- no (model, control, item) appears twice (e.g. the same run given twice, or overlapping shards);
- an item has one task, subtask, category, answer type, chance, case, patient, evidence axes and
  prior flag across all records (nulls do not conflict): otherwise the records come from
  different item sets that reuse ids;
- an item has one gold answer under every non-counterfactual control, and under a counterfactual
  control one (transformed) gold across models whose ``gold_original`` is that reference gold;
- a control states the same facts (``RunRecord.control_facts``) in every record.

What each control is comes from those facts, never from its name: the reference condition
(``reference``), the conditions without the image (``removes_image``; those with no image input at all
first), and the counterfactuals (``changes_gold``, or any control under which some gold answer moved).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from volprobe.errors import FormatError
from volprobe.stats.load import FACT_FIELDS, FACT_PREFIX, OPEN_TYPES, SCORE_PREFIX, RecordTable, read_prompts

ITEM_ATTRIBUTES = ("task", "subtask", "category", "answer_type", "case", "patient", "evidence", "prior_fixed")


def is_baseline_name(model: str) -> bool:
    """Blind baselines by name: ``prior`` and ``prior:...``."""
    return model == "prior" or model.startswith("prior:")


def is_random_name(model: str) -> bool:
    return model == "random" or model.startswith("random:")


@dataclass
class Panel:
    """Dense view of all records. Arrays are indexed [model, control, item].

    ``present``: a record exists (errors included); ``error``: the model failed on the item
    (such records count as answered by nobody: excluded from accuracy and paired tests);
    ``answer``/``gold``/``gold_original``: codes into ``answers`` (-1: none); ``row``: the record's row
    in ``records.frame`` (-1: none), for fields read only on demand (:meth:`prompts`). ``items`` is the item
    table (index = item code) with ``item_id``, the item attributes, ``chance``, ``gold`` (the
    untransformed gold code) and ``cluster`` (patient, else case, else the item itself).
    ``control_facts``: per control, the facts its records state; ``reference``: the control stated to be
    the reference (None when no record says); ``no_image``: the controls that remove the image, those
    with no image input first; ``counterfactual``: controls whose gold may change; ``name_swap_only``:
    [model, control, item] the record is tagged so (its gold changes only because left/right names swap).
    ``scores``: continuous scores of open items, by name (NaN where none); ``rules``: a benchmark's own
    scoring rule on closed items (0/1, e.g. ``3drad_substring``), by name, reported beside accuracy.
    """

    models: list[str]
    controls: list[str]
    items: pd.DataFrame
    answers: pd.Index
    present: np.ndarray
    error: np.ndarray
    correct: np.ndarray
    unparseable: np.ndarray
    refused: np.ndarray
    answer: np.ndarray
    gold: np.ndarray
    gold_original: np.ndarray
    row: np.ndarray
    records: RecordTable | None = None
    scores: dict[str, np.ndarray] = field(default_factory=dict)
    rules: dict[str, np.ndarray] = field(default_factory=dict)
    counterfactual: set[str] = field(default_factory=set)
    control_facts: dict[str, dict] = field(default_factory=dict)
    reference: str | None = None
    no_image: list[str] = field(default_factory=list)
    cluster_level: str = "patient"
    errors: pd.DataFrame | None = None
    name_swap_only: np.ndarray | None = None

    def valid(self, m: int, c: int) -> np.ndarray:
        """Items answered (without a model error) by model m under control c."""
        return self.present[m, c] & ~self.error[m, c]

    def prompts(self, m: int, c: int) -> np.ndarray:
        """The prompt model m was sent for each item under control c (None without a record or prompt)."""
        rows = self.row[m, c]
        out = np.full(rows.size, None, dtype=object)
        if self.records is not None and (rows >= 0).any():
            out[rows >= 0] = read_prompts(self.records, rows[rows >= 0])
        return out


def build_panel(table: RecordTable) -> Panel:
    """Check the records fit together and arrange them as a :class:`Panel`."""
    f = table.frame
    for name in ("item_id", "model", "control"):
        f[name] = f[name].cat.remove_unused_categories()
    models = _appearance_order(f["model"], f["source"])
    facts = _control_facts(f, table.sources)
    references = [c for c, d in facts.items() if d.get("reference")]
    if len(references) > 1:
        raise FormatError(f"records name {len(references)} controls as the reference condition ({', '.join(references)}); "
                          "a report compares with one: report them separately")
    order = table.control_order()  # as the runs' manifests list them, else as the records first name them
    codes, first_row = np.unique(f["control"].cat.codes.to_numpy(), return_index=True)
    first_seen = {f["control"].cat.categories[c]: r for c, r in zip(codes, first_row)}
    controls = sorted(f["control"].cat.categories, key=lambda c: (c not in references, order.index(c) if c in order
                                                                  else len(order), first_seen[c]))
    m_code = _recode(f["model"], models)
    c_code = _recode(f["control"], controls)
    i_code = f["item_id"].cat.codes.to_numpy().astype(np.int64)
    n_m, n_c, n_i = len(models), len(controls), len(f["item_id"].cat.categories)
    if n_m * n_c * n_i > 400_000_000:
        raise FormatError(f"{n_m} models × {n_c} controls × {n_i:,} items is too large a table; "
                          "report on fewer runs at a time")
    flat = (m_code * n_c + c_code) * n_i + i_code
    _check_unique(flat, f, table.sources)

    answers = f["gold"].cat.categories.union(f["parsed"].cat.categories).union(f["gold_original"].cat.categories)
    gold = _codes(f["gold"], answers)
    gold_original = _codes(f["gold_original"], answers)
    counterfactual = {c for c in controls if facts[c].get("changes_gold")}
    moved = (gold_original >= 0) & (gold >= 0) & (gold != gold_original)
    counterfactual |= {controls[c] for c in np.unique(c_code[moved])}
    is_cf = np.isin(c_code, [controls.index(c) for c in counterfactual])

    attrs = {name: f[name].cat.codes.to_numpy() for name in ITEM_ATTRIBUTES}
    attrs["gold"] = np.where(is_cf, -1, gold)  # counterfactual golds are checked separately below
    where = _Where(f, table.sources)
    by_item = _groups(i_code)
    _check_consistent(by_item, attrs, where, lambda v, col: f[col].cat.categories[v] if col != "gold" else answers[v])
    _check_consistent_chance(by_item, f["chance"].to_numpy(dtype=float), where)
    cf_rows = np.flatnonzero(is_cf)
    if cf_rows.size:
        _check_consistent(_groups(c_code[cf_rows] * n_i + i_code[cf_rows]), {"transformed gold": gold[cf_rows]},
                          where.subset(cf_rows), lambda v, col: answers[v])

    items = _item_table(f, i_code, by_item, n_i, attrs, is_cf, gold_original)
    bad_orig = (gold_original >= 0) & is_cf & (gold_original != items["gold"].to_numpy()[i_code])
    if bad_orig.any():
        r = int(np.flatnonzero(bad_orig)[0])
        raise FormatError(f"item {f['item_id'].iloc[r]!r}: gold_original {answers[gold_original[r]]!r} under "
                          f"{f['control'].iloc[r]} ({where.describe(r)}) differs from its gold "
                          f"{answers[items['gold'].iloc[i_code[r]]]!r} under the other controls")

    shape = (n_m, n_c, n_i)

    def dense(values, fill, dtype):
        out = np.full(shape, fill, dtype=dtype)
        out.reshape(-1)[flat] = values
        return out

    err = f["error"].notna().to_numpy()
    errors = f.loc[err, ["model", "control", "item_id", "error"]].astype(str).reset_index(drop=True)
    return Panel(
        models=models, controls=controls, items=items, answers=answers,
        present=dense(True, False, bool), error=dense(err, False, bool),
        correct=dense(f["correct"].to_numpy() & ~err, False, bool),
        unparseable=dense(f["unparseable"].to_numpy(), False, bool),
        refused=dense(f["refused"].to_numpy(), False, bool),
        answer=dense(_codes(f["parsed"], answers), -1, np.int32),
        gold=dense(gold, -1, np.int32), gold_original=dense(gold_original, -1, np.int32),
        row=dense(np.arange(len(f)), -1, np.int64), records=table,
        scores=_split_scores(f, dense, items, open_items=True),
        rules=_split_scores(f, dense, items, open_items=False),
        counterfactual=counterfactual, control_facts=facts, reference=references[0] if references else None,
        no_image=sorted((c for c in controls if facts[c].get("removes_image")),
                        key=lambda c: (facts[c].get("needs_volume") is not False, controls.index(c))),
        cluster_level=_cluster_level(items), errors=errors,
        name_swap_only=dense(f["name_swap_only"].to_numpy(dtype=bool), False, bool),
    )


# --------------------------------------------------------------------------- helpers


def _split_scores(f: pd.DataFrame, dense, items: pd.DataFrame, open_items: bool) -> dict[str, np.ndarray]:
    """The ``score:*`` columns as [model, control, item] arrays, kept on open items only (``open_items``) or
    on closed items only (a benchmark's own rule); names with no value there are left out."""
    keep = items["answer_type"].isin(OPEN_TYPES).to_numpy() == open_items
    out = {}
    for column in (c for c in f.columns if c.startswith(SCORE_PREFIX)):
        values = np.where(keep[None, None, :], dense(f[column].to_numpy(dtype=float), np.nan, float), np.nan)
        if not np.isnan(values).all():
            out[column[len(SCORE_PREFIX):]] = values
    return out


def _control_facts(f: pd.DataFrame, sources: list[str]) -> dict[str, dict]:
    """Per control label: the facts its records state (missing ones left out); disagreement is an error."""
    out: dict[str, dict] = {str(c): {} for c in f["control"].cat.categories}
    for name, _kind in FACT_FIELDS:
        column = f[FACT_PREFIX + name]
        stated = column.notna()
        if not stated.any():
            continue
        values = pd.DataFrame({"control": f["control"][stated], "value": column[stated].astype(str)})
        counts = values.groupby("control", observed=True)["value"].nunique()
        for control in counts.index[counts > 1]:
            rows = values[values["control"] == control].drop_duplicates("value")
            where = [sources[int(f["source"].loc[i])] for i in rows.index[:2]]
            raise FormatError(f"control {control!r} is stated with {name} = {', '.join(rows['value'].tolist())} in "
                              f"different records ({' and '.join(where)}): records from different volprobe versions "
                              "or a plugin control that shares a name?")
        first = column[stated].groupby(f["control"][stated], observed=True).first()
        for control, value in first.items():
            out[str(control)][name] = value
    return out



def _appearance_order(models: pd.Series, source: pd.Series) -> list[str]:
    first = pd.DataFrame({"m": models.cat.codes.to_numpy(), "s": source.to_numpy()}).groupby("m")["s"].min()
    cats = models.cat.categories
    return [cats[m] for m in sorted(first.index, key=lambda m: (first[m], cats[m]))]


def _recode(column: pd.Series, order: list[str]) -> np.ndarray:
    lookup = np.array([order.index(c) for c in column.cat.categories], dtype=np.int64)
    return lookup[column.cat.codes.to_numpy()]


def _codes(column: pd.Series, categories: pd.Index) -> np.ndarray:
    lookup = np.append(categories.get_indexer(column.cat.categories), -1).astype(np.int32)
    return lookup[column.cat.codes.to_numpy()]


class _Where:
    """Describes where a record came from (model, control, file) for error messages."""

    def __init__(self, frame: pd.DataFrame, sources: list[str], rows: np.ndarray | None = None):
        self.frame, self.sources, self.rows = frame, sources, rows

    def subset(self, rows: np.ndarray) -> "_Where":
        return _Where(self.frame, self.sources, rows)

    def describe(self, r: int) -> str:
        r = int(self.rows[r]) if self.rows is not None else int(r)
        row = self.frame.iloc[r]
        return f"model {row['model']}, control {row['control']}, {self.sources[int(row['source'])]}"

    def item(self, r: int) -> str:
        r = int(self.rows[r]) if self.rows is not None else int(r)
        return str(self.frame["item_id"].iloc[r])


def _check_unique(flat: np.ndarray, f: pd.DataFrame, sources: list[str]) -> None:
    order = np.argsort(flat, kind="stable")
    dup = np.flatnonzero(flat[order][1:] == flat[order][:-1])
    if dup.size:
        a, b = order[dup[0]], order[dup[0] + 1]
        n = dup.size
        raise FormatError(
            f"{n:,} duplicate record(s): item {f['item_id'].iloc[a]!r}, model {f['model'].iloc[a]}, control "
            f"{f['control'].iloc[a]} appears in {sources[f['source'].iloc[a]]} and {sources[f['source'].iloc[b]]} "
            "(the same run given twice, or shards overlapping?)")


def _groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(order sorting key, start of each run of equal keys in that order)."""
    order = np.argsort(key, kind="stable")
    sorted_key = key[order]
    starts = np.flatnonzero(np.r_[True, sorted_key[1:] != sorted_key[:-1]]) if key.size else np.zeros(0, int)
    return order, starts


def _rows_of(groups, g: int) -> np.ndarray:
    order, starts = groups
    return order[starts[g]:(starts[g + 1] if g + 1 < len(starts) else len(order))]


def _check_consistent(groups, attrs: dict[str, np.ndarray], where: _Where, label) -> None:
    """Within each group of rows, at most one non-null (>= 0) code per attribute."""
    order, starts = groups
    big = np.iinfo(np.int64).max
    for name, codes in attrs.items():
        v = codes[order].astype(np.int64)
        lo = np.minimum.reduceat(np.where(v >= 0, v, big), starts)
        hi = np.maximum.reduceat(v, starts)
        bad = np.flatnonzero((hi >= 0) & (lo != hi))
        if bad.size:
            g = bad[0]
            rows = _rows_of(groups, g)
            r_lo, r_hi = rows[codes[rows] == lo[g]][0], rows[codes[rows] == hi[g]][0]
            raise FormatError(
                f"item {where.item(r_lo)!r} has {name} {label(lo[g], name)!r} in ({where.describe(r_lo)}) but "
                f"{label(hi[g], name)!r} in ({where.describe(r_hi)}); {bad.size:,} item(s) disagree like this: "
                "records from different item sets?")


def _check_consistent_chance(groups, values: np.ndarray, where: _Where) -> None:
    order, starts = groups
    v = values[order]
    lo, hi = np.fmin.reduceat(v, starts), np.fmax.reduceat(v, starts)
    bad = np.flatnonzero(np.abs(hi - lo) > 1e-9)
    if bad.size:
        g = bad[0]
        rows = _rows_of(groups, g)
        r_lo, r_hi = rows[np.isclose(values[rows], lo[g])][0], rows[np.isclose(values[rows], hi[g])][0]
        raise FormatError(f"item {where.item(r_lo)!r} has chance {lo[g]:g} in ({where.describe(r_lo)}) but "
                          f"{hi[g]:g} in ({where.describe(r_hi)}); records from different item sets?")


def _max_per_group(groups, key: np.ndarray, values: np.ndarray, n: int, fill=-1) -> np.ndarray:
    """Per key 0..n-1, the largest value (after the checks all non-null codes of a key agree)."""
    order, starts = groups
    out = np.full(n, fill, dtype=values.dtype if values.dtype.kind == "f" else np.int64)
    if starts.size:
        reduce = np.fmax if values.dtype.kind == "f" else np.maximum
        out[key[order][starts]] = reduce.reduceat(values[order], starts)
    return out


def _with_default(column: pd.Categorical, value: str) -> pd.Categorical:
    if value not in column.categories:
        column = column.add_categories([value])
    return column.fillna(value)


def _item_table(f: pd.DataFrame, i_code, groups, n_i, attrs, is_cf, gold_original) -> pd.DataFrame:
    items = pd.DataFrame({"item_id": f["item_id"].cat.categories.astype(str)})
    for name in ITEM_ATTRIBUTES:
        codes = _max_per_group(groups, i_code, attrs[name], n_i)
        items[name] = pd.Categorical.from_codes(codes, categories=f[name].cat.categories)
    items["chance"] = _max_per_group(groups, i_code, f["chance"].to_numpy(dtype=float), n_i, fill=np.nan)
    gold = _max_per_group(groups, i_code, attrs["gold"], n_i)
    cf = np.flatnonzero(is_cf)  # items seen only under counterfactual controls: their gold_original
    from_cf = _max_per_group(_groups(i_code[cf]), i_code[cf], gold_original[cf], n_i)
    items["gold"] = np.where(gold >= 0, gold, from_cf)
    items["evidence"] = _with_default(items["evidence"].array, "none")
    items["prior_fixed"] = _with_default(items["prior_fixed"].array, "unknown")
    by = np.where(items["patient"].notna(), "patient", np.where(items["case"].notna(), "case", "item"))
    name = np.where(by == "patient", items["patient"].astype(str),
                    np.where(by == "case", items["case"].astype(str), items["item_id"]))
    items["cluster"] = np.unique(np.char.add(np.char.add(by.astype(str), ":"), name.astype(str)), return_inverse=True)[1]
    items["cluster_by"] = by
    return items


def _cluster_level(items: pd.DataFrame) -> str:
    levels = [lv for lv in ("patient", "case", "item") if (items["cluster_by"] == lv).any()]
    return "/".join(levels) or "item"
