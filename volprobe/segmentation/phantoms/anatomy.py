"""The synthetic torso: tissue codebook and the anatomy design of one phantom.

All coordinates are patient RAS+ mm (+x = patient's right, +y anterior, +z superior) with
the origin at the body axis, near the top of L1. Structures are TotalSegmentator ``total``
class names. :func:`design_torso` turns a random generator into an ordered list of
:class:`Part` (painted in order: later parts overwrite earlier ones) and the designed
outcome of each varying relation.

HU codebook (contrast-enhanced CT, portal-venous phase). Every labelled tissue has its own
band, so an image reader can tell organs apart by intensity alone; paired structures share
a band and are told apart by side. Noise is Gaussian (default SD 2 HU).

==================  =======  ================================================================
tissue              HU       structures
==================  =======  ================================================================
air                 -1000    outside the body; the ``trachea`` lumen
lung_upper           -870    lung_upper_lobe_left, lung_upper_lobe_right
lung_middle          -845    lung_middle_lobe_right
lung_lower           -820    lung_lower_lobe_left, lung_lower_lobe_right
fat                  -100    subcutaneous and visceral fat (unlabelled)
urine                   5    urinary_bladder
bile                   17    gallbladder
stomach                29    stomach (water-distended)
cord                   41    spinal_cord
muscle                 53    body-wall muscle, intervertebral discs (unlabelled)
autochthon             65    autochthon_left, autochthon_right
iliopsoas              77    iliopsoas_left, iliopsoas_right
esophagus              89    esophagus
duodenum              101    duodenum
pancreas              113    pancreas
liver                 125    liver
spleen                137    spleen
ivc                   149    inferior_vena_cava
heart                 161    heart
kidney                180    kidney_left, kidney_right
aorta                 200    aorta
vertebra              300    vertebrae_T1 … vertebrae_L5
sacrum                380    sacrum
sternum               460    sternum
rib                   540    rib_left_1 … rib_left_12, rib_right_1 … rib_right_12
==================  =======  ================================================================
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from volprobe.segmentation.phantoms.shapes import (
    Box, Difference, Ellipsoid, EllipticCylinder, HalfSpace, Intersection, MirroredX, Shape, Tube, Union,
)


@dataclass(frozen=True)
class Tissue:
    """One intensity band: its key, mean HU, and the structure name pattern it carries.

    ``structure`` is a TotalSegmentator name, a pattern with ``{side}`` (paired structures),
    ``rib_{side}_{n}`` / ``vertebrae_{level}`` (numbered), or None (unlabelled tissue).
    """

    key: str
    hu: int
    structure: str | None


CODEBOOK: tuple[Tissue, ...] = (
    Tissue("air", -1000, "trachea"),  # trachea = air enclosed by the body
    Tissue("lung_upper", -870, "lung_upper_lobe_{side}"),
    Tissue("lung_middle", -845, "lung_middle_lobe_{side}"),  # no left middle lobe: see phantoms.segment
    Tissue("lung_lower", -820, "lung_lower_lobe_{side}"),
    Tissue("fat", -100, None),
    Tissue("urine", 5, "urinary_bladder"),
    Tissue("bile", 17, "gallbladder"),
    Tissue("stomach", 29, "stomach"),
    Tissue("cord", 41, "spinal_cord"),
    Tissue("muscle", 53, None),
    Tissue("autochthon", 65, "autochthon_{side}"),
    Tissue("iliopsoas", 77, "iliopsoas_{side}"),
    Tissue("esophagus", 89, "esophagus"),
    Tissue("duodenum", 101, "duodenum"),
    Tissue("pancreas", 113, "pancreas"),
    Tissue("liver", 125, "liver"),
    Tissue("spleen", 137, "spleen"),
    Tissue("ivc", 149, "inferior_vena_cava"),
    Tissue("heart", 161, "heart"),
    Tissue("kidney", 180, "kidney_{side}"),
    Tissue("aorta", 200, "aorta"),
    Tissue("vertebra", 300, "vertebrae_{level}"),
    Tissue("sacrum", 380, "sacrum"),
    Tissue("sternum", 460, "sternum"),
    Tissue("rib", 540, "rib_{side}_{n}"),
)
TISSUE_CODE = {t.key: n for n, t in enumerate(CODEBOOK)}
TISSUE_HU = np.array([t.hu for t in CODEBOOK], dtype=np.int16)

THORACIC = tuple(f"T{k}" for k in range(1, 13))
LUMBAR = tuple(f"L{k}" for k in range(1, 6))

#: Structures that run through the default field of view and are meant to be cut by it.
CUT_BY_DESIGN = frozenset({"spinal_cord", "autochthon_left", "autochthon_right", "iliopsoas_left",
                           "iliopsoas_right", "trachea", "esophagus"})


@dataclass(frozen=True)
class Part:
    """One painted solid: structure name (None for unlabelled tissue), tissue key, shape (RAS+ mm).

    ``kind``: ``ellipsoid`` (an organ, possibly clipped to the body cavity), ``lung_lobe``
    (a lung ellipsoid cut by fissure planes), ``tube`` (vessels, gut, cord, ribs),
    ``cylinder`` (back muscles, sternum, body wall) or ``vertebra``.
    """

    name: str | None
    tissue: str
    shape: Shape
    kind: str = "ellipsoid"


@dataclass
class TorsoDesign:
    """Parts in painting order and the designed outcome of each varying relation."""

    parts: list[Part]
    variants: dict = field(default_factory=dict)


def swap_side(name: str) -> str:
    """``kidney_left`` ↔ ``kidney_right`` (also ``rib_left_3`` ↔ ``rib_right_3``); other names unchanged."""
    for a, b in (("_left", "_right"), ("_right", "_left")):
        if a in name:
            return name.replace(a, b)
    return name


class _Draw:
    """Random draws scaled by ``variation``; every draw is taken whatever ``variation`` is (stable seeds)."""

    def __init__(self, rng: np.random.Generator, variation: float) -> None:
        self.rng, self.v = rng, float(variation)

    def jit(self, amp: float) -> float:
        """Uniform jitter in ±``amp``·variation (mm)."""
        return float(self.rng.uniform(-1.0, 1.0)) * amp * self.v

    def scale(self, frac: float) -> float:
        """Size factor 1 ± ``frac``·variation."""
        return 1.0 + self.jit(frac)

    def flip(self) -> bool:
        """True (leave the canonical outcome) with probability ``min(variation, 1) / 2``."""
        return bool(self.rng.random() < 0.5 * min(self.v, 1.0))

    def between(self, lo: float, hi: float) -> float:
        """A margin in [lo, hi]; the midpoint at variation 0."""
        u = float(self.rng.uniform(-0.5, 0.5)) * min(self.v, 1.0)
        return lo + (hi - lo) * (0.5 + u)


def design_torso(rng: np.random.Generator, variation: float = 1.0, situs_inversus: bool = False) -> TorsoDesign:
    """The anatomy of one phantom (see the module docstring for frame and codebook).

    Relations made to vary (each a fair coin at ``variation >= 1``, with a margin that keeps
    it decidable): which kidney lies higher; which kidney is larger; which lung is larger
    (by hemidiaphragm height); whether the liver reaches below the lowest point of the
    kidney on its side; whether the stomach's centre is anterior to the spleen's. Fixed:
    liver, gallbladder and IVC on the right, heart, spleen, stomach and aorta on the left
    (mirrored with ``situs_inversus``), craniocaudal order of the organs.
    """
    d = _Draw(rng, variation)
    parts: list[Part] = []
    add = parts.append

    # -- body wall ------------------------------------------------------------------------
    ax, ay = 150.0 * d.scale(0.03), 105.0 * d.scale(0.03)
    add(Part(None, "fat", EllipticCylinder(0, 0, ax, ay), "cylinder"))
    add(Part(None, "muscle", EllipticCylinder(0, 0, ax - 12, ay - 12), "cylinder"))
    cavity = EllipticCylinder(0, 0, ax - 22, ay - 22)
    add(Part(None, "fat", cavity, "cylinder"))

    # -- lungs: apex fixed, the smaller lung has the higher hemidiaphragm -------------------
    apex = 170.0 + d.jit(4)
    h_large = 100.0 * d.scale(0.04)
    ratio = d.between(1.3, 1.5)
    larger_lung = "left" if d.flip() else "right"
    h = {"right": h_large, "left": h_large}
    h["left" if larger_lung == "right" else "right"] = h_large / ratio
    z_oblique = apex - 110.0 + d.jit(6)  # oblique fissure height at y = 0
    z_horizontal = apex - 85.0 + d.jit(5)
    oblique_up = HalfSpace((0.0, 0.9, 1.0), z_oblique)  # upper (and middle) lobe side
    oblique_down = HalfSpace((0.0, -0.9, -1.0), -z_oblique)
    for side, sx, semi_x in (("right", 1.0, 50.0), ("left", -1.0, 58.5)):
        lung = Intersection((Ellipsoid((sx * 66.0 + d.jit(3), -4.0 + d.jit(3), apex - h[side]),
                                       (semi_x, 70.0 * d.scale(0.03), h[side])), cavity))
        # TotalSegmentator has no left middle lobe: under situs inversus the trilobed lung
        # ends up on the left and its middle lobe is painted as upper lobe.
        trilobed = side == "right" and not situs_inversus
        if trilobed:
            add(Part(f"lung_upper_lobe_{side}", "lung_upper",
                     Intersection((lung, oblique_up, HalfSpace((0, 0, 1.0), z_horizontal))), "lung_lobe"))
            add(Part(f"lung_middle_lobe_{side}", "lung_middle",
                     Intersection((lung, oblique_up, HalfSpace((0, 0, -1.0), -z_horizontal))), "lung_lobe"))
        else:
            add(Part(f"lung_upper_lobe_{side}", "lung_upper", Intersection((lung, oblique_up)), "lung_lobe"))
        add(Part(f"lung_lower_lobe_{side}", "lung_lower", Intersection((lung, oblique_down)), "lung_lobe"))

    # -- heart and liver --------------------------------------------------------------------
    add(Part("heart", "heart", Ellipsoid((-18.0 + d.jit(3), 26.0 + d.jit(3), 40.0 + d.jit(3)),
                                         tuple(s * d.scale(0.05) for s in (48.0, 38.0, 42.0)))))

    # kidneys: centre height, which one is higher, which one is larger
    k_mean = -42.0 + d.jit(4)
    k_gap = d.between(12.0, 24.0)
    higher_kidney = "right" if d.flip() else "left"
    k_z = {"left": k_mean, "right": k_mean}
    k_z[higher_kidney] += k_gap / 2
    k_z["right" if higher_kidney == "left" else "left"] -= k_gap / 2
    k_big = d.between(1.07, 1.13)
    larger_kidney = "right" if d.flip() else "left"
    k_scale = {"left": 1.0, "right": 1.0}
    k_scale[larger_kidney] = k_big
    k_semi = {s: (24.0 * k_scale[s], 22.0 * k_scale[s], 46.0 * k_scale[s]) for s in k_scale}
    kidney_bottom_right = k_z["right"] - k_semi["right"][2]

    # liver: top at the right hemidiaphragm, lowest point above or below the right kidney's
    liver_below = not d.flip()
    liver_margin = d.between(10.0, 22.0)
    liver_top = 22.0 + d.jit(4)
    liver_bottom = kidney_bottom_right + (-liver_margin if liver_below else liver_margin)
    liver_c = (50.0 + d.jit(4), 6.0 + d.jit(3), (liver_top + liver_bottom) / 2)
    liver_semi = (72.0 * d.scale(0.04), 64.0 * d.scale(0.04), (liver_top - liver_bottom) / 2)
    add(Part("liver", "liver", Intersection((Ellipsoid(liver_c, liver_semi), cavity))))

    # -- great vessels, oesophagus, trachea ---------------------------------------------------
    add(Part("inferior_vena_cava", "ivc", Tube(((17.0, -16.0, -100.0), (20.0, -12.0, -40.0), (22.0, -4.0, 0.0),
                                                 (14.0, 12.0, 12.0)), 11.0), "tube"))
    add(Part("aorta", "aorta", Tube(((2.0, 30.0, 62.0), (-4.0, 28.0, 110.0), (-20.0, 10.0, 132.0),
                                     (-26.0, -12.0, 124.0), (-28.0, -24.0, 80.0), (-24.0, -24.0, 20.0),
                                     (-14.0, -16.0, -40.0), (-8.0, -14.0, -96.0)), 10.0), "tube"))
    add(Part("trachea", "air", Tube(((0.0, 10.0, 400.0), (0.0, 6.0, 125.0)), 9.0), "tube"))

    stomach_anterior = not d.flip()
    ap_gap = d.between(16.0, 32.0)
    ap_mean = -2.0 + d.jit(3)
    stomach_y = ap_mean + (ap_gap / 2 if stomach_anterior else -ap_gap / 2)
    spleen_y = ap_mean - (ap_gap / 2 if stomach_anterior else -ap_gap / 2)
    stomach_c = (-45.0 + d.jit(3), stomach_y, 0.0 + d.jit(4))
    add(Part("esophagus", "esophagus", Tube(((-2.0, -14.0, 400.0), (-4.0, -16.0, 130.0), (-10.0, -14.0, 60.0),
                                             (-22.0, -6.0, 20.0), (stomach_c[0] + 5, stomach_c[1], 5.0)), 7.0), "tube"))

    # -- upper abdomen ------------------------------------------------------------------------
    add(Part("pancreas", "pancreas", Tube(((24.0, 10.0, -48.0), (0.0, 8.0, -40.0), (-30.0, 2.0, -32.0),
                                           (-58.0 + d.jit(3), -10.0, -26.0)), 10.0), "tube"))
    add(Part("duodenum", "duodenum", Tube(((26.0, 14.0, -28.0), (38.0, 4.0, -50.0), (30.0, -4.0, -72.0),
                                           (4.0, -6.0, -84.0), (-18.0, 0.0, -76.0)), 9.0), "tube"))
    add(Part("gallbladder", "bile", Ellipsoid((44.0 + d.jit(3), 44.0 + d.jit(3), liver_c[2] - 0.55 * liver_semi[2]),
                                              tuple(s * d.scale(0.06) for s in (13.0, 13.0, 24.0)))))
    add(Part("stomach", "stomach", Intersection((Ellipsoid(stomach_c, tuple(s * d.scale(0.05) for s in
                                                                                (30.0, 28.0, 40.0))), cavity))))
    add(Part("spleen", "spleen", Intersection((Ellipsoid((-94.0 + d.jit(2), spleen_y, 12.0 + d.jit(4)),
                                                         tuple(s * d.scale(0.05) for s in (20.0, 38.0, 42.0))),
                                               cavity))))

    # -- retroperitoneum and pelvis -----------------------------------------------------------
    for side, sx in (("right", 1.0), ("left", -1.0)):
        add(Part(f"iliopsoas_{side}", "iliopsoas", Ellipsoid((sx * 44.0, -38.0, -175.0), (22.0, 20.0, 170.0))))
        add(Part(f"autochthon_{side}", "autochthon", EllipticCylinder(sx * 30.0, -88.0, 17.0, 13.0), "cylinder"))
    for side, sx in (("right", 1.0), ("left", -1.0)):
        add(Part(f"kidney_{side}", "kidney", Ellipsoid((sx * (72.0 + d.jit(3)), -40.0 + d.jit(2), k_z[side]),
                                                       k_semi[side])))
    add(Part("urinary_bladder", "urine", Ellipsoid((0.0, 40.0 + d.jit(2), -165.0 + d.jit(3)),
                                                   tuple(s * d.scale(0.06) for s in (34.0, 28.0, 20.0)))))

    # -- skeleton -----------------------------------------------------------------------------
    parts.extend(_skeleton())

    variants = {
        "higher_kidney": f"kidney_{higher_kidney}",
        "kidney_gap_mm": k_gap,
        "larger_kidney": f"kidney_{larger_kidney}",
        "kidney_size_ratio": k_big ** 3,
        "larger_lung": larger_lung,
        "lung_height_ratio": ratio,
        "liver_below_kidney": {"kidney": "kidney_right", "liver_lower": liver_below, "margin_mm": liver_margin},
        "stomach_anterior_to_spleen": stomach_anterior,
        "stomach_spleen_gap_mm": ap_gap,
    }
    if situs_inversus:
        parts = [Part(swap_side(p.name) if p.name else None, p.tissue, MirroredX(p.shape), p.kind) for p in parts]
        variants = _mirror_variants(variants)
    return TorsoDesign(parts=parts, variants=variants)


def _mirror_variants(variants: dict) -> dict:
    out = dict(variants)
    out["higher_kidney"] = swap_side(variants["higher_kidney"])
    out["larger_kidney"] = swap_side(variants["larger_kidney"])
    out["larger_lung"] = "left" if variants["larger_lung"] == "right" else "right"
    out["liver_below_kidney"] = {**variants["liver_below_kidney"],
                                 "kidney": swap_side(variants["liver_below_kidney"]["kidney"])}
    return out


def vertebra_levels() -> list[tuple[str, float, float]]:
    """(level, bottom z, top z) in mm for T1…L5: thoracic pitch 16 mm (disc 6), lumbar 23 mm (disc 7)."""
    levels, top = [], 184.0
    for name in THORACIC:
        levels.append((name, top - 10.0, top))
        top -= 16.0
    top += 16.0 - 10.0 - 7.0
    for name in LUMBAR:
        levels.append((name, top - 16.0, top))
        top -= 23.0
    return levels


def _skeleton() -> list[Part]:
    """Disc column, spinal cord, vertebrae T1–L5, sacrum, sternum and 12 pairs of ribs (fixed layout)."""
    parts: list[Part] = []
    levels = vertebra_levels()
    bottom_l5 = levels[-1][1]
    parts.append(Part(None, "muscle", EllipticCylinder(0.0, -42.0, 20.0, 16.0, bottom_l5 - 7.0, levels[0][2]), "cylinder"))
    parts.append(Part("spinal_cord", "cord", Tube(((0.0, -66.0, -110.0), (0.0, -66.0, 400.0)), 7.0), "tube"))
    for level, z0, z1 in levels:
        body = EllipticCylinder(0.0, -42.0, 20.0, 16.0, z0, z1)
        arch = Difference(EllipticCylinder(0.0, -66.0, 14.0, 14.0, z0, z1), EllipticCylinder(0.0, -66.0, 7.0, 7.0))
        spinous = Box((-4.0, -98.0, z0), (4.0, -78.0, z1))
        transverse = Box((-34.0, -72.0, z0 + 1.0), (34.0, -60.0, z1 - 1.0))
        parts.append(Part(f"vertebrae_{level}", "vertebra", Union((body, arch, spinous, transverse)), "vertebra"))
    parts.append(Part("sacrum", "sacrum", Ellipsoid((0.0, -62.0, bottom_l5 - 7.0 - 26.0), (42.0, 22.0, 26.0))))
    parts.append(Part("sternum", "sternum", EllipticCylinder(0.0, 76.0, 13.0, 6.0, 45.0, 150.0), "cylinder"))
    size = (0.55, 0.68, 0.78, 0.86, 0.92, 0.96, 1.0, 1.0, 1.0, 1.0, 0.98, 0.95)
    end_deg = (155, 155, 155, 155, 155, 155, 155, 140, 130, 120, 100, 80)
    drop_per_degree = (0.12, 0.12) + (0.24,) * 10  # mm; equal slopes keep neighbouring ribs 7 mm apart
    for k in range(12):
        z_k = levels[k][2] - 5.0
        a, b = 118.0 * size[k], 78.0 * size[k]
        degrees = np.linspace(30.0, end_deg[k], 10)
        for side, sx in (("right", 1.0), ("left", -1.0)):
            arc = [(sx * 34.0, -66.0, z_k)] + [(sx * a * np.sin(t), 5.0 - b * np.cos(t),
                                                z_k - drop_per_degree[k] * (deg - 30.0))
                                               for t, deg in zip(np.radians(degrees), degrees)]
            parts.append(Part(f"rib_{side}_{k + 1}", "rib",
                              Tube(tuple(tuple(float(c) for c in pt) for pt in arc), 6.0, z_scale=6.0 / 4.5), "tube"))
    return parts
