"""Options of a report and the role of each model in it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from numbers import Integral

from volprobe.errors import InvalidValueError
from volprobe.stats.multiple import check_correction
from volprobe.stats.panel import is_baseline_name, is_random_name
from volprobe.stats.result import check_alternative

#: Figure widths in inches: a journal's single column (89 mm) and full page width (183 mm).
FIGURE_WIDTHS = {"single": 3.5, "double": 7.2}


@dataclass
class ReportSettings:
    """Options of a report (all recorded in its JSON and manifest).

    Attributes:
        alpha: significance level; CIs are (1 − alpha).
        correction: ``holm`` or ``fdr_bh`` over every test in the report.
        reference: the control every other control is compared with (None: the one whose records
            state that it is the reference condition).
        by: groupings (see :mod:`volprobe.stats.groups`); the group ``all`` is always there.
        baselines: extra blind-baseline model names (``prior`` and ``prior:*`` always are).
        pairwise_controls: controls under which models are compared with each other (default: reference).
        chance_alternative: sidedness of the test against chance.
        n_perm, seed: permutations of the answer-sensitivity test, and their seed.
        intersect: compare shared items when a non-counterfactual control lacks items of the
            reference (instead of failing).
        power: power for minimum detectable effects (computed at alpha / the number of tests).
        assess_references: also run the paired tests and verdicts for the blind baselines and
            the random model (a check that the pipeline finds no volume use where none can be).
        figure_width: ``double`` (183 mm, a page's width) or ``single`` (89 mm, one column) for the figures.
    """

    alpha: float = 0.05
    correction: str = "holm"
    reference: str | None = None
    by: tuple[str, ...] = ()
    baselines: tuple[str, ...] = ()
    pairwise_controls: tuple[str, ...] = ()
    chance_alternative: str = "two-sided"
    n_perm: int = 10000
    seed: int = 0
    intersect: bool = False
    power: float = 0.8
    assess_references: bool = False
    figure_width: str = "double"

    def assessed(self, role: str) -> bool:
        """Whether a model of this role gets paired tests and a verdict."""
        return role == "model" or self.assess_references

    def __post_init__(self) -> None:
        check_correction(self.correction)
        check_alternative(self.chance_alternative)
        if not 0 < self.alpha < 1:
            raise InvalidValueError(f"alpha must lie in (0, 1), got {self.alpha}")
        if not 0 < self.power < 1:
            raise InvalidValueError(f"power must lie in (0, 1), got {self.power}")
        if isinstance(self.n_perm, bool) or not isinstance(self.n_perm, Integral) or self.n_perm < 1:
            raise InvalidValueError(f"n_perm must be a positive whole number, got {self.n_perm!r}")
        if self.figure_width not in FIGURE_WIDTHS:
            raise InvalidValueError(f"figure_width must be one of {', '.join(FIGURE_WIDTHS)}, got {self.figure_width!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, Integral) or self.seed < 0:
            raise InvalidValueError(f"seed must be a whole number >= 0, got {self.seed!r}")
        self.by, self.baselines, self.pairwise_controls = tuple(self.by), tuple(self.baselines), \
            tuple(self.pairwise_controls)

    def to_dict(self) -> dict:
        return asdict(self)


def model_roles(models: list[str], baselines=()) -> dict[str, str]:
    """``baseline`` (blind: ``prior``, ``prior:*``, or named), ``random`` (``random``, ``random:*``) or ``model``."""
    roles = {}
    for m in models:
        if is_baseline_name(m) or m in baselines:
            roles[m] = "baseline"
        elif is_random_name(m):
            roles[m] = "random"
        else:
            roles[m] = "model"
    return roles
