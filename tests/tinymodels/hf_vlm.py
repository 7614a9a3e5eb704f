"""Tiny Qwen2.5-VL and Gemma 3 (MedGemma's class) image-text-to-text models with processors and chat templates."""

from __future__ import annotations

from pathlib import Path

from tinymodels.text import train_tokenizer

QWEN_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|image_pad|>", "<|video_pad|>"]
# Qwen2-VL's chat template, reduced to what the adapter sends (text and image parts in user turns).
QWEN_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

GEMMA_SPECIAL = ["<pad>", "<eos>", "<bos>", "<start_of_turn>", "<end_of_turn>", "<start_of_image>",
                 "<end_of_image>", "<image_soft_token>"]
# Gemma 3's chat template, reduced likewise; an image part becomes <start_of_image>, which the processor expands.
GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<start_of_turn>"
    "{{ 'model' if message['role'] == 'assistant' else message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}<start_of_image>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)
#: Image tokens per image in the tiny Gemma 3 (a 2 x 2 pooled grid of a 4 x 4 patch grid).
GEMMA_IMAGE_TOKENS = 4


#: Tiny Qwen2.5-VL sizes: 2 text layers (hidden 64), 2 vision blocks.
QWEN_TINY = dict(
    text=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              max_position_embeddings=4096, rope_scaling={"type": "mrope", "mrope_section": [2, 3, 3]}),
    vision=dict(depth=2, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64, fullatt_block_indexes=[1],
                window_size=56, patch_size=14, spatial_merge_size=2, temporal_patch_size=2),
    vocab_size=None)
#: Qwen2.5-VL-3B-Instruct's sizes (its config.json), for full-size random-weight benchmarks.
QWEN_3B = dict(
    text=dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
              num_key_value_heads=2, max_position_embeddings=128000, rope_theta=1000000.0, rms_norm_eps=1e-6,
              rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]}, tie_word_embeddings=True),
    vision=dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                fullatt_block_indexes=[7, 15, 23, 31], window_size=112, patch_size=14, spatial_merge_size=2,
                temporal_patch_size=2),
    vocab_size=151936)
#: Qwen2.5-VL-Instruct's generation_config.json values that generate inherits (the repetition penalty applies
#: under greedy decoding too).
QWEN_GENERATION = {"do_sample": True, "repetition_penalty": 1.05, "temperature": 0.1, "top_k": 1, "top_p": 0.001}


def write_qwen2_5_vl(folder: Path, sizes: dict = QWEN_TINY, weights: bool = True, image_pixels=(4, 16)):
    """A Qwen2.5-VL folder: processor (tokenizer trained here, Qwen2-VL image processor resizing to
    ``image_pixels`` merged patches), config of ``sizes``, Qwen's generation config, and random weights
    (or none: ``weights=False`` returns the config for a model built in memory)."""
    import torch
    from transformers import (GenerationConfig, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration,
                              Qwen2_5_VLProcessor, Qwen2VLImageProcessor)
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    tok = train_tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                          tokenizer_class="Qwen2TokenizerFast")
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    lo, hi = image_pixels
    processor = Qwen2_5_VLProcessor(image_processor=Qwen2VLImageProcessor(min_pixels=28 * 28 * lo, max_pixels=28 * 28 * hi),
                                    tokenizer=tok, video_processor=Qwen2VLVideoProcessor(), chat_template=QWEN_TEMPLATE)
    config = Qwen2_5_VLConfig(
        text_config=dict(vocab_size=sizes["vocab_size"] or len(tok), **sizes["text"], bos_token_id=None,
                         eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"]),
        vision_config=dict(sizes["vision"]),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    config.save_pretrained(folder)
    processor.save_pretrained(folder)
    GenerationConfig(eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
                     **QWEN_GENERATION).save_pretrained(folder)
    if weights:
        torch.manual_seed(0)
        model = Qwen2_5_VLForConditionalGeneration(config)
        model.generation_config = GenerationConfig.from_pretrained(folder)
        model.save_pretrained(folder)
    return config


def build_qwen2_5_vl(folder: Path) -> None:
    """Qwen2.5-VL: 2 text layers (hidden 64), 2 vision blocks; images resized to 4..16 merged patches."""
    write_qwen2_5_vl(folder)


def build_gemma3(folder: Path) -> None:
    """Gemma 3 (MedGemma's class): 2 text layers (hidden 64), SigLIP 2 layers on 32 px images, 4 tokens per image.

    A freshly initialised Gemma 3 has an all-zero multimodal projector (it would ignore every image), so
    the projector is re-initialised with random values before saving.
    """
    import torch
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, Gemma3ImageProcessor, Gemma3Processor

    tok = train_tokenizer(GEMMA_SPECIAL, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>",
                          extra_special_tokens={"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>",
                                                "image_token": "<image_soft_token>"})
    ids = {t: tok.convert_tokens_to_ids(t) for t in GEMMA_SPECIAL}
    processor = Gemma3Processor(image_processor=Gemma3ImageProcessor(size={"height": 32, "width": 32}), tokenizer=tok,
                                chat_template=GEMMA_TEMPLATE, image_seq_length=GEMMA_IMAGE_TOKENS)
    config = Gemma3Config(
        text_config=dict(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, head_dim=16, max_position_embeddings=4096,
                         sliding_window=64, bos_token_id=ids["<bos>"], eos_token_id=[ids["<eos>"], ids["<end_of_turn>"]],
                         pad_token_id=ids["<pad>"]),
        vision_config=dict(model_type="siglip_vision_model", hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8),
        mm_tokens_per_image=GEMMA_IMAGE_TOKENS, boi_token_index=ids["<start_of_image>"],
        eoi_token_index=ids["<end_of_image>"], image_token_index=ids["<image_soft_token>"])
    torch.manual_seed(0)
    model = Gemma3ForConditionalGeneration(config)
    torch.nn.init.normal_(model.model.multi_modal_projector.mm_input_projection_weight, std=0.5)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
