"""Gold answers a radiologist would sign, on the real fixture (a 9 cm slab: most structures cut by the field
of view) and on phantoms: every gold recomputed from the mask files by code written here (plain numpy and
scipy from the affine, not volprobe's relation code), nothing resting on what the scan cuts off, margins the
voxels can show, a midline whose uncertainty cannot flip an answer, and plain, grammatical questions."""

from __future__ import annotations

import copy
import re
from collections import Counter

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial import cKDTree

from conftest import FIXTURE_CT, FIXTURE_SEG
from volprobe.probes.questions import QuestionSettings, generate_questions, load_cases
from volprobe.probes.questions.templates import render
from volprobe.segmentation.masks import LabelMap, read_label_names_from_header, totalsegmentator_class_map
from volprobe.controls.counterfactuals import relations_for_case
from volprobe.segmentation.relations.graph import RelationGraph, build_relation_graph

# The documented defaults (volprobe.segmentation.relations.rules.RelationThresholds), written out here so
# the recomputation below shares nothing with the code it checks; test_the_documented_defaults pins them.
CENTROID_MM, EXTENT_MM, MIDLINE_MM = 5.0, 3.0, 5.0
CONTACT_TOLERANCE_MM, CONTACT_MARGIN_MM = 1.5, 3.0
CONTAINED, NOT_CONTAINED = 0.95, 0.05
SIZE_RATIO, SIZE_DIFFERENCE_ML = 1.25, 5.0
VOXELS, PARTNER_MM, PARTNER_VOXELS = 1.0, 10.0, 2.0
CROSS_SHARE = 0.05
AXIS = {"lr": 0, "ap": 1, "si": 2}
POSITIVE = {"lr": "right", "ap": "anterior", "si": "superior"}
NEGATIVE = {"lr": "left", "ap": "posterior", "si": "inferior"}


def _partners(a: str, b: str) -> bool:
    swap = {"left": "right", "right": "left"}
    parts = a.split("_")
    return a != b and any(p in swap for p in parts) and "_".join(swap.get(p, p) for p in parts) == b


class Masks:
    """Everything a gold rests on, measured from the NIfTI files with numpy and scipy."""

    def __init__(self, ct_path, seg_path):
        img = nib.load(str(seg_path))
        self.labels = np.asarray(img.dataobj).astype(np.int64)
        self.affine = img.affine
        m = self.affine[:3, :3]
        assert np.count_nonzero(np.abs(m) > 1e-9) == 3, "the fixture is axis-aligned: one patient axis per array axis"
        self.width = np.abs(m).sum(axis=1)  # one voxel along x, y, z
        self.diagonal = float(np.linalg.norm(m @ np.ones(3)))
        self.spacing = float(np.linalg.norm(m, axis=0).max())
        self.names = {v: k for k, v in read_label_names_from_header(img).items()}
        self.voxels, self.xyz, self.cut = {}, {}, {}
        for name, lab in self.names.items():
            ijk = np.argwhere(self.labels == lab)
            if not len(ijk):
                continue
            self.voxels[name] = ijk
            self.xyz[name] = ijk @ m.T + self.affine[:3, 3]
            ends = {ax: set() for ax in AXIS}
            for a, n in enumerate(self.labels.shape):
                k = int(np.argmax(np.abs(m[:, a])))
                for face, outward in ((0, -1.0), (n - 1, 1.0)):
                    if (ijk[:, a] == face).any():
                        ends[list(AXIS)[k]].add("high" if outward * m[k, a] > 0 else "low")
            self.cut[name] = ends
        ct = np.asarray(nib.load(str(ct_path)).dataobj)
        # the midline estimates: spinal cord, the vertebrae together, the body (largest region in projection)
        vert = np.concatenate([x for n, x in self.xyz.items() if n.startswith("vertebrae_")])
        body_2d, _ = ndimage.label((ct > -500).any(axis=2))
        largest = body_2d == np.bincount(body_2d.ravel())[1:].argmax() + 1
        cols = np.flatnonzero(largest.any(axis=1))
        assert 0 < cols[0] and cols[-1] < ct.shape[0] - 1  # the body is inside the scan left to right
        body_x = self.affine[0, 0] * (cols[0] + cols[-1]) / 2 + self.affine[0, 3]
        self.estimates = [self.centroid("spinal_cord")[0], vert[:, 0].mean(), body_x]
        self.midline = self.estimates[0]
        self.uncertainty = max(self.estimates) - min(self.estimates)
        self._filled: dict[str, np.ndarray] = {}

    def centroid(self, name):
        return self.xyz[name].mean(axis=0)

    def at_midline(self, x_mm):
        """The same masks judged against a midline at ``x_mm``, taken as certain."""
        other = copy.copy(self)
        other.midline, other.uncertainty = x_mm, 0.0
        return other

    def volume_ml(self, name):
        return len(self.xyz[name]) * abs(np.linalg.det(self.affine[:3, :3])) / 1000.0

    def cut_along(self, name, axis):
        return bool(self.cut[name][axis])

    def touches(self, name):
        return any(self.cut[name].values())

    def gap(self, a, b):
        d = cKDTree(self.xyz[b]).query(self.xyz[a], k=1)[0].min()
        return max(0.0, d - self.spacing)

    def share_inside(self, a, b):
        if b not in self._filled:
            self._filled[b] = ndimage.binary_fill_holes(self.labels == self.names[b])
        v = self.voxels[a]
        return self._filled[b][v[:, 0], v[:, 1], v[:, 2]].mean()

    def threshold(self, base, axis, a, b):
        w = self.width[AXIS[axis]]
        return max(base, VOXELS * w, max(PARTNER_MM, PARTNER_VOXELS * w) if _partners(a, b) else 0.0)

    # -- the relations, each (outcome, margin) or None when it must not be asked -------------------------

    def direction(self, a, b, axis):
        if self.cut_along(a, axis) or self.cut_along(b, axis):
            return None
        d = self.centroid(a)[AXIS[axis]] - self.centroid(b)[AXIS[axis]]
        if abs(d) <= self.threshold(CENTROID_MM, axis, a, b):
            return None
        return (POSITIVE if d > 0 else NEGATIVE)[axis], abs(d)

    def reaches_beyond(self, a, b, toward):
        k, high = AXIS["si"], toward == "superior"
        d = self.xyz[a][:, k].max() - self.xyz[b][:, k].max() if high else self.xyz[b][:, k].min() - self.xyz[a][:, k].min()
        if abs(d) <= self.threshold(EXTENT_MM, "si", a, b):
            return None
        passed = b if d > 0 else a  # the one whose extreme point is passed must show that end
        if ("high" if high else "low") in self.cut[passed]["si"]:
            return None
        return d > 0, abs(d)

    def closer_to_midline(self, a, b, midlines):
        if self.cut_along(a, "lr") or self.cut_along(b, "lr"):
            return None
        xa, xb = self.centroid(a)[0], self.centroid(b)[0]
        lead = [abs(xb - m) - abs(xa - m) for m in midlines]
        thr = self.threshold(CENTROID_MM, "lr", a, b)
        if min(lead) > thr:
            return True, min(lead)
        if max(lead) < -thr:
            return False, -max(lead)
        return None

    def larger(self, a, b):
        va, vb = self.volume_ml(a), self.volume_ml(b)
        if self.touches(a) or self.touches(b) or max(va, vb) <= SIZE_RATIO * min(va, vb) or abs(va - vb) < SIZE_DIFFERENCE_ML:
            return None
        return va > vb, max(va, vb) / min(va, vb)

    def side(self, name):
        if self.cut_along(name, "lr"):
            return None
        x, m = self.xyz[name][:, 0], self.midline
        off = x.mean() - m
        margin = max(MIDLINE_MM, VOXELS * self.width[0])
        across = (x < m).mean() if off > 0 else (x > m).mean()
        reach = m - x.min() if off > 0 else x.max() - m
        if across > CROSS_SHARE or reach > margin or abs(off) <= margin + self.uncertainty:
            return None
        return ("right" if off > 0 else "left"), abs(off)

    def crosses_midline(self, name):
        x, m = self.xyz[name][:, 0], self.midline
        reach = min(m - x.min(), x.max() - m)
        thr = max(MIDLINE_MM, VOXELS * self.width[0]) + self.uncertainty
        if reach > thr:
            return "yes", reach
        if reach < -thr and not self.touches(name):
            return "no", -reach
        return None

    def contact(self, a, b):
        gap = self.gap(a, b)
        if gap <= CONTACT_TOLERANCE_MM and (gap <= 1e-3 or gap + self.diagonal <= CONTACT_TOLERANCE_MM):
            return "yes", gap
        if gap > max(CONTACT_TOLERANCE_MM + CONTACT_MARGIN_MM, self.diagonal):
            return "no", gap
        return None

    def inside(self, a, b):
        share = self.share_inside(a, b)
        return ("yes", share) if share >= CONTAINED else ("no", share) if share <= NOT_CONTAINED else None

    def outcome(self, spec):
        """(outcome, margin) of a relation spec, or None: what a reader can decide from the masks."""
        kind, names = spec["kind"], spec["structures"]
        midlines = np.linspace(self.midline - self.uncertainty, self.midline + self.uncertainty, 2001)
        if kind == "direction":
            return self.direction(names[0], names[1], spec["axis"])
        if kind == "side":
            return self.side(names[0])
        if kind == "crosses_midline":
            return self.crosses_midline(names[0])
        if kind == "contact":
            return self.contact(*names)
        if kind == "inside":
            return self.inside(*names)
        if kind == "touches_which":
            got = [self.contact(spec["anchor"], y) for y in names]
            if None in got or [g[0] for g in got].count("yes") != 1:
                return None
            return names[[g[0] for g in got].index("yes")], min(g[1] for g in got if g[0] == "no")
        crit, toward = spec["criterion"], spec["toward"]

        def beats(x, y):  # (x wins, margin) or None
            if crit == "axis":
                got = self.direction(x, y, spec["axis"])
                return None if got is None else (got[0] == toward, got[1])
            if crit == "midline":
                got = self.closer_to_midline(x, y, midlines)
                return None if got is None else (got[0] == (toward == "closer"), got[1])
            if crit == "size":
                got = self.larger(x, y)
                return None if got is None else (got[0] == (toward == "larger"), got[1])
            return self.reaches_beyond(x, y, toward)

        for x in names:
            results = [beats(x, y) for y in names if y != x]
            if all(r is not None and r[0] for r in results):
                return x, min(r[1] for r in results)
        return None


def _answer(item, outcome):
    spec = item.metadata["relation"]
    if spec["format"] == "yes_no":
        return "yes" if outcome == spec["asserts"] else "no"
    return item.options[spec["option_values"].index(outcome)]


@pytest.fixture(scope="module")
def fixture_items(tmp_path_factory):
    """`probe relations` then `probe questions --per-case 200 --seed 0` on the real fixture."""
    rel = tmp_path_factory.mktemp("rel") / "example.json"
    relations_for_case(FIXTURE_CT, FIXTURE_SEG, rel)
    return generate_questions(load_cases([rel]), QuestionSettings(per_case=200, seed=0))


@pytest.fixture(scope="module")
def masks():
    return Masks(FIXTURE_CT, FIXTURE_SEG)


def test_every_fixture_gold_recomputed_from_the_masks_by_independent_code(fixture_items, masks):
    items = fixture_items.items
    assert len(items) >= 180
    kinds = Counter()
    for it in items:
        got = masks.outcome(it.metadata["relation"])
        assert got is not None, f"a reader could not decide: {it.question}"
        assert _answer(it, got[0]) == it.answer, it.question
        if not (it.metadata["relation"]["kind"] == "contact" and got[1] > 15):  # far pairs: a lower bound there
            assert it.metadata["margin"] == pytest.approx(got[1], abs=0.01, rel=1e-6), it.question
        kinds[it.metadata["relation"].get("criterion") or it.metadata["relation"]["kind"]] += 1
    assert set(kinds) == {"side", "direction", "axis", "midline", "contact", "touches_which", "reach", "size",
                          "crosses_midline"}, kinds


def test_no_fixture_item_rests_on_what_the_field_of_view_cuts(fixture_items, masks):
    """The defects the fixture showed: the spinal cord "below T11 by centres" (T11 is 1.9 mL of its top, the
    cord is cut at both ends), the portal and splenic veins "on the left" (43% of them on the right), the colon
    "not on the right" (15% of it there); and no centroid used along an axis that cuts its structure."""
    items = fixture_items.items
    assert sum(masks.touches(n) for n in masks.xyz) == 33
    for it in items:
        spec, names = it.metadata["relation"], it.evidence["structures"]
        if spec["kind"] == "direction" or spec.get("criterion") == "axis":
            assert not any(masks.cut_along(n, spec["axis"]) for n in names), it.question
        if spec["kind"] == "side" or spec.get("criterion") == "midline":
            assert not any(masks.cut_along(n, "lr") for n in names), it.question
        if spec.get("criterion") == "size":
            assert not any(masks.touches(n) for n in names), it.question
        assert not ({"spinal_cord", "vertebrae_T11"} <= set(names) and spec["kind"] == "direction"), it.question
        assert not (spec["kind"] == "side" and names[0] in ("portal_vein_and_splenic_vein", "colon")), it.question
    assert not [it for it in items if "spinal cord lower in the body than the T11" in it.question]
    used_cut = [it for it in items if any(masks.touches(n) for n in it.evidence["structures"])]
    assert len(used_cut) > 30  # cut structures are still asked about, where the cut does not matter


def test_partner_comparisons_need_the_larger_margin(fixture_items, masks):
    """A left structure compared with its right partner ("Is the right 8th rib above the left 8th rib?", 5 mm
    apart on the fixture) needs max(10 mm, 2 voxels) along any axis."""
    partner_items = [it for it in fixture_items.items if len(it.evidence["structures"]) == 2
                     and _partners(*it.evidence["structures"]) and it.metadata["margin_unit"] == "mm"
                     and it.metadata["relation"]["kind"] in ("direction", "extreme")]
    assert len(partner_items) >= 4
    for it in partner_items:
        assert it.metadata["margin"] > max(PARTNER_MM, PARTNER_VOXELS * 3.0), it.question
    refused = fixture_items.refused["by_reason"]
    assert refused.get("partner_margin", 0) > 5  # the fixture's 5 mm rib asymmetries, among others


def test_midline_golds_do_not_depend_on_which_midline_estimate(fixture_items, masks):
    """Side, crossing and medial-lateral golds are decided, by their margins, the same way whichever midline
    estimate is taken for the midline: the spinal cord, the vertebrae or the body centre (1.6 mm apart on
    the fixture)."""
    assert 1.0 < masks.uncertainty < 3.0
    checked = 0
    for it in fixture_items.items:
        spec = it.metadata["relation"]
        if not (spec["kind"] in ("side", "crosses_midline") or spec.get("criterion") == "midline"):
            continue
        for m in masks.estimates:
            got = masks.at_midline(m).outcome(spec)
            assert got is not None and _answer(it, got[0]) == it.answer, (it.question, m)
        checked += 1
    assert checked > 40


def test_the_manifest_counts_what_was_refused_and_why(fixture_items):
    refused = fixture_items.refused
    assert refused["total"] == sum(refused["by_reason"].values()) > 100
    assert sum(n for cat in refused["by_category"].values() for n in cat.values()) == refused["total"]
    assert refused["by_category"]["longitudinal"]["cut_centroid"] > 50  # the slab cuts most structures along si
    assert refused["by_category"]["size"]["cut_size"] > 50
    assert refused["by_category"]["laterality"]["crosses_midline"] >= 2  # portal and splenic veins, colon, ...
    assert fixture_items.manifest_extra()["refused"]["rule"]
    assert "refused by the relation rules" in str(fixture_items)


# -- margins a reader can see --------------------------------------------------------------------------------

def _boxes_in_mm(spacing: float, shift_mm: float) -> LabelMap:
    """The same anatomy in mm at two resolutions: a midline bar at x = 0 (the spinal cord), a liver, a
    gallbladder ``shift_mm`` above it and a spleen ``shift_mm`` farther from the midline than the liver. Box
    faces lie on voxel boundaries of both grids (3 mm voxels centred on multiples of 3 mm, 0.7 mm voxels with
    a boundary at 0) except where shifted."""
    n = int(round(120 / spacing)) // 2 * 2 + (1 if spacing == 3.0 else 0)
    x = (np.arange(n) - (n - 1) / 2) * spacing  # voxel centres (mm), symmetric about 0
    X, Y, Z = x[:, None, None], x[None, :, None], x[None, None, :]
    lab = np.zeros((n, n, n), np.uint8)

    def box(lo, hi):
        return (X >= lo[0]) & (X <= hi[0]) & (Y >= lo[1]) & (Y <= hi[1]) & (Z >= lo[2]) & (Z <= hi[2])

    lab[box((-1, -40.5, -52.5), (1, -31.5, 52.5))] = 1  # spinal_cord
    lab[box((10.5, 0, -10.5), (31.5, 21, 10.5))] = 2  # liver
    lab[box((10.5, 0, 10.5 + shift_mm), (31.5, 21, 31.5 + shift_mm))] = 3  # gallbladder
    lab[box((-31.5 - shift_mm, 0, -10.5), (-10.5 - shift_mm, 21, 10.5))] = 4  # spleen
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = x[0]
    return LabelMap(lab, affine, {1: "spinal_cord", 2: "liver", 3: "gallbladder", 4: "spleen"})


def test_a_margin_under_one_voxel_is_indeterminate_at_3mm_and_decided_at_0_7mm():
    """1.4 mm, under one 3 mm voxel: at 3 mm the gallbladder's lowest voxels lie in the slice next to the
    liver's highest (centres 3 mm apart) and the spleen's voxels mirror the liver's; at 0.7 mm both
    differences show (2.1 mm between centres, 1.4 mm between centroids' distances from the midline)."""
    from volprobe.segmentation.relations import Relation, RelationThresholds
    from volprobe.segmentation.relations.stack import REASONS

    # the mm defaults set low so that only the voxel size stops them (at the defaults 1.4 mm never decides)
    low = RelationThresholds(centroid_margin_mm=0.5, extent_margin_mm=0.5, midline_margin_mm=0.5)
    coarse, fine = (build_relation_graph(_boxes_in_mm(s, 1.4), thresholds=low) for s in (3.0, 0.7))
    for g in (coarse, fine):
        assert g.midline.x_mm == pytest.approx(0.0, abs=1e-9) and g.midline.uncertainty_mm == 0.0
    assert coarse.extent_relation("gallbladder", "liver", "si") == Relation("indeterminate", pytest.approx(3.0))
    assert fine.extent_relation("gallbladder", "liver", "si") == Relation("superior", pytest.approx(2.1))
    assert coarse.closer_to_midline("liver", "spleen") == Relation("indeterminate", pytest.approx(0.0, abs=1e-9))
    assert fine.closer_to_midline("liver", "spleen") == Relation("liver", pytest.approx(1.4))
    why = coarse.stack.extent_relation("gallbladder", "liver", "si").reason[0]
    assert REASONS[why] == "under_voxel_margin"  # over the (lowered) mm default, within one voxel
    # in contact at 3 mm (no voxel between them); a 1.4 mm gap at 0.7 mm is within one voxel diagonal + tolerance
    assert coarse.contact("gallbladder", "liver").value == "yes"
    assert fine.contact("gallbladder", "liver") == Relation("indeterminate", pytest.approx(1.4))


def test_contact_needs_more_than_diagonal_neighbours():
    """At 3 mm, voxels touching only along an edge (1.24 mm gap) are not "in contact"; face neighbours are."""
    lab = np.zeros((12, 12, 12), np.uint8)
    lab[2:5, 2:5, 2:5] = 1
    lab[5:8, 5:8, 2:5] = 2  # edge neighbours of label 1 (diagonal in i, j)
    lab[2:5, 5:8, 2:5] = 3  # face neighbours of label 1
    g = build_relation_graph(LabelMap(lab, np.diag([3.0, 3.0, 3.0, 1.0]), {1: "liver", 2: "spleen", 3: "stomach"}))
    assert g.contact("liver", "spleen").value == "indeterminate"
    assert g.contact("liver", "spleen").margin == pytest.approx(3 * np.sqrt(2) - 3, abs=1e-6)
    assert g.contact("liver", "stomach").value == "yes"


# -- plain English ----------------------------------------------------------------------------------------

def test_every_superior_inferior_question_says_toward_the_head_or_feet(fixture_items):
    si = [it for it in fixture_items.items
          if it.metadata["relation"].get("axis") == "si" or it.metadata["category"] == "longitudinal"]
    assert len(si) > 40
    for it in si:
        assert re.search(r"\b(head|feet)\b", it.question), it.question
        assert re.search(r"\b(head|feet|head-foot)\b", it.metadata["open_question"]), it.metadata["open_question"]


def test_centroid_questions_say_they_are_judged_by_centres(fixture_items):
    for it in fixture_items.items:
        spec = it.metadata["relation"]
        if spec["kind"] == "direction" or spec.get("criterion") in ("axis", "midline"):
            assert "centre" in it.question, it.question


#: TotalSegmentator `total` classes whose plain names are plural, written out by hand.
PLURAL = {"pulmonary_vein", "portal_vein_and_splenic_vein", "costal_cartilages"}


def _specs_naming(name: str, other: str):
    """A spec of every yes/no and pick template with ``name`` in every role it can take."""
    for kind, asserts in (("side", "left"), ("crosses_midline", "yes"), ("crosses_midline", "no")):
        yield {"kind": kind, "format": "yes_no", "structures": [name], "asserts": asserts}
    for first, second in ((name, other), (other, name)):
        pair = {"format": "yes_no", "structures": [first, second]}
        for axis in AXIS:
            yield {**pair, "kind": "direction", "axis": axis, "asserts": POSITIVE[axis]}
            yield {"kind": "direction", "axis": axis, "format": "two_option", "structures": [first, second],
                   "option_values": [NEGATIVE[axis], POSITIVE[axis]]}
        for kind in ("contact", "inside"):
            for asserts in ("yes", "no"):
                yield {**pair, "kind": kind, "asserts": asserts}
        for crit, toward in (("midline", "closer"), ("size", "larger"), ("reach", "inferior"), ("reach", "superior")):
            spec = {**pair, "kind": "extreme", "criterion": crit, "toward": toward, "asserts": first}
            if crit == "reach":
                spec["axis"] = "si"
            yield spec
    yield {"kind": "touches_which", "format": "two_option", "anchor": name, "structures": [other, "liver"],
           "option_values": [other, "liver"]}


def test_verbs_agree_with_every_totalsegmentator_structure_name():
    from volprobe.probes.questions.templates import _open, the

    names = sorted(totalsegmentator_class_map("total").values())
    assert len(names) > 100
    singular_verbs = r"(?:Is|is|Does|does)"
    plural_verbs = r"(?:Are|are|Do|do)"
    for name in names:
        phrase = re.escape(the(name))
        plural = name in PLURAL
        wrong_before = plural_verbs if not plural else singular_verbs
        texts = set()
        for spec in _specs_naming(name, "gallbladder" if name != "gallbladder" else "spleen"):
            texts |= {render(spec, p).question for p in range(3)} | {_open(spec)}
        for text in texts:
            # a verb before the name agrees with it ("Are A and B in contact?" is plural by its "and")
            for m in re.finditer(rf"\b{wrong_before} {phrase}(?! and)\b", text):
                raise AssertionError(f"{name}: {text!r}")
            # a verb after it ("The costal cartilages touch which ...")
            assert not re.match(rf"{phrase} {'touches' if plural else 'touch'}\b", text, re.IGNORECASE), text
            # "not within it/them" refers to the container
            if re.search(rf"outside {phrase}, not within", text):
                assert text.endswith("them?" if plural else "it?"), text
        assert any(re.search(rf"\b{'Are' if plural else 'Is'} {phrase}\b", t) for t in texts), name
    # the defects the fixture showed
    bad = {"Does the portal and splenic veins", "The costal cartilages touches", "Is the pulmonary veins"}
    rendered = {render(s, p).question for n in PLURAL for s in _specs_naming(n, "liver") for p in range(3)}
    assert not [t for t in rendered for b in bad if t.startswith(b)]


# -- patient frame ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def phantom_in_every_orientation():
    from volprobe.segmentation.phantoms.generate import case_seed, make_phantom

    out = {}
    for o in ("RAS", "LPS", "LAS", "oblique"):
        ph = make_phantom(case_seed(0, 1), orientation=o, noise_hu=0.0)
        out[o] = (ph, build_relation_graph(ph.labels, ph.volume, case=o))
    return out


def test_cut_flags_and_side_shares_are_the_same_anatomy_in_every_orientation(phantom_in_every_orientation):
    _, ras = phantom_in_every_orientation["RAS"]
    cut = {n for n, s in ras.structures.items() if s.touches_border}
    assert {"spinal_cord", "autochthon_left", "iliopsoas_right"} <= cut  # cut by design, along si only
    assert ras.structures["spinal_cord"].cut("si") == "high" and ras.structures["autochthon_left"].cut("si") == "both"
    assert ras.structures["iliopsoas_right"].cut("si") == "low" and ras.structures["iliopsoas_right"].cut("lr") is None
    for o, (ph, g) in phantom_in_every_orientation.items():
        assert set(g.structures) == set(ras.structures), o
        for name, s in ras.structures.items():
            t = g.structures[name]
            assert (t.cut_low, t.cut_high) == (s.cut_low, s.cut_high), (o, name)
            # the same voxel centres in RAS, LPS and LAS; a rotated grid samples the anatomy a little differently
            tol = 1e-12 if o != "oblique" else 0.05
            assert t.left_share == pytest.approx(s.left_share, abs=tol), (o, name)
            assert t.right_share == pytest.approx(s.right_share, abs=tol), (o, name)
        sides = {n: g.side(n).value for n in ("spleen", "gallbladder", "kidney_left", "kidney_right", "liver")}
        assert sides == {"spleen": "left", "gallbladder": "right", "kidney_left": "left", "kidney_right": "right",
                         "liver": "indeterminate"}, o  # the liver's left lobe crosses the midline


def test_side_shares_count_every_voxel_on_an_oblique_grid(phantom_in_every_orientation):
    """Counted per run without visiting voxels; here every voxel centre's x, from the affine."""
    ph, g = phantom_in_every_orientation["oblique"]
    lab, affine = ph.labels.labels, ph.labels.affine
    ijk = np.indices(lab.shape).reshape(3, -1).T
    x = (ijk @ affine[:3, :3].T + affine[:3, 3])[:, 0]
    flat = lab.ravel()
    m = g.midline.x_mm
    for name, s in g.structures.items():
        inside = flat == s.label
        assert s.left_share * s.voxels == pytest.approx(np.count_nonzero(inside & (x < m)), abs=1e-6), name
        assert s.right_share * s.voxels == pytest.approx(np.count_nonzero(inside & (x > m)), abs=1e-6), name


def test_a_face_cuts_along_the_patient_axis_nearest_its_normal_and_along_both_at_45_degrees():
    from volprobe.segmentation.anatomy import face_cuts

    def rot(deg):
        c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
        a = np.eye(4)
        a[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) * 2.0
        return a

    lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    f = face_cuts(lps)  # [array axis, face, patient axis, end]
    assert f[0, 0, 0, 1] and f[0, 1, 0, 0] and f.sum() == 6  # i = 0 is the patient's right: LPS
    tilted = face_cuts(rot(10.0))
    assert tilted.sum() == 6 and tilted[0, 1, 0, 1] and tilted[1, 1, 1, 1]
    diagonal = face_cuts(rot(45.0))
    assert diagonal[0, 1, 0, 1] and diagonal[0, 1, 1, 1]  # the +i face: right and anterior
    assert diagonal[1, 1, 0, 0] and diagonal[1, 1, 1, 1]  # the +j face: left and anterior


def test_the_documented_defaults():
    from volprobe.segmentation.relations import RelationThresholds

    t = RelationThresholds()
    assert (t.centroid_margin_mm, t.extent_margin_mm, t.midline_margin_mm) == (CENTROID_MM, EXTENT_MM, MIDLINE_MM)
    assert (t.contact_tolerance_mm, t.contact_margin_mm) == (CONTACT_TOLERANCE_MM, CONTACT_MARGIN_MM)
    assert (t.contained_share, t.not_contained_share) == (CONTAINED, NOT_CONTAINED)
    assert (1 + t.size_ratio_margin, t.size_min_difference_ml) == (SIZE_RATIO, SIZE_DIFFERENCE_ML)
    assert (t.voxel_multiple, t.partner_margin_mm, t.partner_voxel_multiple) == (VOXELS, PARTNER_MM, PARTNER_VOXELS)
    assert t.max_cross_share == CROSS_SHARE


def test_no_side_is_judged_against_a_midline_guessed_from_the_labels():
    """Masks with neither spinal cord nor vertebrae, and no CT to find the body: the only midline left is the
    centre of mass of the labels, which organs pull to one side (a large liver on the right). Nothing is
    judged against it: every side, midline-crossing and medial-lateral relation is indeterminate, and no
    question about them is asked (one structure left or right of another still is). The same masks with a
    spinal cord are judged."""
    labels = _boxes_in_mm(3.0, 12.0)
    organs = labels.labels.copy()
    organs[organs == 1] = 0
    guessed = build_relation_graph(LabelMap(organs, labels.affine, {2: "liver", 3: "gallbladder", 4: "spleen"}))
    cord = build_relation_graph(labels)
    assert guessed.midline.source == "labels" and cord.midline.source == "spinal_cord"
    assert guessed.midline.uncertainty_mm > 50  # anywhere across the labels
    for name in ("liver", "gallbladder", "spleen"):
        assert cord.side(name).value in ("left", "right")
        assert guessed.side(name).value == "indeterminate"
        assert guessed.crosses_midline(name).value == "indeterminate"
    assert cord.closer_to_midline("liver", "spleen").value == "liver"
    assert guessed.closer_to_midline("liver", "spleen").value == "indeterminate"
    from volprobe.probes.questions.cases import QuestionCase

    def asked(graph):
        items = generate_questions([QuestionCase(graph, "test", "p", None)], QuestionSettings(per_case=200, seed=0))
        return Counter(i.metadata["relation"]["kind"] if i.category != "medial_lateral" else i.category
                       for i in items.items)

    stale = guessed.to_dict()  # a relations file written before: the guessed midline with no uncertainty
    stale["midline"]["uncertainty_mm"] = 0.0
    assert RelationGraph.from_dict(stale).side("liver").value == "indeterminate"
    midline_kinds = Counter(["side", "crosses_midline", "medial_lateral"])
    assert asked(guessed)["direction"] and not asked(guessed) & midline_kinds  # left/right of each other: asked
    assert all(asked(cord)[kind] for kind in midline_kinds)
