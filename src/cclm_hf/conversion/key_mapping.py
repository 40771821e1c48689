"""Original CCLM state-dict keys -> cclm-hf keys.

The original model (`models/xvlm.py::XVLMBase` and its subclasses) names its parts `vision_encoder` (Microsoft Swin),
`text_encoder` (xbert; `text_encoder.bert.*` in pre-training checkpoints, no `bert.` level in fine-tuned ones),
`vision_proj`, `text_proj`, `temp` and MLP heads stored as `nn.Sequential` (indices 0, 1, 3). This module renames one
key at a time, so it has no opinion about which keys a target model needs: `convert.py` checks that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch


# Deterministic buffers the original saves; every model rebuilds them.
_BUFFER_PATTERNS = (
    re.compile(r"\.relative_position_index$"),
    re.compile(r"\.attn_mask$"),
    re.compile(r"embeddings\.position_ids$"),
)
_MLP_HEAD_PARTS = {"0": "dense_in", "1": "layer_norm", "3": "dense_out"}
_SWIN_BLOCK_RENAMES = (
    ("norm1.", "layernorm_before."),
    ("norm2.", "layernorm_after."),
    ("attn.proj.", "attention.o_proj."),
    ("attn.q_proj.", "attention.q_proj."),
    ("attn.k_proj.", "attention.k_proj."),
    ("attn.v_proj.", "attention.v_proj."),
    ("attn.relative_position_bias_table", "attention.relative_position_bias.relative_position_bias_table"),
    ("mlp.", "mlp."),
)
_BASE_RENAMES = {
    "vision_proj.weight": "vision_projection.weight",
    "vision_proj.bias": "vision_projection.bias",
    "text_proj.weight": "text_projection.weight",
    "text_proj.bias": "text_projection.bias",
    "temp": "temperature",
}
_SWIN_BLOCK = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.(.+)$")
_SWIN_DOWNSAMPLE = re.compile(r"^layers\.(\d+)\.downsample\.(.+)$")
_TEXT_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.+)$")


@dataclass(frozen=True)
class OriginalHead:
    """An MLP head of the original model and where a target model keeps it."""

    original_prefix: str
    target_prefix: str


def is_buffer_key(key: str) -> bool:
    return any(pattern.search(key) for pattern in _BUFFER_PATTERNS)


def _rename_vision(key: str) -> str | None:
    if key.startswith("patch_embed.proj."):
        return "embeddings.patch_embeddings.projection." + key.removeprefix("patch_embed.proj.")
    if key.startswith("patch_embed.norm."):
        return "embeddings.norm." + key.removeprefix("patch_embed.norm.")
    if key.startswith("norm."):
        return "layernorm." + key.removeprefix("norm.")
    if match := _SWIN_DOWNSAMPLE.match(key):
        return f"encoder.layers.{match[1]}.downsample.{match[2]}"
    if match := _SWIN_BLOCK.match(key):
        stage, block, rest = match.groups()
        for old, new in _SWIN_BLOCK_RENAMES:
            if rest.startswith(old):
                return f"encoder.layers.{stage}.blocks.{block}.{new}{rest.removeprefix(old)}"
    return None


def _rename_text(key: str, num_text_layers: int) -> str | None:
    key = key.removeprefix("bert.")
    if key.startswith("embeddings."):
        return "text_model." + key
    if match := _TEXT_LAYER.match(key):
        index, rest = int(match[1]), match[2]
        if index < num_text_layers:
            return f"text_model.layers.{index}.{rest}"
        return f"fusion_model.layers.{index - num_text_layers}.{rest}"
    return None


def rename_base_key(key: str, num_text_layers: int) -> str | None:
    """Rename a key of the shared encoders/projections to its `CCLMModel` name; `None` if it is not one."""
    if key.startswith("vision_encoder."):
        renamed = _rename_vision(key.removeprefix("vision_encoder."))
        return None if renamed is None else "vision_model." + renamed
    if key.startswith("text_encoder.") and not key.startswith(("text_encoder.cls.", "text_encoder.bert.cls.")):
        return _rename_text(key.removeprefix("text_encoder."), num_text_layers)
    return _BASE_RENAMES.get(key)


def rename_head_key(key: str, head: OriginalHead) -> str | None:
    """Rename a key of an original `nn.Sequential` MLP head; `None` if it belongs elsewhere."""
    if not key.startswith(head.original_prefix + "."):
        return None
    index, _, param = key.removeprefix(head.original_prefix + ".").partition(".")
    if index not in _MLP_HEAD_PARTS:
        raise ValueError(f"{key}: {head.original_prefix} is an MLP head with parts 0, 1, 3; got part {index!r}")
    return f"{head.target_prefix}.{_MLP_HEAD_PARTS[index]}.{param}"


def split_swin_qkv(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Split every fused `attn.qkv` projection (q, k, v stacked along dim 0) into three tensors."""
    out = {}
    for key, tensor in state_dict.items():
        if ".attn.qkv." not in key:
            out[key] = tensor
            continue
        if tensor.shape[0] % 3:
            raise ValueError(f"{key}: fused qkv has {tensor.shape[0]} rows, not a multiple of 3")
        for name, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0), strict=True):
            out[key.replace(".attn.qkv.", f".attn.{name}.")] = part.clone()
    return out
