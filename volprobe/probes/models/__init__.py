"""Model adapters (one module each) and reference models, behind one registry.

Importing this package is cheap; adapters import torch/transformers lazily.
"""

from __future__ import annotations

import importlib

from volprobe.probes.models.base import (MODEL_REGISTRY, Generation, ModelAdapter, Prepared, default_prompt,
                                         load_model, register_model)

#: Modules that register the built-in adapters (each registers itself on import).
BUILTIN_ADAPTER_MODULES: list[str] = [
    "volprobe.probes.models.random_model",  # random
    "volprobe.probes.models.prior",  # prior (blind baselines)
    "volprobe.probes.models.oracle",  # oracle (reads the volume it is given)
    "volprobe.probes.models.hf",  # general image-text-to-text VLMs (Qwen-VL, MedGemma, ...)
    "volprobe.probes.models.m3d",  # M3D-LaMed, M3D-RAD
    "volprobe.probes.models.med3dvlm",  # Med3DVLM
    "volprobe.probes.models.radfm",  # RadFM
]


def import_builtin_adapters() -> None:
    """Import every built-in adapter module so that it registers (cheap: no torch at import)."""
    for mod in BUILTIN_ADAPTER_MODULES:
        importlib.import_module(mod)


__all__ = ["MODEL_REGISTRY", "Generation", "ModelAdapter", "Prepared", "default_prompt", "load_model",
           "register_model", "import_builtin_adapters"]
