"""``m3d``: M3D-LaMed (``GoodBaiBai88/M3D-LaMed-Phi-3-4B``, ``-Llama-2-7B``) and 3D-RAD's M3D-RAD fine-tunes.

Follows M3D's public code (``LaMed/src/model``, ``Data/process/m3d_cap_data_prepare.py``, the hub model's
remote code) and 3D-RAD's ``M3D/Bench/eval/eval_3DRAD.py``:

* loading: ``AutoModelForCausalLM.from_pretrained(..., trust_remote_code=True)`` and
  ``AutoTokenizer.from_pretrained(..., use_fast=False, trust_remote_code=True)``, both offline;
* volume (preset ``m3d``, :data:`~volprobe.probes.models.preprocessing.M3D_PRESET`): float tensor
  ``1 x 1 x 32 x 256 x 256`` (B, C, D, H, W) made as M3D made its training data from 8-bit display
  images: HU window to [0, 1] rounded to 8 bits, min-max, MONAI ``CropForeground``, ``Resize``
  (trilinear); orientation from the affine. ``--model-option window=lo,hi|none``, ``crop=none``,
  ``resample=area``, ``size=D,H,W``, ``quantize=false``, ``slice_order=...`` override single steps;
* prompt: ``"<im_patch>" * 256 + " " + question``; M3D's ``prepare_inputs_for_multimodal`` writes the
  image features over positions 1..256 whatever the tokens are: over the ``<im_patch>`` tokens when the
  tokenizer adds a BOS token (LLaMA, Phi-3), shifted by one when it does not (Qwen2.5 in Med3DVLM: the
  first ``<im_patch>`` stays and the space after the last is overwritten) — reproduced, and recorded as
  ``im_patch_start``; the question is written as 3D-RAD's evaluation writes it (``prompt_style=3drad``,
  :func:`~volprobe.probes.models.vlm_common.threedrad_prompt`) or as M3D-Bench does (``m3d``);
* decoding: ``model.generate(images=..., inputs=..., max_new_tokens=256, do_sample=False)``; every
  effective setting (the model's generation config included) is recorded.

Encode once, ask many (option ``reuse``, default on): the image features fill positions 1..256 whatever
the question, so the first 257 positions (BOS and the image) are the same for every question on one
input. They are encoded once per (volume, control) input — the vision tower, the projector and the
language model's key/value cache of those positions — and each question continues from a copy of that
cache. Greedy answers equal recomputing everything (tested exactly in float32 on the CPU; in bf16 the
cached and recomputed prefix can differ in the last bit, so rare near-ties may resolve differently).
``reuse=false`` recomputes per question (the authors' call), for debugging.

Batching (option ``batching``): M3D's ``generate`` ignores ``attention_mask`` and splices at fixed
positions, so padded batches would be wrong. ``exact`` (default) batches only prompts of equal token
length (no padding) through the authors' ``generate``; ``padded`` left-pads, writes the image features
over positions 1..256 after the padding itself and calls the generic ``GenerationMixin.generate`` with
the attention mask (faster; same answers up to floating-point noise).

``text_only`` (option ``text_only_mode``), two distinct conditions:
``drop_tokens`` (default): the 256 ``<im_patch>`` tokens are left out, the model reads the text alone;
``placeholder_tokens``: the tokens stay and ``images=None``, so the model reads the learned ``<im_patch>``
embeddings in place of image features. The mode that ran is recorded (``no_image_mode``).

Library versions: M3D-LaMed's remote code was run with transformers 4.40-4.45 and MONAI 1.3; newer
transformers (4.46+) and MONAI (1.4+, ``PatchEmbeddingBlock(pos_embed=...)``) break it, so it needs its
own environment (README); ``probe doctor m3d:PATH`` builds the architecture to tell.
"""

from __future__ import annotations

from typing import Any, Sequence

from volprobe.errors import VolprobeError
from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, register_model
from volprobe.probes.models.preprocessing import M3D_PRESET, VolumePreset, parse_flag
from volprobe.probes.models.vlm_common import (VLMAdapter, choice, dtype_kwarg, ensure_pad_token, generate_after_prefix,
                                               m3d_bench_prompt, no_image_input, prefix_cache, run_groups, tensor_hash,
                                               threedrad_prompt)
from volprobe.probes.models.weights import resolve_weights

IMAGE_TOKEN = "<im_patch>"
TEXT_ONLY_MODES = {
    "drop_tokens": "no <im_patch> tokens (text alone)",
    "placeholder_tokens": "256 <im_patch> tokens with images=None (learned placeholder embeddings)",
}
PROMPT_STYLES = {"3drad": threedrad_prompt, "m3d": m3d_bench_prompt}


@register_model("m3d")
class M3DAdapter(VLMAdapter):
    """An M3D-style 3D VLM: 256 image features spliced over ``<im_patch>`` tokens.

    Options:
        max_new_tokens: default 256 (as the authors).
        text_only_mode: ``drop_tokens`` (default) or ``placeholder_tokens``.
        batching: ``exact`` (default) or ``padded``.
        prompt_style: ``3drad`` (default: ``question\\nChoices: A. x B. y ...\\nAnswer:``) or ``m3d``
            (M3D-Bench: ``question Choices: A. x B. y``).
        window, quantize, crop, resample, size, slice_order: overrides of the preprocessing preset.
    """

    default_repo = "GoodBaiBai88/M3D-LaMed-Phi-3-4B"
    preset: VolumePreset = M3D_PRESET
    default_prompt_style = "3drad"
    authors_decoding = "greedy, 256 new tokens (M3D-Bench, 3D-RAD)"
    #: library versions the authors' code was run with: (lowest, first known to break); for ``probe doctor``.
    code_libraries = {"transformers": ("4.40", "4.46"), "monai": ("1.3", "1.4")}
    code_libraries_source = "M3D requirements.txt; BAAI-DCAI/M3D#29, #33, #36"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 max_new_tokens: int | str = 256, text_only_mode: str = "drop_tokens", batching: str = "exact",
                 prompt_style: str | None = None, window: Any = None, quantize: Any = None, crop: Any = None,
                 resample: Any = None, size: Any = None, slice_order: Any = None, reuse: Any = True):
        super().__init__(path=path, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        self.reuse = parse_flag(reuse, "reuse")
        self.text_only_mode = choice(text_only_mode, "text_only_mode", tuple(TEXT_ONLY_MODES))
        self.no_image_mode = TEXT_ONLY_MODES[self.text_only_mode]
        self.batching = choice(batching, "batching", ("exact", "padded"))
        self.prompt_style = choice(prompt_style or self.default_prompt_style, "prompt_style", tuple(PROMPT_STYLES))
        self.preset = type(self).preset.with_options(dict(window=window, quantize=quantize, crop=crop,
                                                          resample=resample, size=size, slice_order=slice_order))
        self.tokenizer = None
        self.image_tokens = 256
        self.im_patch_start: int | None = None  # 1 after a BOS token, else 0

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {**super().generation_settings, "batching": self.batching, "reuse_image_prefix": self.reuse,
                "prompt_style": self.prompt_style,
                "text_only_mode": self.text_only_mode, "image_tokens": self.image_tokens,
                "im_patch_start": self.im_patch_start, "authors_decoding": self.authors_decoding,
                "preprocessing": self.preset.record()}

    def pad_token_id(self) -> int | None:
        return None if self.tokenizer is None else self.tokenizer.pad_token_id

    # -- loading --------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoModelForCausalLM

        self.weights = resolve_weights(self.path, model=self.name, default_repo=self.default_repo)
        folder = str(self.weights.path)
        self.tokenizer = self._tokenizer(folder)
        self.model = AutoModelForCausalLM.from_pretrained(folder, trust_remote_code=True, local_files_only=True,
                                                          **dtype_kwarg(self.torch_dtype))
        self._after_load()
        self.model.to(self.torch_device)
        self.image_tokens = int(getattr(self.model.get_model().config, "proj_out_num", 256))
        self.image_token_id = self.tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
        self.im_patch_start = im_patch_start(self.tokenizer, folder, self.name)

    @staticmethod
    def _tokenizer(folder: str):
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(folder, use_fast=False, trust_remote_code=True,
                                                  local_files_only=True, padding_side="left")
        ensure_pad_token(tokenizer)
        return tokenizer

    def _after_load(self) -> None:
        """Hook for subclasses (e.g. extra weight files) before the model moves to its device."""

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from volprobe.probes.models.preprocessing import m3d_volume

        tensor, info = m3d_volume(volume, self.preset)
        return Prepared(data=tensor, input_hash=tensor_hash(self.name, tensor), info=info)

    def prompt(self, item: Item) -> str:
        return PROMPT_STYLES[self.prompt_style](item)

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
        reuse = self.reuse and self.batching == "exact"
        keys = [(p.no_image, len(row) if self.batching == "exact" else 0, id(p) if reuse and not p.no_image else 0)
                for (p, _), row in zip(batch, ids)]

        def run(idx: list[int]) -> list[str]:
            prepared, group = [batch[i][0] for i in idx], [texts[i] for i in idx]
            if reuse and not prepared[0].no_image:
                return self._run_reused(prepared[0], group)
            return (self._run_exact if self.batching == "exact" else self._run_padded)(prepared, group)

        return [Generation(text=t) for t in run_groups(len(batch), keys, run)]

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
            out = self.model.generate(images=self._images(prepared), inputs=inputs, **self.generate_kwargs())
        return self._decode(out)

    def _image_prefix(self, prepared: Prepared, prefix_ids):
        """(embeddings, key/value cache) of the image prefix — positions 0..256: the first token and the
        image features spliced over positions 1..256 as M3D's ``prepare_inputs_for_multimodal`` does —
        computed once per input and kept in ``prepared.reuse``."""
        import torch

        if "m3d_prefix" not in prepared.reuse:
            with torch.inference_mode():
                embeds = self.model.get_model().embed_tokens(prefix_ids)
                features = self.model.encode_images(self._images([prepared])).to(embeds.dtype)
                embeds = torch.cat([embeds[:, :1], features, embeds[:, 1 + features.shape[1]:]], dim=1)
            prepared.reuse["m3d_prefix"] = (embeds, prefix_cache(self.model, embeds))
        return prepared.reuse["m3d_prefix"]

    def _run_reused(self, prepared: Prepared, texts: Sequence[str]) -> list[str]:
        """Questions of equal length on one input, continued from the input's cached image prefix (module
        docstring): only the question tokens and the answer are computed."""
        import torch

        ids = self.tokenizer(list(texts), return_tensors="pt")["input_ids"].to(self.torch_device)
        n = 1 + self.image_tokens
        prefix, cache = self._image_prefix(prepared, ids[:1, :n])
        with torch.inference_mode():
            rest = self.model.get_model().embed_tokens(ids[:, n:])
        return self._decode(generate_after_prefix(self.model, prefix, cache, rest, **self.generate_kwargs()))

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
                                           **self.generate_kwargs())
        return self._decode(out)

    # -- probe doctor ---------------------------------------------------------------
    def diagnose(self) -> list:
        from volprobe.probes.models.doctor import (Check, attempt, ensure, folder_of, library_note, on_meta_device,
                                                   read_json_file, weight_files_check)

        checks = super().diagnose()
        folder = folder_of(checks, self)
        if folder is None:
            return checks
        config, check = read_json_file(folder / "config.json", "config")
        checks.append(check)
        checks.append(weight_files_check(folder))
        checks.append(library_note(self.code_libraries, self.code_libraries_source))

        def tokenizer() -> str:
            tok = self._tokenizer(str(folder))
            ensure(tok.convert_tokens_to_ids(IMAGE_TOKEN) not in (None, tok.unk_token_id),
                   f"the tokenizer has no {IMAGE_TOKEN} token")
            start = im_patch_start(tok, str(folder), self.name)
            return f"{type(tok).__name__} (slow, as the authors); {IMAGE_TOKEN} at position {start}"

        checks.append(attempt("tokenizer", tokenizer, lambda exc: "the folder needs the model's tokenizer files "
                              "(tokenizer.model or tokenizer.json, tokenizer_config.json, special_tokens_map.json)"))
        if config is not None and "auto_map" not in config:
            checks.append(Check("model code", "problem", "config.json has no auto_map: the folder lacks M3D's "
                                "remote code", "download the whole hub repository (its *.py files and config.json)"))
        elif config is not None:
            def builds() -> str:
                from transformers import AutoConfig, AutoModelForCausalLM

                cfg = AutoConfig.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
                with on_meta_device():
                    model = AutoModelForCausalLM.from_config(cfg, trust_remote_code=True)
                return (f"{type(model).__name__} imports and builds with the installed libraries "
                        f"({int(getattr(cfg, 'proj_out_num', 256))} image tokens)")

            checks.append(attempt("model code", builds, lambda exc: (
                "the model's own code does not run with the installed transformers/MONAI; install the versions "
                f"it was written for in a separate environment ({self.code_libraries_source}): "
                + ", ".join(f"{lib}>={lo},<{hi}" for lib, (lo, hi) in self.code_libraries.items()))))
        checks.append(Check("preset", "ok", f"{self.preset.name}: {self.preset.record()['intensity']}, "
                            f"crop {self.preset.crop}, {self.preset.resample} resize to {list(self.preset.size)} "
                            f"({self.preset.source})"))
        return checks


def im_patch_start(tokenizer, folder: str, name: str) -> int:
    """Position of the first ``<im_patch>`` in a tokenised prompt: 1 after a BOS token, 0 without one."""
    token_id = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    if token_id is None or token_id == tokenizer.unk_token_id:
        raise VolprobeError(f"{name}: the tokenizer in {folder} has no {IMAGE_TOKEN} token")
    probe = tokenizer(IMAGE_TOKEN + " x")["input_ids"]
    start = probe.index(token_id) if token_id in probe else None
    if start not in (0, 1):
        raise VolprobeError(f"{name}: the tokenizer puts {IMAGE_TOKEN} at position {start} "
                            "of a prompt; M3D-style models need it first (after an optional BOS)")
    return start
