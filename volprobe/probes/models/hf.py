"""``hf``: general image-text-to-text VLMs through ``AutoProcessor`` and the processor's chat template.

Works with any checkpoint that ``AutoModelForImageTextToText`` loads and whose processor has a chat
template: Qwen2-VL, Qwen2.5-VL, Qwen3-VL, Lingshu (Qwen2.5-VL based), InternVL (the ``-hf`` checkpoints),
MedGemma / Gemma 3, SmolVLM, LLaVA.

How the CT is shown is a *chat preset* (:data:`CHAT_PRESETS`), chosen from the model's ``config.json``
(its architecture, and a MedGemma name in ``_name_or_path`` when there is one), never from the folder's
name (:func:`preset_for_config`); ``--model-option preset=NAME`` picks another, single fields are
overridden with ``slices=85``, ``windows=...``, ``sampling=``, ``slice_order=``, ``slice_size=``,
``image_format=``, ``instruction=``, ``question=``, ``max_new_tokens=``. The chosen preset and why are
recorded with every answer.

* ``medgemma`` (Gemma 3 architecture: MedGemma's): the Google-Health/medgemma CT notebook
  (``notebooks/high_dimensional_ct_hugging_face.ipynb``): 85 slices sampled as the notebook does, each an
  RGB image whose channels are the CT in three HU windows (-1024..1024, -135..215, 0..80), rounded to
  uint8 and sent as JPEG; one user turn: the notebook's instruction (without its case-specific "from the
  centre of the abdomen"), per slice the image then ``SLICE i``, then the question after the notebook's
  "Based on the visual evidence in the slices provided above, ..." (worded for any question as
  CT-SpatialVQA's MedGemma harness does); ``do_sample=False`` and up to 2000 new tokens (the model
  reasons, then concludes);
* ``generic`` (any other architecture; there is no published CT recipe): 16 evenly spaced slices, the
  same three windows, volprobe's instruction stating slice order, display convention and windows, and
  64 new tokens (the prompt asks for a letter).

Slices are ordered inferior → superior (``slice_order``) in radiological convention (patient's right on
the image's left, anterior at the top), all derived from the affine. The notebook orders DICOM instances
by InstanceNumber, which follows the scanner, not the patient; volprobe fixes the patient order.

``text_only``: the chat holds the question alone: no images, no slice instruction (``no_image_mode``).
Decoding: greedy, batched with left padding. The model's own generation config applies (e.g.
Qwen2.5-VL's ``repetition_penalty`` 1.05) and every effective value is recorded.

Speed: the engine sends many items on one prepared volume. The processor's image processing (resizing
and normalising every slice, per item) would then dominate, so :class:`CachedImageProcessor` processes
each prepared slice list once and replays the result; the first joined batch is checked against the
real processor, and caching switches itself off for a processor whose outputs do not join.

Encode once, ask many (option ``reuse``, default on): the instruction and the slices come before the
question, so every question on one input shares a token prefix holding all the images. That prefix is run
through the model once per input (the vision tower and the language model), its key/value cache kept, and
each question continues from a copy (``generate`` with the cache: the model sees only the question's
tokens and drops the pixel values, as ``transformers`` does for cached decoding; models that keep
multimodal rotary offsets between calls, Qwen2.5-VL's ``rope_deltas``, get the prefix's back). The first
questions that use it are also answered the plain way and compared (the first answer token's scores and
the whole answer); on any difference reuse switches itself off for the run and says so in the settings.
``reuse=false`` never uses it.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Sequence

from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, hash_bytes, register_model
from volprobe.probes.models.preprocessing import GENERIC_SLICES, MEDGEMMA_SLICES, SlicePreset, parse_flag
from volprobe.errors import InvalidValueError, VolprobeError
from volprobe.probes.models.vlm_common import (VLMAdapter, cached_generation, choice, copied_cache, dtype_kwarg,
                                               ensure_pad_token, greedy_kwargs, no_image_input, run_groups,
                                               transformers_version)
from volprobe.probes.models.weights import resolve_weights

DEFAULT_INSTRUCTION = (
    "You are given {n} axial CT slices of one patient, ordered from inferior (SLICE 1) to superior "
    "(SLICE {n}). They are shown in radiological convention: the patient's right is on the left of each "
    "image and anterior is at the top. The red, green and blue channels show the CT in three windows: "
    "-1024 to 1024 HU, -135 to 215 HU and 0 to 80 HU."
)
#: The CT notebook's instruction without its case-specific "from the center of the abdomen".
MEDGEMMA_INSTRUCTION = ("You are an instructor teaching medical students. You are analyzing a contiguous block of "
                        "CT slices. Please review the slices provided below carefully.")
#: The notebook's query opening, worded for any question (as CT-SpatialVQA's MedGemma harness words it).
MEDGEMMA_QUESTION = ("\n\nBased on the visual evidence in the slices provided above, answer the question below. "
                     "Provide concise reasoning and conclude with a final answer.\n\nQuestion: {prompt}")


@dataclass(frozen=True)
class ChatPreset:
    """How a 2D VLM is shown a CT: the slices (:class:`SlicePreset`), the text around them, the output length.

    Attributes:
        instruction: text before the slices (``{n}`` = slice count).
        question: text after the slices; ``{prompt}`` = the item's prompt.
        max_new_tokens: output limit (enough for the model's answer style).
    """

    name: str
    slices: SlicePreset
    instruction: str
    question: str
    max_new_tokens: int
    source: str

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "source": self.source, "instruction": self.instruction, "question": self.question,
                "max_new_tokens": self.max_new_tokens, "slices": self.slices.record()}


CHAT_PRESETS = {
    "medgemma": ChatPreset(
        name="medgemma", slices=MEDGEMMA_SLICES, instruction=MEDGEMMA_INSTRUCTION, question=MEDGEMMA_QUESTION,
        max_new_tokens=2000,
        source="Google-Health/medgemma notebooks/high_dimensional_ct_hugging_face.ipynb (slices, windows, instruction, "
               "do_sample=False, max_new_tokens=2000); question wording from Mashrafi27/CT-SpatialVQA "
               "benchmarking/inference/medgemma/run_custom_eval.py"),
    "generic": ChatPreset(name="generic", slices=GENERIC_SLICES, instruction=DEFAULT_INSTRUCTION, question="{prompt}",
                          max_new_tokens=64, source="volprobe (no published CT recipe for this architecture)"),
}
#: Architectures (``config.json`` ``architectures`` / ``model_type``) whose CT recipe is MedGemma's.
MEDGEMMA_ARCHITECTURES = ("Gemma3ForConditionalGeneration",)
MEDGEMMA_MODEL_TYPES = ("gemma3",)


def preset_for_config(config: dict) -> tuple[str, str]:
    """The chat preset a model's ``config.json`` calls for, and why (recorded).

    A MedGemma name in ``_name_or_path`` or the Gemma 3 architecture (MedGemma's; its CT notebook is the
    only published CT recipe for it) → ``medgemma``; anything else → ``generic``. The folder's name is
    never looked at.
    """
    names = [str(config.get(k) or "") for k in ("_name_or_path", "name_or_path")]
    named = next((n for n in names if "medgemma" in n.lower()), None)
    if named:
        return "medgemma", f"config.json names {named!r}"
    archs = list(config.get("architectures") or [])
    if set(archs) & set(MEDGEMMA_ARCHITECTURES) or config.get("model_type") in MEDGEMMA_MODEL_TYPES:
        return "medgemma", f"config.json architecture {archs or config.get('model_type')} (Gemma 3, MedGemma's)"
    return "generic", f"config.json architecture {archs or config.get('model_type') or 'unknown'} (no published CT recipe)"


@register_model("hf")
class HFAdapter(VLMAdapter):
    """A Hugging Face image-text-to-text VLM shown the CT as HU-windowed axial slices.

    Options:
        preset: ``auto`` (default: from config.json), ``medgemma`` or ``generic``.
        slices, sampling, windows, slice_order, slice_size, image_format: overrides of the slice preset.
        instruction: text before the slices (``{n}`` = slice count); question: text after them (``{prompt}``).
        max_new_tokens: default from the preset (2000 MedGemma, 64 generic).
        trust_remote_code: passed to ``from_pretrained`` (default False).
    """

    no_image_mode = "no images in the chat (question only)"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 preset: str = "auto", slices: Any = None, sampling: Any = None, windows: Any = None,
                 slice_order: Any = None, slice_size: Any = None, image_format: Any = None,
                 instruction: str | None = None, question: str | None = None, max_new_tokens: Any = None,
                 trust_remote_code: bool | str = False, reuse: Any = True):
        super().__init__(path=path, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        #: "unverified" (checked against recomputing on first use), then "on", or "off"
        self.reuse_state = "unverified" if parse_flag(reuse, "reuse") else "off"
        self.reuse_note = "" if self.reuse_state != "off" else "off (reuse=false)"
        self.preset_name = choice(preset, "preset", ("auto", *CHAT_PRESETS))
        self.slice_options = dict(slices=slices, sampling=sampling, windows=windows, slice_order=slice_order,
                                  slice_size=slice_size, image_format=image_format)
        GENERIC_SLICES.with_options(self.slice_options)  # check the values now, not after loading
        if question is not None and "{prompt}" not in question:
            raise InvalidValueError(f"option question={question!r} must contain {{prompt}} (where the item's question goes)")
        self.text_options = {"instruction": instruction, "question": question}
        self.trust_remote_code = str(trust_remote_code).lower() in ("1", "true", "yes")
        self.chat: ChatPreset | None = None
        self.preset_reason: str | None = None
        self.processor = None

    # -- the preset -----------------------------------------------------------------
    def resolve_preset(self, config: dict) -> ChatPreset:
        """The chat preset for a model with this ``config.json``, with the user's overrides (also kept)."""
        if self.preset_name == "auto":
            name, self.preset_reason = preset_for_config(config)
        else:
            name, self.preset_reason = self.preset_name, "chosen with --model-option preset"
        base = CHAT_PRESETS[name]
        chat = dataclasses.replace(base, slices=base.slices.with_options(self.slice_options),
                                   **{k: v for k, v in self.text_options.items() if v is not None})
        changed = sorted([k for k, v in self.slice_options.items() if v is not None]
                         + [k for k, v in self.text_options.items() if v is not None]
                         + (["max_new_tokens"] if self.max_new_tokens is not None else []))
        if changed:
            chat = dataclasses.replace(chat, name=f"{chat.name}+{'+'.join(changed)}")
        self.chat = chat
        return chat

    @property
    def slices(self) -> int | None:
        return None if self.chat is None else self.chat.slices.slices

    @property
    def instruction(self) -> str | None:
        return None if self.chat is None else self.chat.instruction

    def generate_kwargs(self) -> dict[str, Any]:
        """Greedy; ``max_new_tokens`` from the option, else from the preset (None before the preset is known)."""
        limit = self.max_new_tokens or (self.chat.max_new_tokens if self.chat else None)
        return greedy_kwargs(limit, self.pad_token_id())

    def pad_token_id(self) -> int | None:
        tokenizer = getattr(self.processor, "tokenizer", None)
        return None if tokenizer is None else tokenizer.pad_token_id

    @property
    def generation_settings(self) -> dict[str, Any]:
        chat = self.chat.record() if self.chat else None
        return {**super().generation_settings, "preset": chat, "preset_reason": self.preset_reason,
                "slices": self.slices, "reuse_image_prefix": self.reuse_note or self.reuse_state}

    def _load(self) -> None:
        self.weights = resolve_weights(self.path, model=self.name)
        folder = str(self.weights.path)
        self.resolve_preset(read_config(self.weights.path))
        try:
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise VolprobeError(f"{self.name}: the installed transformers has no AutoModelForImageTextToText ({exc}); "
                                "the hf adapter needs transformers >= 4.50 (Gemma 3 / MedGemma, Qwen2.5-VL)") from exc
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True,
                                                       trust_remote_code=self.trust_remote_code)
        ensure_pad_token(self.processor.tokenizer)
        self.processor.tokenizer.padding_side = "left"
        if hasattr(self.processor, "image_processor"):
            self.processor.image_processor = CachedImageProcessor(self.processor.image_processor)
        self.model = AutoModelForImageTextToText.from_pretrained(
            folder, local_files_only=True, trust_remote_code=self.trust_remote_code, **dtype_kwarg(self.torch_dtype),
        ).to(self.torch_device)

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from PIL import Image

        from volprobe.probes.models.preprocessing import slice_images

        if self.chat is None:
            raise VolprobeError(f"{self.name}: call load() before prepare() (the preset comes from the model's config)")
        arrays, info = slice_images(volume, self.chat.slices)
        digest = hash_bytes("hf-slices", *(f"{a.shape}" for a in arrays), *(a.tobytes() for a in arrays))
        return Prepared(data=[Image.fromarray(a) for a in arrays], input_hash=digest, info=info)

    def conversation(self, prepared: Prepared, item: Item) -> list[dict[str, Any]]:
        """The chat sent for one item: instruction, per slice an image then ``SLICE i``, then the question."""
        if prepared.no_image:
            return [{"role": "user", "content": [{"type": "text", "text": self.prompt(item)}]}]
        images = prepared.data
        question = {"type": "text", "text": self.chat.question.replace("{prompt}", self.prompt(item))}
        content: list[dict[str, Any]] = [{"type": "text", "text": self.chat.instruction.replace("{n}", str(len(images)))}]
        for i, image in enumerate(images, start=1):
            content += [{"type": "image", "image": image}, {"type": "text", "text": f"SLICE {i}"}]
        return [{"role": "user", "content": content + [question]}]

    # -- generation -----------------------------------------------------------------
    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        self._require_loaded()
        reuse = self.reuse_state != "off"
        texts = run_groups(len(batch), [(p.no_image, id(p) if reuse and not p.no_image else 0) for p, _ in batch],
                           lambda idx: self._generate_group([batch[i] for i in idx]))
        return [Generation(text=t) for t in texts]

    def model_inputs(self, batch: Sequence[tuple[Prepared, Item]]):
        """Processor output (token ids, attention mask, pixel values ...) for a batch, on the model's device."""
        conversations = [self.conversation(p, it) for p, it in batch]
        padding = ({"processor_kwargs": {"padding": True}} if transformers_version() >= (5,) else {"padding": True})
        inputs = self.processor.apply_chat_template(
            conversations, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt", **padding)
        return inputs.to(self.torch_device, dtype=self.torch_dtype)

    def _generate_group(self, batch: Sequence[tuple[Prepared, Item]]) -> list[str]:
        import torch

        inputs = self.model_inputs(batch)
        prepared = batch[0][0]
        if self.reuse_state != "off" and not prepared.no_image and bool(inputs["attention_mask"].all()):
            return self._generate_reused(prepared, batch, inputs)
        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.generate_kwargs())
        return self._decode_new(out, inputs)

    def _decode_new(self, out, inputs) -> list[str]:
        new_tokens = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.batch_decode(new_tokens, skip_special_tokens=True)]

    def _prefix_length(self, prepared: Prepared, item: Item, ids) -> int:
        """Tokens shared by every question on ``prepared``: the common prefix of this item's tokens and those of
        the same chat with another question, less one token (a word may merge across the join)."""
        other = dataclasses.replace(item, question=item.question + " (another question)", options=[], answer="",
                                    answer_type="open")
        ref = self.model_inputs([(prepared, other)])["input_ids"][0]
        n = min(len(ref), ids.shape[1])
        same = (ref[:n] == ids[0, :n]).long()
        return int(same.cumprod(0).sum()) - 1

    def _generate_reused(self, prepared: Prepared, batch: Sequence[tuple[Prepared, Item]], inputs) -> list[str]:
        """Answers continued from the cached prefix of ``prepared`` (module docstring); checked against recomputing
        until that has agreed once."""
        import torch

        ids = inputs["input_ids"]
        state = prepared.reuse.get("hf_prefix")
        if state is None:
            n = self._prefix_length(prepared, batch[0][1], ids)
            with cached_generation():
                out = self.model(**_prefix_inputs(inputs, n), use_cache=True)
            state = prepared.reuse["hf_prefix"] = (n, ids[0, :n].clone(), out.past_key_values, _rope_state(self.model))
        n, prefix_ids, cache, rope = state
        if ids.shape[1] <= n or not bool((ids[:, :n] == prefix_ids).all()):
            return self._generate_plain(inputs)
        past = copied_cache(cache, len(batch))
        _set_rope_state(self.model, rope, len(batch))
        kwargs = {**self.generate_kwargs(), "return_dict_in_generate": True, "output_scores": True}
        tokens_only = {k: v for k, v in inputs.items()  # the images are in the cache: no pixel values again
                       if tuple(getattr(v, "shape", ()))[:2] == tuple(ids.shape)}
        with cached_generation():
            reused = self.model.generate(**tokens_only, past_key_values=past, **kwargs)
        texts = self._decode_new(reused.sequences, inputs)
        if self.reuse_state == "unverified":
            with torch.inference_mode():
                plain = self.model.generate(**inputs, **kwargs)
            tol = 1e-4 if self.torch_dtype == torch.float32 else 5e-2  # half precision: the last bits differ
            same = (plain.sequences.shape == reused.sequences.shape and bool((plain.sequences == reused.sequences).all())
                    and torch.allclose(plain.scores[0].float(), reused.scores[0].float(), rtol=tol, atol=tol))
            self.reuse_state = "on" if same else "off"
            if not same:
                self.reuse_note = "off (answers from the cached prefix differed from recomputing)"
                return self._decode_new(plain.sequences, inputs)
        return texts

    def _generate_plain(self, inputs) -> list[str]:
        import torch

        with torch.inference_mode():
            out = self.model.generate(**inputs, **self.generate_kwargs())
        return self._decode_new(out, inputs)

    # -- probe doctor ---------------------------------------------------------------
    def diagnose(self) -> list:
        from volprobe.probes.models.doctor import (Check, attempt, ensure, folder_of, on_meta_device, read_json_file,
                                                   weight_files_check)

        checks = super().diagnose()
        folder = folder_of(checks, self)
        if folder is None:
            return checks
        config, check = read_json_file(folder / "config.json", "config")
        checks.append(check)
        if config is None:
            return checks
        checks.append(weight_files_check(folder))
        needs_code = "auto_map" in config
        if needs_code and not self.trust_remote_code:
            checks.append(Check("model code", "problem", "config.json maps to the model's own code (auto_map), which "
                                "runs only when trusted", "add --model-option trust_remote_code=true if you trust it"))
        archs = list(config.get("architectures") or [])
        if archs and not needs_code:
            import transformers

            missing = [a for a in archs if not hasattr(transformers, a)]
            if missing:
                checks.append(Check("libraries", "problem", f"transformers {transformers.__version__} has no "
                                    f"{', '.join(missing)}", "install a transformers version that has it "
                                    "(Gemma 3 / MedGemma: >= 4.50; Qwen2.5-VL: >= 4.49)"))

        def processor() -> str:
            from transformers import AutoProcessor

            proc = AutoProcessor.from_pretrained(str(folder), local_files_only=True,
                                                 trust_remote_code=self.trust_remote_code)
            ensure(getattr(proc, "chat_template", None), "the processor has no chat template")
            return f"{type(proc).__name__} with a chat template"

        checks.append(attempt("processor", processor, lambda exc: "the folder needs the processor files "
                              "(preprocessor_config.json, tokenizer files, chat_template)"))

        def builds() -> str:
            from transformers import AutoConfig, AutoModelForImageTextToText

            cfg = AutoConfig.from_pretrained(str(folder), local_files_only=True, trust_remote_code=self.trust_remote_code)
            with on_meta_device():
                model = AutoModelForImageTextToText.from_config(cfg, trust_remote_code=self.trust_remote_code)
            return f"{type(model).__name__} builds with the installed transformers"

        checks.append(attempt("model code", builds, lambda exc: "install a transformers version that supports this "
                              "architecture (pyproject bounds; README: Models, GPUs and offline weights)"))
        chat = self.resolve_preset(config)
        checks.append(Check("preset", "ok", f"{chat.name} ({self.preset_reason}): {chat.slices.slices} slices, "
                            f"windows {[list(w) for w in chat.slices.windows]}, up to {self.generate_kwargs()['max_new_tokens']} "
                            f"new tokens ({chat.source})"))
        return checks


def read_config(folder) -> dict:
    """A model folder's ``config.json`` as a dict (empty when missing)."""
    import json
    from pathlib import Path

    path = Path(folder) / "config.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _prefix_inputs(inputs, n: int) -> dict:
    """The first chat's first ``n`` tokens and its images, from a processor output of chats that share one image
    list: per-token tensors (rows x tokens ...) are cut to ``[:1, :n]``, per-image tensors to the first chat's share."""
    rows, length = inputs["input_ids"].shape
    out = {}
    for key, value in inputs.items():
        shape = tuple(getattr(value, "shape", ()))
        if len(shape) >= 2 and shape[:2] == (rows, length):
            out[key] = value[:1, :n]
        elif shape and shape[0] % rows == 0:
            out[key] = value[: shape[0] // rows]
        else:
            out[key] = value
    return out


def _rope_state(model):
    """Multimodal rotary offsets a model keeps between calls (Qwen2-VL family ``rope_deltas``), or None."""
    inner = getattr(model, "model", model)
    deltas = getattr(inner, "rope_deltas", None)
    return None if deltas is None else deltas[:1].clone()


def _set_rope_state(model, deltas, rows: int) -> None:
    inner = getattr(model, "model", model)
    if deltas is not None and hasattr(inner, "rope_deltas"):
        inner.rope_deltas = deltas.expand(rows, *deltas.shape[1:]).clone()


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
