"""``random``: the chance reference model.

Closed items (choice, yes/no): one option drawn uniformly, seeded by (run seed, item id), so
the same item gets the same answer under every control and in every rerun; the answer is
written as ``"B. right"`` (letter and option text). Open and numeric items: the empty string
(a random model has nothing to say; the scorer gives it no credit). It never looks at the
volume (``uses_image = False``), so its accuracy is the same under every control.
"""

from __future__ import annotations

import random
from typing import Any, Sequence

from volprobe.seeding import derive_seed
from volprobe.items import Item
from volprobe.probes.models.base import Generation, ModelAdapter, Prepared, hash_bytes, register_model

OPEN_ANSWER = ""


@register_model("random")
class RandomModel(ModelAdapter):
    """Uniform guess over the item's options, seeded per (run seed, item id); open items get ''."""

    accepted_options = frozenset({"seed"})
    no_image_mode = "ignores any image (uniform guess over the options)"
    uses_image = False

    @property
    def revision(self) -> str:
        return "random-uniform-1"

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {"do_sample": False, "rule": "uniform over options, seeded by (run seed, item id)",
                "seed": self.seed, "open_answer": OPEN_ANSWER}

    @property
    def seed(self) -> int:
        return int(self.options.get("seed", self.run_seed))

    def prepare(self, volume) -> Prepared:
        return Prepared(data=None, input_hash=hash_bytes("random: no image"), no_image=True)

    def answer(self, item: Item) -> str:
        """The model's answer text for one item."""
        if not item.is_closed:
            return OPEN_ANSWER
        index = random.Random(derive_seed(self.seed, "random", item.id)).randrange(len(item.options))
        return item.as_output(item.options[index])

    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        return [Generation(self.answer(item)) for _, item in batch]
