"""Synthetic torso CT phantoms with TotalSegmentator-named masks: volprobe's embedded default data.

The anatomy (:mod:`volprobe.segmentation.phantoms.anatomy`) is defined analytically in patient
RAS+ mm and sampled at voxel centres through an affine, so the same anatomy comes out in any
array layout: ``RAS``, ``LPS``, ``LAS`` or ``oblique`` (RAS axes rotated by a few degrees).
``shape`` and ``spacing`` are given per array axis (i, j, k), which run roughly along the
patient's left–right, anterior–posterior and superior–inferior axes; the grid is centred on
the body axis near L1.

Example::

    ph = make_phantom(seed=3)              # 96×80×84 voxels at 4×4×5 mm, ~0.15 s
    ph.labels.mask("kidney_left")          # TotalSegmentator names; ph.layout["liver"].centre_mm
    write_phantom(ph, "out", "case0")      # case0.nii.gz, case0_seg.nii.gz, case0_layout.json
    segment_phantom_by_threshold(ph.volume)  # reads only the image: the oracle's segmenter
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from volprobe.errors import VolprobeError
from volprobe.jsonio import write_json_atomic
from volprobe.segmentation.masks import LabelMap, save_label_map, totalsegmentator_class_map
from volprobe.segmentation.phantoms.anatomy import (
    CODEBOOK, CUT_BY_DESIGN, TISSUE_CODE, TISSUE_HU, Part, design_torso,
)
from volprobe.segmentation.phantoms.shapes import core_ellipsoid
from volprobe.segmentation.phantoms.segment import segment_phantom_by_threshold, touches_border
from volprobe.segmentation.volume import Volume, save_nifti

ORIENTATIONS = ("RAS", "LPS", "LAS", "oblique")
#: Peak memory of :func:`make_phantom` per voxel (measured 22-33 bytes; float32 HU, int16 CT, uint8 labels
#: and the rasteriser's temporaries), with a margin.
BYTES_PER_VOXEL = 40
DEFAULT_SHAPE = (96, 80, 84)
DEFAULT_SPACING = (4.0, 4.0, 5.0)
#: Rotation (degrees about the patient's S, R, A axes) of the ``oblique`` grid.
OBLIQUE_DEGREES = (10.0, 6.0, 4.0)
LAYOUT_VERSION = 1


class PhantomError(VolprobeError, ValueError):
    """Bad phantom parameters (shape, spacing, orientation, ...)."""


def available_memory() -> int | None:
    """Bytes of memory available to a new allocation (Linux's MemAvailable), None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_memory(shape: Iterable[int]) -> None:
    """Refuse a phantom grid that cannot fit in memory, before anything is allocated or written."""
    shape = tuple(int(n) for n in shape)
    need = int(np.prod(shape, dtype=np.float64) * BYTES_PER_VOXEL)
    have = available_memory()
    if have is not None and need > have:
        raise PhantomError(f"a phantom of {shape[0]}x{shape[1]}x{shape[2]} voxels needs about {need / 2**30:.1f} GiB "
                           f"of memory and {have / 2**30:.1f} GiB are available; use a smaller --shape "
                           f"(the default {DEFAULT_SHAPE[0]} {DEFAULT_SHAPE[1]} {DEFAULT_SHAPE[2]} needs "
                           f"{np.prod(DEFAULT_SHAPE) * BYTES_PER_VOXEL / 2**20:.0f} MiB)")


@dataclass(frozen=True)
class PhantomParams:
    """Everything that determines a phantom (with the seed)."""

    seed: int = 0
    shape: tuple[int, int, int] = DEFAULT_SHAPE
    spacing: tuple[float, float, float] = DEFAULT_SPACING
    orientation: str = "RAS"
    variation: float = 1.0
    situs_inversus: bool = False
    noise_hu: float = 2.0

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        spacing = tuple(float(s) for s in self.spacing)
        if len(shape) != 3 or min(shape) < 2:
            raise PhantomError(f"shape must be three sizes of at least 2 voxels, got {self.shape}")
        if len(spacing) != 3 or not all(np.isfinite(spacing)) or min(spacing) <= 0:
            raise PhantomError(f"spacing must be three positive sizes in mm, got {self.spacing}")
        if self.orientation not in ORIENTATIONS:
            raise PhantomError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {self.orientation!r}")
        if not (np.isfinite(self.variation) and self.variation >= 0):
            raise PhantomError(f"variation must be >= 0 (0 = canonical anatomy, 1 = full), got {self.variation}")
        if not (np.isfinite(self.noise_hu) and self.noise_hu >= 0):
            raise PhantomError(f"noise_hu must be >= 0, got {self.noise_hu}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "seed", int(self.seed))


@dataclass(frozen=True)
class StructureLayout:
    """What the generator knows about one structure (patient RAS+ mm).

    ``kind`` is the solid it was made from (see :class:`~volprobe.segmentation.phantoms.anatomy.Part`).
    ``centre_mm`` is the analytic reference point: an ellipsoid's centre (for a ``lung_lobe``,
    the centre of its whole lung), a tube's mid-length point, a box's centre. ``semi_axes_mm``:
    the semi-axes of the ellipsoid it is cut from (None otherwise). ``bbox_mm``: the analytic
    bounding box (lo, hi). The mask can be smaller where later structures overwrite it, and is
    cut where the field of view ends (``cut_by_fov``, measured on the sampled mask).
    """

    name: str
    label: int
    kind: str
    tissue: str
    hu: int
    centre_mm: tuple[float, float, float]
    semi_axes_mm: tuple[float, float, float] | None
    bbox_mm: tuple[tuple[float, float, float], tuple[float, float, float]]
    voxels: int
    cut_by_fov: bool
    cut_by_design: bool


@dataclass(frozen=True, eq=False)
class Phantom:
    """A synthetic CT (HU, int16), its TotalSegmentator-named label map and the known layout."""

    volume: Volume
    labels: LabelMap
    layout: dict[str, StructureLayout]
    params: PhantomParams
    variants: dict = field(default_factory=dict)

    @property
    def seed(self) -> int:
        return self.params.seed

    def layout_json(self) -> dict[str, Any]:
        """The layout as JSON-ready data (params, designed variants, structures)."""
        return {
            "layout_version": LAYOUT_VERSION,
            "frame": "patient RAS+ mm (+x right, +y anterior, +z superior)",
            "params": asdict(self.params),
            "variants": self.variants,
            "affine": self.volume.affine.tolist(),
            "structures": {name: asdict(s) for name, s in self.layout.items()},
        }


# -- grids ----------------------------------------------------------------------------------

def _rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    """Rotation about the patient's z, then x, then y axes (degrees)."""
    a, b, c = np.radians(degrees)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    ry = np.array([[np.cos(c), 0, np.sin(c)], [0, 1, 0], [-np.sin(c), 0, np.cos(c)]])
    return rz @ rx @ ry


def grid_affine(shape: Iterable[int], spacing: Iterable[float], orientation: str) -> np.ndarray:
    """Voxel → RAS+ mm affine of a phantom grid centred on the patient origin.

    ``RAS``: i→right, j→anterior, k→superior; ``LPS``: i→left, j→posterior, k→superior
    (DICOM order); ``LAS``: i→left (radiological NIfTI); ``oblique``: RAS rotated by
    :data:`OBLIQUE_DEGREES`.
    """
    shape = np.asarray(tuple(shape), float)
    spacing = np.asarray(tuple(spacing), float)
    directions = {"RAS": np.eye(3), "LPS": np.diag([-1.0, -1.0, 1.0]), "LAS": np.diag([-1.0, 1.0, 1.0]),
                  "oblique": _rotation(OBLIQUE_DEGREES)}
    if orientation not in directions:
        raise PhantomError(f"orientation must be one of {', '.join(ORIENTATIONS)}, got {orientation!r}")
    affine = np.eye(4)
    affine[:3, :3] = directions[orientation] * spacing[None, :]
    affine[:3, 3] = -affine[:3, :3] @ ((shape - 1) / 2)
    return affine


def voxel_centres_ras(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """RAS+ mm of every voxel centre, float32 array of shape ``shape + (3,)``."""
    out = np.empty(tuple(shape) + (3,), dtype=np.float32)
    out[...] = affine[:3, 3].astype(np.float32)
    for axis, n in enumerate(shape):
        steps = np.arange(n, dtype=np.float32)[:, None] * affine[:3, axis].astype(np.float32)[None, :]
        out += steps.reshape([n if a == axis else 1 for a in range(3)] + [3])
    return out


def _voxel_block(shape: tuple[int, ...], inv: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """Index ranges of the voxels whose centres may lie in the RAS box [lo, hi] (None if outside the grid)."""
    lo = np.clip(lo, -1e5, 1e5)
    hi = np.clip(hi, -1e5, 1e5)
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1]) for z in (lo[2], hi[2])])
    ijk = corners @ inv[:3, :3].T + inv[:3, 3]
    start = np.maximum(np.floor(ijk.min(axis=0)).astype(int), 0)
    stop = np.minimum(np.ceil(ijk.max(axis=0)).astype(int) + 1, np.asarray(shape))
    if np.any(stop <= start):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(start, stop))


def rasterize(parts: list[Part], shape: tuple[int, int, int], affine: np.ndarray,
              label_ids: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Paint ``parts`` in order at the voxel centres: (tissue codes uint8, label ids uint8)."""
    tissue = np.full(shape, TISSUE_CODE["air"], dtype=np.uint8)
    labels = np.zeros(shape, dtype=np.uint8)
    inv = np.linalg.inv(affine)
    ras_grid = voxel_centres_ras(shape, affine)
    for part in parts:
        block = _voxel_block(shape, inv, *part.shape.bounds())
        if block is None:
            continue
        ras = ras_grid[block]
        inside = part.shape.contains(ras.reshape(-1, 3)).reshape(ras.shape[:3])
        if not inside.any():
            continue
        tissue[block][inside] = TISSUE_CODE[part.tissue]
        labels[block][inside] = label_ids[part.name] if part.name else 0
    return tissue, labels


# -- phantoms -------------------------------------------------------------------------------

def make_phantom(seed: int = 0, *, shape: Iterable[int] = DEFAULT_SHAPE, spacing: Iterable[float] = DEFAULT_SPACING,
                 orientation: str = "RAS", variation: float = 1.0, situs_inversus: bool = False,
                 noise_hu: float = 2.0, patient: str | None = None) -> Phantom:
    """Generate one phantom.

    Args:
        seed: anatomy and noise seed; the same seed gives the same anatomy in every orientation,
            shape and spacing, and identical arrays for identical parameters.
        shape, spacing: voxels and mm per array axis (i, j, k).
        orientation: ``RAS``, ``LPS``, ``LAS`` or ``oblique`` (array layout only, not anatomy).
        variation: 0 = canonical anatomy; 1 = sizes/positions jittered and the varying
            relations are fair coins (see :func:`~volprobe.segmentation.phantoms.anatomy.design_torso`).
        situs_inversus: mirror the organs left↔right; ``*_left`` structures stay on the patient's left.
        noise_hu: SD of the Gaussian noise added to the HU values.
        patient: patient id stored on the Volume.
    """
    params = PhantomParams(seed=seed, shape=tuple(shape), spacing=tuple(spacing), orientation=orientation,
                           variation=variation, situs_inversus=situs_inversus, noise_hu=noise_hu)
    check_memory(params.shape)
    anatomy_rng, noise_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(params.seed).spawn(2))
    design = design_torso(anatomy_rng, params.variation, params.situs_inversus)
    class_ids = {name: i for i, name in totalsegmentator_class_map("total").items()}
    named = [p.name for p in design.parts if p.name]
    unknown = sorted(set(named) - set(class_ids))
    if unknown:  # pragma: no cover - guards the anatomy table
        raise PhantomError(f"phantom structures without a TotalSegmentator name: {unknown}")
    affine = grid_affine(params.shape, params.spacing, params.orientation)
    tissue, labels = rasterize(design.parts, params.shape, affine, class_ids)

    hu = TISSUE_HU[tissue].astype(np.float32)
    if params.noise_hu > 0:
        hu += noise_rng.normal(0.0, params.noise_hu, size=hu.shape).astype(np.float32)
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    volume = Volume(array=array, affine=affine, source=None, patient=patient,
                    meta={"phantom_seed": params.seed, "orientation": params.orientation})

    counts = np.bincount(labels.ravel(), minlength=256)
    layout: dict[str, StructureLayout] = {}
    for part in design.parts:
        if not part.name or counts[class_ids[part.name]] == 0:
            continue
        lo, hi = part.shape.bounds()
        core = core_ellipsoid(part.shape)
        layout[part.name] = StructureLayout(
            name=part.name, label=class_ids[part.name], kind=part.kind, tissue=part.tissue,
            hu=int(TISSUE_HU[TISSUE_CODE[part.tissue]]),
            centre_mm=tuple(round(float(c), 3) for c in part.shape.reference_point()),
            semi_axes_mm=tuple(round(float(v), 3) for v in core.semi) if core is not None else None,
            bbox_mm=(tuple(round(float(v), 3) for v in lo), tuple(round(float(v), 3) for v in hi)),
            voxels=int(counts[class_ids[part.name]]),
            cut_by_fov=touches_border(labels == class_ids[part.name]),
            cut_by_design=part.name in CUT_BY_DESIGN,
        )
    present = {class_ids[n]: n for n in layout}
    label_map = LabelMap(labels=labels, affine=affine, names=dict(sorted(present.items())), source=None)
    return Phantom(volume=volume, labels=label_map, layout=layout, params=params, variants=design.variants)


def write_phantom(phantom: Phantom, out_dir: str | Path, case_id: str) -> dict[str, Path]:
    """Write ``<case>.nii.gz`` (CT, int16 HU), ``<case>_seg.nii.gz`` (TotalSegmentator multilabel,
    names in the NIfTI header extension) and ``<case>_layout.json``; returns their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"ct": out_dir / f"{case_id}.nii.gz", "seg": out_dir / f"{case_id}_seg.nii.gz",
             "layout": out_dir / f"{case_id}_layout.json"}
    save_nifti(phantom.volume, paths["ct"])
    # the whole class map, as TotalSegmentator writes it
    save_label_map(phantom.labels, paths["seg"], names=totalsegmentator_class_map("total"))
    layout = {"case_id": case_id, "patient": phantom.volume.patient, **phantom.layout_json()}
    write_json_atomic(paths["layout"], layout, indent=1)
    return paths


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` in a set generated with ``seed`` (independent streams, no collisions)."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1)[0])


def generate_phantoms(out_dir: str | Path, n: int, seed: int = 0, *, shape: Iterable[int] = DEFAULT_SHAPE,
                      spacing: Iterable[float] = DEFAULT_SPACING, orientation: str = "RAS",
                      variation: float = 1.0, situs_inversus: bool = False, noise_hu: float = 2.0,
                      progress: bool = True, overwrite: bool = False) -> list[dict[str, Any]]:
    """Write ``n`` phantoms to ``out_dir`` plus ``manifest.json``; returns one record per case.

    Case ``i`` is ``phantom_s<seed>_<i>`` with patient ``phantom_patient_s<seed>_<i>`` (one scan
    per patient) and seed :func:`case_seed`. ``orientation='mixed'`` cycles RAS, LPS, LAS,
    oblique. Cases already written with the same parameters are kept (a stopped run resumes; a larger
    ``n`` adds cases).

    Raises:
        PhantomError: the folder holds phantoms made with other settings (its manifest's, or a case's files
            under an id this call would write), unless ``overwrite``: items made from them would silently point
            at new volumes (``probe run`` would then refuse them).
    """
    from tqdm import tqdm

    from volprobe.manifest import sha256_file, write_manifest

    if int(n) < 1:
        raise PhantomError(f"n must be at least 1, got {n}")
    if orientation not in ORIENTATIONS + ("mixed",):
        raise PhantomError(f"orientation must be one of {', '.join(ORIENTATIONS)} or mixed, got {orientation!r}")
    out_dir = Path(out_dir)
    common = dict(shape=tuple(shape), spacing=tuple(spacing), variation=variation,
                  situs_inversus=situs_inversus, noise_hu=noise_hu)
    PhantomParams(seed=seed, **common)  # check the parameters before writing anything
    check_memory(common["shape"])
    settings = {"orientation": orientation, **common, "layout_version": LAYOUT_VERSION}
    plan = []
    for i in range(int(n)):
        case_id, patient = f"phantom_s{seed}_{i:03d}", f"phantom_patient_s{seed}_{i:03d}"
        orient = ORIENTATIONS[i % len(ORIENTATIONS)] if orientation == "mixed" else orientation
        plan.append((case_id, patient, orient, PhantomParams(seed=case_seed(seed, i), orientation=orient, **common)))
    if not overwrite:
        _refuse_other_settings(out_dir, seed, settings, plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    cases = []
    for case_id, patient, orient, params in tqdm(plan, desc="phantoms", unit="case", disable=not progress):
        paths = _existing_case(out_dir, case_id, params)
        if paths is None:
            ph = make_phantom(params.seed, orientation=orient, patient=patient, **common)
            paths = write_phantom(ph, out_dir, case_id)
        cases.append({"case_id": case_id, "patient": patient, "seed": params.seed, "orientation": orient,
                      "files": {k: {"path": p.name, "sha256": sha256_file(p)} for k, p in paths.items()}})
    write_manifest(out_dir, "probe phantom", seed=seed, parameters={"n": int(n), **settings},
                   extra={"cases": cases, "codebook": {t.key: t.hu for t in CODEBOOK}})
    return cases


def _case_paths(out_dir: Path, case_id: str) -> dict[str, Path]:
    return {"ct": out_dir / f"{case_id}.nii.gz", "seg": out_dir / f"{case_id}_seg.nii.gz",
            "layout": out_dir / f"{case_id}_layout.json"}


def _stored_params(paths: dict[str, Path]) -> dict | None:
    """The parameters a case's layout file states (None when unreadable or of another layout version)."""
    try:
        stored = json.loads(paths["layout"].read_text())
    except (OSError, ValueError):
        return None
    return stored.get("params") if stored.get("layout_version") == LAYOUT_VERSION else None


def _existing_case(out_dir: Path, case_id: str, params: PhantomParams) -> dict[str, Path] | None:
    paths = _case_paths(out_dir, case_id)
    if not all(p.exists() for p in paths.values()):
        return None
    return paths if _stored_params(paths) == json.loads(json.dumps(asdict(params))) else None


def _refuse_other_settings(out_dir: Path, seed: int, settings: dict, plan: list) -> None:
    """Raise :class:`PhantomError` when ``out_dir`` holds phantoms made with other settings (see
    :func:`generate_phantoms`): a ``probe phantom`` manifest with another seed or other parameters (``n``
    aside), or a case this call would write whose layout states other parameters."""
    hint = "use another --out folder, or pass --overwrite to replace them"
    manifest = out_dir / "manifest.json"
    if manifest.is_file():
        try:
            old = json.loads(manifest.read_text())
        except (OSError, ValueError):
            old = None
        if isinstance(old, dict) and str(old.get("command", "")).startswith("probe phantom"):
            before = {k: v for k, v in (old.get("parameters") or {}).items() if k != "n"}
            now = json.loads(json.dumps(settings))
            if old.get("seed") != seed or before != now:
                diff = [f"seed {old.get('seed')} -> {seed}"] if old.get("seed") != seed else []
                diff += [f"{k} {before.get(k)!r} -> {now.get(k)!r}" for k in sorted(set(before) | set(now))
                         if before.get(k) != now.get(k)]
                raise PhantomError(f"{out_dir} holds phantoms made with other settings ({'; '.join(diff)}); "
                                   f"items made from them would point at new volumes: {hint}")
    for case_id, _, _, params in plan:  # a case without its layout (written last) is an unfinished one: redone
        paths = _case_paths(out_dir, case_id)
        if paths["layout"].exists() and _stored_params(paths) != json.loads(json.dumps(asdict(params))):
            raise PhantomError(f"{out_dir} holds case {case_id} made with other settings (see "
                               f"{paths['layout'].name}); items made from it would point at a new volume: {hint}")


def load_layout(path: str | Path) -> dict[str, Any]:
    """Read a ``<case>_layout.json`` written by :func:`write_phantom`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"phantom layout not found: {path}")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise PhantomError(f"{path}: not a phantom layout JSON ({exc})") from exc


__all__ = ["Phantom", "PhantomParams", "StructureLayout", "PhantomError", "make_phantom", "write_phantom",
           "generate_phantoms", "segment_phantom_by_threshold", "grid_affine", "case_seed", "load_layout", "ORIENTATIONS"]
