"""Anatomy relation graphs: where structures lie relative to each other, in patient RAS+ mm.

- :mod:`.graph` — :class:`RelationGraph` of one case (build, save, load, summarise);
- :mod:`.stack` — :class:`RelationStack`: the relation queries, evaluated for many cases at once;
- :mod:`.geometry` — surface distances and containment measured on a label map.
"""

from volprobe.segmentation.relations.graph import (INDETERMINATE, RELATIONS_FORMAT, PairGeometry, Relation,
                                                   RelationGraph, RelationThresholds, build_relation_graph,
                                                   load_relation_graph, relations_for_case, summarize)
from volprobe.segmentation.relations.stack import RelationStack, StackRelation

__all__ = ["INDETERMINATE", "RELATIONS_FORMAT", "PairGeometry", "Relation", "RelationGraph", "RelationThresholds",
           "build_relation_graph", "load_relation_graph", "relations_for_case", "summarize", "RelationStack",
           "StackRelation"]
