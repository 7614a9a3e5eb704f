"""Stand-in for RadFM's ``Model/RadFM/my_embedding_layer.py`` (tiny; same interface and token layout).

Like RadFM's ``MyEmbedding`` in ``Text`` mode: encodes ``vision_x`` (B, S, 3, H, W, D) into 32 tokens per
scan, appends them after the text vocabulary and the two figure tokens (``<image>``, ``</image>``), and
embeds ``text_input`` by a one-hot product, so ``<imageK>`` (id ``vocab + 2 + K``) reads image token K.
Like RadFM's current code it builds Med-KEBERT by its hub id (``xmcmic/Med-KEBERT``), tokenizer and model.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer


class MyEmbedding(nn.Module):
    def __init__(self, num_embeddings=32000, embedding_dim=5120, perceiver_num=32, vis_dim=16, patch_size=32,
                 frame_patch_size=4):
        super().__init__()
        self.num_embeddings = num_embeddings
        self.embedding_dim = embedding_dim
        self.weight = nn.Parameter(torch.randn((num_embeddings, embedding_dim)))
        self.figure_token_weight = nn.Parameter(torch.randn((2, embedding_dim)))
        self.flag = "Text"
        self.bert_tokenizer = AutoTokenizer.from_pretrained("xmcmic/Med-KEBERT")
        self.bert_model = AutoModel.from_pretrained("xmcmic/Med-KEBERT")
        self.bert_projection_fc = nn.Linear(self.bert_model.config.hidden_size, vis_dim)
        self.vision_encoder = nn.Conv3d(3, vis_dim, kernel_size=(patch_size, patch_size, frame_patch_size),
                                        stride=(patch_size, patch_size, frame_patch_size))
        self.latents = nn.Parameter(torch.randn(perceiver_num, vis_dim))
        self.fc = nn.Linear(vis_dim, embedding_dim)

    def perceiver(self, tokens):  # (N, T, vis_dim) -> (N, perceiver_num, vis_dim)
        attn = torch.softmax(self.latents @ tokens.transpose(1, 2), dim=-1)
        return attn @ tokens

    def forward(self, text_input, vision_x, key_words_query=None):
        B, S, C, H, W, D = vision_x.shape
        tokens = self.vision_encoder(vision_x.reshape(B * S, C, H, W, D)).flatten(2).transpose(1, 2)
        vision = self.fc(self.perceiver(tokens)).reshape(B, -1, self.embedding_dim)
        embedding_weight = torch.cat([self.weight, self.figure_token_weight], dim=0)
        embedding_weight = torch.cat([embedding_weight.unsqueeze(0).repeat(B, 1, 1), vision], dim=1)
        one_hot = F.one_hot(text_input, embedding_weight.shape[1]).to(vision.dtype)
        return torch.matmul(one_hot, embedding_weight), None
