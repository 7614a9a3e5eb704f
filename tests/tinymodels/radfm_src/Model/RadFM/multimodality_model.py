"""Stand-in for RadFM's ``Quick_demo/Model/RadFM/multimodality_model.py`` at its current commit: same class,
constructor calls and ``generate``.

Like RadFM's code it builds the LLaMA with ``LlamaForCausalLM.from_pretrained(lang_model_path)`` although
``Language_files`` holds only a config and a tokenizer (RadFM's checkpoint holds the weights), enables
gradient checkpointing, and ties the embedding layer's text rows to the LLaMA's input embeddings. Unlike
it, the embedding layer takes the tiny LLaMA's sizes (RadFM's ``MyEmbedding()`` has 32000 x 5120 built in).
"""

import torch
from torch import nn
from transformers.models.llama import LlamaForCausalLM

from .my_embedding_layer import MyEmbedding


class MultiLLaMAForCausalLM(nn.Module):
    def __init__(self, lang_model_path):
        super().__init__()
        self.lang_model = LlamaForCausalLM.from_pretrained(lang_model_path)
        self.lang_model.gradient_checkpointing_enable()
        self.lang_model.enable_input_require_grads()
        config = self.lang_model.config
        self.embedding_layer = MyEmbedding(num_embeddings=config.vocab_size, embedding_dim=config.hidden_size)
        self.embedding_layer.weight = self.lang_model.get_input_embeddings().weight
        self.hidden_dim = config.hidden_size
        self.voc_size = config.vocab_size

    def generate(self, lang_x, vision_x):
        self.embedding_layer.flag = "Text"
        with torch.no_grad():
            input_embedding, _ = self.embedding_layer(lang_x, vision_x)
            generation = self.lang_model.generate(inputs_embeds=input_embedding, max_new_tokens=200, top_k=50)
        return generation
