"""``radfm``: RadFM (github.com/chaoyi-wu/RadFM), loaded from a local source checkout with its own code.

RadFM is not a ``transformers`` model: its class ``Model.RadFM.multimodality_model.MultiLLaMAForCausalLM``
builds a LLaMA from ``Language_files`` and an embedding layer that also builds Med-KEBERT from a path
relative to the working directory; the weights are one ``torch.load``-able state dict. Point the adapter
at a folder laid out like RadFM's ``Quick_demo``::

    RadFM/                              # --model radfm:/path/to/RadFM
      Model/RadFM/multimodality_model.py  (and the rest of RadFM's Model/RadFM code)
      Language_files/                   # LLaMA config + tokenizer (from the RadFM repo / hub)
      MedKEBERT/                        # xmcmic/Med-KEBERT config + tokenizer (RadFM's code opens ./MedKEBERT)
      pytorch_model.bin                 # the unzipped RadFM checkpoint

The model is constructed with the working directory set to that folder, so RadFM's relative paths
resolve there; nothing is downloaded.

Input: ``vision_x`` of shape ``B x S x 3 x H x W x D`` in [0, 1] (one scan, S = 1; grey replicated to 3
channels; H = W = ``image_size``, default 512 as RadFM's test code; D the multiple of 4 up to 64 nearest
the scan's depth), from :func:`~volprobe.probes.models.preprocessing.radfm_volume`. Prompt:
``<image>`` + ``<image0>..<image31>`` + ``</image>`` + question (BOS first), as RadFM's
``combine_and_preprocess``. Decoding: RadFM's ``generate(lang_x, vision_x)`` is
``embedding_layer(lang_x, vision_x)`` then ``lang_model.generate(inputs_embeds=...)``; the adapter makes
the same two calls with ``do_sample=False`` and ``max_new_tokens`` (default 200, RadFM's) explicit, and
an attention mask. ``batching``: ``exact`` (default; equal-length prompts, no padding) or ``padded`` (left padding).

``text_only``: RadFM's own no-image input: no image tokens in the text and an all-zero ``vision_x`` of
depth 4 (its ``stack_images([])``), which no token reads.
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from pathlib import Path
from typing import Any, Sequence

from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, register_model
from volprobe.probes.models.m3d import parse_window
from volprobe.probes.models.vlm_common import (VLMAdapter, choice, no_image_input, positive_int, run_groups,
                                               tensor_hash)
from volprobe.probes.models.weights import resolve_weights

MODEL_MODULE = "Model.RadFM.multimodality_model"
REQUIRED = ("Model/RadFM/multimodality_model.py", "Language_files", "pytorch_model.bin")
IMAGE_TOKENS = 32  # perceiver outputs per scan
NO_IMAGE_DEPTH = 4


def image_placeholder(n: int = IMAGE_TOKENS) -> str:
    """``<image><image0>...<image31></image>``: where RadFM's embedding layer puts one scan's 32 tokens."""
    return "<image>" + "".join(f"<image{i}>" for i in range(n)) + "</image>"


@register_model("radfm")
class RadFMAdapter(VLMAdapter):
    """RadFM from a local checkout. Options: ``image_size`` (512), ``max_new_tokens`` (200), ``batching``, ``window``."""

    no_image_mode = "no image tokens; all-zero vision_x of depth 4 (RadFM's own no-image input)"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 max_new_tokens: int | str = 200, image_size: int | str = 512, batching: str = "exact",
                 window: str | Sequence[float] | None = None, **options: Any):
        super().__init__(path=path, device=device, dtype=dtype, max_new_tokens=max_new_tokens, **options)
        self.image_size = positive_int(image_size, "image_size")
        self.batching = choice(batching, "batching", ("exact", "padded"))
        self.window = parse_window(window)
        self.tokenizer = None

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {**super().generation_settings, "batching": self.batching, "image_size": self.image_size}

    # -- loading --------------------------------------------------------------------
    def _load(self) -> None:
        from transformers import AutoTokenizer

        self.weights = resolve_weights(self.path, model=self.name, required=REQUIRED)
        folder = self.weights.path
        module = import_from_checkout(folder, MODEL_MODULE)
        try:
            with contextlib.chdir(folder):
                model = module.MultiLLaMAForCausalLM(lang_model_path=str(folder / "Language_files"))
        except OSError as exc:
            raise WeightsMissingError(
                f"radfm: RadFM's code could not open a file while building the model in {folder} ({exc}). "
                "Its embedding layer loads Med-KEBERT by a path relative to that folder (./MedKEBERT in "
                "Quick_demo): put xmcmic/Med-KEBERT's config and tokenizer there") from exc
        except TypeError as exc:
            raise VolprobeError(f"radfm: {MODEL_MODULE}.MultiLLaMAForCausalLM in {folder} does not take "
                                f"lang_model_path alone ({exc}); use the code of RadFM's Quick_demo") from exc
        model.load_state_dict(load_state_dict(folder / "pytorch_model.bin"))
        self.model = model.to(self.torch_device, dtype=self.torch_dtype)
        self.tokenizer = radfm_tokenizer(AutoTokenizer.from_pretrained(str(folder / "Language_files"),
                                                                       local_files_only=True),
                                         vocab_rows=model.embedding_layer.weight.shape[0])

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from volprobe.probes.models.preprocessing import radfm_volume

        tensor, info = radfm_volume(volume, size=self.image_size, window=self.window)
        return Prepared(data=tensor, input_hash=tensor_hash(self.name, tensor), info=info)

    def input_text(self, prepared: Prepared, item: Item) -> str:
        return self.prompt(item) if prepared.no_image else image_placeholder() + self.prompt(item)

    def vision_x(self, prepared: Sequence[Prepared]):
        """``B x 1 x 3 x H x W x D`` on the model's device: grey replicated to 3 channels; zeros without an image."""
        import torch

        if prepared[0].no_image:
            shape = (len(prepared), 1, 3, self.image_size, self.image_size, NO_IMAGE_DEPTH)
            return torch.zeros(shape, device=self.torch_device, dtype=self.torch_dtype)
        grey = torch.stack([p.data for p in prepared]).to(self.torch_device, dtype=self.torch_dtype)  # B,1,H,W,D
        return grey.unsqueeze(1).expand(-1, -1, 3, -1, -1, -1)

    # -- generation -----------------------------------------------------------------
    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        self._require_loaded()
        texts = [self.input_text(p, it) for p, it in batch]
        lengths = [len(self.tokenizer(t)["input_ids"]) if self.batching == "exact" else 0 for t in texts]
        keys = [(p.no_image, None if p.no_image else tuple(p.data.shape), n) for (p, _), n in zip(batch, lengths)]
        outputs = run_groups(len(batch), keys,
                             lambda idx: self._run([batch[i][0] for i in idx], [texts[i] for i in idx]))
        return [Generation(text=t) for t in outputs]

    def _run(self, prepared: Sequence[Prepared], texts: Sequence[str]) -> list[str]:
        import torch

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True).to(self.torch_device)
        with torch.inference_mode():
            self.model.embedding_layer.flag = "Text"
            embeds, _ = self.model.embedding_layer(enc["input_ids"], self.vision_x(prepared))
            out = self.model.lang_model.generate(inputs_embeds=embeds, attention_mask=enc["attention_mask"],
                                                 **self.greedy_kwargs(self.tokenizer.pad_token_id))
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]


def load_state_dict(file: Path) -> dict:
    """``torch.load`` of a state dict, memory-mapped when the file allows it (tensors only, no pickled code)."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
        return torch.load(file, map_location="cpu", weights_only=True)


def radfm_tokenizer(tokenizer, vocab_rows: int):
    """RadFM's tokenizer setup (its ``get_tokenizer``): image special tokens added, pad/bos/eos = 0/1/2, left padding.

    Checks that ``<image>``, ``</image>``, ``<image0>`` get ids ``vocab_rows``, ``+1``, ``+2`` — the rows
    RadFM's embedding layer gives them — so a mismatched tokenizer fails loudly instead of reading garbage.
    """
    tokenizer.add_special_tokens({"additional_special_tokens": ["<image>", "</image>"] +
                                  [f"<image{i}>" for i in range(IMAGE_TOKENS)]})
    tokenizer.pad_token_id, tokenizer.bos_token_id, tokenizer.eos_token_id = 0, 1, 2
    tokenizer.padding_side = "left"
    got = tokenizer.convert_tokens_to_ids(["<image>", "</image>", "<image0>"])
    if got != [vocab_rows, vocab_rows + 1, vocab_rows + 2]:
        raise VolprobeError(f"radfm: tokenizer gives <image>, </image>, <image0> ids {got}; RadFM's embedding "
                            f"layer expects {[vocab_rows, vocab_rows + 1, vocab_rows + 2]} (Language_files mismatch?)")
    return tokenizer


def import_from_checkout(folder: Path, module_name: str):
    """Import ``module_name`` from a source checkout (dropping a same-named package imported from elsewhere)."""
    top = module_name.split(".")[0]
    loaded = sys.modules.get(top)
    if loaded is not None and (folder / top).resolve() not in [Path(p).resolve() for p in getattr(loaded, "__path__", [])]:
        for name in [m for m in sys.modules if m == top or m.startswith(top + ".")]:
            del sys.modules[name]
    sys.path.insert(0, str(folder))
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise VolprobeError(f"radfm: cannot import {module_name} from {folder} ({exc})") from exc
    finally:
        sys.path.remove(str(folder))
