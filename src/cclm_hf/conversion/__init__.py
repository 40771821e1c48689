"""Conversion of the original CCLM checkpoints and configuration files."""

from .convert import (
    CONVERSION_TARGETS,
    CheckpointConversionError,
    ConversionReport,
    ConversionTarget,
    convert_original_checkpoint,
    convert_state_dict,
    fit_state_dict,
    init_task_model,
    load_original_state_dict,
    with_image_size,
)
from .folder import ConversionRecord, convert_checkpoint_to_folder, sha256_of_file
from .original_config import OriginalConfigError, config_from_original, config_from_original_files
from .relative_position import resize_relative_position_bias_table


__all__ = [
    "CONVERSION_TARGETS",
    "CheckpointConversionError",
    "ConversionRecord",
    "ConversionReport",
    "ConversionTarget",
    "OriginalConfigError",
    "config_from_original",
    "config_from_original_files",
    "convert_checkpoint_to_folder",
    "convert_original_checkpoint",
    "convert_state_dict",
    "fit_state_dict",
    "init_task_model",
    "load_original_state_dict",
    "resize_relative_position_bias_table",
    "sha256_of_file",
    "with_image_size",
]
