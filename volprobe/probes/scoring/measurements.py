"""Measurements in free text (3D-RAD Task 3) in millimetres, and the tolerance rule.

Read: ``7 mm``, ``12mm``, ``1.2 cm``, ``30x13 mm``, ``3 x 4 x 5 mm``, ``3 × 4 cm``, ``3 by 4 mm``,
``30 mm x 13 mm``, ``5 millimeters``, ``2 centimetres``. A unit written once at the end applies to
every dimension before it; a number with no unit anywhere in its group is taken as mm.
When a text holds several measurements, the first one *with* a unit is used (so "1 nodule of
7 mm" reads 7 mm), else the first without one.

Rule: a prediction matches the gold when it has the same number of dimensions and every dimension,
after sorting both largest first (dimension order is not standardised), is within
``max(rel_tol × gold, abs_tol_mm)`` — by default 10% or 1 mm, whichever is larger.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_REL_TOL = 0.10
DEFAULT_ABS_TOL_MM = 1.0

_NUM = r"\d+(?:\.\d+)?"
_UNIT = r"(?:mm|millimet(?:er|re)s?|cm|centimet(?:er|re)s?)(?![a-z])"
_SEP = r"\s*(?:x|×|\*|by)\s*"
_GROUP = re.compile(rf"(?<![\w.]){_NUM}\s*(?:{_UNIT})?(?:{_SEP}{_NUM}\s*(?:{_UNIT})?)*", re.IGNORECASE)
_DIM = re.compile(rf"({_NUM})\s*({_UNIT})?", re.IGNORECASE)
_MM_PER_UNIT = {"m": 1.0, "c": 10.0}  # first letter of the unit: mm/millimetre, cm/centimetre


@dataclass(frozen=True)
class Measurement:
    """A measurement with one or more dimensions, in mm (order as written)."""

    dims_mm: tuple[float, ...]
    had_unit: bool = True

    def __str__(self) -> str:
        return "x".join(f"{d:g}" for d in self.dims_mm) + " mm"


def _parse_group(group: str) -> Measurement:
    dims = _DIM.findall(group)
    units = [u for _n, u in dims if u]
    group_unit = units[-1] if units else "mm"
    values = tuple(float(n) * _MM_PER_UNIT[(u or group_unit)[0].lower()] for n, u in dims)
    return Measurement(values, had_unit=bool(units))


def parse_measurement(text: str) -> Measurement | None:
    """The measurement a text states (see module docstring), or None when it holds no number."""
    first_unitless = None
    for m in _GROUP.finditer(text or ""):
        meas = _parse_group(m.group(0))
        if meas.had_unit:
            return meas
        if first_unitless is None:
            first_unitless = meas
    return first_unitless


def measurement_errors(pred: Measurement, gold: Measurement) -> tuple[float, float] | None:
    """(largest absolute error in mm, largest relative error) over sorted dimensions; None if counts differ."""
    if len(pred.dims_mm) != len(gold.dims_mm):
        return None
    gold_sorted = sorted(gold.dims_mm, reverse=True)
    abs_err = [abs(p - g) for p, g in zip(sorted(pred.dims_mm, reverse=True), gold_sorted)]
    rel_err = [e / g if g > 0 else (0.0 if e == 0 else float("inf")) for e, g in zip(abs_err, gold_sorted)]
    return max(abs_err), max(rel_err)


def measurements_match(pred: Measurement, gold: Measurement, rel_tol: float = DEFAULT_REL_TOL,
                       abs_tol_mm: float = DEFAULT_ABS_TOL_MM) -> bool:
    """True when every dimension is within ``max(rel_tol × gold, abs_tol_mm)`` (dimensions sorted)."""
    if len(pred.dims_mm) != len(gold.dims_mm):
        return False
    return all(abs(p - g) <= max(rel_tol * g, abs_tol_mm)
               for p, g in zip(sorted(pred.dims_mm, reverse=True), sorted(gold.dims_mm, reverse=True)))
