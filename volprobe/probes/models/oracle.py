"""``oracle``: a reference model that answers spatial items by *reading the volume it is given*.

For each (volume, control) input it segments that volume — never the original masks — builds a
relation graph (:func:`~volprobe.segmentation.relations.build_relation_graph`) and answers each
item with :func:`~volprobe.probes.questions.answer_from_graph`, the same function that computed
the item's gold. So under a control it degrades exactly as an image reader would: a blank volume
has no anatomy, shuffled slices scramble superior/inferior, a mirrored volume moves the organs.
When the image cannot decide an item (structure not found, relation indeterminate, no image,
not a spatial item) it guesses uniformly among the options, seeded by (run seed, item id).

Segmenters:

* ``--model oracle`` — HU thresholding with the phantom codebook
  (:func:`~volprobe.segmentation.phantoms.segment.segment_phantom_by_threshold`): for volprobe's
  synthetic phantoms.
* ``--model oracle:WEIGHTS_DIR`` — TotalSegmentator (fast 3 mm model) with weights from
  ``WEIGHTS_DIR`` (a folder holding the ``Dataset*`` folders): for real CTs.
"""

from __future__ import annotations

import tempfile
from typing import Any, Sequence

from volprobe.errors import MaskError
from volprobe.seeding import seeded_random
from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared, hash_bytes, register_model


@register_model("oracle")
class OracleModel(ModelAdapter):
    """Segments the given volume, recomputes each item's relation, answers; guesses when it cannot."""

    accepted_options = frozenset({"seed"})
    no_image_mode = "no volume to segment: uniform guess over the options"
    uses_image = True

    @property
    def segmenter(self) -> str:
        return "totalsegmentator-fast" if self.path else "phantom-threshold"

    @property
    def revision(self) -> str:
        return f"oracle-1/{self.segmenter}"

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {"do_sample": False, "segmenter": self.segmenter, "weights_dir": self.path,
                "fallback": "uniform guess seeded by (run seed, item id)", "seed": self.seed}

    @property
    def seed(self) -> int:
        return int(self.options.get("seed", self.run_seed))

    def load(self) -> None:
        if self.path:  # fail now, not after hours, when TotalSegmentator weights are missing
            from volprobe.segmentation.totalseg.runner import locate_weights, required_weights

            locate_weights(required_weights(fast=True), self.path)

    # -- reading the image ----------------------------------------------------------------
    def segment(self, volume):
        """LabelMap of ``volume`` from the chosen segmenter."""
        if not self.path:
            from volprobe.segmentation.phantoms.segment import segment_phantom_by_threshold

            return segment_phantom_by_threshold(volume)
        from volprobe.segmentation.masks import load_masks
        from volprobe.segmentation.totalseg.runner import run_totalsegmentator

        with tempfile.TemporaryDirectory(prefix="volprobe-oracle-") as tmp:
            out = run_totalsegmentator(volume, tmp, fast=True, device=self.device, weights_dir=self.path)
            return load_masks(out, volume)

    def prepare(self, volume) -> Prepared:
        if volume is None:
            return Prepared(data=None, input_hash=hash_bytes("oracle: no image"), no_image=True)
        from volprobe.segmentation.relations.graph import build_relation_graph

        info: dict[str, Any] = {"segmenter": self.segmenter, "shape": list(volume.shape)}
        try:
            graph = build_relation_graph(self.segment(volume), volume, case="oracle-input")
            info["structures_found"] = len(graph.structures)
        except MaskError as exc:  # e.g. a blank volume: nothing to segment
            graph = None
            info["structures_found"] = 0
            info["note"] = str(exc)
        return Prepared(data=graph, input_hash=hash_bytes("oracle", volume.content_hash), info=info)

    # -- answering ----------------------------------------------------------------------------
    def guess(self, item: Item) -> int:
        return seeded_random(self.seed, "oracle", item.id).randrange(len(item.options))

    def answer(self, graph, item: Item) -> tuple[str, bool]:
        """(answer text, whether it was read from the image rather than guessed)."""
        if not item.is_closed:
            return "", False
        option = None
        if graph is not None and item.metadata.get("relation"):
            from volprobe.probes.questions import answer_from_graph

            option = answer_from_graph(item, graph)
        read = option is not None
        index = item.options.index(option) if read else self.guess(item)
        return item.as_output(item.options[index]), read

    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        out = []
        for prepared, item in batch:
            text, read = self.answer(prepared.data, item)
            out.append(Generation(text, info={"read_from_image": read}))
        return out
