"""Tiny M3D-LaMed-style model (remote code, loaded with ``trust_remote_code=True``) for volprobe's tests.

Mirrors the parts of M3D's ``LaMed/src/model`` the adapter relies on: ``get_model()``, ``encode_images``
(vision tower + projector giving ``proj_out_num`` features), ``prepare_inputs_for_multimodal`` writing
the image features over token positions ``1 .. proj_out_num`` and
``generate(images=None, inputs=None, **kwargs)`` which, like M3D's, drops ``attention_mask`` and
generates from ``inputs_embeds``. The vision tower is a strided ``Conv3d`` (with ``vision_layers`` > 0 a
ViT over its patches, as M3D's) plus average pooling to a ``pool_grid`` whose cells are the image tokens.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers import Phi3Config, Phi3ForCausalLM, Phi3Model


class TinyLamedConfig(Phi3Config):
    model_type = "tiny_lamed_phi3"


class TinyVisionTower(nn.Module):
    def __init__(self, config):
        super().__init__()
        dim, layers = config.vision_dim, getattr(config, "vision_layers", 0)
        self.patch = nn.Conv3d(1, dim, kernel_size=tuple(config.patch_size), stride=tuple(config.patch_size))
        self.pool_grid = tuple(config.pool_grid)
        self.encoder = None
        if layers:  # a ViT over the patches, as M3D's (2,048 patches of a 32 x 256 x 256 volume)
            patches = 1
            for size, step in zip(config.image_size, config.patch_size):
                patches *= size // step
            self.position = nn.Parameter(torch.randn(1, patches, dim) * 0.02)
            layer = nn.TransformerEncoderLayer(dim, max(1, dim // 64), 4 * dim, dropout=0.0, batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def forward(self, images):  # (B, 1, D, H, W)
        x = self.patch(images)
        if self.encoder is not None:
            b, c, d, h, w = x.shape
            tokens = self.encoder(x.flatten(2).transpose(1, 2) + self.position)
            x = tokens.transpose(1, 2).reshape(b, c, d, h, w)
        x = F.adaptive_avg_pool3d(x, self.pool_grid)
        return x.flatten(2).transpose(1, 2)  # (B, proj_out_num, vision_dim)


class LamedMetaModel:
    def __init__(self, config):
        super().__init__(config)
        self.vision_tower = TinyVisionTower(config)
        self.mm_projector = nn.Linear(config.vision_dim, config.hidden_size)

    def get_vision_tower(self):
        return self.vision_tower


class TinyLamedModel(LamedMetaModel, Phi3Model):
    config_class = TinyLamedConfig


class TinyLamedForCausalLM(Phi3ForCausalLM):
    config_class = TinyLamedConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = TinyLamedModel(config)
        self.post_init()

    def get_model(self):
        return self.model

    def encode_images(self, images):
        return self.get_model().mm_projector(self.get_model().get_vision_tower()(images))

    def prepare_inputs_for_multimodal(self, input_ids, position_ids, attention_mask, past_key_values, labels, images):
        if images is None or input_ids.shape[1] == 1:
            return input_ids, position_ids, attention_mask, past_key_values, None, labels
        image_features = self.encode_images(images)
        inputs_embeds = self.get_model().embed_tokens(input_ids)
        inputs_embeds = torch.cat(
            (inputs_embeds[:, :1, :], image_features, inputs_embeds[:, (image_features.shape[1] + 1):, :]), dim=1)
        return None, position_ids, attention_mask, past_key_values, inputs_embeds, labels

    @torch.no_grad()
    def generate(self, images=None, inputs=None, seg_enable=False, **kwargs):
        position_ids = kwargs.pop("position_ids", None)
        attention_mask = kwargs.pop("attention_mask", None)  # dropped, as in M3D's code
        if images is not None:
            inputs, position_ids, attention_mask, _, inputs_embeds, _ = self.prepare_inputs_for_multimodal(
                inputs, position_ids, attention_mask, None, None, images)
        else:
            inputs_embeds = self.get_model().embed_tokens(inputs)
        return super().generate(inputs_embeds=inputs_embeds, **kwargs)

