"""Counterfactual relation graphs: the relation graph of what a model sees under each geometric control.

For every registered control that ``changes_geometry`` (:func:`~volprobe.controls.geometric_controls`:
``mirror_lr``, ``flip_si``, ``flip_ap`` and any plugin), :func:`counterfactual_graph` applies the control to
the case's label map (:meth:`~volprobe.controls.Control.transform_labels`: the same voxel moves as the CT,
nearest neighbour, names as a reader of the transformed image gives them) and to its CT
(:meth:`~volprobe.controls.Control.apply_to_case`, for the body midline), and builds the relation graph of
the result with :func:`~volprobe.segmentation.relations.build_relation_graph` and the original's
thresholds, so every relation rule applies to it as to the original. A counterfactual gold is a relation
evaluated on that graph: right by construction for any grid orientation and any geometric control, with no
assumption about what the transform does. When the control says its label transform is an isometry of
patient space on this grid (:meth:`~volprobe.controls.Control.keeps_distances`: an array flip on a grid with
orthogonal axes), the pair geometry (surface distances, containment: most of the cost) is taken over from
the original graph, renamed; per-structure statistics, midline and audit are always recomputed.

:func:`case_relations` is a case's graph with these counterfactual graphs attached (what question
generation needs); :func:`relations_for_case` writes it as the relations file of ``probe relations``,
where the counterfactual graphs are stored too.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from volprobe.controls.base import Control, ControlError
from volprobe.controls.builtin import geometric_controls
from volprobe.segmentation.masks import LabelMap
from volprobe.segmentation.relations.graph import (CounterfactualGraph, RelationGraph, RelationThresholds,
                                                   build_relation_graph, case_from_path)
from volprobe.segmentation.volume import Volume


def counterfactual_graph(control: Control, label_map: LabelMap, volume: Volume | None,
                         graph: RelationGraph) -> CounterfactualGraph:
    """The relation graph of ``label_map`` (and ``volume``) under ``control``; ``graph`` is the original's.

    Raises:
        ControlError: the control's label transform and its CT transform disagree on the output grid, or the
            transform changes label ids.
    """
    labels = control.transform_labels(label_map)
    if set(labels.names) != set(label_map.names):
        raise ControlError(f"control {control.label!r}: transform_labels must keep the label ids (rename only)")
    cin = control.apply_to_case(volume if volume is not None else label_map.as_volume_grid(), graph.case)
    if cin.volume is None or not cin.volume.same_grid(labels.shape, labels.affine):
        raise ControlError(f"control {control.label!r}: transform_labels gives the grid "
                           f"{labels.shape} but apply gives the CT another one")
    renamed = {new: label_map.names[i] for i, new in labels.names.items()
               if label_map.names[i] != new and label_map.names[i] in graph.structures}
    reuse = (control.keeps_distances(label_map.affine) and labels.shape == label_map.shape
             and bool((labels.affine == label_map.affine).all()))
    pairs = graph.renamed({old: new for new, old in renamed.items()}).pairs if reuse else None
    transformed = build_relation_graph(labels, cin.volume if volume is not None else None, case=graph.case,
                                       thresholds=graph.thresholds, pair_geometry=pairs)
    transformed.source = {**graph.source, "transform": control.label}
    return CounterfactualGraph(control.label, dict(cin.params), transformed, renamed, reuse)


def case_relations(label_map: LabelMap, volume: Volume | None, *, case: str | None = None,
                   thresholds: RelationThresholds | None = None,
                   controls: Sequence[Control] | None = None) -> RelationGraph:
    """The relation graph of a case with a counterfactual graph for every geometric control (``controls``,
    default :func:`~volprobe.controls.geometric_controls`)."""
    graph = build_relation_graph(label_map, volume, case=case, thresholds=thresholds)
    for control in geometric_controls() if controls is None else controls:
        graph.counterfactuals[control.label] = counterfactual_graph(control, label_map, volume, graph)
    return graph


def relations_for_case(ct: str | Path, masks: str | Path, out: str | Path, *, resample_masks: bool = False,
                       thresholds: RelationThresholds | None = None, case: str | None = None) -> RelationGraph:
    """``probe relations``: read a CT and its masks, build the graph with its counterfactual graphs
    (:func:`case_relations`), write it as JSON with a manifest beside it."""
    from volprobe.manifest import write_manifest
    from volprobe.segmentation.masks import load_masks
    from volprobe.segmentation.volume import load_volume

    volume = load_volume(ct)
    label_map = load_masks(masks, volume, resample=resample_masks)
    graph = case_relations(label_map, volume, case=case or case_from_path(str(ct)), thresholds=thresholds)
    graph.save(out)
    write_manifest(out, "probe relations", inputs=[ct, masks],
                   input_hashes={"ct_content": graph.ct_hash or "", "labels_content": graph.labels_hash},
                   parameters={"resample_masks": resample_masks, "thresholds": asdict(graph.thresholds)},
                   extra={"laterality_audit_passed": graph.audit.passed, "masks_reoriented": label_map.reoriented,
                          "counterfactuals": {name: {"params": cf.params, "pairs_reused": cf.pairs_reused}
                                              for name, cf in graph.counterfactuals.items()}})
    return graph
