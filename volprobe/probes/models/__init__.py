"""Model adapters (one module each) and reference models, behind one registry (:data:`MODELS`).

Importing this package is cheap; adapters import torch/transformers lazily, and each adapter module is
imported only when its model is asked for (entry points, see :mod:`volprobe.registry`).
"""

from __future__ import annotations

from volprobe.probes.models.base import (MODELS, Generation, ModelAdapter, Prepared, default_prompt, load_model,
                                         register_model)

__all__ = ["MODELS", "Generation", "ModelAdapter", "Prepared", "default_prompt", "load_model", "register_model"]
