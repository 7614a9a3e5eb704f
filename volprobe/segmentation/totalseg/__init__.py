"""TotalSegmentator, offline: :mod:`.runner` (weights check, cache, one child process per CT),
:mod:`.child` (what runs inside that process) and :mod:`.standin` (a tiny stand-in model for tests)."""

from volprobe.segmentation.totalseg.runner import (SegmentResult, TotalSegmentatorError, locate_weights,
                                                   required_weights, run_totalsegmentator, segment_many)

__all__ = ["SegmentResult", "TotalSegmentatorError", "locate_weights", "required_weights", "run_totalsegmentator",
           "segment_many"]
