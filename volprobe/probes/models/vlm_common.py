"""Pieces shared by the VLM adapters (``hf``, ``m3d``, ``med3dvlm``, ``radfm``): weights, device, greedy decoding,
the generation settings actually used, and the few calls that differ between ``transformers`` versions.

No torch import at module level.
"""

from __future__ import annotations

import contextlib
import warnings

from typing import Any, Callable, Hashable, Sequence

from volprobe.errors import InvalidValueError, VolprobeError
from volprobe.probes.models.base import ModelAdapter, Prepared, hash_bytes
from volprobe.probes.models.weights import ResolvedWeights, dtype_name, resolve_device, resolve_dtype


class VLMAdapter(ModelAdapter):
    """Base of adapters whose weights live in a local folder or the Hugging Face cache.

    Subclasses implement :meth:`_load` (set ``self.model`` and friends) and use ``self.torch_device`` /
    ``self.torch_dtype``. Options arrive as keyword arguments (strings from a command line are coerced);
    an option no constructor names is an error. :meth:`generate_kwargs` is the one place the keyword
    arguments of ``generate`` are made, so what is recorded is what ran.
    """

    #: hub id used when ``--model NAME`` gives no path (None: a path is required).
    default_repo: str | None = None

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto",
                 max_new_tokens: int | str | None = None, **options: Any):
        super().__init__(path=path, device=device, dtype=dtype, **options)
        self.max_new_tokens = None if max_new_tokens is None else positive_int(max_new_tokens, "max_new_tokens")
        self.weights: ResolvedWeights | None = None
        self.model = None

    @property
    def revision(self) -> str | None:
        return None if self.weights is None else self.weights.revision

    @property
    def generation_settings(self) -> dict[str, Any]:
        """Every effective setting of ``generate``: the model's own generation config (as saved with its
        weights, e.g. Qwen2.5-VL's ``repetition_penalty``) updated by :meth:`generate_kwargs`, the keys that
        came from the model listed under ``inherited_from_generation_config``; plus dtype, device and the
        library versions once loaded."""
        explicit = self.generate_kwargs()
        if self.model is None:
            return explicit
        settings, inherited = effective_generation(self.generation_model(), explicit)
        settings.update(inherited_from_generation_config=inherited, dtype=dtype_name(self.torch_dtype),
                        device=str(self.torch_device), libraries=library_versions())
        return settings

    def generation_model(self):
        """The module whose ``generate`` runs (its ``generation_config`` applies)."""
        return self.model

    def generate_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``generate``: greedy, one beam, ``max_new_tokens`` (and the pad token)."""
        return greedy_kwargs(self.max_new_tokens, self.pad_token_id())

    def pad_token_id(self) -> int | None:
        return None

    def load(self) -> None:
        if self.model is not None:
            return
        self.torch_device = resolve_device(self.device)
        self.torch_dtype = resolve_dtype(self.dtype, self.torch_device)
        self._load()
        self.model.eval()

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _require_loaded(self) -> None:
        if self.model is None:
            raise VolprobeError(f"{self.name}: call load() before generate()")

    def diagnose(self) -> list:
        """``probe doctor``'s checks that need no weights in memory (subclasses add their own)."""
        from volprobe.probes.models.doctor import weights_check

        return [weights_check(self)]


def greedy_kwargs(max_new_tokens: int | None, pad_token_id: int | None) -> dict[str, Any]:
    """Greedy decoding: ``do_sample=False``, one beam, ``max_new_tokens`` and the pad token when given."""
    kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": max_new_tokens}
    if pad_token_id is not None:
        kwargs["pad_token_id"] = pad_token_id
    return kwargs


def effective_generation(model, explicit: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The settings ``model.generate(**explicit)`` runs with, and which came from the model's generation config.

    ``transformers`` starts from ``model.generation_config`` (the values that differ from the library's
    defaults: ``generation_config.json`` or the model config) and updates it with the call's keyword
    arguments; this does the same on a copy.
    """
    config = getattr(model, "generation_config", None)
    if config is None:
        return dict(explicit), []
    base = {k: v for k, v in config.to_diff_dict().items() if k != "transformers_version" and not k.startswith("_")}
    return {**base, **explicit}, sorted(k for k in base if k not in explicit)


def library_versions() -> dict[str, str]:
    """Versions of the libraries a model's code runs on (recorded with the generation settings)."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("torch", "transformers", "tokenizers", "monai"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def transformers_version() -> tuple[int, ...]:
    """The installed ``transformers`` version as numbers, e.g. ``(5, 25, 0)``."""
    import re
    from importlib.metadata import version

    return tuple(int(p) for p in re.findall(r"\d+", version("transformers"))[:3])


def dtype_kwarg(dtype) -> dict[str, Any]:
    """``from_pretrained``'s dtype keyword: ``dtype`` from transformers 4.56 on, ``torch_dtype`` before."""
    return {"dtype": dtype} if transformers_version() >= (4, 56) else {"torch_dtype": dtype}


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a padding token one (EOS, else UNK); padded positions are masked out anyway."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token


def positive_int(value: Any, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidValueError(f"option {name}={value!r} is not an integer") from exc
    if n < 1:
        raise InvalidValueError(f"option {name}={value!r} must be at least 1")
    return n


def choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    text = str(value)
    if text not in allowed:
        raise InvalidValueError(f"option {name}={value!r} must be one of {', '.join(allowed)}")
    return text


def tensor_hash(tag: str, tensor) -> str:
    """SHA-256 of a tag, a tensor's shape and dtype, and its bytes (the exact model input)."""
    t = tensor.detach().cpu().contiguous()
    return hash_bytes(tag, f"{tuple(t.shape)}|{t.dtype}", t.numpy().tobytes())


def no_image_input(mode: str) -> Prepared:
    """The prepared input of the ``text_only`` control: no image, the mode recorded."""
    return Prepared(data=None, input_hash=hash_bytes("no-image", mode), no_image=True, info={"no_image_mode": mode})


def batch_groups(keys: Sequence[Hashable]) -> list[list[int]]:
    """Indices grouped by equal key, groups in order of first appearance (items keep their order)."""
    groups: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(groups.values())


def run_groups(n: int, keys: Sequence[Hashable], run: Callable[[list[int]], list[str]]) -> list[str]:
    """Call ``run`` on each group of equal keys and put its texts back in the original order."""
    out: list[str | None] = [None] * n
    for group in batch_groups(keys):
        for i, text in zip(group, run(group)):
            out[i] = text
    return out  # type: ignore[return-value]


# -- prompts shared by the 3D VLM adapters -----------------------------------------------------

#: Choice slots of a 3D-RAD CSV row (``Choice A`` .. ``Choice D``); an unused slot holds ``-``.
THREEDRAD_CHOICE_SLOTS = 4


def choices_line(options: Sequence[str]) -> str:
    """``Choices: A. left B. right`` (M3D-Bench and 3D-RAD style)."""
    return "Choices: " + " ".join(f"{chr(ord('A') + i)}. {o}" for i, o in enumerate(options))


def threedrad_prompt(item) -> str:
    """The question as 3D-RAD's evaluation code writes it for M3D and RadFM (``RADDataset`` in
    ``M3D/Bench/dataset/multi_dataset.py``, ``RAD_Dataset`` in ``RadFM/src/Dataset/dataset/rad_dataset.py``
    of Tang-xiaoxiao/3D-RAD): ``question\\nChoices: A. x B. y C. z D. w\\nAnswer:``.

    Those classes test ``all(x in row for x in ["Choice A", ..., "Choice D"])``, which on a pandas row is
    true whenever the CSV has the four columns, as every 3D-RAD CSV does; so a 3D-RAD item always gets four
    slots, unused ones ``-`` (open questions: ``Choices: A. - B. - C. - D. -``). Items from elsewhere list
    their own options, and an open one is ``question\\nAnswer:``.
    """
    options = list(item.options)
    if item.metadata.get("benchmark") == "3drad":
        options += ["-"] * (THREEDRAD_CHOICE_SLOTS - len(options))
    if not options:
        return f"{item.question}\nAnswer:"
    return f"{item.question}\n{choices_line(options)}\nAnswer:"


def m3d_bench_prompt(item) -> str:
    """M3D-Bench's closed-question format (``question Choices: A. x B. y``), used by Med3DVLM's VQA evaluation."""
    return f"{item.question} {choices_line(item.options)}" if item.is_closed else item.question


# -- encode once, ask many -------------------------------------------------------------------------

def prefix_cache(language_model, prefix_embeds):
    """The key/value cache of a prompt prefix (``1 x n x hidden`` embeddings) in ``language_model``."""
    with cached_generation():
        return language_model(inputs_embeds=prefix_embeds, use_cache=True).past_key_values


@contextlib.contextmanager
def cached_generation():
    """Inference mode, without transformers 5's notices that ``past_key_values`` will be renamed ``cache`` in 6.0
    (the supported range, below 6, takes ``past_key_values``)."""
    import torch
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        with torch.inference_mode(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*past_key_values.*deprecated", category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(level)


def generate_after_prefix(language_model, prefix_embeds, cache, rest_embeds, **generate_kwargs):
    """Greedy continuation of B prompts that share a prefix: ``prefix_embeds`` (1 x n x hidden) whose cache
    is ``cache`` (:func:`prefix_cache`; copied, never changed), then each prompt's own ``rest_embeds``
    (B x m x hidden, equal lengths). Only the m question positions and the answer are computed; the result
    holds the new tokens only (as ``generate`` from embeddings does)."""
    import torch
    from transformers import GenerationMixin

    n = rest_embeds.shape[0]
    embeds = torch.cat([prefix_embeds.expand(n, -1, -1), rest_embeds], dim=1)
    with cached_generation():
        return GenerationMixin.generate(language_model, inputs_embeds=embeds, past_key_values=copied_cache(cache, n),
                                        **generate_kwargs)


def copied_cache(cache, rows: int):
    """A deep copy of a key/value cache (the original stays the prefix's), repeated for ``rows`` prompts."""
    import copy

    past = copy.deepcopy(cache)
    if rows > 1:
        past.batch_repeat_interleave(rows)
    return past
