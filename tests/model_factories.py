"""Tiny random CCLM models and batches shared by the tests."""

from __future__ import annotations

import torch

from cclm_hf import CCLMConfig


def tiny_config(**overrides) -> CCLMConfig:
    """Vision width 48 (24 * 2) differs from the text width 32, so the cross-attention input width is exercised."""
    config = {
        "vision_config": {"image_size": 32, "embed_dim": 24, "depths": [1, 1], "num_heads": [2, 2], "window_size": 4},
        "text_config": {
            "vocab_size": 99,
            "hidden_size": 32,
            "num_hidden_layers": 4,
            "num_fusion_layers": 2,
            "num_attention_heads": 4,
            "intermediate_size": 64,
            "max_position_embeddings": 40,
        },
        "projection_dim": 16,
        "num_labels": 3,
    }
    config.update(overrides)
    return CCLMConfig(**config)


def random_batch(config: CCLMConfig, batch_size: int = 3, length: int = 9, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(4, config.text_config.vocab_size, (batch_size, length), generator=generator)
    input_ids[:, 0] = 0
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 5:] = 0  # padded rows exercise the masks
    attention_mask[2, 7:] = 0
    input_ids[attention_mask == 0] = config.text_config.pad_token_id
    pixel_values = torch.randn(batch_size, 3, config.image_size, config.image_size, generator=generator)
    return input_ids, attention_mask, pixel_values
