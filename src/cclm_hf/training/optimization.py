"""Optimizer parameter groups of the original recipes, read from the model.

Each model says which of its parameters skip weight decay (`no_weight_decay()`, the original's rule) and which are
new when it starts from its usual source (`new_parameters()`: e.g. the cross-attention blocks when pre-training from
XLM-R, the classifier when fine-tuning XVNLI), in the manner of timm's `no_weight_decay()`. New parameters train with
`lr * new_parameter_lr_multiplier` (the original's `lr_mult: 2` for its `init_params`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable

import torch
from torch import nn


def pretraining_parameter_groups(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float,
    new_parameter_patterns: Iterable[str] | None = None,
    new_parameter_lr_multiplier: float = 2.0,
) -> list[dict]:
    """Up to four AdamW groups: (decay | no decay) x (pre-initialised | new).

    Args:
        model: a CCLM model (it provides `no_weight_decay()` and `new_parameters()`).
        new_parameter_patterns: `fnmatch` patterns over parameter names that replace `model.new_parameters()`,
            e.g. `("*",)` for a model trained from scratch.
    """
    if new_parameter_patterns is None:
        new = model.new_parameters()
    else:
        patterns = tuple(new_parameter_patterns)
        new = {name for name, _ in model.named_parameters() if any(fnmatch.fnmatchcase(name, p) for p in patterns)}
    no_decay = model.no_weight_decay()
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            groups.setdefault((name in new, name in no_decay), []).append(parameter)
    return [
        {
            "params": params,
            "lr": learning_rate * (new_parameter_lr_multiplier if is_new else 1.0),
            "weight_decay": 0.0 if skips_decay else weight_decay,
        }
        for (is_new, skips_decay), params in sorted(groups.items())
    ]


def create_pretraining_optimizer(
    model: nn.Module,
    learning_rate: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
    new_parameter_patterns: Iterable[str] | None = None,
    new_parameter_lr_multiplier: float = 2.0,
) -> torch.optim.AdamW:
    """torch AdamW with the original's hyper-parameters and groups (pre-training and fine-tuning alike; the original
    used transformers' AdamW, which applies the decoupled decay after the Adam update instead of before: a negligible
    difference)."""
    groups = pretraining_parameter_groups(
        model, learning_rate, weight_decay, new_parameter_patterns, new_parameter_lr_multiplier
    )
    return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)
