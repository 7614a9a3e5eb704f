"""Stand-in for RadFM's ``Quick_demo/Model/RadFM/multimodality_model.py``: same class, constructor and ``generate``."""

import torch
from torch import nn
from transformers.models.llama import LlamaForCausalLM

from .my_embedding_layer import MyEmbedding


class MultiLLaMAForCausalLM(nn.Module):
    def __init__(self, lang_model_path):
        super().__init__()
        self.lang_model = LlamaForCausalLM.from_pretrained(lang_model_path)
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
