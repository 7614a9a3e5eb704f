"""The built-in controls: full, text_only, blank, single_slice, shuffled_slices, swapped_volume,
and the counterfactuals mirror_lr, flip_si, flip_ap (volprobe declares each as an entry point of the
group ``volprobe.controls``, as a plugin would).

All act on a :class:`~volprobe.segmentation.volume.Volume` in patient space (RAS+ mm); "axial"
means the array axis closest to the patient's superior–inferior axis (``Volume.axial_axis``).
:data:`STANDARD_CONTROLS` is the set a study runs by default (``--control standard``).

The counterfactuals are array-axis flips, not exact reflections about a patient plane: the voxel data
are reversed along the array axis nearest the patient axis and the affine kept. That is lossless (the
model sees the scanner's own voxels, no interpolation) and cheap; on an oblique grid the mirror plane is
tilted by the angle between that array axis and the patient axis (``axis_angle_deg``, recorded with every
record). Gold answers follow the image the model sees: they are computed from the label map flipped the
same way (:meth:`AxisFlip.transform_labels`), never from what an exact reflection would do.
"""

from __future__ import annotations

import math

import numpy as np

from volprobe.controls.base import (CONTROLS, Control, ControlContext, ControlError, ControlledInput, ExcludedItem,
                                    register_control)
from volprobe.errors import FormatError
from volprobe.items import Item
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.names import mirror_name
from volprobe.segmentation.volume import POSITIVE_SIDE, Volume, array_axis_for

AIR_HU = -1000
#: The controls of a standard study, in report order: every built-in control, ``single_slice``
#: keeping the middle axial slice through the item's structures (so left/right and anterior/posterior
#: stay visible and only through-plane evidence is removed).
STANDARD_CONTROLS = ("full", "text_only", "blank", "single_slice:evidence", "shuffled_slices", "swapped_volume",
                     "mirror_lr", "flip_si", "flip_ap")


@register_control
class Full(Control):
    name = "full"
    statement = "unchanged volume (the reference condition)"
    reference = True

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        return self.output(item, volume)


@register_control
class TextOnly(Control):
    name = "text_only"
    statement = ("removes the image entirely: the model gets only the text "
                 "(how is the adapter's no_image_mode, recorded with each result)")
    needs_volume = False
    removes_image = True

    def apply(self, volume: Volume | None, item: Item, ctx: ControlContext) -> ControlledInput:
        return self.output(item, None, shared=True)


@register_control
class Blank(Control):
    name = "blank"
    statement = "replaces every voxel with air (hu, default -1000 HU), keeping shape and geometry"
    removes_image = True
    defaults = {"hu": float(AIR_HU)}
    main_parameter = "hu"

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        dtype = np.result_type(volume.array.dtype, np.int16)
        return self.output(item, volume.with_array(np.full(volume.shape, self.params["hu"], dtype=dtype)))


@register_control
class SingleSlice(Control):
    """One axial slice as a 1-slice Volume whose affine places it at its true patient position.

    Modes: ``middle`` (slice n // 2), ``evidence`` (the middle of the item's
    ``evidence['axial_slices']`` range: through its structures), ``outside`` (the middle of the
    larger stretch of slices outside that range: none of its structures). Items without the
    tag (evidence/outside; decided by :meth:`gold`, for every model), with a range outside the
    volume, or whose range covers every slice (outside) are excluded from this control. The last
    two need the volume, so blind models (which never read it) do not apply them.
    """

    name = "single_slice"
    statement = ("keeps one axial slice (middle; or through / outside the item's structures): "
                 "removes all through-plane (3D) context")
    defaults = {"mode": "middle"}
    main_parameter = "mode"
    modes = ("middle", "evidence", "outside")

    def check_params(self) -> None:
        if self.params["mode"] not in self.modes:
            raise ControlError(f"single_slice mode {self.params['mode']!r} not one of {self.modes}")
        self.item_dependent = self.params["mode"] != "middle"

    def gold(self, item: Item) -> str:
        """Unchanged; items without the ``axial_slices`` tag are excluded from the evidence/outside modes
        (decided from the item alone, so blind models leave out the same items)."""
        self._tagged_range(item)
        return item.answer

    def _tagged_range(self, item: Item) -> tuple[int, int] | None:
        if self.params["mode"] == "middle":
            return None
        tag = item.evidence.get("axial_slices")
        if not tag or len(tag) != 2:
            raise ExcludedItem(f"single_slice:{self.params['mode']} needs evidence['axial_slices'] = [first, last]")
        try:
            first, last = sorted(int(v) for v in tag)
        except (TypeError, ValueError):
            raise FormatError(f"item {item.id}: evidence axial_slices {tag!r} are not two slice indices") from None
        return first, last

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        axis = volume.axial_axis
        index = self.slice_index(volume.shape[axis], item)
        return self.output(item, extract_slice(volume, axis, index), slice=index, axial_axis=axis)

    def slice_index(self, n: int, item: Item) -> int:
        """The array index of the kept slice along the axial axis (``n`` slices)."""
        tagged = self._tagged_range(item)
        if tagged is None:
            return n // 2
        first, last = tagged
        if first < 0 or last >= n:
            raise ExcludedItem(f"evidence axial_slices [{first}, {last}] lie outside the volume's {n} axial slices")
        if self.params["mode"] == "evidence":
            return (first + last) // 2
        below, above = first, n - 1 - last  # slice counts outside the range on each side
        if below == 0 and above == 0:
            raise ExcludedItem(f"the item's structures span every axial slice (0..{n - 1}); no slice lies outside")
        return (first - 1) // 2 if below >= above else (last + 1 + n - 1) // 2


def extract_slice(volume: Volume, axis: int, index: int) -> Volume:
    """The slice ``index`` along array ``axis`` as a 1-thick Volume; its affine maps voxel 0 to the slice's position."""
    array = take_slices(volume.array, [index], axis)
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, 3] + volume.affine[:3, axis] * index
    return Volume(array=array, affine=affine, source=volume.source, patient=volume.patient,
                  meta={**volume.meta, "single_slice": index})


@register_control
class ShuffledSlices(Control):
    """Axial slices in a random order: ``np.random.default_rng(control_seed).permutation(n)``,
    redrawn (same generator) until it is not the identity. The kept seed reproduces it
    (:func:`slice_permutation`)."""

    name = "shuffled_slices"
    statement = ("permutes the order of axial slices (seeded, recorded): every slice kept, "
                 "superior-inferior order destroyed")

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        seed = ctx.seed_for(self, item)
        axis = volume.axial_axis
        order = slice_permutation(seed, volume.shape[axis])
        return self.output(item, volume.with_array(take_slices(volume.array, order, axis)),
                           seed=seed, axial_axis=axis, n_slices=int(volume.shape[axis]))


def take_slices(array: np.ndarray, order, axis: int) -> np.ndarray:
    """``np.take`` along ``axis`` keeping the memory layout (NIfTI arrays are Fortran-ordered; a
    layout change would cost a full transpose)."""
    if array.flags.f_contiguous and not array.flags.c_contiguous:
        return np.take(array.T, order, axis=array.ndim - 1 - axis).T
    return np.take(array, order, axis=axis)


def slice_permutation(seed: int, n: int) -> np.ndarray:
    """The slice order used by ``shuffled_slices``: output slice k is input slice ``order[k]``."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n)
    while n > 1 and np.array_equal(order, np.arange(n)):
        order = rng.permutation(n)
    return order


@register_control
class SwappedVolume(Control):
    """The volume of another case, drawn with the control seed from the run's cases whose
    patient differs from the item's (``Item.patient``, falling back to the case)."""

    name = "swapped_volume"
    statement = ("replaces the volume with another patient's (seeded): a realistic CT, "
                 "but not this patient's anatomy")

    def check(self, ctx: ControlContext) -> None:
        if len(set(ctx.cases.values())) < 2:
            raise ControlError("swapped_volume needs volumes of at least two different patients in the run; "
                               f"found {len(set(ctx.cases.values()))} patient(s) among {len(ctx.cases)} case(s)")

    def other_cases(self, item: Item, ctx: ControlContext) -> list[str]:
        try:
            return [self.choose_case(item, ctx, ctx.seed_for(self, item))]
        except ControlError:
            return []

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        seed = ctx.seed_for(self, item)
        source = self.choose_case(item, ctx, seed)
        if ctx.load_case is None:
            raise ControlError("swapped_volume needs a context that can load other cases' volumes")
        return self.output(item, ctx.load_case(source), seed=seed, source_case=source,
                           source_patient=ctx.cases[source])

    @staticmethod
    def choose_case(item: Item, ctx: ControlContext, seed: int) -> str:
        patient = item.patient_key
        own = item.case_key
        candidates = sorted(c for c, p in ctx.cases.items() if p != patient and c != own)
        if not candidates:
            raise ControlError(f"swapped_volume: no case of a patient other than {patient!r} in this run")
        return candidates[int(np.random.default_rng(seed).integers(len(candidates)))]


class AxisFlip(Control):
    """Voxel data reversed along the array axis closest to :attr:`patient_axis`, affine kept, so
    the anatomy appears mirrored along that patient axis.

    With an oblique affine the flipped array axis is only approximately the patient axis: the
    mirror plane is tilted by the angle between them (``axis_angle_deg`` in the params). The label
    map is flipped along the same array axis (:meth:`transform_labels`), so golds follow the tilt.
    ``renames_sides``: a left/right mirror renames side-named structures (a reader names them by the
    side they appear on).
    """

    changes_gold = True
    changes_geometry = True
    renames_sides: bool = False

    def apply(self, volume: Volume, item: Item, ctx: ControlContext) -> ControlledInput:
        params = self.params_for(volume.affine)
        return self.output(item, volume.with_array(flip_array(volume.array, params["array_axis"])), **params)

    def params_for(self, affine: np.ndarray) -> dict:
        """The recorded parameters on a grid with this affine: the flipped array axis and its tilt."""
        axis = array_axis_for(affine, self.patient_axis)
        return {"array_axis": axis, "axis_angle_deg": round(axis_angle_deg(affine, axis, self.patient_axis), 3)}

    def transform_labels(self, labels: LabelMap) -> LabelMap:
        """The labels flipped along the same array axis as the CT (affine kept); with :attr:`renames_sides`,
        side-named structures renamed (``kidney_left`` ↔ ``kidney_right``, ids kept)."""
        axis = array_axis_for(labels.affine, self.patient_axis)
        names = {i: mirror_name(n) if self.renames_sides else n for i, n in labels.names.items()}
        return LabelMap(flip_array(labels.labels, axis), labels.affine, names, source=labels.source)

    def keeps_distances(self, affine) -> bool:
        """A flip of one array axis is an isometry of patient space when the affine's columns are orthogonal
        (any spacing; not for a sheared grid)."""
        columns = np.asarray(affine, float)[:3, :3]
        unit = columns / np.linalg.norm(columns, axis=0)
        return bool(np.allclose(unit.T @ unit, np.eye(3), atol=1e-6))


def flip_array(array: np.ndarray, axis: int) -> np.ndarray:
    """``array`` reversed along ``axis``, with positive strides and its memory layout kept."""
    return np.flip(array, axis=axis).copy(order="K")


def axis_angle_deg(affine: np.ndarray, array_axis: int, patient_axis: str) -> float:
    """Angle in degrees between an array axis of a grid (its 4×4 voxel → patient affine) and a patient axis
    ('lr', 'ap', 'si'), ignoring sign."""
    affine = np.asarray(affine, float)
    direction = affine[:3, array_axis] / np.linalg.norm(affine[:3, array_axis])
    component = abs(direction[("lr", "ap", "si").index(patient_axis)])
    return math.degrees(math.acos(min(1.0, float(component))))


def _flip_statement(axis: str, other: str, verb: str) -> str:
    return (f"{verb} voxel data {other}-{POSITIVE_SIDE[axis]} with the affine kept: anatomy appears "
            f"mirrored, {other}/{POSITIVE_SIDE[axis]} answers flip")


@register_control
class MirrorLR(AxisFlip):
    name = "mirror_lr"
    patient_axis = "lr"
    renames_sides = True
    statement = _flip_statement("lr", "left", "mirrors")


@register_control
class FlipSI(AxisFlip):
    name = "flip_si"
    patient_axis = "si"
    statement = _flip_statement("si", "inferior", "flips")


@register_control
class FlipAP(AxisFlip):
    name = "flip_ap"
    patient_axis = "ap"
    statement = _flip_statement("ap", "posterior", "flips")


def geometric_controls() -> list[Control]:
    """Every registered control that ``changes_geometry`` (built-ins and plugins), with default parameters:
    the counterfactuals whose gold answers relations files and question sets carry, computed from the
    transformed label map (built-ins in :data:`STANDARD_CONTROLS` order, then plugins by name)."""
    order = [spec.partition(":")[0] for spec in STANDARD_CONTROLS]
    found = [cls for cls in CONTROLS.classes() if cls.changes_geometry]
    found.sort(key=lambda cls: (order.index(cls.name) if cls.name in order else len(order), cls.name))
    controls = [cls() for cls in found]
    for c in controls:
        if c.item_dependent:
            raise ControlError(f"control {c.name!r} changes geometry but depends on the item; a geometric control "
                               "must transform every item of a case alike")
    return controls


def expand_control_specs(specs) -> list[str]:
    """Control specs with ``standard`` replaced by :data:`STANDARD_CONTROLS` (order kept, repeats dropped)."""
    out: list[str] = []
    for spec in specs:
        for s in (STANDARD_CONTROLS if spec.strip() == "standard" else (spec,)):
            if s not in out:
                out.append(s)
    return out
