"""Building a task head from MODEL: a pre-training folder, a converted checkpoint or a fine-tuned folder.

- the head's parameters that MODEL lacks are new: they get the original initialisation (the original builds its heads
  from plain `nn.Linear` / `nn.LayerNorm` and never re-initialises them, i.e. PyTorch's defaults) and are listed in the
  log, as are MODEL's weights the head does not use (the pre-training heads, for instance);
- `image_size` different from MODEL's resizes the model as the original's `load_pretrained` does when a 224 px
  checkpoint is fine-tuned at 384 px: a config for the new resolution (the window scaled with the image) and every
  Swin relative position bias table resampled.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn
from transformers import AutoProcessor, PreTrainedModel

from ..conversion import resize_relative_position_bias_table, with_image_size


logger = logging.getLogger(__name__)

__all__ = ["load_processor", "load_task_model", "resize_image_size", "summarize_keys", "text_capacity"]


def summarize_keys(keys: Iterable[str], depth: int = 2) -> list[str]:
    """Parameter names grouped by their first `depth` components (`classifier.*`, `cclm.vision_model.*`)."""
    groups: dict[str, int] = {}
    for key in keys:
        parts = key.split(".")
        prefix = ".".join(parts[:depth]) + (".*" if len(parts) > depth else "")
        groups[prefix] = groups.get(prefix, 0) + 1
    return [f"{prefix} ({count})" if count > 1 else prefix for prefix, count in groups.items()]


def _reset_new_modules(model: nn.Module, new_keys: set[str]) -> list[str]:
    """PyTorch's default initialisation for every module all of whose own parameters are new."""
    reset = []
    for name, module in model.named_modules():
        own = [f"{name}.{parameter}" if name else parameter for parameter, _ in module.named_parameters(recurse=False)]
        if own and all(key in new_keys for key in own) and hasattr(module, "reset_parameters"):
            module.reset_parameters()
            reset.append(name)
    return reset


def load_task_model(
    model_class: type[PreTrainedModel], model_name_or_path: str, *, image_size: int | None = None, **config_kwargs: Any
) -> PreTrainedModel:
    """`model_class` from `model_name_or_path`; new parameters get the original initialisation (see the module).

    `config_kwargs` (e.g. `num_labels`, `id2label`) are set on the loaded config.

    Raises:
        ValueError: A weight of MODEL has another shape than the head's (e.g. a classifier with another number of
            labels): never silently re-initialised.
    """
    try:
        model, info = model_class.from_pretrained(model_name_or_path, output_loading_info=True, **config_kwargs)
    except RuntimeError as error:
        if "mismatched" not in str(error):
            raise
        raise ValueError(
            f"{model_name_or_path}: weights with another shape than {model_class.__name__}'s (see the load report "
            f"above), e.g. a classifier with another number of labels"
        ) from error
    new = set(info.get("missing_keys", []))
    if new:
        with torch.no_grad():
            _reset_new_modules(model, new)
        logger.warning(
            "%s: new parameters, not in %s (original initialisation, trained from scratch): %s",
            model_class.__name__,
            model_name_or_path,
            ", ".join(summarize_keys(sorted(new))),
        )
    else:
        logger.info("%s: every parameter comes from %s", model_class.__name__, model_name_or_path)
    if info.get("unexpected_keys"):
        logger.info(
            "Weights of %s not used by %s: %s",
            model_name_or_path,
            model_class.__name__,
            ", ".join(summarize_keys(sorted(info["unexpected_keys"]), depth=1)),
        )
    if image_size is not None and image_size != model.config.image_size:
        model = resize_image_size(model, image_size)
    return model


def resize_image_size(model: PreTrainedModel, image_size: int) -> PreTrainedModel:
    """A copy of `model` for `image_size` px: same weights, Swin relative position bias tables resampled."""
    config = with_image_size(model.config, image_size)
    resized = type(model)(config)
    source = model.state_dict()
    target = resized.state_dict()
    state = {}
    for key, tensor in target.items():
        if key not in source:
            raise ValueError(f"resizing to {image_size} px: {key} has no counterpart in the model")
        value = source[key]
        if value.shape != tensor.shape:
            if not key.endswith("relative_position_bias_table"):
                if key.endswith("relative_position_index"):  # a buffer recomputed for the new window
                    state[key] = tensor
                    continue
                raise ValueError(f"resizing to {image_size} px: unexpected shape change of {key}")
            value = resize_relative_position_bias_table(value, tensor.shape[0])
        state[key] = value
    resized.load_state_dict(state, strict=True)
    logger.info(
        "Resized the model from %d to %d px (window %d -> %d)",
        model.config.image_size,
        image_size,
        model.config.vision_config.window_size,
        config.vision_config.window_size,
    )
    return resized


def load_processor(model_name_or_path: str, processor_name_or_path: str | None = None, image_size: int | None = None):
    """The `CCLMProcessor` saved with MODEL (or at `processor_name_or_path`), its image size set to `image_size`."""
    source = processor_name_or_path or model_name_or_path
    try:
        processor = AutoProcessor.from_pretrained(source)
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(
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
