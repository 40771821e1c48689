"""cclm-hf: CCLM (Cross-View Language Modeling) for the Hugging Face ecosystem."""

# the only place the package version is written; pyproject.toml reads it (setuptools dynamic version)
__version__ = "0.1.0.dev0"

from .dependency_versions import check_transformers_version


check_transformers_version()  # before importing any transformers internals

from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForPreTraining,
    AutoModelForSequenceClassification,
    AutoModelForVisualQuestionAnswering,
    AutoModelForZeroShotImageClassification,
    AutoProcessor,
)

from .configuration_cclm import CCLM_PRESETS, CCLMConfig, CCLMTextConfig
from .image_processing_cclm import CCLMImageProcessor
from .image_processing_pil_cclm import CCLMImageProcessorPil
from .modeling_cclm import (
    CCLMAnswerCandidates,
    CCLMForImagesAndTextClassification,
    CCLMForImageTextRetrieval,
    CCLMForPreTraining,
    CCLMForPreTrainingOutput,
    CCLMForQuestionAnswering,
    CCLMForSequenceClassification,
    CCLMImageTextRetrievalOutput,
    CCLMModel,
    CCLMOutput,
    CCLMPreTrainedModel,
    CCLMQuestionAnsweringOutput,
    CCLMSequenceClassifierOutput,
)
from .processing_cclm import CCLMProcessor, pre_caption, pre_question
from .tokenizer_training import train_xlm_roberta_tokenizer


AutoConfig.register(CCLMConfig.model_type, CCLMConfig)
AutoConfig.register(CCLMTextConfig.model_type, CCLMTextConfig)
AutoModel.register(CCLMConfig, CCLMModel)
AutoModelForSequenceClassification.register(CCLMConfig, CCLMForSequenceClassification)
AutoModelForPreTraining.register(CCLMConfig, CCLMForPreTraining)
AutoModelForZeroShotImageClassification.register(CCLMConfig, CCLMForImageTextRetrieval)
AutoModelForVisualQuestionAnswering.register(CCLMConfig, CCLMForQuestionAnswering)
# transformers has no Auto class for two-image statements (NLVR2, MaRVL): load CCLMForImagesAndTextClassification
# directly (or, without this package, through `transformers.dynamic_module_utils.get_class_from_dynamic_module`).
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
CCLMForQuestionAnswering.register_for_auto_class("AutoModelForVisualQuestionAnswering")
CCLMImageProcessor.register_for_auto_class("AutoImageProcessor")
CCLMProcessor.register_for_auto_class("AutoProcessor")

# registers the "image-text-retrieval" pipeline task
from . import pipelines  # noqa: E402, F401


__all__ = [
    "CCLM_PRESETS",
    "CCLMAnswerCandidates",
    "CCLMConfig",
    "CCLMForImageTextRetrieval",
    "CCLMForImagesAndTextClassification",
    "CCLMForPreTraining",
    "CCLMForPreTrainingOutput",
    "CCLMForQuestionAnswering",
    "CCLMForSequenceClassification",
    "CCLMImageProcessor",
    "CCLMImageProcessorPil",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
    "CCLMProcessor",
    "CCLMQuestionAnsweringOutput",
    "CCLMSequenceClassifierOutput",
    "CCLMTextConfig",
    "pre_caption",
    "pre_question",
    "train_xlm_roberta_tokenizer",
]
