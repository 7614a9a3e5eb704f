"""The model adapter contract and the model registry.

An adapter turns (a volume in patient space after a control, an item) into the model's
own input, and generates text. The run engine calls, in this order::

    adapter = load_model("m3d:/path/to/weights", device="cuda", dtype="bf16")
    prepared = adapter.prepare(volume_or_None)    # once per (volume, control)
    texts = adapter.generate([(prepared, item), ...])   # a batch

Heavy imports (torch, transformers) happen inside adapter methods, never at module import.
A new model is one small module that subclasses :class:`ModelAdapter` and decorates it with
:func:`register_model`; a plugin package declares it as an entry point instead (group
``volprobe.models``, see :mod:`volprobe.registry`), as volprobe does for its built-ins.
"""

from __future__ import annotations

import hashlib
import string
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

from volprobe.errors import InvalidValueError
from volprobe.items import Item
from volprobe.registry import Registry


@dataclass
class Prepared:
    """A model-specific input built from one volume under one control.

    Attributes:
        data: whatever the adapter needs (tensors, PIL images, a relation graph ...); None without an image.
        input_hash: SHA-256 of the image part of the input (prompt hashed separately by the engine).
        no_image: True when the model runs without any image input.
        info: small JSON-able facts (shapes, number of slices, window) recorded with each result.
        reuse: what an adapter computed from this input and keeps for the next question on it (vision
            features, the language model's cache of an image prefix); lives as long as the input (the
            engine drops a case's inputs after the case), never recorded or hashed.
    """

    data: Any
    input_hash: str
    no_image: bool = False
    info: dict[str, Any] = field(default_factory=dict)
    reuse: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass
class Generation:
    """A model's answer to one item."""

    text: str
    refused: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class ModelAdapter(ABC):
    """Base class of every model (VLM adapters and reference models).

    Class attributes:
        name: registry name.
        no_image_mode: how the model runs under ``text_only`` (e.g. ``"no <im_patch> tokens"``),
            recorded in every text-only record.
        uses_image: False for blind models (they ignore the volume; the engine skips preparing it).
        run_seed: the run's seed, set by the engine before ``load()``.
        accepted_options: names of the ``--model-option`` keys the model reads from ``self.options``;
            any other option is an error (adapters with named keyword options need not list those).
    """

    name: str = ""
    no_image_mode: str = "no image input"
    uses_image: bool = True
    #: The run's seed; the engine sets it before ``load()`` (seeded reference models read it).
    run_seed: int = 0
    accepted_options: frozenset[str] = frozenset()

    def __init__(self, path: str | None = None, device: str = "cpu", dtype: str = "auto", **options: Any):
        type(self).check_options(options, named=False)
        self.path = path
        self.device = device
        self.dtype = dtype
        self.options = options

    @classmethod
    def check_options(cls, options: dict[str, Any], named: bool = True) -> None:
        """Raise :class:`InvalidValueError` for an option the model does not take (``named``: its constructors'
        keyword options count as known; the base constructor checks only what reaches ``self.options``)."""
        known = set(cls.accepted_options) | (set(cls.option_names()) if named else set())
        unknown = sorted(set(options) - known)
        if unknown:
            names = sorted(set(cls.accepted_options) | set(cls.option_names()))
            raise InvalidValueError(f"{cls.name or cls.__name__}: unknown model option(s) {', '.join(unknown)}; "
                                    f"it takes: {', '.join(names) or 'no options'}")

    @classmethod
    def option_names(cls) -> list[str]:
        """The keyword options of this adapter's constructors (``--model-option`` names)."""
        import inspect

        names: set[str] = set()
        for klass in cls.__mro__:
            init = klass.__dict__.get("__init__")
            if init is None:
                continue
            for param in inspect.signature(init).parameters.values():
                if param.kind == param.KEYWORD_ONLY or (param.kind == param.POSITIONAL_OR_KEYWORD
                                                         and param.name not in ("self", "path", "device", "dtype")):
                    names.add(param.name)
        return sorted(names)

    # -- identity ------------------------------------------------------------------
    @property
    def revision(self) -> str | None:
        """Weights revision (commit hash or file hash) when known."""
        return None

    @property
    def generation_settings(self) -> dict[str, Any]:
        """Decoding settings recorded with each record (greedy by default)."""
        return {"do_sample": False}

    def diagnose(self) -> list:
        """Checks of the model's files and environment without loading weights (``probe doctor``): a list of
        :class:`~volprobe.probes.models.doctor.Check`; empty when there is nothing to check."""
        return []

    # -- lifecycle -----------------------------------------------------------------
    def load(self) -> None:
        """Load weights (heavy imports here). Called once by the engine before the first batch."""

    @abstractmethod
    def prepare(self, volume) -> Prepared:
        """Model input for one volume (a :class:`~volprobe.segmentation.volume.Volume`) or None (no image)."""

    def prompt(self, item: Item) -> str:
        """The text sent with the volume; default: question, lettered options, answer instruction."""
        return default_prompt(item)

    @abstractmethod
    def generate(self, batch: Sequence[tuple[Prepared, Item]]) -> list[Generation]:
        """Answer a batch of (prepared input, item) pairs; deterministic given the adapter's settings."""


def default_prompt(item: Item) -> str:
    """Question plus lettered options (``A. left``) and a short answer instruction."""
    if item.is_closed:
        opts = "\n".join(f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(item.options))
        return f"{item.question}\nChoices:\n{opts}\nAnswer with the letter of the correct choice."
    return item.question


def hash_bytes(*parts: bytes | str) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode() if isinstance(p, str) else p)
        h.update(b"\x00")
    return h.hexdigest()


# -- registry ------------------------------------------------------------------------
#: Every model by name: volprobe's adapters and reference models, and plugins' (entry-point group
#: ``volprobe.models``).
MODELS: Registry[ModelAdapter] = Registry("model", "volprobe.models")


def register_model(name):
    """Class decorator: make an adapter available as ``--model NAME`` (``@register_model("name")``, or bare
    ``@register_model`` for a class that sets ``name`` itself)."""
    return MODELS.register(name)


def parse_model_spec(spec: str) -> tuple[str, str | None]:
    """``NAME[:path]`` → (name, path or None)."""
    name, sep, path = spec.partition(":")
    return name.strip(), (path.strip() or None) if sep else None


def load_model(spec: str, device: str = "cpu", dtype: str = "auto", **options: Any) -> ModelAdapter:
    """Instantiate a registered adapter from ``NAME[:path]`` (weights are loaded by ``adapter.load()``).

    Raises:
        InvalidValueError: an option the adapter does not take (the message lists those it takes).
    """
    name, path = parse_model_spec(spec)
    cls = MODELS.get(name)
    cls.check_options(options)
    return cls(path=path, device=device, dtype=dtype, **options)
