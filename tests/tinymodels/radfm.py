"""A tiny RadFM "source checkout" laid out like RadFM's ``Quick_demo``: stand-in ``Model/RadFM`` code,
``Language_files`` made exactly as RadFM ships it, ``MedKEBERT`` (config + tokenizer), ``pytorch_model.bin``.

``Language_files`` holds what RadFM's repository holds there and nothing else: a SentencePiece
``tokenizer.model`` (LLaMA's layout: ``<unk>`` 0, ``<s>`` 1, ``</s>`` 2; trained here on a small corpus),
RadFM's ``tokenizer_config.json`` and ``special_tokens_map.json`` byte for byte, and a LLaMA
``config.json`` with RadFM's token ids (bos 0, eos 1, pad -1) and tiny sizes. No LLaMA weights: RadFM's
checkpoint holds them. The checkpoint also carries the two buffers transformers 4.28 saved
(BERT ``position_ids``, LLaMA rotary ``inv_freq``), as RadFM's does.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

from tinymodels.text import CORPUS

SOURCE = Path(__file__).with_name("radfm_src")
#: RadFM's ``Quick_demo/Language_files/tokenizer_config.json`` and ``special_tokens_map.json``, verbatim.
TOKENIZER_CONFIG = ('{"bos_token": "", "eos_token": "", "model_max_length": 1000000000000000019884624838656, '
                    '"tokenizer_class": "LlamaTokenizer", "unk_token": ""}')
SPECIAL_TOKENS_MAP = "{}"
SP_VOCAB = 300
BERT_VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "consolidation", "nodule", "effusion", "lung", "liver"]


def train_sentencepiece(vocab_size: int = SP_VOCAB) -> bytes:
    """A BPE SentencePiece model with LLaMA's special ids (unk 0, bos 1, eos 2, no pad), trained on :data:`CORPUS`."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 3), model_writer=model, vocab_size=vocab_size,
                                   model_type="bpe", unk_id=0, bos_id=1, eos_id=2, pad_id=-1, character_coverage=1.0,
                                   num_threads=1, minloglevel=2, seed_sentencepiece_size=100000)
    return model.getvalue()


def write_language_files(lang: Path) -> int:
    """RadFM's ``Language_files`` (tiny LLaMA sizes); returns the vocabulary size."""
    lang.mkdir(parents=True, exist_ok=True)
    (lang / "tokenizer.model").write_bytes(train_sentencepiece())
    (lang / "tokenizer_config.json").write_text(TOKENIZER_CONFIG)
    (lang / "special_tokens_map.json").write_text(SPECIAL_TOKENS_MAP)
    config = {"architectures": ["LlamaForCausalLM"], "bos_token_id": 0, "eos_token_id": 1, "hidden_act": "silu",
              "hidden_size": 64, "initializer_range": 0.02, "intermediate_size": 128, "max_sequence_length": 2048,
              "max_position_embeddings": 2048, "model_type": "llama", "num_attention_heads": 4,
              "num_hidden_layers": 2, "pad_token_id": -1, "rms_norm_eps": 1e-06, "tie_word_embeddings": False,
              "torch_dtype": "float32", "transformers_version": "4.28.0.dev0", "use_cache": True,
              "vocab_size": SP_VOCAB}
    (lang / "config.json").write_text(json.dumps(config, indent=2))
    return SP_VOCAB


def write_medkebert(folder: Path) -> None:
    """Med-KEBERT's folder as RadFM's Quick_demo ships it: a BERT config and tokenizer files, no weights."""
    from transformers import BertConfig

    folder.mkdir(parents=True, exist_ok=True)
    BertConfig(vocab_size=len(BERT_VOCAB), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
               intermediate_size=32).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(BERT_VOCAB) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "BertTokenizer", "do_lower_case": True}))


def build_radfm(folder: Path) -> None:
    """Write the checkout; the checkpoint holds random values (fresh normal values away from the text rows)."""
    import torch

    from volprobe.probes.models.radfm import build_model

    shutil.copytree(SOURCE / "Model", folder / "Model", dirs_exist_ok=True)
    write_language_files(folder / "Language_files")
    write_medkebert(folder / "MedKEBERT")
    torch.manual_seed(0)
    model = build_model(folder)
    for name, p in model.named_parameters():
        torch.nn.init.normal_(p, std=0.5 if name.startswith("embedding_layer.") and p is not model.embedding_layer.weight
                              else 0.05)
    state = model.state_dict()
    state["embedding_layer.bert_model.embeddings.position_ids"] = torch.arange(512)[None]
    state["lang_model.model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(8)
    torch.save(state, folder / "pytorch_model.bin")
