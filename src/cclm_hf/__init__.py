"""cclm-hf: CCLM (Cross-View Language Modeling) for the Hugging Face ecosystem."""

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)

from .configuration_cclm import CCLM_PRESETS, CCLMConfig, CCLMTextConfig
from .image_processing_cclm import CCLMImageProcessor
from .image_processing_pil_cclm import CCLMImageProcessorPil
from .modeling_cclm import (
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForPreTrainingOutput,
    CCLMForSequenceClassification,
    CCLMImageTextRetrievalOutput,
    CCLMModel,
    CCLMOutput,
    CCLMPreTrainedModel,
)
from .processing_cclm import CCLMProcessor, pre_caption, pre_question
from .tokenizer_training import train_xlm_roberta_tokenizer


__version__ = "0.1.0.dev0"

AutoConfig.register(CCLMConfig.model_type, CCLMConfig)
AutoConfig.register(CCLMTextConfig.model_type, CCLMTextConfig)
AutoModel.register(CCLMConfig, CCLMModel)
AutoModelForSequenceClassification.register(CCLMConfig, CCLMForSequenceClassification)
AutoModelForPreTraining.register(CCLMConfig, CCLMForPreTraining)
AutoModelForZeroShotImageClassification.register(CCLMConfig, CCLMForImageTextRetrieval)
AutoImageProcessor.register(
    CCLMConfig, image_processor_classes={"torchvision": CCLMImageProcessor, "pil": CCLMImageProcessorPil}
)
AutoProcessor.register(CCLMConfig, CCLMProcessor)

# Saved folders carry the modeling code and an `auto_map`, so they also load with `trust_remote_code=True`
# where this package is not installed.
CCLMConfig.register_for_auto_class()
CCLMModel.register_for_auto_class("AutoModel")
CCLMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")
CCLMForPreTraining.register_for_auto_class("AutoModelForPreTraining")
CCLMForImageTextRetrieval.register_for_auto_class("AutoModelForZeroShotImageClassification")
CCLMImageProcessor.register_for_auto_class("AutoImageProcessor")
CCLMProcessor.register_for_auto_class("AutoProcessor")

# registers the "image-text-retrieval" pipeline task
from . import pipelines  # noqa: E402, F401


__all__ = [
    "CCLM_PRESETS",
    "CCLMConfig",
    "CCLMForImageTextRetrieval",
    "CCLMForPreTraining",
    "CCLMForPreTrainingOutput",
    "CCLMForSequenceClassification",
    "CCLMImageProcessor",
    "CCLMImageProcessorPil",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
    "CCLMProcessor",
    "CCLMTextConfig",
    "pre_caption",
    "pre_question",
    "train_xlm_roberta_tokenizer",
]
