"""Building a task head from MODEL: a pre-training folder, a converted checkpoint or a fine-tuned folder.

[`cclm_hf.conversion.init_task_model`] does the work: it initialises the head as the original initialises the task
from a pre-trained model, drops the parts the head has no use for and reports (and logs) both. On top of it:

- the head's new parameters get the original's initialisation: the original builds its heads from plain `nn.Linear`
  / `nn.LayerNorm` and never re-initialises them, i.e. PyTorch's defaults (not transformers' `normal(0, 0.02)`);
- `image_size` different from MODEL's fine-tunes at that resolution as the original's `load_pretrained` does when a
  224 px checkpoint is fine-tuned at 384 px: the window scales with the image and every Swin relative position bias
  table is resampled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoProcessor, PreTrainedModel

from ..conversion import init_task_model, with_image_size
from ..errors import CCLMUserError


logger = logging.getLogger(__name__)

__all__ = ["load_processor", "load_task_model", "text_capacity"]


def _reset_new_modules(model: nn.Module, new_keys: Iterable[str]) -> list[str]:
    """PyTorch's default initialisation for every module all of whose own parameters are new."""
    new_keys = set(new_keys)
    reset = []
    for name, module in model.named_modules():
        own = [f"{name}.{parameter}" if name else parameter for parameter, _ in module.named_parameters(recurse=False)]
        if own and all(key in new_keys for key in own) and hasattr(module, "reset_parameters"):
            module.reset_parameters()
            reset.append(name)
    return reset


def load_task_model(
    head: str, model_name_or_path: str, *, image_size: int | None = None, **config_overrides: Any
) -> PreTrainedModel:
    """The `head` model (a `cclm_hf.conversion.CONVERSION_TARGETS` name) from `model_name_or_path`.

    `config_overrides` (e.g. `num_labels`, `id2label`) are set on the head's config.

    Raises:
        CheckpointConversionError: MODEL does not fit the head (e.g. a classifier with another number of labels).
    """
    if image_size is not None:
        config = AutoConfig.from_pretrained(model_name_or_path)
        if image_size != config.image_size:
            config_overrides["vision_config"] = with_image_size(config, image_size).vision_config
            logger.info("Fine-tuning at %d px instead of MODEL's %d px", image_size, config.image_size)
    model, report = init_task_model(model_name_or_path, head, **config_overrides)
    if report.newly_initialized:
        with torch.no_grad():
            reset = _reset_new_modules(model, report.newly_initialized)
        logger.info("New modules with PyTorch's default initialisation (the original's): %s", ", ".join(reset))
    return model


def load_processor(model_name_or_path: str, processor_name_or_path: str | None = None, image_size: int | None = None):
    """The `CCLMProcessor` saved with MODEL (or at `processor_name_or_path`), its image size set to `image_size`."""
    source = processor_name_or_path or model_name_or_path
    try:
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        raise CCLMUserError(
            f"no CCLM processor (tokenizer + image processor) in {source}: pass --processor_name_or_path "
            f"({type(error).__name__}: {error})"
        ) from error
    if image_size is not None:
        processor.image_processor.size = {"height": image_size, "width": image_size}
    return processor


def text_capacity(model: PreTrainedModel) -> int:
    """The longest token sequence the text embeddings can number (zero-based positions, or XLM-R's offset)."""
    text = model.config.text_config
    if text.position_id_scheme == "zero_based":
        return text.max_position_embeddings
    return text.max_position_embeddings - text.pad_token_id - 1
