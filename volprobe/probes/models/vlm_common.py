"""Pieces shared by the VLM adapters (``hf``, ``m3d``, ``med3dvlm``, ``radfm``): weights, device, greedy decoding.

No torch import at module level.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Hashable, Sequence

from volprobe.errors import VolprobeError, VolprobeWarning
from volprobe.probes.models.base import ModelAdapter, Prepared, hash_bytes
from volprobe.probes.models.weights import ResolvedWeights, dtype_name, resolve_device, resolve_dtype


class VLMAdapter(ModelAdapter):
    """Base of adapters whose weights live in a local folder or the Hugging Face cache.

    Subclasses implement :meth:`_load` (set ``self.model`` and friends) and use ``self.torch_device`` /
    ``self.torch_dtype``. Options arrive as keyword arguments (strings from a command line are coerced).
    """

    #: hub id used when ``--model NAME`` gives no path (None: a path is required).
    default_repo: str | None = None

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto",
                 max_new_tokens: int | str = 64, **options: Any):
        super().__init__(path=path, device=device, dtype=dtype, **options)
        if options:
            warnings.warn(f"{self.name}: ignoring unknown option(s) {', '.join(sorted(options))}", VolprobeWarning,
                          stacklevel=3)
        self.max_new_tokens = positive_int(max_new_tokens, "max_new_tokens")
        self.weights: ResolvedWeights | None = None
        self.model = None

    @property
    def revision(self) -> str | None:
        return None if self.weights is None else self.weights.revision

    @property
    def generation_settings(self) -> dict[str, Any]:
        settings = self.greedy_kwargs(None)
        if self.model is not None:
            settings.update(dtype=dtype_name(self.torch_dtype), device=str(self.torch_device))
        return settings

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

    def greedy_kwargs(self, pad_token_id: int | None) -> dict[str, Any]:
        """Keyword arguments for ``generate``: greedy, one beam, ``max_new_tokens``."""
        kwargs: dict[str, Any] = {"do_sample": False, "num_beams": 1, "max_new_tokens": self.max_new_tokens}
        if pad_token_id is not None:
            kwargs["pad_token_id"] = pad_token_id
        return kwargs


def ensure_pad_token(tokenizer) -> None:
    """Give a tokenizer without a padding token one (EOS, else UNK); padded positions are masked out anyway."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token if tokenizer.eos_token is not None else tokenizer.unk_token


def positive_int(value: Any, name: str) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError) as exc:
        raise VolprobeError(f"option {name}={value!r} is not an integer") from exc
    if n < 1:
        raise VolprobeError(f"option {name}={value!r} must be at least 1")
    return n


def choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    text = str(value)
    if text not in allowed:
        raise VolprobeError(f"option {name}={value!r} must be one of {', '.join(allowed)}")
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
