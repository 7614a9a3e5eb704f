"""Model-specific preprocessing of a CT in patient space: one preset per model family, with MONAI transforms.

Every function takes a :class:`~volprobe.segmentation.volume.Volume` (voxels + voxel→RAS affine), first
reorients it with MONAI ``Orientation`` (driven by the affine, never by array order) to one fixed
patient orientation, then windows, crops, resizes and scales it the way one model family was trained.
The same anatomy stored RAS, LPS or any other way therefore gives the same model input.

Fixed orientation (:data:`CANONICAL_AXCODES` = ``"LPS"``): array axes ``(x, y, z)`` run towards the
patient's Left, Posterior and Superior. Viewed as ``[z, y, x]`` slices this is the radiological display
convention these models were trained on (M3D and RadFM on Radiopaedia image stacks, Med3DVLM on the
same stacks written with SimpleITK, MedGemma on DICOM slices):

* image rows run anterior → posterior (anterior at the top),
* image columns run patient right → left (the patient's right on the viewer's left),
* slices run inferior → superior (``slice_order`` can reverse this).

A *preset* states a family's whole recipe once (window, 8-bit quantisation, crop, resampling mode,
target shape, slice count, positions and order) with the source it follows; adapters choose one, users
override single fields with ``--model-option`` (:meth:`VolumePreset.with_options`,
:meth:`SlicePreset.with_options`), and :meth:`record` goes into every run record.

Functions (one per input kind): :func:`m3d_volume` (M3D-LaMed, M3D-RAD, Med3DVLM: ``1 x 1 x D x H x W``),
:func:`radfm_volume` (RadFM: ``1 x H x W x D``), :func:`slice_images` (2D VLMs such as MedGemma and
Qwen-VL: RGB slices). Each returns the model input and a small JSON-able ``info`` dict.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from volprobe.errors import InvalidValueError

CANONICAL_AXCODES = "LPS"
#: Labels of the negative/positive ends of RAS x, y, z (MONAI's ``Orientation(labels=...)``).
RAS_LABELS = (("L", "R"), ("P", "A"), ("I", "S"))
ORIENTATION_NOTE = "rows anterior->posterior, columns patient right->left"
SLICE_ORDERS = ("inferior_to_superior", "superior_to_inferior")
RESAMPLE_MODES = ("trilinear", "nearest", "area")
CROPS = ("foreground", "none")
#: MedGemma's CT windows (HU) for the red, green and blue channels (Google-Health/medgemma CT notebook).
MEDGEMMA_WINDOWS: tuple[tuple[float, float], ...] = ((-1024.0, 1024.0), (-135.0, 215.0), (0.0, 80.0))
#: RadFM's depths: a multiple of 4 from 4 to 64 (its ``stack_images`` picks the one nearest the scan's depth).
RADFM_DEPTHS = tuple(range(4, 65, 4))
#: The display window assumed for the 8-bit Radiopaedia exports M3D, Med3DVLM and RadFM were trained on:
#: W400/L40, the usual soft-tissue window of axial CT series (the exports' windows vary by case and are
#: not recorded; override with ``window=lo,hi``, e.g. ``window=-1350,150`` for lung questions).
DISPLAY_WINDOW: tuple[float, float] = (-160.0, 240.0)


# -- option parsing ------------------------------------------------------------------------

def parse_window(window: str | Sequence[float] | None) -> tuple[float, float] | None:
    """``"-1000,1000"`` or ``(-1000, 1000)`` → ``(-1000.0, 1000.0)``; None or ``"none"`` → None (min-max)."""
    if window is None or (isinstance(window, str) and window.strip().lower() in ("none", "minmax", "min-max")):
        return None
    parts = window.split(",") if isinstance(window, str) else list(window)
    try:
        lo, hi = (float(v) for v in parts)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"option window={window!r}: expected 'lo,hi' in HU, or 'none' for min-max") from exc
    if not lo < hi:
        raise InvalidValueError(f"option window={window!r}: lo must be below hi")
    return lo, hi


def parse_windows(windows: str | Sequence[Sequence[float]]) -> tuple[tuple[float, float], ...]:
    """Three HU windows, one per RGB channel: ``"-1024,1024;-135,215;0,80"`` or a sequence of pairs."""
    parts = windows.split(";") if isinstance(windows, str) else list(windows)
    if len(parts) != 3:
        raise InvalidValueError(f"option windows={windows!r}: expected three 'lo,hi' windows separated by ';'")
    return tuple(parse_window(p) or _no_minmax(windows) for p in parts)  # type: ignore[misc]


def _no_minmax(windows) -> tuple[float, float]:
    raise InvalidValueError(f"option windows={windows!r}: every channel needs a window (no 'none')")


def parse_size(size: str | int | Sequence[int], n: int, name: str = "size") -> tuple[int, ...]:
    """``"32,256,256"`` (or one number for all axes) → a tuple of ``n`` positive ints."""
    if isinstance(size, str):
        parts = [p for p in size.replace("x", ",").split(",") if p.strip()]
    elif isinstance(size, int):
        parts = [size]
    else:
        parts = list(size)
    try:
        values = tuple(int(p) for p in parts)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"option {name}={size!r}: expected {n} integers separated by ','") from exc
    if len(values) == 1:
        values = values * n
    if len(values) != n or min(values) < 1:
        raise InvalidValueError(f"option {name}={size!r}: expected {n} positive integers")
    return values


def parse_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    text = str(value).strip().lower()
    if text not in allowed:
        raise InvalidValueError(f"option {name}={value!r} must be one of {', '.join(allowed)}")
    return text


def parse_flag(value: Any, name: str) -> bool:
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on", "8bit"):
        return True
    if text in ("0", "false", "no", "off", "none"):
        return False
    raise InvalidValueError(f"option {name}={value!r}: expected true or false")


# -- presets ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class VolumePreset:
    """The recipe of a 3D model's input volume.

    Attributes:
        name: preset name (recorded).
        source: where the recipe comes from (repository and file).
        size: ``(D, H, W)`` for :func:`m3d_volume`; ``(H, W)`` for :func:`radfm_volume` (depth by RadFM's rule).
        window: HU window mapped to [0, 1] (clipped), or None for min-max of the raw values.
        quantize_8bit: round to 1/255 steps after windowing (the training images were 8-bit exports).
        crop: ``foreground`` (MONAI ``CropForeground``: the box of voxels > 0 after scaling) or ``none``.
        resample: MONAI ``Resize`` mode: ``trilinear``, ``nearest`` (``F.interpolate``'s default) or ``area``.
        slice_order: ``inferior_to_superior`` or ``superior_to_inferior`` along the depth axis.
    """

    name: str
    source: str
    size: tuple[int, ...]
    window: tuple[float, float] | None = DISPLAY_WINDOW
    quantize_8bit: bool = True
    crop: str = "none"
    resample: str = "trilinear"
    slice_order: str = "inferior_to_superior"

    #: ``--model-option`` names this preset reads (see :meth:`with_options`).
    OPTIONS = ("window", "quantize", "crop", "resample", "size", "slice_order")

    def with_options(self, options: Mapping[str, Any]) -> "VolumePreset":
        """A copy with the given ``--model-option`` overrides (names in :attr:`OPTIONS`; None = keep)."""
        changes: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key == "window":
                changes["window"] = parse_window(value)
            elif key == "quantize":
                changes["quantize_8bit"] = parse_flag(value, "quantize")
            elif key == "crop":
                changes["crop"] = parse_choice(value, "crop", CROPS)
            elif key == "resample":
                changes["resample"] = parse_choice(value, "resample", RESAMPLE_MODES)
            elif key == "size":
                changes["size"] = parse_size(value, len(self.size))
            elif key == "slice_order":
                changes["slice_order"] = parse_choice(value, "slice_order", SLICE_ORDERS)
            else:
                raise InvalidValueError(f"unknown preprocessing option {key!r} (known: {', '.join(self.OPTIONS)})")
        overridden = sorted(k for k in options if options[k] is not None)
        if not changes:
            return self
        return dataclasses.replace(self, name=f"{self.name}+{'+'.join(overridden)}", **changes)

    def record(self) -> dict[str, Any]:
        """JSON-able description (recorded with every answer)."""
        out = dataclasses.asdict(self)
        out["size"] = list(self.size)
        out["window"] = None if self.window is None else list(self.window)
        out["intensity"] = ("min-max of the raw values" if self.window is None
                            else f"HU window {list(self.window)} to [0, 1]")
        return out


@dataclass(frozen=True)
class SlicePreset:
    """The recipe of the axial slices shown to a 2D VLM.

    Attributes:
        name, source: as :class:`VolumePreset`.
        slices: number of slices (all of them when the scan has fewer).
        sampling: ``notebook`` (MedGemma's CT notebook: index ``round(i / n * (N - 1))`` for ``i = 1..n``)
            or ``centres`` (the centre of each of ``n`` equal bins).
        windows: one HU window per RGB channel, each mapped to 0..255 and rounded.
        slice_order: order of the slices in the prompt.
        size: resize each slice to ``size x size`` before windowing (None: keep the scan's grid).
        image_format: ``jpeg`` (each slice round-tripped through JPEG, as the notebook sends them) or ``raw``.
    """

    name: str
    source: str
    slices: int = 16
    sampling: str = "centres"
    windows: tuple[tuple[float, float], ...] = MEDGEMMA_WINDOWS
    slice_order: str = "inferior_to_superior"
    size: int | None = None
    image_format: str = "raw"

    OPTIONS = ("slices", "sampling", "windows", "slice_order", "slice_size", "image_format")

    def with_options(self, options: Mapping[str, Any]) -> "SlicePreset":
        changes: dict[str, Any] = {}
        for key, value in options.items():
            if value is None:
                continue
            if key == "slices":
                changes["slices"] = parse_size(value, 1, "slices")[0]
            elif key == "sampling":
                changes["sampling"] = parse_choice(value, "sampling", ("notebook", "centres"))
            elif key == "windows":
                changes["windows"] = parse_windows(value)
            elif key == "slice_order":
                changes["slice_order"] = parse_choice(value, "slice_order", SLICE_ORDERS)
            elif key == "slice_size":
                changes["size"] = parse_size(value, 1, "slice_size")[0]
            elif key == "image_format":
                changes["image_format"] = parse_choice(value, "image_format", ("jpeg", "raw"))
            else:
                raise InvalidValueError(f"unknown preprocessing option {key!r} (known: {', '.join(self.OPTIONS)})")
        if not changes:
            return self
        overridden = sorted(k for k in options if options[k] is not None)
        return dataclasses.replace(self, name=f"{self.name}+{'+'.join(overridden)}", **changes)

    def record(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["windows"] = [list(w) for w in self.windows]
        return out


M3D_PRESET = VolumePreset(
    name="m3d", size=(32, 256, 256), crop="foreground", resample="trilinear",
    source="BAAI-DCAI/M3D Data/process/m3d_cap_data_prepare.py: 8-bit slices / 255, min-max, "
           "CropForeground(), Resize([32, 256, 256], mode='bilinear' = trilinear in 3D)")
MED3DVLM_PRESET = VolumePreset(
    name="med3dvlm", size=(128, 256, 256), crop="foreground", resample="trilinear",
    source="mirthAI/Med3DVLM src/utils/m3d_cap_data_prepare_128.py: 8-bit slices / 255, min-max, "
           "CropForeground(allow_smaller=True), Resize([128, 256, 256], mode='bilinear')")
RADFM_PRESET = VolumePreset(
    name="radfm", size=(512, 512), crop="none", resample="nearest",
    source="chaoyi-wu/RadFM src/Dataset/multi_dataset_test.py stack_images (F.interpolate default nearest, "
           "512 x 512 x nearest multiple of 4 in 4..64) and 3D-RAD RadFM/src/Dataset/dataset/rad_dataset.py "
           "(min-max); training images were 8-bit Radiopaedia exports (src/Dataset/dataset/jpg2nii_data_convert.py)")
MEDGEMMA_SLICES = SlicePreset(
    name="medgemma", slices=85, sampling="notebook", windows=MEDGEMMA_WINDOWS, image_format="jpeg",
    source="Google-Health/medgemma notebooks/high_dimensional_ct_hugging_face.ipynb: 85 slices sampled "
           "round(i/85*(N-1)), i=1..85, windows (-1024,1024), (-135,215), (0,80) rounded to uint8, sent as JPEG")
GENERIC_SLICES = SlicePreset(
    name="generic", slices=16, sampling="centres", windows=MEDGEMMA_WINDOWS, image_format="raw",
    source="volprobe: MedGemma's three CT windows on 16 evenly spaced slices (no published CT recipe "
           "for general VLMs)")


# -- steps ----------------------------------------------------------------------------------

def reorient(volume) -> tuple[np.ndarray, np.ndarray]:
    """The volume's voxels as float32 ``[x, y, z]`` towards patient Left, Posterior, Superior, and the new affine.

    Uses MONAI ``Orientation`` on a ``MetaTensor`` carrying the volume's voxel→RAS affine (oblique
    volumes go to the nearest axes, as nibabel's ``io_orientation`` does; no resampling).
    """
    import torch
    from monai.data import MetaTensor
    from monai.transforms import Orientation

    data = MetaTensor(torch.as_tensor(np.asarray(volume.array, dtype=np.float32))[None],
                      affine=torch.as_tensor(volume.affine, dtype=torch.float64))
    out = Orientation(axcodes=CANONICAL_AXCODES, labels=RAS_LABELS)(data)
    return out[0].numpy(), np.asarray(out.affine, dtype=float)


def _unit_intensity(array: np.ndarray, window: Sequence[float] | None) -> np.ndarray:
    """Scale to [0, 1] in float32: min-max (MONAI ``ScaleIntensity``'s rule; a constant volume gives zeros) or a
    clipped HU window (``ScaleIntensityRange(a_min=lo, a_max=hi, b_min=0, b_max=1, clip=True)``'s rule)."""
    out = np.array(array, dtype=np.float32, copy=True)
    if window is None:
        lo, hi = float(out.min()), float(out.max())
        if hi <= lo:
            return np.zeros_like(out)
    else:
        lo, hi = float(window[0]), float(window[1])
    out -= np.float32(lo)
    out *= np.float32(1.0 / (hi - lo))
    return np.clip(out, 0.0, 1.0, out=out)


def _resize(array_c: np.ndarray, size: Sequence[int], mode: str) -> np.ndarray:
    """MONAI ``Resize`` of a channel-first array to ``size`` with ``mode``."""
    from monai.transforms import Resize

    return np.asarray(Resize(spatial_size=tuple(int(s) for s in size), mode=mode)(array_c), dtype=np.float32)


def _scaled(array: np.ndarray, preset: VolumePreset) -> np.ndarray:
    """Window (or min-max), 8-bit quantisation, then min-max as the authors' ``image - min; / max``."""
    scaled = _unit_intensity(array, preset.window)
    if preset.quantize_8bit:
        scaled *= np.float32(255.0)
        np.round(scaled, out=scaled)
        scaled /= np.float32(255.0)
        scaled = _unit_intensity(scaled, None)
    return scaled


def _crop_foreground(array_c: np.ndarray, crop: str) -> tuple[np.ndarray, str]:
    """MONAI ``CropForeground``'s box (``generate_spatial_bounding_box`` of voxels > 0, margin 0) cut out of a
    channel-first array; an all-zero volume (no foreground) is left whole."""
    from monai.transforms.utils import generate_spatial_bounding_box

    if crop == "none":
        return array_c, "none"
    start, end = generate_spatial_bounding_box(array_c, allow_smaller=True)  # margin 0: the same box either way
    if any(e <= b for b, e in zip(start, end)):
        return array_c, "none (no foreground)"
    cropped = array_c[(slice(None), *(slice(int(b), int(e)) for b, e in zip(start, end)))]
    return np.ascontiguousarray(cropped), f"foreground {list(array_c.shape[1:])} -> {list(cropped.shape[1:])}"


def _depth_first(array_xyz: np.ndarray, slice_order: str) -> np.ndarray:
    """``(x, y, z)`` → ``(z, y, x)`` = (slices, rows, columns), slices in ``slice_order``."""
    dhw = np.transpose(array_xyz, (2, 1, 0))
    return dhw[::-1] if slice_order == "superior_to_inferior" else dhw


def _geometry_info(array: np.ndarray, preset: VolumePreset | SlicePreset) -> dict[str, Any]:
    info = {"orientation": f"{CANONICAL_AXCODES} ({ORIENTATION_NOTE}, slices {preset.slice_order})",
            "source_depth": int(array.shape[2]), "preset": preset.name}
    if isinstance(preset, VolumePreset):
        info["intensity"] = preset.record()["intensity"] + (", 8-bit" if preset.quantize_8bit else "")
    return info


def m3d_volume(volume, preset: VolumePreset = M3D_PRESET):
    """M3D-style input: float32 tensor ``(1, 1, D, H, W)`` in [0, 1].

    ``D, H, W`` = slices (``preset.slice_order``), rows (anterior→posterior), columns (right→left).
    The authors' pipeline (M3D's ``m3d_cap_data_prepare.py``, Med3DVLM's ``..._128.py``) on 8-bit display
    images: window to [0, 1] and round to 8 bits (the exports), min-max, ``CropForeground``, ``Resize``
    (trilinear). A volume with one axial slice is replicated to ``D`` (``info["replicated_depth"]``).
    """
    import torch

    array, _ = reorient(volume)
    info = _geometry_info(array, preset)
    scaled = _depth_first(_scaled(array, preset), preset.slice_order)[None]  # (C, D, H, W)
    cropped, info["crop"] = _crop_foreground(scaled, preset.crop)
    resized = np.clip(_resize(cropped, preset.size, preset.resample), 0.0, 1.0)
    info.update(shape=[1, 1, *(int(s) for s in preset.size)], replicated_depth=info["source_depth"] < int(preset.size[0]))
    return torch.from_numpy(np.ascontiguousarray(resized[None])), info


def radfm_depth(depth: int) -> int:
    """RadFM's target depth: the multiple of 4 in 4..64 nearest ``depth`` (the smaller one on a tie)."""
    return min(RADFM_DEPTHS, key=lambda d: (abs(d - depth), d))


def radfm_volume(volume, preset: VolumePreset = RADFM_PRESET):
    """RadFM input for one scan: float32 tensor ``(1, H, W, D)`` in [0, 1] (one grey channel).

    RadFM takes ``B x S x 3 x H x W x D``; the adapter replicates the grey channel to 3 and adds the
    batch and scan axes when it builds a batch. ``H, W`` = rows (anterior→posterior), columns
    (right→left), ``D`` = slices resized to the multiple of 4 (4..64) nearest the scan's depth, as
    RadFM's ``stack_images`` does, with ``F.interpolate``'s default (nearest). A single slice becomes 4.
    """
    import torch

    array, _ = reorient(volume)
    info = _geometry_info(array, preset)
    depth = radfm_depth(info["source_depth"])
    dhw = _depth_first(_scaled(array, preset), preset.slice_order)
    cropped, info["crop"] = _crop_foreground(dhw[None], preset.crop)
    hwd = np.transpose(cropped, (0, 2, 3, 1))  # (C, H, W, D)
    height, width = preset.size
    resized = np.clip(_resize(hwd, (height, width, depth), preset.resample), 0.0, 1.0)
    info.update(shape=[1, 1, 3, int(height), int(width), depth], replicated_depth=info["source_depth"] < depth)
    return torch.from_numpy(np.ascontiguousarray(resized)), info


def slice_positions(depth: int, count: int, sampling: str = "centres") -> list[int]:
    """Indices of ``min(count, depth)`` slices of a ``depth``-slice scan, increasing.

    ``centres``: the centre of each of ``count`` equal bins (the middle slice for ``count == 1``).
    ``notebook``: MedGemma's CT notebook, ``int(round(i / count * (depth - 1)))`` for ``i = 1..count``
    (Python rounding; the first slice is never taken when the scan has more than ``count``).
    Every slice when ``count >= depth``.
    """
    n = max(1, min(int(count), int(depth)))
    if n == depth:
        return list(range(depth))
    if sampling == "notebook":
        return [int(round(i / count * (depth - 1))) for i in range(1, count + 1)]
    return [int(i) for i in np.floor((np.arange(n) + 0.5) * depth / n).astype(int)]


def _jpeg_round_trip(image: np.ndarray) -> np.ndarray:
    """The RGB array as PIL's default JPEG encoder (quality 75) and decoder give it back."""
    import io

    from PIL import Image

    with io.BytesIO() as buffer:
        Image.fromarray(image).save(buffer, format="jpeg")
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"))


def slice_images(volume, preset: SlicePreset = GENERIC_SLICES):
    """Axial slices as RGB ``uint8`` arrays ``(H, W, 3)``, one HU window per channel (MedGemma's recipe).

    Slices are picked by ``preset.sampling`` along ``preset.slice_order``; each image has rows
    anterior→posterior and columns patient right→left. Channel ``c`` is the CT clipped to
    ``preset.windows[c]``, scaled to 0..255 and rounded (the notebook's ``norm`` and ``np.round``).
    ``preset.size`` resizes each slice (MONAI ``Resize``, area) before windowing; ``image_format="jpeg"``
    round-trips each image through JPEG as the notebook's inline images do.

    Returns:
        (list of arrays, info) where ``info["slice_z_mm"]`` gives each slice's patient z (RAS, mm).
    """
    if len(preset.windows) != 3:
        raise InvalidValueError(f"slice_images needs 3 windows (R, G, B), got {len(preset.windows)}")
    array, affine = reorient(volume)
    info = _geometry_info(array, preset)
    depth = array.shape[2]
    ordered = list(range(depth))[::-1] if preset.slice_order == "superior_to_inferior" else list(range(depth))
    picks = [ordered[p] for p in slice_positions(depth, preset.slices, preset.sampling)]
    lows = np.array([w[0] for w in preset.windows], dtype=np.float32)
    highs = np.array([w[1] for w in preset.windows], dtype=np.float32)
    images = []
    for k in picks:
        sl = np.ascontiguousarray(array[:, :, k].T)  # (y, x): rows A->P, columns R->L
        if preset.size is not None:
            sl = _resize(sl[None], (preset.size, preset.size), "area")[0]
        rgb = (np.clip(sl[..., None], lows, highs) - lows) / (highs - lows) * np.float32(255.0)
        image = np.round(rgb).astype(np.uint8)
        images.append(_jpeg_round_trip(image) if preset.image_format == "jpeg" else image)
    centre = (np.array(array.shape[:2]) - 1) / 2.0
    z_mm = [float((affine @ np.array([centre[0], centre[1], k, 1.0]))[2]) for k in picks]
    info.update(intensity=f"RGB = HU windows {[list(w) for w in preset.windows]} to 0..255", slices=len(picks),
                slice_indices=picks, slice_z_mm=[round(z, 2) for z in z_mm], image_shape=list(images[0].shape),
                image_format=preset.image_format)
    return images, info
