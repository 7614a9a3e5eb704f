"""Scoring model outputs: :mod:`.answers` (one output against one item), :mod:`.measurements` (lengths
in mm), :mod:`.spatial_terms` (side/level/direction words of free text), :mod:`.aggregate` (benchmark
headline numbers) and :mod:`.bertscore` (optional, local models only)."""

from volprobe.probes.scoring.answers import Scored, parse_choice, record_from_output, score_output

__all__ = ["Scored", "parse_choice", "record_from_output", "score_output"]
