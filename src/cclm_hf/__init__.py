"""cclm-hf: CCLM (Cross-View Language Modeling) for the Hugging Face ecosystem."""

from transformers import AutoConfig, AutoModel, AutoModelForSequenceClassification

from .configuration_cclm import CCLM_PRESETS, CCLMConfig, CCLMTextConfig
from .modeling_cclm import (
    CCLMForImageTextRetrieval,
    CCLMForSequenceClassification,
    CCLMImageTextRetrievalOutput,
    CCLMModel,
    CCLMOutput,
    CCLMPreTrainedModel,
)


__version__ = "0.1.0.dev0"

AutoConfig.register(CCLMConfig.model_type, CCLMConfig)
AutoConfig.register(CCLMTextConfig.model_type, CCLMTextConfig)
AutoModel.register(CCLMConfig, CCLMModel)
AutoModelForSequenceClassification.register(CCLMConfig, CCLMForSequenceClassification)

# Saved folders carry the modeling code and an `auto_map`, so they also load with `trust_remote_code=True`
# where this package is not installed.
CCLMConfig.register_for_auto_class()
CCLMModel.register_for_auto_class("AutoModel")
CCLMForSequenceClassification.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "CCLM_PRESETS",
    "CCLMConfig",
    "CCLMForImageTextRetrieval",
    "CCLMForSequenceClassification",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
    "CCLMTextConfig",
]
