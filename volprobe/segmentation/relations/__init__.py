"""Anatomy relation graphs: where structures lie relative to each other, in patient RAS+ mm.

- :mod:`.rules` — the shared types: :class:`RelationThresholds`, :class:`Relation`, :class:`PairGeometry`;
- :mod:`.stack` — :class:`RelationStack`: the relation rules, evaluated for one case or many at once;
- :mod:`.graph` — :class:`RelationGraph` of one case (build, save, load, summarise); its relation
  queries read its own stack of one;
- :mod:`.geometry` — surface distances and containment measured on a label map.
"""

from volprobe.segmentation.relations.graph import (RELATIONS_FORMAT, CounterfactualGraph, RelationGraph,
                                                   build_relation_graph, load_relation_graph, summarize)
from volprobe.segmentation.relations.rules import INDETERMINATE, PairGeometry, Relation, RelationThresholds
from volprobe.segmentation.relations.stack import OVERLAP, RelationStack, StackRelation

__all__ = ["INDETERMINATE", "RELATIONS_FORMAT", "CounterfactualGraph", "PairGeometry", "Relation", "RelationGraph",
           "RelationThresholds", "build_relation_graph", "load_relation_graph", "summarize", "OVERLAP",
           "RelationStack", "StackRelation"]
