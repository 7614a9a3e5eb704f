"""Model adapters (one module each) and reference models, behind one registry.

Importing this package is cheap; adapters import torch/transformers lazily.
"""

from __future__ import annotations

import importlib

from volprobe.probes.models.base import (MODEL_REGISTRY, Generation, ModelAdapter, Prepared, default_prompt,
                                         load_model, register_model)

#: Modules that register the built-in adapters (each registers itself on import).
BUILTIN_ADAPTER_MODULES: list[str] = []


def import_builtin_adapters() -> None:
    """Import every built-in adapter module so that it registers (cheap: no torch at import)."""
    for mod in BUILTIN_ADAPTER_MODULES:
        importlib.import_module(mod)


__all__ = ["MODEL_REGISTRY", "Generation", "ModelAdapter", "Prepared", "default_prompt", "load_model",
           "register_model", "import_builtin_adapters"]
