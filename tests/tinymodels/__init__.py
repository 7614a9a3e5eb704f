"""Tiny randomly initialised models of the real architecture classes, built at test time (no downloads).

Each builder writes a complete model folder (weights saved with ``save_pretrained`` or ``torch.save``,
an offline-trained tokenizer, a chat template) that the adapters then load through their real loading
path with ``local_files_only=True``. :func:`cached_build` builds each folder once per test session.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

_BUILT: dict[str, Path] = {}


def cached_build(tmp_path_factory, name: str, builder: Callable[[Path], None]) -> Path:
    """Build ``name`` once per session under pytest's base temp folder; later calls reuse the folder."""
    if name not in _BUILT:
        folder = tmp_path_factory.getbasetemp() / "tinymodels" / name
        folder.mkdir(parents=True, exist_ok=True)
        builder(folder)
        _BUILT[name] = folder
    return _BUILT[name]


class record_calls:
    """Context manager recording the positional and keyword inputs of every call to a ``torch.nn.Module``.

    ``calls`` is a list of ``(args, kwargs)``; ``outputs`` the matching outputs. The first call of a
    ``generate`` is the prefill, holding the whole prompt.
    """

    def __init__(self, module):
        self.module = module
        self.calls: list[tuple[tuple, dict]] = []
        self.outputs: list = []

    def __enter__(self):
        self._handles = [
            self.module.register_forward_pre_hook(lambda m, a, kw: self.calls.append((a, dict(kw))), with_kwargs=True),
            self.module.register_forward_hook(lambda m, a, out: self.outputs.append(out)),
        ]
        return self

    def __exit__(self, *exc):
        for h in self._handles:
            h.remove()
        return False


class record_method:
    """Context manager wrapping ``obj.<name>`` so every call's ``(args, kwargs)`` is kept in ``calls``.

    Used on ``model.generate``: what the adapter hands the model, before ``generate`` transforms it.
    """

    def __init__(self, obj, name: str = "generate"):
        self.obj, self.name = obj, name
        self.calls: list[tuple[tuple, dict]] = []

    def __enter__(self):
        original = getattr(self.obj, self.name)

        def wrapper(*args, **kwargs):
            self.calls.append((args, dict(kwargs)))
            return original(*args, **kwargs)

        setattr(self.obj, self.name, wrapper)
        return self

    def __exit__(self, *exc):
        delattr(self.obj, self.name)  # drops the instance attribute; the class method shows again
        return False
