"""Optimizer parameter groups of the original pre-training recipe, made explicit."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn


# Parameters that are new when the text stack starts from XLM-R and the image encoder from Swin: they train with a
# larger learning rate (`lr_mult: 2` of the original, which collects them as `init_params`).
DEFAULT_NEW_PARAMETER_PATTERNS = (
    "cclm.fusion_model.layers.*.crossattention.*",
    "cclm.vision_projection.*",
    "cclm.text_projection.*",
    "cclm.temperature",
    "itm_head.*",
    "bbox_head.*",
)


def _skips_weight_decay(name: str, parameter: nn.Parameter) -> bool:
    """The original's rule, translated to this package's names.

    The original excludes any name containing `bias`, `LayerNorm.`, `norm.`, `norm1.` or `norm2.`. That catches
    every bias, Swin's `relative_position_bias_table`, and the LayerNorms of the text stack, of Swin and of the MLM
    head; the LayerNorms inside the MLP heads (`itm_head.1`) and the temperature are decayed.
    """
    if name.endswith("bias") or "relative_position_bias_table" in name:
        return True
    in_mlp_head = name.startswith(("itm_head.", "bbox_head.", "classifier."))
    return parameter.ndim == 1 and not in_mlp_head and "norm" in name.lower()


def pretraining_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    new_parameter_patterns: Iterable[str] = DEFAULT_NEW_PARAMETER_PATTERNS,
    new_parameter_lr_multiplier: float = 2.0,
) -> list[dict]:
    """Four AdamW groups: (decay | no decay) x (pre-initialised | new); new parameters get `lr * multiplier`.

    `new_parameter_patterns` are `fnmatch` patterns over parameter names.
    """
    patterns = tuple(new_parameter_patterns)
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        is_new = any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
        groups.setdefault((is_new, _skips_weight_decay(name, parameter)), []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate * (new_parameter_lr_multiplier if is_new else 1.0),
            "weight_decay": 0.0 if no_decay else weight_decay,
        }
        for (is_new, no_decay), params in sorted(groups.items())
    ]


def create_pretraining_optimizer(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
    new_parameter_patterns: Iterable[str] = DEFAULT_NEW_PARAMETER_PATTERNS,
    new_parameter_lr_multiplier: float = 2.0,
) -> torch.optim.AdamW:
    """torch AdamW with the original's hyper-parameters (the original used transformers' AdamW, which applies the
    decoupled decay after the Adam update instead of before: a negligible difference)."""
    groups = pretraining_parameter_groups(
        model, learning_rate, weight_decay, new_parameter_patterns, new_parameter_lr_multiplier
    )
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)
