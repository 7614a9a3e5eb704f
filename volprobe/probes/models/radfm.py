"""``radfm``: RadFM (github.com/chaoyi-wu/RadFM), loaded from a local source checkout with its own code.

RadFM is not a ``transformers`` model: its class ``Model.RadFM.multimodality_model.MultiLLaMAForCausalLM``
builds a LLaMA from ``Language_files`` and an embedding layer that also builds Med-KEBERT; the weights of
both are in one ``torch.load``-able state dict. Point the adapter at a folder laid out like RadFM's
``Quick_demo``::

    RadFM/                              # --model radfm:/path/to/RadFM
      Model/RadFM/multimodality_model.py  (and the rest of RadFM's Model/RadFM code)
      Language_files/                   # LLaMA config.json + tokenizer.model (from the RadFM repository)
      MedKEBERT/                        # xmcmic/Med-KEBERT config + tokenizer (Quick_demo/MedKEBERT)
      pytorch_model.bin                 # the unzipped RadFM checkpoint

Loading, as the authors' ``Quick_demo/test.py`` does, with three repairs that change nothing the model
computes:

* **tokenizer**: the slow (SentencePiece) LLaMA tokenizer with ``<image>``, ``</image>`` and
  ``<image0>`` .. ``<image3199>`` added and pad/bos/eos ids set to 0/1/2 (:class:`RadFMTokenizer`).
  ``Language_files/tokenizer_config.json`` names empty strings as BOS/EOS/UNK tokens; ``transformers``'
  ``AutoTokenizer`` (and in transformers 5 ``LlamaTokenizer``, now backed by ``tokenizers``) recurse on
  them without end, and a forced load tokenizes differently (no BOS, spaces after image tokens). volprobe
  therefore reads ``tokenizer.model`` with SentencePiece and applies the slow tokenizer's rules of the
  transformers version RadFM pins (4.28): the text is split at added tokens, whitespace next to them is
  dropped, each piece is encoded by SentencePiece, BOS (1) goes first;
* **building**: RadFM's current code calls ``LlamaForCausalLM.from_pretrained(Language_files)`` (a folder
  with a config and no weights) and ``AutoModel.from_pretrained("xmcmic/Med-KEBERT")`` (a hub id); while it
  builds, volprobe makes the LLaMA from its config and Med-KEBERT from the local ``MedKEBERT`` folder (or
  the hub cache), weights uninitialised: the checkpoint fills them, as RadFM's first demo code did;
* **checkpoint**: loaded strictly except for buffers older ``transformers`` saved and newer ones
  recompute (:data:`OBSOLETE_BUFFERS`: BERT's ``position_ids``, LLaMA's rotary ``inv_freq``); any other
  missing or unexpected key is an error naming it.

Input: ``vision_x`` of shape ``B x S x 3 x H x W x D`` in [0, 1] (one scan, S = 1; grey replicated to 3
channels), preset ``radfm`` (:data:`~volprobe.probes.models.preprocessing.RADFM_PRESET`: HU window to
8 bits as the Radiopaedia exports it was trained on, min-max, nearest resize to 512 x 512 x D with D the
multiple of 4 up to 64 nearest the scan's depth, as ``stack_images``). Prompt: ``<image>`` +
``<image0>..<image31>`` + ``</image>`` + question, the question written as 3D-RAD's RadFM evaluation does
(``prompt_style=3drad``: ``question\\nChoices: A. x B. y ...\\nAnswer:``) or volprobe's generic prompt
(``plain``). Decoding: RadFM's ``generate(lang_x, vision_x)`` is ``embedding_layer(lang_x, vision_x)``
then ``lang_model.generate(inputs_embeds=...)``; the adapter makes the same two calls, greedy, with
``max_new_tokens`` (default 200, RadFM's) and an attention mask, and stops at ``</s>`` (id 2): RadFM's
config names ``eos_token_id`` 1, so its own ``generate`` runs on to 200 tokens (``stop_at_eos=false``
restores that). ``batching``: ``exact`` (default; equal-length prompts, no padding) or ``padded`` (left).

Encode once, ask many (option ``reuse``, default on, with ``exact`` batching): the image comes first
(BOS, ``<image>``, 32 image tokens, ``</image>``), so the perceiver's output and the LLaMA's key/value
cache of those 35 positions are computed once per (volume, control) input and every question continues
from a copy; the question's own tokens are embedded by the same rows of the embedding table RadFM's
one-hot product selects. Answers equal recomputing (tested in float32); ``reuse=false`` recomputes.

``text_only``: RadFM's own no-image input: no image tokens in the text and an all-zero ``vision_x`` of
depth 4 (its ``stack_images([])``), which no token reads.

Library versions: RadFM pins transformers 4.28.1, torch 2.0.1, sentencepiece 0.1.99 and needs
``einops`` and ``einops-exts`` (``pip install 'volprobe[radfm]'``).
"""

from __future__ import annotations

import contextlib
import importlib
import re
import sys
from pathlib import Path
from typing import Any, Iterator, Sequence

from volprobe.errors import VolprobeError, WeightsMissingError
from volprobe.items import Item
from volprobe.probes.models.base import Generation, Prepared, default_prompt, register_model
from volprobe.probes.models.preprocessing import RADFM_PRESET, parse_flag
from volprobe.probes.models.vlm_common import (VLMAdapter, choice, generate_after_prefix, no_image_input,
                                               positive_int, prefix_cache, run_groups, tensor_hash, threedrad_prompt)
from volprobe.probes.models.weights import find_snapshot, hub_cache_dirs, resolve_weights

MODEL_MODULE = "Model.RadFM.multimodality_model"
CHECKPOINT = "pytorch_model.bin"
REQUIRED = ("Model/RadFM/multimodality_model.py", "Language_files", CHECKPOINT)
IMAGE_TOKENS = 32  # perceiver outputs per scan
IMAGE_SLOTS = 100  # images a prompt may hold (test.py's max_img_size): <image0> .. <image3199> are added
NO_IMAGE_DEPTH = 4
MEDKEBERT_HUB_ID = "xmcmic/Med-KEBERT"
#: Names under which RadFM's code versions ask for Med-KEBERT.
MEDKEBERT_NAMES = (MEDKEBERT_HUB_ID, "./MedKEBERT", "./MedKEBERT/", "MedKEBERT")
#: Checkpoint keys (suffixes) of buffers that transformers 4.28 saved and current versions no longer keep.
OBSOLETE_BUFFERS = ("bert_model.embeddings.position_ids", "rotary_emb.inv_freq")
PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
PROMPT_STYLES = {"3drad": threedrad_prompt, "plain": default_prompt}


def image_placeholder(n: int = IMAGE_TOKENS) -> str:
    """``<image><image0>...<image31></image>``: where RadFM's embedding layer puts one scan's 32 tokens."""
    return "<image>" + "".join(f"<image{i}>" for i in range(n)) + "</image>"


class RadFMTokenizer:
    """RadFM's tokenizer: ``Language_files/tokenizer.model`` as the slow LLaMA tokenizer RadFM used.

    Reproduces ``Quick_demo/test.py``'s ``get_tokenizer`` with transformers 4.28's ``LlamaTokenizer``:
    ``<image>``, ``</image>``, ``<image0>`` .. ``<image3199>`` added as special tokens (ids from the
    SentencePiece vocabulary size on: ``<image>`` = V, ``</image>`` = V + 1, ``<imageK>`` = V + 2 + K), pad,
    bos, eos ids 0, 1, 2. Encoding: split at added tokens (longest match), strip whitespace next to them,
    encode each remaining piece with SentencePiece, put BOS first. Decoding with ``skip_special_tokens``
    drops pad, bos, eos and added tokens and decodes the rest with SentencePiece. Batches are left-padded.
    """

    def __init__(self, model_file: str | Path, image_slots: int = IMAGE_SLOTS, image_tokens: int = IMAGE_TOKENS):
        try:
            import sentencepiece
        except ImportError as exc:
            raise VolprobeError("radfm: its tokenizer needs the sentencepiece package: "
                                "pip install 'volprobe[radfm]' (or pip install sentencepiece)") from exc
        self.model_file = Path(model_file)
        self.sp = sentencepiece.SentencePieceProcessor(model_file=str(self.model_file))
        self.vocab_size = int(self.sp.get_piece_size())
        added = ["<image>", "</image>"] + [f"<image{i}>" for i in range(image_slots * image_tokens)]
        self.added = {token: self.vocab_size + i for i, token in enumerate(added)}
        self.pad_token_id, self.bos_token_id, self.eos_token_id = PAD_ID, BOS_ID, EOS_ID
        self._split = re.compile(r"(</image>|<image\d*>)")

    def __len__(self) -> int:
        return self.vocab_size + len(self.added)

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.added.get(tokens, self.sp.piece_to_id(tokens))
        return [self.convert_tokens_to_ids(t) for t in tokens]

    def encode(self, text: str) -> list[int]:
        """Token ids of one text, BOS first (rules in the class docstring)."""
        parts = [p for p in self._split.split(text) if p]
        special = [p in self.added for p in parts]
        ids = [BOS_ID]
        for i, part in enumerate(parts):
            if special[i]:
                ids.append(self.added[part])
                continue
            if i > 0 and special[i - 1]:
                part = part.lstrip()
            if i + 1 < len(parts) and special[i + 1]:
                part = part.rstrip()
            if part:
                ids.extend(self.sp.encode(part))
        return ids

    def __call__(self, texts: str | Sequence[str], return_tensors: str | None = None, padding: bool = False):
        """``{"input_ids", "attention_mask"}`` for one text (lists) or a batch (left-padded tensors)."""
        if isinstance(texts, str):
            ids = self.encode(texts)
            return {"input_ids": ids, "attention_mask": [1] * len(ids)}
        import torch

        rows = [self.encode(t) for t in texts]
        width = max(len(r) for r in rows)
        if not padding and any(len(r) != width for r in rows):
            raise VolprobeError("radfm: texts of different lengths need padding=True")
        ids = torch.tensor([[PAD_ID] * (width - len(r)) + r for r in rows], dtype=torch.long)
        mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        return {"input_ids": ids, "attention_mask": mask}

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        ids = [int(i) for i in ids]
        if skip_special_tokens:
            ids = [i for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID) and i < self.vocab_size]
            return self.sp.decode(ids)
        out, run = [], []
        for i in ids:
            if i >= self.vocab_size:
                out.append(self.sp.decode(run) if run else "")
                run = []
                out.append(next(t for t, j in self.added.items() if j == i))
            else:
                run.append(i)
        out.append(self.sp.decode(run) if run else "")
        return "".join(out)

    def batch_decode(self, rows, skip_special_tokens: bool = True) -> list[str]:
        return [self.decode(r, skip_special_tokens=skip_special_tokens) for r in rows]


@register_model("radfm")
class RadFMAdapter(VLMAdapter):
    """RadFM from a local checkout. Options: ``image_size`` (512), ``max_new_tokens`` (200), ``batching``,
    ``prompt_style`` (3drad), ``stop_at_eos`` (true), ``window``, ``quantize``, ``crop``, ``resample``,
    ``slice_order``."""

    no_image_mode = "no image tokens; all-zero vision_x of depth 4 (RadFM's own no-image input)"
    authors_decoding = "RadFM's generate: max_new_tokens 200, top_k 50 without do_sample (greedy), eos id 1"

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", *,
                 max_new_tokens: int | str = 200, image_size: int | str | None = None, batching: str = "exact",
                 prompt_style: str = "3drad", stop_at_eos: Any = True, window: Any = None, quantize: Any = None,
                 crop: Any = None, resample: Any = None, slice_order: Any = None, reuse: Any = True):
        super().__init__(path=path, device=device, dtype=dtype, max_new_tokens=max_new_tokens)
        self.batching = choice(batching, "batching", ("exact", "padded"))
        self.reuse = parse_flag(reuse, "reuse")
        self.prompt_style = choice(prompt_style, "prompt_style", tuple(PROMPT_STYLES))
        self.stop_at_eos = str(stop_at_eos).strip().lower() in ("1", "true", "yes", "on")
        size = None if image_size is None else (positive_int(image_size, "image_size"),) * 2
        self.preset = RADFM_PRESET.with_options(dict(window=window, quantize=quantize, crop=crop, resample=resample,
                                                     size=size, slice_order=slice_order))
        self.image_size = self.preset.size[0]
        self.tokenizer: RadFMTokenizer | None = None
        self.dropped_keys: list[str] = []

    @property
    def generation_settings(self) -> dict[str, Any]:
        return {**super().generation_settings, "batching": self.batching, "reuse_image_prefix": self.reuse,
                "image_size": self.image_size,
                "prompt_style": self.prompt_style, "stop": "</s> (id 2)" if self.stop_at_eos else "none (RadFM's)",
                "authors_decoding": self.authors_decoding, "tokenizer": "sentencepiece, slow LlamaTokenizer rules",
                "checkpoint_keys_dropped": self.dropped_keys, "preprocessing": self.preset.record()}

    def generation_model(self):
        return self.model.lang_model

    def generate_kwargs(self) -> dict[str, Any]:
        kwargs = super().generate_kwargs()
        if self.stop_at_eos:
            kwargs["eos_token_id"] = EOS_ID
        return kwargs

    def pad_token_id(self) -> int | None:
        return PAD_ID

    # -- loading --------------------------------------------------------------------
    def _load(self) -> None:
        self.weights = resolve_weights(self.path, model=self.name, required=REQUIRED)
        folder = self.weights.path
        self.tokenizer = RadFMTokenizer(folder / "Language_files" / "tokenizer.model")
        model = build_model(folder)
        self.dropped_keys = load_checkpoint(model, folder / CHECKPOINT)
        self.model = model.to(self.torch_device, dtype=self.torch_dtype)
        check_vocabulary(self.tokenizer, model.embedding_layer.weight.shape[0])

    # -- input ----------------------------------------------------------------------
    def prepare(self, volume) -> Prepared:
        if volume is None:
            return no_image_input(self.no_image_mode)
        from volprobe.probes.models.preprocessing import radfm_volume

        tensor, info = radfm_volume(volume, self.preset)
        return Prepared(data=tensor, input_hash=tensor_hash(self.name, tensor), info=info)

    def prompt(self, item: Item) -> str:
        return PROMPT_STYLES[self.prompt_style](item)

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
        lengths = [len(self.tokenizer.encode(t)) if self.batching == "exact" else 0 for t in texts]
        reuse = self.reuse and self.batching == "exact"
        keys = [(p.no_image, None if p.no_image else tuple(p.data.shape), n, id(p) if reuse and not p.no_image else 0)
                for (p, _), n in zip(batch, lengths)]

        def run(idx: list[int]) -> list[str]:
            prepared, group = [batch[i][0] for i in idx], [texts[i] for i in idx]
            if reuse and not prepared[0].no_image:
                return self._run_reused(prepared[0], group)
            return self._run(prepared, group)

        return [Generation(text=t) for t in run_groups(len(batch), keys, run)]

    def _run_reused(self, prepared: Prepared, texts: Sequence[str]) -> list[str]:
        """Equal-length questions on one input, continued from the input's cached image prefix (module docstring)."""
        import torch

        ids = self.tokenizer(list(texts), return_tensors="pt", padding=False)["input_ids"].to(self.torch_device)
        n = 2 + IMAGE_TOKENS + 1  # BOS, <image>, the image tokens, </image>
        layer = self.model.embedding_layer
        if "radfm_prefix" not in prepared.reuse:
            with torch.inference_mode():
                layer.flag = "Text"
                prefix, _ = layer(ids[:1, :n], self.vision_x([prepared]))
            prepared.reuse["radfm_prefix"] = (prefix, prefix_cache(self.model.lang_model, prefix))
        prefix, cache = prepared.reuse["radfm_prefix"]
        rest_ids = ids[:, n:]
        if rest_ids.numel() and int(rest_ids.max()) >= layer.weight.shape[0]:  # an image token in the question
            return self._run([prepared] * len(texts), texts)
        with torch.inference_mode():
            rest = layer.weight[rest_ids].to(prefix.dtype)
        out = generate_after_prefix(self.model.lang_model, prefix, cache, rest, **self.generate_kwargs())
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    def _run(self, prepared: Sequence[Prepared], texts: Sequence[str]) -> list[str]:
        import torch

        enc = self.tokenizer(list(texts), return_tensors="pt", padding=True)
        ids, mask = enc["input_ids"].to(self.torch_device), enc["attention_mask"].to(self.torch_device)
        with torch.inference_mode():
            self.model.embedding_layer.flag = "Text"
            embeds, _ = self.model.embedding_layer(ids, self.vision_x(prepared))
            out = self.model.lang_model.generate(inputs_embeds=embeds, attention_mask=mask, **self.generate_kwargs())
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    # -- probe doctor ---------------------------------------------------------------
    def diagnose(self) -> list:
        from volprobe.probes.models.doctor import (Check, attempt, folder_of, library_note, on_meta_device,
                                                   read_json_file, weight_files_check)

        checks = super().diagnose()
        folder = folder_of(checks, self)
        if folder is None:
            return checks
        code = folder / REQUIRED[0]
        if not code.is_file():
            checks.append(Check("model code", "problem", f"{REQUIRED[0]} is missing: {folder} is not a RadFM "
                                "checkout", "clone github.com/chaoyi-wu/RadFM and point at its Quick_demo folder"))
        lang = folder / "Language_files"
        config, check = read_json_file(lang / "config.json", "config")
        checks.append(check)
        if config is not None:
            checks.append(Check("config", "note", f"Language_files/config.json: LLaMA, vocabulary {config.get('vocab_size')}, "
                                f"eos_token_id {config.get('eos_token_id')}, pad_token_id {config.get('pad_token_id')}; "
                                "generation stops at </s> (id 2) as volprobe sets it, not at the config's eos id"))
        checks.extend(_tokenizer_checks(lang, config))
        checks.append(weight_files_check(folder, (CHECKPOINT,), "RadFM's checkpoint (huggingface.co/chaoyi-wu/RadFM; "
                                         "unzip it)"))
        medkebert = _medkebert_folder(folder)
        if medkebert is None:
            checks.append(Check("Med-KEBERT", "problem", f"no Med-KEBERT config: RadFM's code builds {MEDKEBERT_HUB_ID} "
                                f"(a BERT whose weights are inside RadFM's checkpoint) and {folder / 'MedKEBERT'} "
                                "is missing, nor is it in the Hugging Face cache",
                                f"copy RadFM's Quick_demo/MedKEBERT folder (config.json and tokenizer files) to "
                                f"{folder / 'MedKEBERT'}"))
        else:
            checks.append(Check("Med-KEBERT", "ok", f"config and tokenizer from {medkebert}"))
        if code.is_file() and (lang / "config.json").is_file() and medkebert is not None:
            def builds() -> str:
                with on_meta_device():
                    model = build_model(folder)
                return f"{type(model).__name__} from {MODEL_MODULE} imports and builds with the installed libraries"

            checks.append(attempt("model code", builds, lambda exc: (
                "install what RadFM's code imports: pip install 'volprobe[radfm]' (einops, einops-exts, "
                "sentencepiece)" if isinstance(exc, ImportError) or "import" in str(exc) else
                "use the code of RadFM's Quick_demo (Model/RadFM) with the matching checkpoint")))
        checks.append(library_note({"transformers": ("4.28", "")}, "RadFM requirements.txt: transformers 4.28.1"))
        checks.append(Check("preset", "ok", f"{self.preset.name}: {self.preset.record()['intensity']}, "
                            f"{self.preset.resample} resize to {list(self.preset.size)} x depth 4..64; "
                            f"prompt style {self.prompt_style} ({self.preset.source})"))
        return checks


def _tokenizer_checks(lang: Path, config: dict | None) -> list:
    from volprobe.probes.models.doctor import Check, attempt, ensure

    checks = []
    tok_config = lang / "tokenizer_config.json"
    if tok_config.is_file():
        import json

        try:
            cfg = json.loads(tok_config.read_text(encoding="utf-8"))
        except ValueError:
            cfg = {}
        empty = sorted(k for k in ("bos_token", "eos_token", "unk_token") if cfg.get(k) == "")
        if empty:
            checks.append(Check("tokenizer", "note", f"tokenizer_config.json names empty {', '.join(empty)} (RadFM's "
                                "file): transformers' AutoTokenizer recurses without end on this folder, so volprobe "
                                "reads tokenizer.model with SentencePiece as RadFM's slow LlamaTokenizer did"))

    def load() -> str:
        tok = RadFMTokenizer(lang / "tokenizer.model")
        if config is not None and config.get("vocab_size") is not None:
            ensure(tok.vocab_size == int(config["vocab_size"]),
                   f"tokenizer.model has {tok.vocab_size} pieces but config.json says vocab_size {config['vocab_size']}")
        ids = tok.encode(image_placeholder() + "Is there a nodule?")
        return (f"SentencePiece, {tok.vocab_size} pieces + {len(tok.added)} image tokens; a prompt starts "
                f"{ids[:3]} (BOS, <image>, <image0>)")

    checks.append(attempt("tokenizer", load, lambda exc: (
        "pip install sentencepiece (volprobe[radfm])" if "sentencepiece" in str(exc) else
        f"copy RadFM's Quick_demo/Language_files/tokenizer.model into {lang}")))
    return checks


def check_vocabulary(tokenizer: RadFMTokenizer, vocab_rows: int) -> None:
    """``<image>``, ``</image>``, ``<image0>`` must get ids ``vocab_rows``, ``+1``, ``+2``: the rows RadFM's
    embedding layer gives them (so a mismatched tokenizer fails loudly instead of reading garbage)."""
    got = tokenizer.convert_tokens_to_ids(["<image>", "</image>", "<image0>"])
    if got != [vocab_rows, vocab_rows + 1, vocab_rows + 2]:
        raise VolprobeError(f"radfm: tokenizer gives <image>, </image>, <image0> ids {got}; RadFM's embedding "
                            f"layer expects {[vocab_rows, vocab_rows + 1, vocab_rows + 2]} (Language_files mismatch?)")


# -- building and loading ----------------------------------------------------------------------

def build_model(folder: Path):
    """RadFM's ``MultiLLaMAForCausalLM(lang_model_path=folder/Language_files)``, built by RadFM's code in
    ``folder`` (working directory there, so its relative paths resolve) with LLaMA and Med-KEBERT made from
    their configs (:func:`_from_configs`)."""
    module = import_from_checkout(folder, MODEL_MODULE)
    try:
        with contextlib.chdir(folder), _from_configs(folder):
            return module.MultiLLaMAForCausalLM(lang_model_path=str(folder / "Language_files"))
    except WeightsMissingError:
        raise
    except OSError as exc:
        raise WeightsMissingError(
            f"radfm: RadFM's code could not open a file while building the model in {folder} ({exc}); "
            f"it needs Language_files/config.json and Med-KEBERT's config and tokenizer in {folder / 'MedKEBERT'}"
        ) from exc
    except TypeError as exc:
        raise VolprobeError(f"radfm: {MODEL_MODULE}.MultiLLaMAForCausalLM in {folder} does not take "
                            f"lang_model_path alone ({exc}); use the code of RadFM's Quick_demo") from exc


def _medkebert_folder(folder: Path) -> Path | None:
    """Med-KEBERT's config and tokenizer: ``folder/MedKEBERT``, else the hub id's cached snapshot."""
    local = folder / "MedKEBERT"
    if (local / "config.json").is_file():
        return local
    for cache in hub_cache_dirs():
        snap = find_snapshot(MEDKEBERT_HUB_ID, cache)
        if snap is not None and (snap / "config.json").is_file():
            return snap
    return None


@contextlib.contextmanager
def _from_configs(folder: Path) -> Iterator[None]:
    """While RadFM's code builds: ``LlamaForCausalLM.from_pretrained`` of a folder without weights makes the
    model from its config, and Med-KEBERT (hub id or ``./MedKEBERT``) comes from the local folder, its model
    from its config; weights are not initialised (RadFM's checkpoint holds them all)."""
    import transformers

    medkebert = _medkebert_folder(folder)
    llama_load = transformers.LlamaForCausalLM.from_pretrained
    tokenizer_load = transformers.AutoTokenizer.from_pretrained
    model_load = transformers.AutoModel.from_pretrained

    def llama(cls, path, *args, **kwargs):
        p = Path(path)
        if p.is_dir() and not any(f.name.endswith((".bin", ".safetensors")) for f in p.iterdir()):
            return cls(transformers.AutoConfig.from_pretrained(str(p), local_files_only=True))
        return llama_load(path, *args, **kwargs)

    def local_medkebert(name) -> str:
        if str(name) not in MEDKEBERT_NAMES:
            return name
        if medkebert is None:
            raise WeightsMissingError(
                f"radfm: RadFM's code builds Med-KEBERT ({MEDKEBERT_HUB_ID}, a BERT whose weights are in RadFM's "
                f"checkpoint); put its config.json and tokenizer files in {folder / 'MedKEBERT'} (RadFM's "
                "Quick_demo/MedKEBERT has them) or the hub id in the Hugging Face cache")
        return str(medkebert)

    def tokenizer(cls, name, *args, **kwargs):
        local = local_medkebert(name)
        return tokenizer_load(local, *args, **({"local_files_only": True, **kwargs} if local != name else kwargs))

    def model(cls, name, *args, **kwargs):
        local = local_medkebert(name)
        if local == name:
            return model_load(name, *args, **kwargs)
        return transformers.AutoModel.from_config(transformers.AutoConfig.from_pretrained(local, local_files_only=True))

    patches = [(transformers.LlamaForCausalLM, llama), (transformers.AutoTokenizer, tokenizer),
               (transformers.AutoModel, model)]
    saved = [(cls, cls.__dict__.get("from_pretrained")) for cls, _ in patches]
    for cls, fn in patches:
        cls.from_pretrained = classmethod(fn)
    try:
        with _no_init_weights():
            yield
    finally:
        for cls, original in saved:
            if original is None:
                del cls.from_pretrained
            else:
                cls.from_pretrained = original


@contextlib.contextmanager
def _no_init_weights() -> Iterator[None]:
    """``transformers``' ``no_init_weights`` (4.x: ``modeling_utils``; 5.x: ``initialization``) when present."""
    try:
        from transformers.initialization import no_init_weights
    except ImportError:
        try:
            from transformers.modeling_utils import no_init_weights
        except ImportError:
            no_init_weights = contextlib.nullcontext
    with no_init_weights():
        yield


def load_checkpoint(model, file: Path) -> list[str]:
    """Load RadFM's state dict into ``model``: every key must fit, except :data:`OBSOLETE_BUFFERS` (dropped and
    returned); anything else missing or unexpected is a :class:`VolprobeError` naming it."""
    result = model.load_state_dict(load_state_dict(file), strict=False)
    dropped = sorted(k for k in result.unexpected_keys if k.endswith(OBSOLETE_BUFFERS))
    unexpected = sorted(set(result.unexpected_keys) - set(dropped))
    missing = sorted(result.missing_keys)
    if unexpected or missing:
        def few(keys):
            return ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")

        parts = ([f"{len(missing)} weights the model needs are not in it ({few(missing)})"] if missing else []) + \
                ([f"{len(unexpected)} keys the model does not have ({few(unexpected)})"] if unexpected else [])
        raise VolprobeError(f"radfm: {file} does not fit RadFM's code: {'; '.join(parts)}. Use the checkpoint "
                            "and the Model/RadFM code of the same RadFM release")
    return dropped


def load_state_dict(file: Path) -> dict:
    """``torch.load`` of a state dict, memory-mapped when the file allows it (tensors only, no pickled code)."""
    import torch

    try:
        return torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # legacy (non-zip) serialisation cannot be memory-mapped
        return torch.load(file, map_location="cpu", weights_only=True)


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
