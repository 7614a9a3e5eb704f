"""The control contract and the control registry.

A control is a small deterministic transform of one item's volume in patient space
(RAS+ mm, see :mod:`volprobe.segmentation.volume`), applied *before* any model's own
resizing and scaling, so every model sees the same ablation::

    control = get_control("single_slice:evidence")
    gold = control.gold(item)                      # may raise ExcludedItem
    cin = control.apply(volume, item, ctx)         # ControlledInput(volume | None, key, params, seed)
    prepared = adapter.prepare(cin.volume)         # once per distinct cin.key in a run

``cin.key`` names the model input (case + control + parameters): items sharing a key share
one ``adapter.prepare`` call. Seeds are derived from (run seed, control name, case), so all
items of a case see the same shuffled / swapped volume, and a rerun sees the same again.

Adding a control takes a few lines::

    import numpy as np
    from volprobe.controls import Control, register_control

    @register_control
    class Noise(Control):
        name = "noise"
        statement = "adds Gaussian noise (sd 50 HU) to every voxel; anatomy and geometry kept"

        def apply(self, volume, item, ctx):
            seed = ctx.seed_for(self, item)
            noisy = volume.array + np.random.default_rng(seed).normal(0, 50, volume.shape)
            return self.output(item, volume.with_array(noisy), seed=seed)

after which ``probe run --control noise`` works (import the module first, e.g. from a plugin
package, or register before calling :func:`volprobe.probes.run.engine.run`).

A control that moves the anatomy within the image (a flip, a rotation, a crop) and whose gold answers
follow the moved anatomy states ``changes_geometry = True`` (with ``changes_gold = True``) and implements
:meth:`Control.transform_labels`: the label map transformed exactly as :meth:`Control.apply` transforms
the CT (the same voxel moves, nearest neighbour, structures named as a reader of the transformed image
would name them). Question generation then computes every item's gold under that control from the
relation graph of the transformed label map (see :mod:`volprobe.controls.counterfactuals`), so the gold is
right by construction for any orientation and any such control, built-in or plugin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

from volprobe.errors import FormatError, VolprobeError
from volprobe.items import Item
from volprobe.registry import Registry
from volprobe.seeding import derive_seed
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.volume import Volume


class ExcludedItem(Exception):
    """Raised by :meth:`Control.gold` / :meth:`Control.apply`: this item cannot be run under this control.

    The engine records the reason (counted per control in the manifest) and writes no record for it.
    """

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ControlError(VolprobeError):
    """A control was misused (unknown name, bad parameter, no other patient to swap with)."""


@dataclass(frozen=True)
class ControlledInput:
    """What the model receives under a control.

    Attributes:
        volume: the transformed volume in patient space, or None for no image.
        key: identity of the model input (case + control + parameters); equal keys share one ``prepare``.
        params: small JSON-able facts recorded with each result (slice index, source case, array axis ...).
        seed: the control's seed for this case (None for deterministic controls that use none).
    """

    volume: Volume | None
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None


@dataclass
class ControlContext:
    """What a control may use besides the item's own volume.

    Attributes:
        seed: the run seed.
        cases: case → patient for every case of the run whose volume exists (``swapped_volume`` draws from it).
        load_case: returns the Volume of a case (cached by the engine).
    """

    seed: int = 0
    cases: Mapping[str, str] = field(default_factory=dict)
    load_case: Callable[[str], Volume] | None = None

    def seed_for(self, control: "Control", item: Item) -> int:
        """The control's seed for the item's case: derived from (run seed, control name, case)."""
        return derive_seed(self.seed, control.name, item.case_key)


class Control:
    """Base class of every control (subclass, set the class attributes, override :meth:`apply`).

    Class attributes:
        name: registry name (``--control NAME``).
        statement: one line saying what evidence the control removes or changes.
        reference: True for the reference condition every other control is compared with (``full``).
        removes_image: True when the model gets no image of the anatomy at all (``text_only``, and
            ``blank``, whose image is empty): the verdict's "without the volume".
        needs_volume: False when the control feeds no image input at all (``text_only``).
        changes_gold: True when the gold answer can change (counterfactuals); see :meth:`gold`.
        changes_geometry: True when :meth:`apply` moves the anatomy within the image by a geometric
            transform (flip, rotation, crop) and the gold follows the moved anatomy: the control then
            implements :meth:`transform_labels`, is item-independent and has ``changes_gold``; items carry
            its gold computed from the transformed label map, before any run, so the transform must not
            depend on the run seed. False for controls that keep the geometry and for those that only
            remove evidence (one slice, shuffled slices: gold unchanged by design).
        patient_axis: 'lr', 'ap' or 'si' for counterfactuals along one patient axis, else None.
        item_dependent: True when the input depends on the item, not only on its case (the engine
            then calls :meth:`apply` per item; otherwise once per case).
        defaults: the control's parameters and their default values.
        main_parameter: the parameter set by the short spec form ``NAME:VALUE``.
    """

    name: ClassVar[str] = ""
    statement: ClassVar[str] = ""
    reference: ClassVar[bool] = False
    removes_image: ClassVar[bool] = False
    changes_gold: ClassVar[bool] = False
    changes_geometry: ClassVar[bool] = False
    patient_axis: ClassVar[str | None] = None
    needs_volume: ClassVar[bool] = True
    item_dependent: bool = False
    defaults: ClassVar[dict[str, Any]] = {}
    main_parameter: ClassVar[str | None] = None

    def __init__(self, **params: Any):
        unknown = set(params) - set(self.defaults)
        if unknown:
            known = ", ".join(sorted(self.defaults)) or "none"
            raise ControlError(f"control {self.name!r} has no parameter(s) {sorted(unknown)} (known: {known})")
        self.params: dict[str, Any] = {**self.defaults, **params}
        self.check_params()

    def check_params(self) -> None:
        """Validate ``self.params`` (raise :class:`ControlError`)."""

    @property
    def label(self) -> str:
        """The name recorded in run records: ``name`` with default parameters, else ``name:value[,k=v]``."""
        changed = {k: v for k, v in self.params.items() if v != self.defaults.get(k)}
        if not changed:
            return self.name
        if set(changed) == {self.main_parameter}:
            return f"{self.name}:{changed[self.main_parameter]}"
        return f"{self.name}:" + ",".join(f"{k}={v}" for k, v in sorted(changed.items()))

    @classmethod
    def facts(cls) -> dict[str, Any]:
        """What the control does, as recorded with every run record (``RunRecord.control_facts``)."""
        return {"reference": cls.reference, "removes_image": cls.removes_image, "needs_volume": cls.needs_volume,
                "changes_gold": cls.changes_gold, "changes_geometry": cls.changes_geometry,
                "patient_axis": cls.patient_axis}

    def describe(self) -> dict[str, Any]:
        """JSON-able description (for manifests and ``probe controls``)."""
        return {"label": self.label, "name": self.name, "statement": self.statement, **self.facts(),
                "params": dict(self.params)}

    # -- gold ------------------------------------------------------------------------
    def gold(self, item: Item) -> str:
        """The gold answer under this control.

        Unchanged unless :attr:`changes_gold`. Then: ``item.counterfactual[name]`` when the item
        gives it (None there excludes the item); else unchanged when ``item.evidence['axes']`` is
        given and does not contain :attr:`patient_axis`; else the item is excluded (its answer
        cannot be transformed).

        Raises:
            ExcludedItem: the item has no valid gold under this control.
            FormatError: the item's counterfactual gold is not one of its options.
        """
        if not self.changes_gold:
            return item.answer
        if self.name in item.counterfactual:
            value = item.counterfactual[self.name]
            if value is None:
                raise ExcludedItem(f"the item marks its answer as not transformable under {self.name}")
            if item.is_closed and value not in item.options:
                raise FormatError(f"item {item.id}: counterfactual gold {value!r} under {self.name} "
                                  f"is not one of its options {item.options}")
            return value
        axes = item.evidence.get("axes")
        if axes is not None and self.patient_axis is not None and self.patient_axis not in axes:
            return item.answer
        if axes is None:
            raise ExcludedItem(f"no counterfactual gold for {self.name} and no evidence axes to show "
                               "the answer does not depend on it")
        raise ExcludedItem(f"the answer depends on the {self.patient_axis} axis and the item gives no "
                           f"counterfactual gold for {self.name}")

    # -- input -----------------------------------------------------------------------
    def check(self, ctx: ControlContext) -> None:
        """Called once before a run; raise :class:`ControlError` when the run cannot use this control."""

    def other_cases(self, item: Item, ctx: ControlContext) -> list[str]:
        """Cases besides the item's own whose volumes :meth:`apply` will load (the engine reads them ahead)."""
        return []

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        """The model input for ``item`` whose (untransformed) volume is ``volume``. Override this."""
        raise NotImplementedError

    def apply_to_case(self, volume: Volume | None, case: str, ctx: ControlContext | None = None) -> ControlledInput:
        """:meth:`apply` without an item: the model input of any item of ``case`` (for item-independent
        controls; the seed derives from the case as in a run with ``ctx.seed``).

        Raises:
            ControlError: the control's input depends on the item (e.g. ``single_slice:evidence``).
        """
        if self.item_dependent:
            raise ControlError(f"control {self.label!r} depends on the item (its input differs between the items "
                               "of one case); give an item to apply it to")
        stand_in = Item(id=f"{case}/<any item>", question="", answer="", answer_type="open", case=case)
        return self.apply(volume, stand_in, ctx or ControlContext())

    # -- the label map, for golds that follow the anatomy ------------------------------------------------
    def transform_labels(self, labels: LabelMap) -> LabelMap:
        """The label map transformed as :meth:`apply` transforms the CT (controls that ``changes_geometry``).

        The same voxel moves, nearest neighbour (no label is blended), on the grid :meth:`apply` gives
        the CT, with structures named as a reader of the transformed image would name them (a left/right
        mirror renames side-named structures: the kidney now on the image's left is ``kidney_left``);
        a renamed structure keeps its label id, so ``labels.names[i]`` → ``result.names[i]`` says what
        was renamed.
        """
        raise NotImplementedError(f"control {self.name!r} changes geometry but does not transform label maps")

    def keeps_distances(self, affine) -> bool:
        """True when :meth:`transform_labels` on a grid with this voxel → patient ``affine`` (4×4) moves voxels
        by an isometry of patient space (distances between voxel centres kept, grid unchanged): then surface
        distances, contact and containment of every pair are unchanged and may be reused. Default False
        (everything is recomputed)."""
        return False

    def __call__(self, volume: Volume | None, item: Item, ctx: ControlContext) -> ControlledInput:
        """MONAI-style: ``control(volume, item, ctx)`` is :meth:`apply`."""
        return self.apply(volume, item, ctx)

    def output(self, item: Item, volume: Volume | None, *, seed: int | None = None,
               shared: bool = False, **params: Any) -> ControlledInput:
        """Build a :class:`ControlledInput`, keyed by case (unless ``shared``), label, seed and ``params``."""
        facts = json.dumps(params, sort_keys=True, default=str)
        where = "" if shared else item.case_key
        return ControlledInput(volume=volume, key=f"{where}|{self.label}|{seed}|{facts}", params=params, seed=seed)


# -- registry ------------------------------------------------------------------------------

def _check_control(cls: type) -> None:
    if not cls.statement:
        raise ControlError(f"{cls.__name__}: a control needs a one-line statement")
    if ":" in cls.name or "," in cls.name:
        raise ControlError(f"control name {cls.name!r} may not contain ':' or ','")
    if cls.changes_gold and cls.patient_axis not in (None, "lr", "ap", "si"):
        raise ControlError(f"control {cls.name!r}: patient_axis {cls.patient_axis!r} is not one of lr, ap, si")
    if cls.changes_geometry and not (cls.changes_gold and cls.transform_labels is not Control.transform_labels):
        raise ControlError(f"control {cls.name!r} changes geometry: it needs changes_gold = True and a "
                           "transform_labels method (the label map moved as apply moves the CT)")


#: Every control by name: volprobe's built-ins and plugins' (entry-point group ``volprobe.controls``).
CONTROLS: Registry[Control] = Registry("control", "volprobe.controls", ControlError, check=_check_control)
register_control = CONTROLS.register


def get_control(spec: str, **defaults: Any) -> Control:
    """A control from ``NAME``, ``NAME:VALUE`` (its main parameter) or ``NAME:key=value,key=value``.

    ``defaults`` are parameters applied when the spec does not set them and the control has them
    (e.g. ``mode`` for ``single_slice`` from ``--single-slice``).
    """
    name, _, rest = spec.strip().partition(":")
    cls = CONTROLS.get(name)
    params = {k: v for k, v in defaults.items() if k in cls.defaults and v is not None}
    if rest:
        for part in rest.split(","):
            key, eq, value = part.partition("=")
            if not eq:
                if cls.main_parameter is None:
                    raise ControlError(f"control {name!r} takes no value (got {spec!r})")
                key, value = cls.main_parameter, part
            params[key.strip()] = _parse_value(name, key.strip(), value.strip(), cls.defaults.get(key.strip()))
    return cls(**params)


def _parse_value(control: str, key: str, text: str, default: Any) -> Any:
    """Convert ``text`` to the type of the parameter's default."""
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    try:
        if isinstance(default, int):
            return int(text)
        if isinstance(default, float):
            return float(text)
    except ValueError:
        raise ControlError(f"control {control!r}: parameter {key}={text!r} is not a {type(default).__name__}") from None
    return text


def list_controls() -> list[type[Control]]:
    """Registered control classes (built-ins and plugins), sorted by name."""
    return CONTROLS.classes()


def reference_control() -> Control:
    """The reference condition (the one control whose ``reference`` is True, ``full``)."""
    found = [cls for cls in CONTROLS.classes() if cls.reference]
    if len(found) != 1:
        raise ControlError(f"exactly one registered control must be the reference; found "
                           f"{[cls.name for cls in found] or 'none'}")
    return found[0]()
