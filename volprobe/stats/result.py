"""The result object every test in :mod:`volprobe.stats` returns (statsmodels-like)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from volprobe.errors import InvalidValueError

ALTERNATIVES = ("two-sided", "greater", "less")


def check_alternative(alternative: str) -> str:
    if alternative not in ALTERNATIVES:
        raise InvalidValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    return alternative


def format_p(p: float | None) -> str:
    """A p-value for people: 3 significant digits, ``< 1e-6`` below that."""
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "n/a"
    if p < 1e-6:
        return "< 1e-6"
    if p < 0.001:
        return f"{p:.1e}"
    return f"{p:.3f}"


@dataclass
class TestResult:
    """Outcome of one statistical test or interval estimate.

    Attributes:
        test: what was done, e.g. ``"exact McNemar"``.
        statistic: the test statistic (its meaning is in ``statistic_name``); NaN when none.
        pvalue: p-value under the stated ``alternative``; None for a pure interval estimate.
        alternative: ``two-sided`` | ``greater`` | ``less`` (the sidedness of ``pvalue``).
        estimate: the effect estimated (accuracy, drop, ...), in the units of ``estimate_name``.
        ci: confidence interval of ``estimate`` (None if not computed); ci_level: e.g. 0.95.
        counts: the counts the test used (n, discordant pairs, clusters, ...).
        method: how the p-value / interval was obtained, in words.
    """

    __test__ = False  # not a pytest test class

    test: str
    statistic: float
    pvalue: float | None
    alternative: str = "two-sided"
    statistic_name: str = "statistic"
    estimate: float | None = None
    estimate_name: str = "estimate"
    ci: tuple[float, float] | None = None
    ci_level: float = 0.95
    counts: dict[str, int] = field(default_factory=dict)
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "test": self.test, "statistic": self.statistic, "statistic_name": self.statistic_name,
            "pvalue": self.pvalue, "alternative": self.alternative, "estimate": self.estimate,
            "estimate_name": self.estimate_name, "ci": list(self.ci) if self.ci else None,
            "ci_level": self.ci_level, "counts": dict(self.counts), "method": self.method,
        }

    def __str__(self) -> str:
        lines = [f"{self.test} ({self.alternative})" if self.pvalue is not None else self.test]
        if not math.isnan(self.statistic):
            lines.append(f"  {self.statistic_name} = {self.statistic:.6g}")
        if self.pvalue is not None:
            lines.append(f"  p-value = {format_p(self.pvalue)}  ({self.pvalue:.6g})")
        if self.estimate is not None:
            ci = ""
            if self.ci is not None:
                ci = f"  [{self.ci[0]:.4g}, {self.ci[1]:.4g}] ({self.ci_level:.0%} CI)"
            lines.append(f"  {self.estimate_name} = {self.estimate:.4g}{ci}")
        if self.counts:
            lines.append("  counts: " + ", ".join(f"{k}={v:,}" for k, v in self.counts.items()))
        if self.method:
            lines.append(f"  method: {self.method}")
        return "\n".join(lines)
