"""Analytic solids in patient RAS+ mm, the building blocks of the synthetic phantoms.

Each shape answers two questions: which points (N×3, RAS+ mm) lie inside it
(:meth:`contains`), and a bounding box ``(lo, hi)`` in RAS+ mm that holds all of them
(:meth:`bounds`; unbounded directions use ±``FAR``). Shapes know nothing of voxel
grids; :func:`volprobe.segmentation.phantoms.generate.make_phantom` samples them through an affine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

FAR = 1.0e4  # mm; "unbounded" for bounding boxes

Bounds = tuple[np.ndarray, np.ndarray]


class Shape:
    """Base class: a solid in patient RAS+ mm."""

    def contains(self, p: np.ndarray) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def bounds(self) -> Bounds:  # pragma: no cover - interface
        raise NotImplementedError

    def reference_point(self) -> np.ndarray:
        """A representative point (mm): the centre of an ellipsoid, the mid-length point of a tube."""
        lo, hi = self.bounds()
        return (np.clip(lo, -FAR / 10, None) + np.clip(hi, None, FAR / 10)) / 2


@dataclass(frozen=True)
class Ellipsoid(Shape):
    """Axis-aligned (super)ellipsoid: ``sum(|(p - centre) / semi| ** power) <= 1``; power 2 is an ellipsoid."""

    centre: Sequence[float]
    semi: Sequence[float]
    power: float = 2.0

    def contains(self, p: np.ndarray) -> np.ndarray:
        q = np.abs((p - np.asarray(self.centre)) / np.asarray(self.semi))
        return (q ** self.power).sum(axis=1) <= 1.0

    def bounds(self) -> Bounds:
        c, s = np.asarray(self.centre, float), np.asarray(self.semi, float)
        return c - s, c + s

    def reference_point(self) -> np.ndarray:
        return np.asarray(self.centre, float)


@dataclass(frozen=True)
class EllipticCylinder(Shape):
    """Elliptic cylinder along the patient's superior–inferior (z) axis, from ``z0`` to ``z1`` mm."""

    cx: float
    cy: float
    ax: float
    ay: float
    z0: float = -FAR
    z1: float = FAR

    def contains(self, p: np.ndarray) -> np.ndarray:
        r = ((p[:, 0] - self.cx) / self.ax) ** 2 + ((p[:, 1] - self.cy) / self.ay) ** 2
        return (r <= 1.0) & (p[:, 2] >= self.z0) & (p[:, 2] <= self.z1)

    def bounds(self) -> Bounds:
        return (np.array([self.cx - self.ax, self.cy - self.ay, self.z0]),
                np.array([self.cx + self.ax, self.cy + self.ay, self.z1]))


@dataclass(frozen=True)
class Box(Shape):
    """Axis-aligned box ``lo <= p <= hi`` (mm)."""

    lo: Sequence[float]
    hi: Sequence[float]

    def contains(self, p: np.ndarray) -> np.ndarray:
        return np.all((p >= np.asarray(self.lo)) & (p <= np.asarray(self.hi)), axis=1)

    def bounds(self) -> Bounds:
        return np.asarray(self.lo, float), np.asarray(self.hi, float)


@dataclass(frozen=True)
class Tube(Shape):
    """Points within ``radius`` mm of a polyline (a chain of capsules).

    ``z_scale`` > 1 flattens the cross-section along z (half-height ``radius / z_scale``),
    used for ribs, which are taller than they are thick only in the other direction.
    """

    points: tuple[tuple[float, float, float], ...]
    radius: float
    z_scale: float = 1.0

    def _scaled(self, p: np.ndarray) -> np.ndarray:
        return p * np.array([1.0, 1.0, self.z_scale])

    def contains(self, p: np.ndarray) -> np.ndarray:
        q = self._scaled(p)
        pts = self._scaled(np.asarray(self.points, float))
        best = np.full(len(p), np.inf)
        for a, b in zip(pts[:-1], pts[1:]):
            ab = b - a
            t = np.clip(((q - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
            d2 = ((q - a - t[:, None] * ab) ** 2).sum(axis=1)
            np.minimum(best, d2, out=best)
        return best <= self.radius ** 2

    def bounds(self) -> Bounds:
        pts = np.asarray(self.points, float)
        pad = np.array([self.radius, self.radius, self.radius / self.z_scale])
        return pts.min(axis=0) - pad, pts.max(axis=0) + pad

    def reference_point(self) -> np.ndarray:
        """Mid-length point of the polyline (mm)."""
        pts = np.asarray(self.points, float)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        half, acc = seg.sum() / 2, 0.0
        for a, b, s in zip(pts[:-1], pts[1:], seg):
            if acc + s >= half:
                return a + (b - a) * ((half - acc) / max(s, 1e-12))
            acc += s
        return pts[-1]


@dataclass(frozen=True)
class HalfSpace(Shape):
    """Points with ``normal · p >= offset`` (mm)."""

    normal: Sequence[float]
    offset: float

    def contains(self, p: np.ndarray) -> np.ndarray:
        return p @ np.asarray(self.normal, float) >= self.offset

    def bounds(self) -> Bounds:
        return np.full(3, -FAR), np.full(3, FAR)


@dataclass(frozen=True)
class Intersection(Shape):
    """Points inside every part; bounded by the first part's box."""

    parts: tuple[Shape, ...]

    def contains(self, p: np.ndarray) -> np.ndarray:
        inside = self.parts[0].contains(p)
        for part in self.parts[1:]:
            idx = np.flatnonzero(inside)
            if idx.size:
                inside[idx] = part.contains(p[idx])
        return inside

    def bounds(self) -> Bounds:
        lo, hi = self.parts[0].bounds()
        for part in self.parts[1:]:
            plo, phi = part.bounds()
            lo, hi = np.maximum(lo, plo), np.minimum(hi, phi)
        return lo, hi

    def reference_point(self) -> np.ndarray:
        return self.parts[0].reference_point()


@dataclass(frozen=True)
class Union(Shape):
    """Points inside any part."""

    parts: tuple[Shape, ...]

    def contains(self, p: np.ndarray) -> np.ndarray:
        inside = np.zeros(len(p), dtype=bool)
        for part in self.parts:
            idx = np.flatnonzero(~inside)
            if idx.size:
                inside[idx] = part.contains(p[idx])
        return inside

    def bounds(self) -> Bounds:
        boxes = [part.bounds() for part in self.parts]
        return np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0)

    def reference_point(self) -> np.ndarray:
        return self.parts[0].reference_point()


@dataclass(frozen=True)
class Difference(Shape):
    """Points inside ``keep`` and not inside ``cut``."""

    keep: Shape
    cut: Shape

    def contains(self, p: np.ndarray) -> np.ndarray:
        inside = self.keep.contains(p)
        idx = np.flatnonzero(inside)
        if idx.size:
            inside[idx] = ~self.cut.contains(p[idx])
        return inside

    def bounds(self) -> Bounds:
        return self.keep.bounds()

    def reference_point(self) -> np.ndarray:
        return self.keep.reference_point()


@dataclass(frozen=True)
class MirroredX(Shape):
    """``shape`` mirrored through the patient's mid-sagittal plane (x → −x)."""

    shape: Shape

    def contains(self, p: np.ndarray) -> np.ndarray:
        return self.shape.contains(p * np.array([-1.0, 1.0, 1.0]))

    def bounds(self) -> Bounds:
        lo, hi = self.shape.bounds()
        return np.array([-hi[0], lo[1], lo[2]]), np.array([-lo[0], hi[1], hi[2]])

    def reference_point(self) -> np.ndarray:
        return self.shape.reference_point() * np.array([-1.0, 1.0, 1.0])


def core_ellipsoid(shape: Shape) -> Ellipsoid | None:
    """The ellipsoid a shape is cut from (through mirrors and intersections), or None."""
    while True:
        if isinstance(shape, Ellipsoid):
            return shape
        if isinstance(shape, MirroredX):
            shape = shape.shape
        elif isinstance(shape, Intersection):
            shape = shape.parts[0]
        else:
            return None
