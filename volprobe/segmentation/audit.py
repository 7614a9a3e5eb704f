"""The body midline and the laterality audit.

A structure whose TotalSegmentator name says ``left`` must lie on the patient's left of the
midline (smaller RAS x). When named structures sit on the wrong side, the image header is wrong
or the voxel data were mirrored: every left/right answer from that case would be wrong.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from volprobe.segmentation.anatomy import StructureStats
from volprobe.segmentation.names import is_vertebra, side_of


@dataclass(frozen=True)
class Midline:
    """Patient x (RAS mm) of the body's midsagittal plane, what it was estimated from, and how uncertain it is.

    ``uncertainty_mm``: the spread (largest minus smallest x) of the estimates that were available —
    spinal cord centroid, vertebrae centroid (voxel-weighted), body centre — so every one of them lies
    within ``x_mm ± uncertainty_mm``; 0 when only one was available. With none of them (source
    ``labels``: the labels' centre of mass) it is the labels' whole left-right span. Relations judged
    against the midline must hold for every midline within that band
    (:mod:`volprobe.segmentation.relations.stack`), so none is judged against a guessed one.
    ``estimates``: source → x (mm) of each estimate.
    """

    x_mm: float
    source: str  # 'spinal_cord', 'vertebrae', 'body', 'labels'
    uncertainty_mm: float = 0.0
    estimates: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return {"x_mm": self.x_mm, "source": self.source, "uncertainty_mm": self.uncertainty_mm,
                "estimates": dict(self.estimates)}

    @classmethod
    def from_dict(cls, d: dict) -> "Midline":
        return cls(float(d["x_mm"]), d["source"], float(d["uncertainty_mm"]),
                   {k: float(v) for k, v in d["estimates"].items()})


def estimate_midline(structures: Mapping[str, StructureStats], body_x_mm: float | None = None) -> Midline:
    """Midline from the spinal cord, else the vertebrae (voxel-weighted), else the body centre, else all labels;
    its uncertainty is the spread of the cord, vertebrae and body estimates that are available (with none,
    the labels' left-right span: see :class:`Midline`)."""
    estimates: dict[str, float] = {}
    if "spinal_cord" in structures:
        estimates["spinal_cord"] = float(structures["spinal_cord"].centroid_mm[0])
    verts = [s for n, s in structures.items() if is_vertebra(n)]
    if verts:
        w = np.array([s.voxels for s in verts], float)
        x = np.array([s.centroid_mm[0] for s in verts])
        estimates["vertebrae"] = float((w * x).sum() / w.sum())
    if body_x_mm is not None:
        estimates["body"] = float(body_x_mm)
    if estimates:
        source = next(iter(estimates))
        spread = max(estimates.values()) - min(estimates.values())
        return Midline(estimates[source], source, float(spread), estimates)
    # Neither spinal cord, vertebrae nor a body: the labels' centre of mass, which the organs pull to one side
    # (the liver), is a guess. Its uncertainty is the labels' whole left-right span, so nothing is judged
    # against it: no side, midline-crossing or medial-lateral relation is decided.
    w = np.array([s.voxels for s in structures.values()], float)
    x = np.array([s.centroid_mm[0] for s in structures.values()])
    return Midline(float((w * x).sum() / max(w.sum(), 1.0)), "labels", labels_span_mm(structures))


def labels_span_mm(structures: Mapping[str, StructureStats]) -> float:
    """Left-right span (mm) of all structures: the uncertainty of a midline guessed from the labels."""
    if not structures:
        return 0.0
    return float(max(s.max_mm[0] for s in structures.values()) - min(s.min_mm[0] for s in structures.values()))


def body_centre_x(volume, threshold_hu: float = -500.0) -> float | None:
    """Centre (RAS x, mm) of the body's left–right extent, or None when it is unknown.

    The body is the largest connected region of voxels above ``threshold_hu`` in the projection along the
    axial array axis (so the table and other objects apart from it do not count). None when nothing is
    above the threshold, or when the body reaches the left or right edge of the scan: the field of view
    cuts it there, so the middle of what is visible is not the body's centre.
    """
    from scipy import ndimage

    arr = np.asarray(volume.array)
    lr_axis, axial = volume.array_axis("lr"), volume.axial_axis
    if lr_axis == axial:
        return None
    projected = (arr > threshold_hu).any(axis=axial)  # the two other array axes, in order
    regions, n = ndimage.label(projected)
    if n == 0:
        return None
    sizes = np.bincount(regions.ravel())
    sizes[0] = 0
    body = regions == int(sizes.argmax())
    lr_2d = [a for a in range(3) if a != axial].index(lr_axis)
    idx = np.flatnonzero(body.any(axis=1 - lr_2d))
    if idx[0] == 0 or idx[-1] == arr.shape[lr_axis] - 1:
        return None
    centre = np.array([(n_a - 1) / 2.0 for n_a in arr.shape])
    centre[lr_axis] = (idx[0] + idx[-1]) / 2.0
    return float(volume.voxel_to_patient(centre[None])[0, 0])


@dataclass(frozen=True)
class SideCheck:
    name: str
    named_side: str
    offset_mm: float  # centroid x − midline x (RAS: negative = patient's left)
    status: str  # 'ok', 'mismatch', 'near_midline'


@dataclass(frozen=True)
class LateralityAudit:
    """Whether side-named structures lie on their named side of the midline.

    ``passed`` is False as soon as one structure lies beyond ``margin_mm`` on the wrong side;
    ``mirrored_likely`` when most checked structures do (a mirrored image or a wrong header).
    """

    passed: bool
    mirrored_likely: bool
    midline: Midline
    margin_mm: float
    checks: tuple[SideCheck, ...] = field(default_factory=tuple)

    @property
    def mismatches(self) -> list[SideCheck]:
        return [c for c in self.checks if c.status == "mismatch"]

    @property
    def checked(self) -> int:
        return sum(c.status != "near_midline" for c in self.checks)

    def summary(self) -> str:
        if not self.checks:
            return "laterality audit: no side-named structures to check"
        head = "PASSED" if self.passed else ("FAILED — image looks MIRRORED or its header is wrong"
                                            if self.mirrored_likely else "FAILED")
        text = (f"laterality audit {head}: {self.checked} side-named structures checked against the midline "
                f"(x = {self.midline.x_mm:.1f} mm RAS, from {self.midline.source}), {len(self.mismatches)} on the "
                "wrong side")
        if self.mismatches:
            text += ": " + ", ".join(f"{c.name} ({abs(c.offset_mm):.1f} mm to the "
                                     f"{'left' if c.offset_mm < 0 else 'right'})" for c in self.mismatches[:8])
        return text

    def to_dict(self) -> dict:
        return {"passed": self.passed, "mirrored_likely": self.mirrored_likely, "midline": self.midline.to_dict(),
                "margin_mm": self.margin_mm, "checked": self.checked,
                "mismatches": [c.name for c in self.mismatches],
                "checks": [{"name": c.name, "named_side": c.named_side, "offset_mm": c.offset_mm,
                            "status": c.status} for c in self.checks]}

    @classmethod
    def from_dict(cls, d: dict) -> "LateralityAudit":
        return cls(passed=d["passed"], mirrored_likely=d["mirrored_likely"],
                   midline=Midline.from_dict(d["midline"]), margin_mm=d["margin_mm"],
                   checks=tuple(SideCheck(c["name"], c["named_side"], c["offset_mm"], c["status"])
                                for c in d["checks"]))


def laterality_audit(structures: Mapping[str, StructureStats], midline: Midline,
                     margin_mm: float = 10.0) -> LateralityAudit:
    """Check every side-named structure's centroid against the midline (RAS x; left = smaller x)."""
    checks = []
    for name, s in sorted(structures.items()):
        side = side_of(name)
        if side is None:
            continue
        offset = s.centroid_mm[0] - midline.x_mm
        if abs(offset) < margin_mm:
            status = "near_midline"
        elif (offset < 0) == (side == "left"):
            status = "ok"
        else:
            status = "mismatch"
        checks.append(SideCheck(name, side, float(offset), status))
    bad = sum(c.status == "mismatch" for c in checks)
    checked = sum(c.status != "near_midline" for c in checks)
    return LateralityAudit(passed=bad == 0, mirrored_likely=bad >= 2 and bad > checked / 2, midline=midline,
                           margin_mm=margin_mm, checks=tuple(checks))
