"""Builders of tiny M3D-LaMed (1x1x32x256x256) and Med3DVLM (1x1x128x256x256) style model folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tinymodels.text import train_tokenizer

LAMED_SPECIAL = ["<unk>", "<s>", "</s>", "<im_patch>"]
MODELING_FILE = Path(__file__).with_name("lamed_modeling.py")


#: Tiny language model sizes (2 layers, hidden 64).
LAMED_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                  num_key_value_heads=2, max_position_embeddings=1024, vision_dim=16, vocab_size=None)
#: M3D-LaMed-Phi-3-4B's sizes (Phi-3-mini-4k: hidden 3072, 32 layers, vocabulary 32064; M3D's ViT: 768 wide,
#: 12 layers over the 2,048 patches), for full-size random-weight benchmarks.
LAMED_PHI3_4B = dict(hidden_size=3072, intermediate_size=8192, num_hidden_layers=32, num_attention_heads=32,
                     num_key_value_heads=32, max_position_embeddings=4096, vision_dim=768, vision_layers=12,
                     vocab_size=32064)


def _remote_code(folder: Path):
    import sys

    shutil.copy(MODELING_FILE, folder / MODELING_FILE.name)
    sys.path.insert(0, str(MODELING_FILE.parent))
    try:
        import lamed_modeling as remote
    finally:
        sys.path.remove(str(MODELING_FILE.parent))
    return remote


def write_lamed(folder: Path, image_size=(32, 256, 256), patch_size=(4, 16, 16), pool_grid=(4, 8, 8),
                separate_vision_tower: bool = False, bos: bool = True, seed: int = 0, sizes: dict = LAMED_TINY,
                weights: bool = True):
    """Write config, remote code, tokenizer and (unless ``weights=False``) random weights of an M3D-style model
    of ``sizes``; returns the config.

    ``pool_grid`` cells are the image tokens (4 x 8 x 8 = 256, M3D's ``proj_out_num``).
    ``separate_vision_tower``: also save the vision tower alone as ``vision_tower.bin`` with other random
    values (Med3DVLM ships its DCFormer weights that way and its demo loads them after the model).
    ``bos=False``: a tokenizer that adds no BOS token, like Med3DVLM's Qwen2.5 one.
    """
    import torch

    tok = train_tokenizer(LAMED_SPECIAL, bos="<s>" if bos else None, eos_token="</s>", unk_token="<unk>",
                          pad_token="<unk>")
    remote = _remote_code(folder)
    proj_out_num = int(torch.tensor(pool_grid).prod())
    text = {k: v for k, v in sizes.items() if k not in ("vision_dim", "vision_layers", "vocab_size")}
    config = remote.TinyLamedConfig(
        vocab_size=sizes["vocab_size"] or len(tok), **text, bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, image_size=list(image_size),
        patch_size=list(patch_size), pool_grid=list(pool_grid), vision_dim=sizes["vision_dim"],
        vision_layers=sizes.get("vision_layers", 0), proj_out_num=proj_out_num)
    config.auto_map = {"AutoConfig": "lamed_modeling.TinyLamedConfig",
                       "AutoModelForCausalLM": "lamed_modeling.TinyLamedForCausalLM"}
    config.save_pretrained(folder)
    tok.save_pretrained(folder)
    if weights:
        torch.manual_seed(seed)
        model = remote.TinyLamedForCausalLM(config)
        model.save_pretrained(folder)
        config_file = folder / "config.json"
        saved = json.loads(config_file.read_text())
        saved["auto_map"] = config.auto_map
        config_file.write_text(json.dumps(saved, indent=2))
    if separate_vision_tower:
        torch.manual_seed(seed + 1)
        tower = remote.TinyVisionTower(config)
        torch.save(tower.state_dict(), folder / "vision_tower.bin")
    return config


def build_lamed(folder: Path, **kwargs) -> None:
    """A tiny M3D-style model folder (see :func:`write_lamed`)."""
    write_lamed(folder, **kwargs)
