"""A tiny RadFM "source checkout": stand-in ``Model/RadFM`` code, ``Language_files``, ``MedKEBERT``, weights."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from tinymodels.text import train_tokenizer

SOURCE = Path(__file__).with_name("radfm_src")


def build_radfm(folder: Path) -> None:
    """Write the layout the ``radfm`` adapter expects, with a 2-layer LLaMA (hidden 64) and random weights."""
    import contextlib

    import torch
    from transformers import BertConfig, LlamaConfig, LlamaForCausalLM

    shutil.copytree(SOURCE / "Model", folder / "Model", dirs_exist_ok=True)
    tok = train_tokenizer(["<unk>", "<s>", "</s>"], bos="<s>", eos_token="</s>", unk_token="<unk>")
    lang = folder / "Language_files"
    config = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         bos_token_id=1, eos_token_id=2, pad_token_id=0)
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(lang)
    tok.save_pretrained(lang)
    BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(folder / "MedKEBERT")
    sys.path.insert(0, str(folder))
    try:
        from Model.RadFM.multimodality_model import MultiLLaMAForCausalLM

        with contextlib.chdir(folder):
            model = MultiLLaMAForCausalLM(lang_model_path=str(lang))
    finally:
        sys.path.remove(str(folder))
        for name in [m for m in sys.modules if m == "Model" or m.startswith("Model.")]:
            del sys.modules[name]
    torch.manual_seed(1)
    for p in model.embedding_layer.parameters():  # fresh values everywhere but the tied text embedding
        if p is not model.embedding_layer.weight:
            torch.nn.init.normal_(p, std=0.5)
    torch.save(model.state_dict(), folder / "pytorch_model.bin")
