"""Start pre-training from XLM-R and Swin weights, as the original does.

- Text: every other layer of XLM-R (layer `2k + 1` -> layer `k`, so XLM-R large's 24 layers give the 12 of CCLM),
  its embeddings and its LM head. The cross-attention blocks of the fusion layers stay new.
- Vision: a Swin checkpoint, in transformers' format (a folder or Hub name) or Microsoft's (`model` key of a `.pth`,
  e.g. `swin_base_patch4_window7_224_22k.pth`); relative position bias tables are resized to the target window.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from transformers import SwinModel, XLMRobertaForMaskedLM
from transformers.utils import logging

from ..conversion.key_mapping import is_buffer_key, rename_base_key, split_swin_qkv
from ..conversion.relative_position import resize_relative_position_bias_table
from ..modeling_cclm import CCLMPreTrainedModel


logger = logging.get_logger(__name__)

_XLMR_LAYER = re.compile(r"^roberta\.encoder\.layer\.(\d+)\.(.+)$")
_XLMR_LM_HEAD = {
    "lm_head.dense.": "mlm_head.dense.",
    "lm_head.layer_norm.": "mlm_head.layer_norm.",
    "lm_head.bias": "mlm_head.bias",
}


def _load_into(model: CCLMPreTrainedModel, tensors: dict[str, torch.Tensor], source: str) -> list[str]:
    """Copy `tensors` (target names) into `model`; shapes must match. Returns the target parameters not covered."""
    own = model.state_dict()
    unknown = sorted(set(tensors) - set(own))
    if unknown:
        raise ValueError(f"{source}: keys the model does not have: {unknown[:10]} ({len(unknown)})")
    mismatched = [
        f"{k}: {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in tensors.items() if v.shape != own[k].shape
    ]
    if mismatched:
        raise ValueError(f"{source}: shape mismatches: {mismatched[:10]}")
    with torch.no_grad():
        for key, tensor in tensors.items():
            own[key].copy_(tensor)
    tied = set(getattr(model, "all_tied_weights_keys", {}))
    return [key for key in own if key not in tensors and key not in tied]


def init_text_from_xlm_roberta(model: CCLMPreTrainedModel, source: str | Path | dict[str, torch.Tensor]) -> list[str]:
    """Initialise the text stack (and the MLM head, if the model has one) from an XLM-R masked-LM checkpoint.

    Args:
        source: a folder or Hub name loadable by `XLMRobertaForMaskedLM.from_pretrained`, or its state dict.

    Returns:
        The model's parameter names that XLM-R did not provide (new parameters).
    """
    state_dict = source if isinstance(source, dict) else XLMRobertaForMaskedLM.from_pretrained(source).state_dict()
    text_config = model.config.text_config
    source_layers = 1 + max(int(m[1]) for k in state_dict if (m := _XLMR_LAYER.match(k)))
    target_layers = text_config.num_hidden_layers
    if source_layers == 2 * target_layers:
        stride, offset = 2, 1  # the original keeps the odd layers
    elif source_layers == target_layers:
        stride, offset = 1, 0
    else:
        raise ValueError(f"XLM-R has {source_layers} layers; the model needs {target_layers} (or half of them)")
    prefix = model.base_model_prefix + "." if model.base_model is not model else ""
    has_mlm_head = hasattr(model, "mlm_head")
    tensors = {}
    for key, tensor in state_dict.items():
        if key.startswith("roberta.embeddings.") and not key.endswith(("position_ids", "token_type_ids")):
            tensors[prefix + "text_model." + key.removeprefix("roberta.")] = tensor
        elif match := _XLMR_LAYER.match(key):
            index, rest = int(match[1]), match[2]
            if (index - offset) % stride == 0 and index >= offset:
                layer = (index - offset) // stride
                if layer < text_config.num_text_layers:
                    tensors[f"{prefix}text_model.layers.{layer}.{rest}"] = tensor
                else:
                    tensors[f"{prefix}fusion_model.layers.{layer - text_config.num_text_layers}.{rest}"] = tensor
        elif has_mlm_head:
            for old, new in _XLMR_LM_HEAD.items():
                if key.startswith(old):
                    tensors[new + key.removeprefix(old)] = tensor
    missing = _load_into(model, tensors, "XLM-R")
    logger.info("Initialised %d text tensors from XLM-R (layers %d::%d)", len(tensors), offset, stride)
    return missing


def init_vision_from_swin(model: CCLMPreTrainedModel, source: str | Path | dict[str, torch.Tensor]) -> list[str]:
    """Initialise the image encoder from a Swin checkpoint (transformers folder / Hub name, Microsoft `.pth` or a
    Microsoft-format state dict). The classification head is ignored; bias tables are resized to the model's window.

    Returns:
        The model's parameter names that the checkpoint did not provide.
    """
    if isinstance(source, dict) or Path(source).suffix in (".pth", ".pt", ".th"):
        if isinstance(source, dict):
            state_dict = source
        else:
            state_dict = torch.load(source, map_location="cpu", weights_only=True)
        state_dict = state_dict.get("model", state_dict)
        renamed = {}
        for key, tensor in split_swin_qkv(state_dict).items():
            if key.startswith("head.") or is_buffer_key(key):
                continue
            new_key = rename_base_key("vision_encoder." + key, model.config.text_config.num_text_layers)
            if new_key is None:
                raise ValueError(f"Swin checkpoint key {key!r} is not a Swin encoder weight")
            renamed[new_key] = tensor
    else:
        renamed = {"vision_model." + k: v for k, v in SwinModel.from_pretrained(source).state_dict().items()}
    prefix = model.base_model_prefix + "." if model.base_model is not model else ""
    own = model.state_dict()
    tensors = {}
    for key, tensor in renamed.items():
        key = prefix + key
        if key.endswith("relative_position_bias_table") and key in own and tensor.shape != own[key].shape:
            tensor = resize_relative_position_bias_table(tensor, own[key].shape[0])
        tensors[key] = tensor
    missing = _load_into(model, tensors, "Swin")
    logger.info("Initialised %d vision tensors from Swin", len(tensors))
    return missing
