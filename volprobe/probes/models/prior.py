"""``prior``: a blind baseline (question text only) as a model: ``--model prior:path/to/baseline.json``.

The baseline file comes from ``probe baseline fit`` (see :mod:`volprobe.probes.baselines`). The adapter
never reads the volume (``uses_image = False``); closed items are answered ``"B. No"`` (letter and
option text, which :func:`volprobe.probes.scoring.answers.score_output` parses), open items with the text.
"""

from __future__ import annotations

from typing import Sequence

from volprobe.errors import VolprobeError
from volprobe.manifest import sha256_file
from volprobe.probes.baselines import Baseline, load_baseline
from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared, hash_bytes, register_model


@register_model("prior")
class PriorModel(ModelAdapter):
    """Answers from the question text with a fitted blind baseline."""

    uses_image = False
    no_image_mode = "blind baseline: never reads an image"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", **options):
        super().__init__(path, device, dtype, **options)
        if not path:
            raise VolprobeError("the prior model needs a baseline file: --model prior:baseline.json "
                                "(make one with `probe baseline fit`)")
        self.baseline: Baseline | None = None
        self._revision: str | None = None

    @property
    def revision(self) -> str | None:
        """SHA-256 of the baseline file (set by :meth:`load`)."""
        return self._revision

    @property
    def generation_settings(self) -> dict:
        kind = self.baseline.kind if self.baseline else None
        return {"do_sample": False, "baseline_kind": kind}

    def load(self) -> None:
        self.baseline = load_baseline(self.path)
        self._revision = sha256_file(self.path)

    def prepare(self, volume) -> Prepared:
        return Prepared(data=None, input_hash=hash_bytes("no image"), no_image=True)

    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        if self.baseline is None:
            self.load()
        items = [item for _prepared, item in batch]
        answers = self.baseline.predict_many(items)  # type: ignore[union-attr]
        return [Generation(text=item.as_output(answer), info={"baseline": self.baseline.kind})
                for item, answer in zip(items, answers)]
