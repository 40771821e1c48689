"""Convert original CCLM checkpoints into cclm-hf models.

The conversion is strict: every key of the checkpoint must land in the target model or be a known part that the
target does not have (dropped with a log line), and every parameter of the target must come from the checkpoint
unless it is the target's own new head. Anything else is an error that names the keys.
"""

from __future__ import annotations

import copy
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from transformers.utils import logging

from ..configuration_cclm import CCLMConfig
from ..errors import CCLMUserError
from ..modeling_cclm import (
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForSequenceClassification,
    CCLMModel,
    CCLMPreTrainedModel,
)
from .key_mapping import OriginalHead, is_buffer_key, rename_base_key, rename_head_key, split_swin_qkv
from .relative_position import resize_relative_position_bias_table


logger = logging.get_logger(__name__)

# Parts of original models that a target may not have; converting e.g. a pre-training checkpoint into a retrieval
# model drops the MLM and box heads, exactly as the original fine-tuning scripts do.
_ORIGINAL_OPTIONAL_PARTS = ("itm_head.", "bbox_head.", "cls_head.", "ta_head.", "text_encoder.cls.", "text_decoder.")
_MLM_DECODER_TIES = {
    "text_encoder.cls.predictions.decoder.weight": "text_encoder.bert.embeddings.word_embeddings.weight",
    "text_encoder.cls.predictions.decoder.bias": "text_encoder.cls.predictions.bias",
}


@dataclass(frozen=True)
class ConversionTarget:
    """A model class of this package and how original checkpoints map onto it.

    Args:
        model_class: the class to build.
        heads: original MLP heads and the attribute that holds each one in `model_class`.
        unused_base_parameters: prefixes (relative to the base model) of parameters the head never reads; a
            checkpoint of a model without them (e.g. the original XVNLI model has no projections) still converts.
        renames: other original key prefixes and their target prefixes (e.g. the masked-LM head).
    """

    model_class: type[CCLMPreTrainedModel]
    heads: tuple[OriginalHead, ...] = ()
    unused_base_parameters: tuple[str, ...] = ()
    renames: tuple[tuple[str, str], ...] = ()

    @property
    def base_prefix(self) -> str:
        return "" if self.model_class is CCLMModel else f"{CCLMModel.base_model_prefix}."


CONVERSION_TARGETS: dict[str, ConversionTarget] = {
    "base": ConversionTarget(CCLMModel),
    "retrieval": ConversionTarget(CCLMForImageTextRetrieval, heads=(OriginalHead("itm_head", "itm_head"),)),
    "pretraining": ConversionTarget(
        CCLMForPreTraining,
        heads=(OriginalHead("itm_head", "itm_head"), OriginalHead("bbox_head", "bbox_head")),
        renames=(
            ("text_encoder.cls.predictions.transform.dense.", "mlm_head.dense."),
            ("text_encoder.cls.predictions.transform.LayerNorm.", "mlm_head.layer_norm."),
            ("text_encoder.cls.predictions.bias", "mlm_head.bias"),
        ),
    ),
    "classification": ConversionTarget(
        CCLMForSequenceClassification,
        heads=(OriginalHead("cls_head", "classifier"),),
        unused_base_parameters=("vision_projection.", "text_projection.", "temperature"),
    ),
}


class CheckpointConversionError(CCLMUserError, ValueError):
    """The checkpoint does not fit the target model; the message lists every offending key."""


@dataclass
class ConversionReport:
    """What a conversion did with each key, for logs and tests."""

    dropped_buffers: list[str] = field(default_factory=list)
    dropped_tied: list[str] = field(default_factory=list)
    dropped_parts: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    newly_initialized: list[str] = field(default_factory=list)

    @property
    def dropped_part_prefixes(self) -> list[str]:
        """The original parts the dropped keys belong to (e.g. `bbox_head.`)."""
        return sorted(
            {part for key in self.dropped_parts for part in _ORIGINAL_OPTIONAL_PARTS if key.startswith(part)}
        )


def load_original_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read an original checkpoint: a `.safetensors` state dict, or a torch file holding `{'model': state_dict, ...}`
    or a bare state dict.

    Torch files are read with `weights_only=True`: a file that needs arbitrary unpickling (and could run code) is
    refused.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(path)
        except SafetensorError as error:
            raise CheckpointConversionError(f"{path}: not a readable safetensors file ({error})") from error
    payload = _load_torch_file(path)
    state_dict = payload.get("model", payload) if isinstance(payload, dict) else payload
    if not isinstance(state_dict, dict):
        raise CheckpointConversionError(
            f"{path}: expected a state dict or {{'model': state_dict}}, got {type(payload)}"
        )
    not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
    if not_tensors:
        raise CheckpointConversionError(f"{path}: entries that are not tensors: {not_tensors[:10]}")
    if state_dict and all(key.startswith("module.") for key in state_dict):
        # saved from a DistributedDataParallel wrapper
        state_dict = {key.removeprefix("module."): value for key, value in state_dict.items()}
    return state_dict


def _load_torch_file(path: Path) -> object:
    """`torch.load(weights_only=True)`, with errors that tell a file that is no torch checkpoint, a damaged one and
    one that holds arbitrary objects apart."""
    # torch.save writes a zip archive, or in its legacy format a binary pickle (which starts with the protocol byte)
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head.startswith((b"PK\x03\x04", b"\x80")):
        raise CheckpointConversionError(
            f"{path}: not a torch checkpoint (torch files are zip archives or binary pickles; this file "
            f"{f'starts with {head!r}' if head else 'is empty'})"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        refused_global = next((line.split(" Please")[0] for line in lines if "global" in line.lower()), None)
        if refused_global is None:
            raise CheckpointConversionError(f"{path}: damaged or truncated torch checkpoint ({lines[0]})") from error
        raise CheckpointConversionError(
            f"{path}: refusing to unpickle: the file holds objects other than tensors and plain containers, and "
            f"loading it could execute code ({refused_global})"
        ) from error
    except (RuntimeError, EOFError, OSError) as error:  # torch's zip reader reports truncation in these
        reason = str(error).strip().split(". ")[0] or type(error).__name__
        raise CheckpointConversionError(f"{path}: damaged or truncated torch checkpoint ({reason})") from error


def with_image_size(config: CCLMConfig, image_size: int, window_size: int | None = None) -> CCLMConfig:
    """A copy of `config` for another input resolution.

    `window_size` defaults to the window scaled with the image, so that it keeps covering the same share of the
    image: 224 px / window 7 -> 384 px / window 12, the step every original fine-tuning config takes.
    """
    config_dict = copy.deepcopy(config.to_dict())
    vision = config_dict["vision_config"]
    stride = vision["patch_size"] * 2 ** (len(vision["depths"]) - 1)
    if image_size % stride:
        raise CheckpointConversionError(
            f"image_size={image_size} must be a multiple of the total Swin stride {stride}"
        )
    if window_size is None:
        scaled = vision["window_size"] * image_size / config.image_size
        if scaled != int(scaled):
            raise CheckpointConversionError(
                f"window {vision['window_size']} at {config.image_size} px does not scale to a whole window at "
                f"{image_size} px ({scaled:g}); pass window_size explicitly"
            )
        window_size = int(scaled)
    vision["image_size"] = image_size
    vision["window_size"] = window_size
    return CCLMConfig.from_dict(config_dict)


def _check_mlm_ties(state_dict: dict[str, torch.Tensor]) -> None:
    for tied_key, source_key in _MLM_DECODER_TIES.items():
        source_key = source_key if source_key in state_dict else source_key.replace("bert.", "", 1)
        if tied_key in state_dict and source_key in state_dict:
            if not torch.equal(state_dict[tied_key], state_dict[source_key]):
                raise CheckpointConversionError(
                    f"{tied_key} differs from {source_key}; the original ties them, so this checkpoint was not "
                    f"produced by the original code or was edited"
                )


def convert_state_dict(
    original: dict[str, torch.Tensor], model: CCLMPreTrainedModel, target: ConversionTarget
) -> tuple[dict[str, torch.Tensor], ConversionReport]:
    """Rename, split and resize `original` into the key space of `model` (built from the target config)."""
    report = ConversionReport()
    _check_mlm_ties(original)
    num_text_layers = model.config.text_config.num_text_layers
    expected = model.state_dict()
    converted: dict[str, torch.Tensor] = {}
    unknown, unexpected, mismatched = [], [], []

    for key, tensor in split_swin_qkv(original).items():
        if is_buffer_key(key):
            report.dropped_buffers.append(key)
            continue
        if key in _MLM_DECODER_TIES:  # equal to their source (checked above), which is converted
            report.dropped_tied.append(key)
            continue
        new_key = next(filter(None, (rename_head_key(key, head) for head in target.heads)), None)
        for old, new in target.renames:
            if new_key is None and key.startswith(old):
                new_key = new + key.removeprefix(old)
        if new_key is None:
            base_key = rename_base_key(key, num_text_layers)
            new_key = None if base_key is None else target.base_prefix + base_key
        if new_key is None:
            if key.startswith(_ORIGINAL_OPTIONAL_PARTS):
                report.dropped_parts.append(key)
            else:
                unknown.append(key)
            continue
        if new_key not in expected:
            unexpected.append(f"{key} -> {new_key}")
            continue
        wanted = expected[new_key].shape
        if tensor.shape != wanted and new_key.endswith("relative_position_bias_table"):
            tensor = resize_relative_position_bias_table(tensor, wanted[0])
            report.resized.append(new_key)
        if tensor.shape != wanted:
            mismatched.append(f"{key}: checkpoint {tuple(tensor.shape)} vs model {tuple(wanted)} ({new_key})")
            continue
        converted[new_key] = tensor

    # A new head (or an unused base part) may be absent from the checkpoint, but never half present.
    optional = [f"{head.target_prefix}." for head in target.heads]
    optional += [target.base_prefix + name for name in target.unused_base_parameters]
    absent = tuple(prefix for prefix in optional if not any(key.startswith(prefix) for key in converted))
    tied = set(model.all_tied_weights_keys)  # e.g. the MLM decoder, which shares the word embeddings
    missing = [key for key in expected if key not in converted and key not in tied]
    report.newly_initialized = [key for key in missing if key.startswith(absent)]
    problems = [
        ("keys the conversion does not know", unknown),
        ("keys the target model does not have (check the number of layers / head)", unexpected),
        ("shape mismatches (check the configuration)", mismatched),
        ("target parameters the checkpoint does not provide", [k for k in missing if not k.startswith(absent)]),
    ]
    message = "; ".join(
        f"{what}: {keys[:20]}{' ...' if len(keys) > 20 else ''} ({len(keys)})" for what, keys in problems if keys
    )
    if message:
        raise CheckpointConversionError(f"cannot convert into {target.model_class.__name__}: {message}")
    return converted, report


def convert_original_checkpoint(
    checkpoint: str | Path | dict[str, torch.Tensor],
    config: CCLMConfig,
    head: str = "retrieval",
) -> tuple[CCLMPreTrainedModel, ConversionReport]:
    """Build the `head` model of `config` and load an original checkpoint into it.

    Args:
        checkpoint: a path (see `load_original_state_dict`) or an original state dict.
        config: the target architecture; its Swin window may differ from the checkpoint's, in which case every
            relative position bias table is resized with the original's scheme.
        head: one of `CONVERSION_TARGETS` (`"base"`, `"retrieval"`, `"classification"`, `"pretraining"`).

    Returns:
        The model in eval mode and a report of dropped, resized and newly initialised keys.
    """
    if head not in CONVERSION_TARGETS:
        raise ValueError(f"unknown head {head!r}; choose one of {sorted(CONVERSION_TARGETS)}")
    target = CONVERSION_TARGETS[head]
    original = checkpoint if isinstance(checkpoint, dict) else load_original_state_dict(checkpoint)
    model = target.model_class(config)
    converted, report = convert_state_dict(original, model, target)
    # convert_state_dict guarantees that only the reported new parameters are missing
    model.load_state_dict(converted, strict=False)

    if report.dropped_parts:
        logger.info(
            "Dropped %d keys of parts the %s model does not have: %s",
            len(report.dropped_parts),
            head,
            report.dropped_part_prefixes,
        )
    if report.resized:
        logger.info(
            "Resized %d relative position bias tables to window %d",
            len(report.resized),
            config.vision_config.window_size,
        )
    if report.newly_initialized:
        logger.warning("Newly initialised (not in the checkpoint; train before use): %s", report.newly_initialized)
    return model.eval(), report
