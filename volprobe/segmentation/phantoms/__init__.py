"""Synthetic torso CTs with TotalSegmentator-named masks (volprobe's embedded data).

- :mod:`.generate` — phantoms on a grid in any orientation, written as NIfTI with a layout file;
- :mod:`.anatomy` — the torso design (structures, tissues, variation);
- :mod:`.shapes` — implicit solids the design is built from;
- :mod:`.segment` — a threshold segmenter that recovers the masks from a phantom's intensities.
"""

from volprobe.segmentation.phantoms.generate import (DEFAULT_SHAPE, DEFAULT_SPACING, ORIENTATIONS, Phantom,
                                                     case_seed, generate_phantoms, load_layout, make_phantom)
from volprobe.segmentation.phantoms.segment import segment_phantom_by_threshold

__all__ = ["DEFAULT_SHAPE", "DEFAULT_SPACING", "ORIENTATIONS", "Phantom", "case_seed", "generate_phantoms",
           "load_layout", "make_phantom", "segment_phantom_by_threshold"]
