"""Pre-training: step schedule, Trainer subclass, optimizer groups, initialisation from XLM-R and Swin."""

from .initialization import init_text_from_xlm_roberta, init_vision_from_swin
from .optimization import create_pretraining_optimizer, pretraining_parameter_groups
from .schedule import PretrainingSchedule
from .trainer import (
    CHECKPOINT_COMPLETE_MARKER,
    CCLMPretrainingTrainer,
    CheckpointCompleteCallback,
    JsonLinesLogger,
    OriginalOptimizerMixin,
    last_complete_checkpoint,
)


__all__ = [
    "CHECKPOINT_COMPLETE_MARKER",
    "CCLMPretrainingTrainer",
    "CheckpointCompleteCallback",
    "JsonLinesLogger",
    "OriginalOptimizerMixin",
    "PretrainingSchedule",
    "create_pretraining_optimizer",
    "init_text_from_xlm_roberta",
    "init_vision_from_swin",
    "last_complete_checkpoint",
    "pretraining_parameter_groups",
]
