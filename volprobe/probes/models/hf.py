"""``hf``: general image-text-to-text VLMs through ``AutoProcessor`` and the processor's chat template.

Works with any checkpoint that ``AutoModelForImageTextToText`` loads and whose processor has a chat
template: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Lingshu (Qwen2.5-VL based), InternVL (the ``-hf`` checkpoints),
MedGemma / Gemma 3, SmolVLM, LLaVA.

How the CT is shown (MedGemma authors' recipe):

* ``slices`` axial slices, evenly spaced (default 16; 85 when the model path or hub id contains
  "medgemma", as MedGemma's authors do), ordered inferior → superior, in radiological convention
  (patient's right on the image's left, anterior at the top) — all derived from the affine;
* each slice an RGB image whose channels are the CT in three HU windows: -1024..1024, -135..215, 0..80;
* one user turn: an instruction, then per slice the image followed by the text ``SLICE i``, then the
  question with its lettered options.

``text_only``: the chat holds the question alone: no images, no slice instruction (``no_image_mode``).
Decoding: greedy, batched with left padding; ``max_new_tokens`` (default 64) is an option.

Speed: the engine sends many items on one prepared volume. The processor's image processing (resizing
and normalising every slice, per item) would then dominate, so :class:`CachedImageProcessor` processes
each prepared slice list once and replays the result; the first joined batch is checked against the
real processor, and caching switches itself off for a processor whose outputs do not join.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Sequence

from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, hash_bytes, register_model
from volprobe.probes.models.vlm_common import VLMAdapter, ensure_pad_token, no_image_input, positive_int, run_groups
from volprobe.probes.models.weights import resolve_weights

DEFAULT_SLICES = 16
MEDGEMMA_SLICES = 85
DEFAULT_INSTRUCTION = (
    "You are given {n} axial CT slices of one patient, ordered from inferior (SLICE 1) to superior "
    "(SLICE {n}). They are shown in radiological convention: the patient's right is on the left of each "
    "image and anterior is at the top. The red, green and blue channels show the CT in three windows: "
    "-1024 to 1024 HU, -135 to 215 HU and 0 to 80 HU."
)


@register_model("hf")
class HFAdapter(VLMAdapter):
    """A Hugging Face image-text-to-text VLM shown the CT as HU-windowed axial slices.

    Options:
        slices: number of slices (default 16, or 85 for MedGemma).
        slice_size: resize each slice to this many pixels square before the processor (default: keep).
        instruction: text before the slices; ``{n}`` is replaced by the slice count.
        max_new_tokens: default 64.
        trust_remote_code: passed to ``from_pretrained`` (default False).
    """

    no_image_mode = "no images in the chat (question only)"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 slices: int | str | None = None, slice_size: int | str | None = None,
                 instruction: str = DEFAULT_INSTRUCTION, trust_remote_code: bool | str = False, **options: Any):
        super().__init__(path=path, device=device, dtype=dtype, **options)
        default = MEDGEMMA_SLICES if "medgemma" in (path or "").lower() else DEFAULT_SLICES
        self.slices = positive_int(default if slices is None else slices, "slices")
        self.slice_size = None if slice_size is None else positive_int(slice_size, "slice_size")
        self.instruction = instruction
        self.trust_remote_code = str(trust_remote_code).lower() in ("1", "true", "yes")
        self.processor = None

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {**super().generation_settings, "slices": self.slices, "slice_size": self.slice_size,
                "instruction": self.instruction}

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.weights = resolve_weights(self.path, model=self.name)
        folder = str(self.weights.path)
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True,
                                                       trust_remote_code=self.trust_remote_code)
        ensure_pad_token(self.processor.tokenizer)
        self.processor.tokenizer.padding_side = "left"
        if hasattr(self.processor, "image_processor"):
            self.processor.image_processor = CachedImageProcessor(self.processor.image_processor)
        self.model = AutoModelForImageTextToText.from_pretrained(
            folder, local_files_only=True, dtype=self.torch_dtype, trust_remote_code=self.trust_remote_code,
        ).to(self.torch_device)

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from PIL import Image

        from volprobe.probes.models.preprocessing import slice_images

        arrays, info = slice_images(volume, count=self.slices, size=self.slice_size)
        digest = hash_bytes("hf-slices", *(f"{a.shape}" for a in arrays), *(a.tobytes() for a in arrays))
        return Prepared(data=[Image.fromarray(a) for a in arrays], input_hash=digest, info=info)

    def conversation(self, prepared: Prepared, item: Item) -> list[dict[str, Any]]:
        """The chat sent for one item: instruction, per slice an image then ``SLICE i``, then the question."""
        question = {"type": "text", "text": self.prompt(item)}
        if prepared.no_image:
            return [{"role": "user", "content": [question]}]
        images = prepared.data
        content: list[dict[str, Any]] = [{"type": "text", "text": self.instruction.replace("{n}", str(len(images)))}]
        for i, image in enumerate(images, start=1):
            content += [{"type": "image", "image": image}, {"type": "text", "text": f"SLICE {i}"}]
        return [{"role": "user", "content": content + [question]}]

    # -- generation -----------------------------------------------------------------
    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        self._require_loaded()
        texts = run_groups(len(batch), [p.no_image for p, _ in batch],
                           lambda idx: self._generate_group([batch[i] for i in idx]))
        return [Generation(text=t) for t in texts]

    def model_inputs(self, batch: Sequence[tuple[Prepared, Item]]):
        """Processor output (token ids, attention mask, pixel values ...) for a batch, on the model's device."""
        conversations = [self.conversation(p, it) for p, it in batch]
        inputs = self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt",
            processor_kwargs={"padding": True},
        )
        return inputs.to(self.torch_device, dtype=self.torch_dtype)

    def _generate_group(self, batch: Sequence[tuple[Prepared, Item]]) -> list[str]:
        import torch

        inputs = self.model_inputs(batch)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.greedy_kwargs(self.processor.tokenizer.pad_token_id))
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]


class CachedImageProcessor:
    """A processor's image processor that processes each list of images once and replays the output.

    A processor calls ``image_processor(images, **kwargs)`` with one image list per chat of the batch.
    Each chat's output (``real([images_of_one_chat], **kwargs)``) is kept for the last ``max_entries``
    image lists (keyed by the images' identity and the kwargs) and a batch's outputs are joined along the
    first axis. The first join of several chats is compared with a real call on the whole batch; if
    they differ (a processor with per-chat nested outputs), caching is switched off for good. Any other
    attribute is the wrapped processor's.
    """

    def __init__(self, real, max_entries: int = 4):
        self.real = real
        self.max_entries = max_entries
        self.entries: OrderedDict = OrderedDict()
        self.state = "unverified"  # then "on" or "off"
        self.hits = 0

    def __getattr__(self, name: str):
        return getattr(self.real, name)

    def __call__(self, images, **kwargs):
        nested = isinstance(images, (list, tuple)) and all(isinstance(s, (list, tuple)) for s in images)
        if self.state == "off" or not nested or not images:
            return self.real(images, **kwargs)
        parts = [self._one(list(sample), kwargs) for sample in images]
        if len(parts) == 1:
            return parts[0]
        try:
            joined = join_features(parts)
        except TypeError:
            joined = None
        if self.state == "unverified":
            real = self.real(images, **kwargs)
            self.state = "on" if joined is not None and same_features(real, joined) else "off"
            return real
        return joined if joined is not None else self.real(images, **kwargs)

    def _one(self, sample: list, kwargs: dict):
        key = (tuple(id(im) for im in sample), repr(sorted(kwargs.items())))
        if key in self.entries:
            self.entries.move_to_end(key)
            self.hits += 1
            return self.entries[key][1]
        out = self.real([sample], **kwargs)
        self.entries[key] = (sample, out)  # the images are kept alive so their ids stay unique
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)
        return out


def join_features(parts: Sequence):
    """Join image-processor outputs of several chats along the first axis (tensors, arrays, lists)."""
    import numpy as np
    import torch

    joined = {}
    for key in parts[0].keys():
        values = [p[key] for p in parts]
        if all(isinstance(v, torch.Tensor) for v in values):
            joined[key] = torch.cat(values)
        elif all(isinstance(v, np.ndarray) for v in values):
            joined[key] = np.concatenate(values)
        elif all(isinstance(v, list) for v in values):
            joined[key] = [x for v in values for x in v]
        else:
            raise TypeError(f"cannot join image-processor output {key!r}")
    return type(parts[0])(joined)


def same_features(a, b) -> bool:
    import numpy as np
    import torch

    if set(a.keys()) != set(b.keys()):
        return False
    for key in a.keys():
        x, y = a[key], b[key]
        if isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor):
            if x.shape != y.shape or not torch.equal(x, y):
                return False
        elif not np.array_equal(np.asarray(x, dtype=object), np.asarray(y, dtype=object)):
            return False
    return True
