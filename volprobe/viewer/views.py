"""What a control presented, as images: the controlled volume, its masks, planes in display orientation.

:func:`present` applies a control to an item's volume exactly as a run does (the same
:meth:`~volprobe.controls.Control.apply`, the same context and seed) and, when the item's masks are known,
moves them with it so the structures the question names can be outlined where they are in the image
the model got:

- a control that ``changes_geometry`` moves the masks with its own :meth:`~volprobe.controls.Control.transform_labels`
  (nearest neighbour, side names swapped by a left/right mirror);
- a control that passes the volume through unchanged keeps them;
- any other control that only moves or selects voxels (one slice, permuted slices, another case's volume)
  is applied to the label map itself, as an integer volume, with a context that loads other cases' label
  maps: the labels then sit exactly where the control put the voxels. A control whose output on a label
  map is not a label map of the presented grid (one that computes new values) gets no outlines;
- a control that ``removes_image`` shows what it presents (e.g. an empty volume), never outlines.

:func:`plane_view` cuts a plane through a presented volume in radiological display orientation, derived
from the affine (never from array order): axial with the patient's right on the viewer's left and
anterior at the top; coronal with the right on the left and superior at the top; sagittal with anterior
on the left and superior at the top. On an oblique grid the plane is the array plane nearest the patient
plane (no resampling). Pixel sizes are kept (mm), so renderings keep the anatomy's proportions.

:class:`DisplayWindow` is the intensity mapping a model's preprocessing used (read from its records),
and :func:`render` turns a plane into an RGB image with the structures outlined
(:data:`OUTLINE_COLOURS`, the Okabe–Ito colour-blind-safe palette).
"""

from __future__ import annotations

import io
import json
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from volprobe.controls import Control, ControlContext, ControlledInput
from volprobe.items import Item
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.volume import Volume

#: Outline colours of the first, second, ... structure a question names (Okabe–Ito: orange, sky blue,
#: bluish green, reddish purple, vermillion, yellow); distinguishable with any common colour-vision deficiency.
OUTLINE_COLOURS: tuple[str, ...] = ("#E69F00", "#56B4E9", "#009E73", "#CC79A7", "#D55E00", "#F0E442")
#: The display planes: (patient axis normal to the plane, axis of the image rows, axis of the columns),
#: with the patient direction shown at the top / on the left (radiological convention).
PLANES: dict[str, tuple[str, str, str]] = {"axial": ("si", "ap", "lr"), "coronal": ("ap", "si", "lr"),
                                           "sagittal": ("lr", "si", "ap")}
_FIRST_CODE = {"ap": "A", "si": "S", "lr": "R"}  # the end of each patient axis drawn at the top / on the left
_AXIS_OF_CODE = {"L": "lr", "R": "lr", "A": "ap", "P": "ap", "S": "si", "I": "si"}
#: Soft-tissue window (W400/L40, HU) for models whose records state no preprocessing (reference models).
SOFT_TISSUE_WINDOW: tuple[float, float] = (-160.0, 240.0)


# -- intensity ----------------------------------------------------------------------------

@dataclass(frozen=True)
class DisplayWindow:
    """How voxel values map to display intensity.

    Attributes:
        windows: one ``(lo, hi)`` HU window (greyscale) or three (red, green, blue, as MedGemma's slices);
            None for min-max of the presented volume's values.
        label: a short description ("HU -160..240 (m3d preset)").
    """

    windows: tuple[tuple[float, float], ...] | None
    label: str

    @classmethod
    def from_generation(cls, generation: Mapping[str, Any] | None) -> "DisplayWindow":
        """The window a record's decoding settings state: ``preprocessing.window`` of the 3D presets (None there:
        min-max), ``slices.windows`` of the slice presets (RGB), else the soft-tissue window."""
        generation = generation or {}
        pre, slices = generation.get("preprocessing"), generation.get("slices")
        if isinstance(pre, Mapping) and "window" in pre:
            name = pre.get("name") or "preprocessing"
            if pre["window"] is None:
                return cls(None, f"min-max ({name} preset)")
            lo, hi = (float(v) for v in pre["window"])
            return cls(((lo, hi),), f"HU {lo:g}..{hi:g} ({name} preset)")
        if isinstance(slices, Mapping) and slices.get("windows"):
            windows = tuple((float(lo), float(hi)) for lo, hi in slices["windows"])
            text = " / ".join(f"{lo:g}..{hi:g}" for lo, hi in windows)
            return cls(windows, f"RGB = HU {text} ({slices.get('name') or 'slices'} preset)")
        lo, hi = SOFT_TISSUE_WINDOW
        return cls(((lo, hi),), f"HU {lo:g}..{hi:g} (soft tissue; no preset recorded)")

    def to_uint8(self, plane: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
        """``plane`` (HU) as uint8 ``(H, W)`` (one window, min-max) or ``(H, W, 3)`` (three windows);
        ``value_range``: the presented volume's (min, max), for min-max."""
        plane = np.asarray(plane, dtype=np.float32)
        windows = self.windows or (value_range,)
        channels = []
        for lo, hi in windows:
            span = hi - lo
            scaled = (plane - lo) / span if span > 0 else np.zeros_like(plane)
            channels.append(np.round(np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8))
        return channels[0] if len(channels) == 1 else np.stack(channels, axis=-1)


# -- what a control presented -----------------------------------------------------------------

@dataclass
class Presentation:
    """One control's input for one item, with the masks where the control put the anatomy.

    Attributes:
        control: the control's label.
        cin: what :meth:`Control.apply` returned (``cin.volume`` None: no image).
        labels: the item's label map moved as the control moved the voxels, on ``cin.volume``'s grid
            (None: no masks, or the control's output is not anatomy that masks can follow).
        note: what a reader should know (no image, another case's volume, why there are no outlines).
        value_range: (min, max) of the presented volume (for min-max windows).
    """

    control: str
    cin: ControlledInput
    labels: LabelMap | None = None
    note: str = ""
    value_range: tuple[float, float] = (0.0, 0.0)

    @property
    def volume(self) -> Volume | None:
        return self.cin.volume


class LabelContext(ControlContext):
    """A :class:`ControlContext` whose ``load_case`` gives other cases' label maps as integer volumes (for
    controls applied to masks); remembers the names of the label maps it gave."""

    def __init__(self, ctx: ControlContext, load_labels: Callable[[str], LabelMap | None]):
        super().__init__(seed=ctx.seed, cases=ctx.cases, load_case=self._load)
        self._load_labels = load_labels
        self.names: dict[int, str] | None = None
        self.loaded: list[str] = []

    def _load(self, case: str) -> Volume:
        labels = self._load_labels(case)
        if labels is None:
            raise LookupError(f"no masks for case {case}")
        self.loaded.append(case)
        self.names = dict(labels.names)
        return labels.as_volume_grid()


def present(control: Control, item: Item, volume: Volume | None, labels: LabelMap | None, ctx: ControlContext,
            load_labels: Callable[[str], LabelMap | None] = lambda case: None) -> Presentation:
    """What ``control`` gives a model for ``item`` (whose own volume and masks are ``volume``, ``labels``), and
    the masks moved with it (see the module docstring). ``ctx`` as in the run (its seed is the run's)."""
    cin = control.apply(volume if control.needs_volume else None, item, ctx)
    out = Presentation(control.label, cin)
    if cin.volume is None:
        out.note = "no image"
        return out
    array = cin.volume.array
    out.value_range = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if control.removes_image:
        out.note = "the control removes the anatomy"
        return out
    if volume is not None and cin.volume.source and volume.source and cin.volume.source != volume.source:
        out.note = f"another scan: {Path(cin.volume.source).name}"
    if labels is None:
        out.note = "; ".join(filter(None, [out.note, "no masks: no outlines"]))
    elif control.changes_geometry:
        out.labels = control.transform_labels(labels)
    elif cin.volume is volume:
        out.labels = labels
    else:
        out.labels, why = _labels_through(control, item, labels, cin, ctx, load_labels)
        if out.labels is None:
            out.note = "; ".join(filter(None, [out.note, why]))
    return out


def _labels_through(control: Control, item: Item, labels: LabelMap, cin: ControlledInput, ctx: ControlContext,
                    load_labels: Callable[[str], LabelMap | None]) -> tuple[LabelMap | None, str]:
    """The label map put through the control itself (for controls that move or select voxels)."""
    lctx = LabelContext(ctx, load_labels)
    try:
        moved = control.apply(labels.as_volume_grid(), item, lctx)
    except LookupError as exc:
        return None, f"{exc}: no outlines"
    if moved.volume is None or moved.volume.shape != cin.volume.shape \
            or not np.allclose(moved.volume.affine, cin.volume.affine, atol=1e-3):
        return None, "the control's output is not on a grid masks can follow: no outlines"
    array = moved.volume.array
    names = lctx.names if lctx.loaded else dict(labels.names)
    if not np.issubdtype(array.dtype, np.integer) or not set(np.unique(array).tolist()) <= set(names) | {0}:
        return None, "the control computes new voxel values: no outlines"
    return LabelMap(array, moved.volume.affine, names, source=labels.source), ""


# -- planes ----------------------------------------------------------------------------------

@dataclass
class PlaneView:
    """One plane of a presented volume in display orientation.

    Attributes:
        plane: ``axial``, ``coronal`` or ``sagittal``.
        index: the array index of the plane along its normal axis (in the presented volume).
        count: the number of planes along that axis.
        image: display-oriented values (HU), rows top to bottom.
        masks: structure name → boolean mask, display-oriented like ``image``.
        pixel_mm: (row height, column width) in mm.
    """

    plane: str
    index: int
    count: int
    image: np.ndarray
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    pixel_mm: tuple[float, float] = (1.0, 1.0)


def display_axes(volume_affine: np.ndarray, plane: str) -> tuple[int, int, bool, int, bool]:
    """``(normal axis, row axis, flip rows, column axis, flip columns)`` of ``plane`` on a grid with this
    voxel → RAS affine: the array axes nearest the patient axes of :data:`PLANES`, flipped so that
    anterior / superior is at the top and the patient's right (anterior, sagittal) on the left."""
    import nibabel as nib

    codes = nib.aff2axcodes(volume_affine)
    axis_of = {_AXIS_OF_CODE[c]: i for i, c in enumerate(codes)}
    normal, rows, cols = (axis_of[a] for a in PLANES[plane])
    # index increasing towards the end drawn first (top/left) must run backwards
    return normal, rows, codes[rows] == _FIRST_CODE[PLANES[plane][1]], cols, codes[cols] == _FIRST_CODE[PLANES[plane][2]]


def _cut(array: np.ndarray, normal: int, index: int, rows: int, flip_rows: bool, cols: int, flip_cols: bool) -> np.ndarray:
    plane = array[(slice(None),) * normal + (index,)]  # a view, no copy
    remaining = [a for a in range(3) if a != normal]
    plane = plane if remaining.index(rows) == 0 else plane.T
    if flip_rows:
        plane = plane[::-1]
    if flip_cols:
        plane = plane[:, ::-1]
    return plane


def plane_view(p: Presentation, plane: str, index: int, structures: Sequence[str]) -> PlaneView:
    """The ``plane`` at array ``index`` (along its normal) of a presentation's volume, with the named
    structures' masks where the presentation has masks."""
    vol = p.volume
    normal, rows, flip_r, cols, flip_c = display_axes(vol.affine, plane)
    index = int(np.clip(index, 0, vol.shape[normal] - 1))
    view = PlaneView(plane, index, vol.shape[normal], _cut(vol.array, normal, index, rows, flip_r, cols, flip_c),
                     pixel_mm=(vol.spacing[rows], vol.spacing[cols]))
    if p.labels is not None:
        cut = _cut(p.labels.labels, normal, index, rows, flip_r, cols, flip_c)
        for name in structures:
            ids = [i for i, n in p.labels.names.items() if n == name]
            if ids:
                view.masks[name] = np.isin(cut, ids)
    return view


_BOXES: "weakref.WeakKeyDictionary[LabelMap, list]" = weakref.WeakKeyDictionary()


def _boxes(labels: LabelMap) -> list:
    """Bounding boxes of every label id (``scipy.ndimage.find_objects``: one pass over the array), cached per map."""
    from scipy.ndimage import find_objects

    if labels not in _BOXES:
        _BOXES[labels] = find_objects(labels.labels)
    return _BOXES[labels]


def structure_extent(labels: LabelMap, names: Sequence[str], axis: int) -> tuple[int, int] | None:
    """The index range along array ``axis`` that every named structure present reaches (their intersection),
    else the range of the first one present; None when none is present."""
    boxes = _boxes(labels)
    ranges = []
    for name in names:
        hits = [boxes[i - 1][axis] for i, n in labels.names.items() if n == name and 0 < i <= len(boxes)
                and boxes[i - 1] is not None]
        if hits:
            ranges.append((min(h.start for h in hits), max(h.stop for h in hits) - 1))
    if not ranges:
        return None
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    return (lo, hi) if lo <= hi else ranges[0]


def evidence_point(volume: Volume, labels: LabelMap | None, item: Item) -> dict[str, int]:
    """Array index per patient axis ('lr', 'ap', 'si') at which a reader looks for the item's evidence in its
    own volume: the middle of the range the named structures share along that axis (from the masks), else
    for the axial axis the middle of ``evidence['axial_slices_shared']`` or ``evidence['axial_slices']``,
    else the middle of the volume."""
    point = {}
    structures = list(item.evidence.get("structures") or [])
    for axis_name in ("lr", "ap", "si"):
        axis = volume.array_axis(axis_name)
        extent = structure_extent(labels, structures, axis) if labels is not None and structures else None
        if extent is None and axis_name == "si":
            tagged = item.evidence.get("axial_slices_shared") or item.evidence.get("axial_slices")
            if tagged and len(tagged) == 2:
                extent = tuple(sorted(int(v) for v in tagged))
        point[axis_name] = (extent[0] + extent[1]) // 2 if extent else volume.shape[axis] // 2
    return point


def plane_index(p: Presentation, plane: str, item: Item, original: Volume, reference_point: Mapping[str, int],
                control: Control) -> int:
    """Where to cut ``plane`` in a presented volume to show the evidence as this control presented it.

    On the item's own grid, a control that keeps the geometry is cut at the reference point (what the model
    saw there: the same anatomy, an empty image, another slice after a permutation). A control that moves the
    anatomy is cut through the named structures in the moved masks, or without masks through the reference
    point moved by its :meth:`~Control.transform_labels`. On another grid (another patient's volume) the cut goes
    through the named structures of that volume's masks, else at the same relative position."""
    vol = p.volume
    normal_axis = PLANES[plane][0]
    normal = vol.array_axis(normal_axis)
    same_grid = original.same_grid(vol.shape, vol.affine)
    if same_grid and not control.changes_geometry:
        return reference_point[normal_axis]
    structures = list(item.evidence.get("structures") or [])
    if p.labels is not None and structures:
        extent = structure_extent(p.labels, structures, normal)
        if extent is not None:
            return (extent[0] + extent[1]) // 2
    if same_grid:
        return _moved_point(control, original, reference_point)[normal_axis]
    k, n = reference_point[normal_axis], original.shape[original.array_axis(normal_axis)]
    return int(round(k / max(n - 1, 1) * (vol.shape[normal] - 1)))


def _moved_point(control: Control, volume: Volume, point: Mapping[str, int]) -> dict[str, int]:
    """The reference point after a geometric control: one marked voxel moved by its ``transform_labels``."""
    marker = np.zeros(volume.shape, dtype=np.uint8)
    ijk = [0, 0, 0]
    for axis_name, index in point.items():
        ijk[volume.array_axis(axis_name)] = index
    marker[tuple(ijk)] = 1
    moved = control.transform_labels(LabelMap(marker, volume.affine, {1: "evidence"})).labels
    found = np.argwhere(moved == 1)
    if not len(found):
        return dict(point)
    return {axis_name: int(found[0][volume.array_axis(axis_name)]) for axis_name in point}


def planes_for(item: Item) -> list[str]:
    """The planes shown for an item: axial always; coronal too where the answer depends on the
    superior–inferior axis (evidence axes include 'si')."""
    return ["axial", "coronal"] if "si" in (item.evidence.get("axes") or []) else ["axial"]


# -- rendering -------------------------------------------------------------------------------

def display_size(view: PlaneView, longest_px: int) -> tuple[int, int]:
    """(height, width) in pixels of a rendering whose longer side is ``longest_px``, proportions in mm kept."""
    h_mm = view.image.shape[0] * view.pixel_mm[0]
    w_mm = view.image.shape[1] * view.pixel_mm[1]
    scale = longest_px / max(h_mm, w_mm, 1e-6)
    return max(1, int(round(h_mm * scale))), max(1, int(round(w_mm * scale)))


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _compose(view: PlaneView, window: DisplayWindow, value_range: tuple[float, float], structures: Sequence[str],
             longest_px: int) -> tuple[np.ndarray, list[tuple[np.ndarray, str]]]:
    """The windowed, resized image (uint8, greyscale or RGB) and each outline (pixel mask, colour)."""
    from PIL import Image
    from scipy.ndimage import binary_erosion

    h, w = display_size(view, longest_px)
    pixels = window.to_uint8(view.image, value_range)
    mode = "L" if pixels.ndim == 2 else "RGB"
    image = np.asarray(Image.fromarray(np.ascontiguousarray(pixels), mode).resize((w, h), Image.BILINEAR))
    edges = []
    for k, name in enumerate(structures):
        mask = view.masks.get(name)
        if mask is None or not mask.any():
            continue
        big = np.asarray(Image.fromarray(np.ascontiguousarray(mask, dtype=np.uint8) * 255, "L").resize(
            (w, h), Image.NEAREST)) > 0
        edges.append((big & ~binary_erosion(big, border_value=0), OUTLINE_COLOURS[k % len(OUTLINE_COLOURS)]))
    return image, edges


def render(view: PlaneView, window: DisplayWindow, value_range: tuple[float, float], structures: Sequence[str],
           longest_px: int = 128) -> np.ndarray:
    """An RGB uint8 rendering of ``view``: windowed, resized to mm proportions (bilinear; masks nearest) with
    the longer side ``longest_px``, each named structure outlined (one pixel) in its colour of
    :data:`OUTLINE_COLOURS` (by its position in ``structures``)."""
    image, edges = _compose(view, window, value_range, structures, longest_px)
    rgb = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image.copy()
    for edge, colour in edges:
        rgb[edge] = _hex_rgb(colour)
    return rgb


#: Grey levels of a greyscale thumbnail's palette (the other palette entries are the outline colours).
_GREYS = 256 - len(OUTLINE_COLOURS)


def thumbnail_png(view: PlaneView, window: DisplayWindow, value_range: tuple[float, float],
                  structures: Sequence[str], longest_px: int = 128) -> tuple[bytes, tuple[int, int]]:
    """:func:`render` as a small PNG, and its (height, width): greyscale windows give a palette image of
    250 grey levels and the outline colours (about a third the size of RGB), RGB windows an RGB image."""
    from PIL import Image

    image, edges = _compose(view, window, value_range, structures, longest_px)
    if image.ndim == 2:
        index = np.round(image.astype(np.float32) * ((_GREYS - 1) / 255.0)).astype(np.uint8)
        colours = [_hex_rgb(c) for c in OUTLINE_COLOURS]
        for edge, colour in edges:
            index[edge] = _GREYS + OUTLINE_COLOURS.index(colour)
        out = Image.fromarray(index, "P")
        greys = np.round(np.arange(_GREYS) * (255.0 / (_GREYS - 1))).astype(int)
        out.putpalette([v for g in greys for v in (g, g, g)] + [v for c in colours for v in c])
    else:
        rgb = image.copy()
        for edge, colour in edges:
            rgb[edge] = _hex_rgb(colour)
        out = Image.fromarray(rgb, "RGB")
    buffer = io.BytesIO()
    out.save(buffer, format="PNG")
    return buffer.getvalue(), image.shape[:2]


def params_differ(cin: ControlledInput, recorded: Mapping[str, Any], recorded_seed: int | None) -> list[str]:
    """The control parameters (and seed) in which a recomputed input differs from what a run recorded."""
    diff = [f"{k}: recorded {recorded[k]!r}, recomputed {cin.params[k]!r}" for k in sorted(set(cin.params) & set(recorded))
            if json.dumps(cin.params[k], default=str) != json.dumps(recorded[k], default=str)]
    if recorded_seed is not None and cin.seed is not None and int(recorded_seed) != int(cin.seed):
        diff.append(f"seed: recorded {recorded_seed}, recomputed {cin.seed}")
    return diff
