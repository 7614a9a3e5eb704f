"""Spatial terms of a free-text answer (CT-SpatialVQA), grouped by patient axis, and their agreement.

The rules live in :mod:`volprobe.scoring_rules` (the statistics use them too, and may not import the
probes); this module keeps the scoring's import path.
"""

from volprobe.scoring_rules import AXES, spatial_agreement, spatial_term_label, spatial_terms

__all__ = ["AXES", "spatial_agreement", "spatial_term_label", "spatial_terms"]
