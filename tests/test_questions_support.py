"""Shared data for the test_questions_*.py files (graphs are built once per test session).

No tests here: phantom and fixture relation graphs, in RAS and in other array layouts.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from conftest import FIXTURE_CT, FIXTURE_SEG
from volprobe.controls.counterfactuals import case_relations
from volprobe.probes.questions import QuestionSettings, case_from_graph, generate_questions
from volprobe.segmentation.masks import LabelMap, load_masks
from volprobe.segmentation.phantoms.generate import case_seed, make_phantom
from volprobe.segmentation.relations.graph import RelationGraph, build_relation_graph
from volprobe.segmentation.volume import Volume, load_volume

#: Organs whose relations the jittered phantoms vary (and a few fixed ones around them).
ORGANS = ("kidney_*", "liver", "spleen", "stomach", "lung_*", "aorta", "gallbladder", "pancreas", "heart")
N_PHANTOMS = 14


@lru_cache(maxsize=None)
def phantom_graph(index: int, orientation: str = "RAS", variation: float = 1.0) -> RelationGraph:
    """Relation graph of phantom ``index`` (seed ``case_seed(0, index)``), case id ``ph{index:02d}``, with its
    counterfactual graphs."""
    ph = make_phantom(case_seed(0, index), orientation=orientation, variation=variation, noise_hu=0.0)
    return case_relations(ph.labels, ph.volume, case=f"ph{index:02d}")


def phantom_graphs(n: int = N_PHANTOMS, orientation: str = "RAS", variation: float = 1.0) -> list[RelationGraph]:
    return [phantom_graph(i, orientation, variation) for i in range(n)]


@lru_cache(maxsize=None)
def fixture_volume_and_masks() -> tuple[Volume, LabelMap]:
    volume = load_volume(FIXTURE_CT)
    return volume, load_masks(FIXTURE_SEG, volume)


def flipped(volume: Volume, masks: LabelMap, axes: tuple[int, ...]) -> tuple[Volume, LabelMap]:
    """The same scan with its array reversed along ``axes`` and the affine adjusted (same patient space)."""
    affine = volume.affine.copy()
    for a in axes:
        n = volume.array.shape[a]
        affine[:3, 3] = affine[:3, 3] + affine[:3, a] * (n - 1)
        affine[:3, a] = -affine[:3, a]
    v = Volume(array=np.flip(volume.array, axes).copy(), affine=affine, source=volume.source)
    m = LabelMap(labels=np.flip(masks.labels, axes).copy(), affine=affine, names=dict(masks.names),
                 source=masks.source)
    return v, m


@lru_cache(maxsize=None)
def fixture_graph(layout: str = "RAS") -> RelationGraph:
    """The real fixture's graph (with its counterfactual graphs); ``layout`` 'LPS' stores the same scan with i
    and j reversed."""
    volume, masks = fixture_volume_and_masks()
    if layout == "LPS":
        volume, masks = flipped(volume, masks, (0, 1))
    return case_relations(masks, volume, case="example")


def generate(graphs, **settings):
    return generate_questions([case_from_graph(g) for g in graphs], QuestionSettings(**settings))
