"""``m3d``: M3D-LaMed (``GoodBaiBai88/M3D-LaMed-Phi-3-4B``, ``-Llama-2-7B``) and 3D-RAD's M3D-RAD fine-tunes.

Follows M3D's public code (``LaMed/src/model``, the hub model's remote code, 3D-RAD's
``Bench/eval/eval_3DRAD.py``):

* loading: ``AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`` and
  ``AutoTokenizer.from_pretrained(..., use_fast=False, trust_remote_code=True)``, both offline;
* volume: float tensor ``1 x 1 x 32 x 256 x 256`` (B, C, D, H, W), min-max scaled to [0, 1], built by
  :func:`~volprobe.probes.models.preprocessing.m3d_volume` (MONAI; orientation from the affine);
* prompt: ``"<im_patch>" * 256 + " " + question``; M3D's ``prepare_inputs_for_multimodal`` writes the
  image features over positions 1..256 whatever the tokens are: over the ``<im_patch>`` tokens when the
  tokenizer adds a BOS token (LLaMA, Phi-3), shifted by one when it does not (Qwen2.5 in Med3DVLM: the
  first ``<im_patch>`` stays and the space after the last is overwritten) — reproduced, and recorded as
  ``im_patch_start``; closed questions get 3D-RAD's suffix ``\\nChoices: A. .. B. ..\\nAnswer:``;
* decoding: ``model.generate(images=..., inputs=..., max_new_tokens=256, do_sample=False)``.

Batching (option ``batching``): M3D's ``generate`` ignores ``attention_mask`` and splices at fixed
positions, so padded batches would be wrong. ``exact`` (default) batches only prompts of equal token
length (no padding) through the authors' ``generate``; ``padded`` left-pads, writes the image features
over positions 1..256 after the padding itself and calls the generic ``GenerationMixin.generate`` with
the attention mask (faster; same answers up to floating-point noise).

``text_only`` (option ``text_only_mode``), two distinct conditions:
``drop_tokens`` (default): the 256 ``<im_patch>`` tokens are left out, the model reads the text alone;
``placeholder_tokens``: the tokens stay and ``images=None``, so the model reads the learned ``<im_patch>``
embeddings in place of image features. The mode that ran is recorded (``no_image_mode``).
"""

from __future__ import annotations

import string
from typing import Any, Sequence

from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, register_model
from volprobe.probes.models.vlm_common import (VLMAdapter, choice, ensure_pad_token, no_image_input, run_groups,
                                               tensor_hash)
from volprobe.probes.models.weights import resolve_weights

IMAGE_TOKEN = "<im_patch>"
TEXT_ONLY_MODES = {
    "drop_tokens": "no <im_patch> tokens (text alone)",
    "placeholder_tokens": "256 <im_patch> tokens with images=None (learned placeholder embeddings)",
}
PROMPT_STYLES = ("3drad", "m3d")


def choices_line(item: Item) -> str:
    """``Choices: A. left B. right`` (M3D-Bench and 3D-RAD style)."""
    return "Choices: " + " ".join(f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(item.options))


@register_model("m3d")
class M3DAdapter(VLMAdapter):
    """An M3D-style 3D VLM: 256 image features spliced over ``<im_patch>`` tokens.

    Options:
        max_new_tokens: default 256 (as the authors).
        text_only_mode: ``drop_tokens`` (default) or ``placeholder_tokens``.
        batching: ``exact`` (default) or ``padded``.
        prompt_style: ``3drad`` (default: ``question\\nChoices: A. x B. y\\nAnswer:``) or ``m3d``
            (M3D-Bench: ``question Choices: A. x B. y``).
        window: ``"lo,hi"`` HU window before scaling (default: none, min-max as the authors).
    """

    default_repo = "GoodBaiBai88/M3D-LaMed-Phi-3-4B"
    volume_size: tuple[int, int, int] = (32, 256, 256)
    default_prompt_style = "3drad"
    authors_decoding = "greedy, 256 new tokens (M3D-Bench, 3D-RAD)"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 max_new_tokens: int | str = 256, text_only_mode: str = "drop_tokens", batching: str = "exact",
                 prompt_style: str | None = None, window: str | Sequence[float] | None = None, **options: Any):
        super().__init__(path=path, device=device, dtype=dtype, max_new_tokens=max_new_tokens, **options)
        self.text_only_mode = choice(text_only_mode, "text_only_mode", tuple(TEXT_ONLY_MODES))
        self.no_image_mode = TEXT_ONLY_MODES[self.text_only_mode]
        self.batching = choice(batching, "batching", ("exact", "padded"))
        self.prompt_style = choice(prompt_style or self.default_prompt_style, "prompt_style", PROMPT_STYLES)
        self.window = parse_window(window)
        self.tokenizer = None
        self.image_tokens = 256
        self.im_patch_start: int | None = None  # 1 after a BOS token, else 0

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {**super().generation_settings, "batching": self.batching, "prompt_style": self.prompt_style,
                "text_only_mode": self.text_only_mode, "image_tokens": self.image_tokens,
                "im_patch_start": self.im_patch_start, "authors_decoding": self.authors_decoding}

    # -- loading --------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.weights = resolve_weights(self.path, model=self.name, default_repo=self.default_repo)
        folder = str(self.weights.path)
        self.tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=False, trust_remote_code=True,
                                                       local_files_only=True, padding_side="left")
        ensure_pad_token(self.tokenizer)
        self.model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, local_files_only=True,
                                                          dtype=self.torch_dtype)
        self._after_load()
        self.model.to(self.torch_device)
        self.image_tokens = int(getattr(self.model.get_model().config, "proj_out_num", 256))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        if self.image_token_id is None or self.image_token_id == self.tokenizer.unk_token_id:
            raise VolprobeError(f"{self.name}: the tokenizer in {folder} has no {IMAGE_TOKEN} token")
        probe = self.tokenizer(IMAGE_TOKEN + " x")["input_ids"]
        self.im_patch_start = probe.index(self.image_token_id) if self.image_token_id in probe else None
        if self.im_patch_start not in (0, 1):
            raise VolprobeError(f"{self.name}: the tokenizer puts {IMAGE_TOKEN} at position {self.im_patch_start} "
                                "of a prompt; M3D-style models need it first (after an optional BOS)")

    def _after_load(self) -> None:
        """Hook for subclasses (e.g. extra weight files) before the model moves to its device."""

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from volprobe.probes.models.preprocessing import m3d_volume

        tensor, info = m3d_volume(volume, size=self.volume_size, window=self.window)
        return Prepared(data=tensor, input_hash=tensor_hash(self.name, tensor), info=info)

    def prompt(self, item: Item) -> str:
        if self.prompt_style == "m3d":
            return f"{item.question} {choices_line(item)}" if item.is_closed else item.question
        return f"{item.question}\n{choices_line(item)}\nAnswer:" if item.is_closed else f"{item.question}\nAnswer:"

    def input_text(self, prepared: Prepared, item: Item) -> str:
        """The full text tokenised for one item (image tokens included when the model reads them)."""
        if prepared.no_image and self.text_only_mode == "drop_tokens":
            return self.prompt(item)
        return IMAGE_TOKEN * self.image_tokens + " " + self.prompt(item)

    # -- generation -----------------------------------------------------------------
    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        self._require_loaded()
        texts = [self.input_text(p, it) for p, it in batch]
        ids = [self.tokenizer(t)["input_ids"] for t in texts]
        for (prepared, item), row in zip(batch, ids):
            self._check_image_tokens(prepared, item, row)
        keys = [(p.no_image, len(row) if self.batching == "exact" else 0) for (p, _), row in zip(batch, ids)]
        run = self._run_exact if self.batching == "exact" else self._run_padded
        outputs = run_groups(len(batch), keys, lambda idx: run([batch[i][0] for i in idx], [texts[i] for i in idx]))
        return [Generation(text=t) for t in outputs]

    def _check_image_tokens(self, prepared: Prepared, item: Item, row: list[int]) -> None:
        n = row.count(self.image_token_id)
        expected = 0 if prepared.no_image and self.text_only_mode == "drop_tokens" else self.image_tokens
        start = self.im_patch_start
        if n != expected or (expected and row[start:start + expected] != [self.image_token_id] * expected):
            raise VolprobeError(f"{self.name}: item {item.id}: expected {expected} {IMAGE_TOKEN} tokens at positions "
                                f"{start}..{start + expected - 1}, got {n} (does the question hold {IMAGE_TOKEN}?)")

    def _images(self, prepared: Sequence[Prepared]):
        import torch

        if prepared[0].no_image:
            return None
        return torch.cat([p.data for p in prepared]).to(self.torch_device, dtype=self.torch_dtype)

    def _decode(self, out) -> list[str]:
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _run_exact(self, prepared: Sequence[Prepared], texts: Sequence[str]) -> list[str]:
        """The authors' call: equal-length prompts, no padding, ``model.generate(images=..., inputs=...)``."""
        import torch

        inputs = self.tokenizer(list(texts), return_tensors="pt")["input_ids"].to(self.torch_device)
        with torch.inference_mode():
            out = self.model.generate(images=self._images(prepared), inputs=inputs,
                                      **self.greedy_kwargs(self.tokenizer.pad_token_id))
        return self._decode(out)

    def _run_padded(self, prepared: Sequence[Prepared], texts: Sequence[str]) -> list[str]:
        """Left-padded batch: image features written over positions 1..256 after each row's padding (as M3D's
        splice does on an unpadded row), attention mask kept."""
        import torch
        from transformers import GenerationMixin

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True).to(self.torch_device)
        with torch.inference_mode():
            embeds = self.model.get_model().embed_tokens(enc["input_ids"])
            images = self._images(prepared)
            if images is not None:
                features = self.model.encode_images(images).to(embeds.dtype)
                pads = (enc["attention_mask"] == 0).sum(dim=1).tolist()
                for row, pad in enumerate(pads):
                    embeds[row, pad + 1:pad + 1 + features.shape[1]] = features[row]
            out = GenerationMixin.generate(self.model, inputs_embeds=embeds, attention_mask=enc["attention_mask"],
                                           **self.greedy_kwargs(self.tokenizer.pad_token_id))
        return self._decode(out)


def parse_window(window: str | Sequence[float] | None) -> tuple[float, float] | None:
    """``"-1000,1000"`` or ``(-1000, 1000)`` → ``(-1000.0, 1000.0)``; None stays None."""
    if window is None:
        return None
    parts = window.split(",") if isinstance(window, str) else list(window)
    try:
        lo, hi = (float(v) for v in parts)
    except (TypeError, ValueError) as exc:
        raise VolprobeError(f"option window={window!r}: expected 'lo,hi' in HU") from exc
    if not lo < hi:
        raise VolprobeError(f"option window={window!r}: lo must be below hi")
    return lo, hi
