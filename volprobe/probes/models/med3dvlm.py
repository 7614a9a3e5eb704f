"""``med3dvlm``: Med3DVLM (``MagicXin/Med3DVLM-Qwen-2.5-7B``), the M3D pattern at 128 slices.

Same loading, splicing, batching and ``text_only`` modes as :mod:`volprobe.probes.models.m3d`, with:

* volume (preset ``med3dvlm``, :data:`~volprobe.probes.models.preprocessing.MED3DVLM_PRESET`):
  ``1 x 1 x 128 x 256 x 256`` in [0, 1], made as Med3DVLM's ``src/utils/m3d_cap_data_prepare_128.py`` made
  its training data (8-bit display images, min-max, ``CropForeground(allow_smaller=True)``, trilinear
  ``Resize``); orientation from the affine;
* the vision tower reloaded from ``vision_tower.bin`` when the folder has one, as the authors' demo does;
* prompt in M3D-Bench style (``question Choices: A. .. B. ..``), as Med3DVLM's VQA evaluation;
* greedy decoding. The authors' demo sampled (temperature 1.0, top-p 0.9); that is recorded in
  ``generation_settings["authors_decoding"]`` and not reproduced, so controls stay comparable.

Library versions: the authors pin transformers 4.48.3, MONAI 1.4.0 and torch 2.6 (``requirements.txt``).
"""

from __future__ import annotations

from volprobe.probes.models.base import register_model
from volprobe.probes.models.m3d import M3DAdapter
from volprobe.probes.models.preprocessing import MED3DVLM_PRESET

VISION_TOWER_FILE = "vision_tower.bin"


@register_model("med3dvlm")
class Med3DVLMAdapter(M3DAdapter):
    """Med3DVLM: an M3D-style model on ``1 x 1 x 128 x 256 x 256`` volumes. Options as ``m3d``."""

    default_repo = "MagicXin/Med3DVLM-Qwen-2.5-7B"
    preset = MED3DVLM_PRESET
    default_prompt_style = "m3d"
    authors_decoding = "sampling, temperature 1.0, top_p 0.9 (demo); greedy used here"
    code_libraries = {"transformers": ("4.48", ""), "monai": ("1.4", "")}
    code_libraries_source = "Med3DVLM requirements.txt: transformers 4.48.3, monai 1.4.0"

    def _after_load(self) -> None:
        import torch

        tower_file = self.weights.path / VISION_TOWER_FILE
        self.vision_tower_file = tower_file.name if tower_file.exists() else None
        if self.vision_tower_file:
            state = torch.load(tower_file, map_location="cpu", weights_only=True)
            self.model.get_model().vision_tower.load_state_dict(state)
