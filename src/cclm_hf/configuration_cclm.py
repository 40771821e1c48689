"""Configuration of CCLM: a Swin image encoder and an XLM-R-style text stack whose upper layers fuse views."""

from __future__ import annotations

import copy
from typing import Any, Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig, SwinConfig, XLMRobertaConfig
from transformers.utils import logging


logger = logging.get_logger(__name__)

POSITION_ID_SCHEMES = ("zero_based", "padding_offset")


@strict
class CCLMTextConfig(XLMRobertaConfig):
    r"""
    Configuration of CCLM's text stack: an XLM-R-style encoder of `num_hidden_layers` layers whose last
    `num_fusion_layers` layers also cross-attend to "the other view" (image tokens, or the text-only states of a
    parallel sentence).

    Args (in addition to [`XLMRobertaConfig`]):
        num_fusion_layers (`int`, *optional*, defaults to 6):
            How many of the `num_hidden_layers` layers (the upper ones) carry cross-attention. The others form the
            text-only encoder.
        cross_attention_hidden_size (`int`, *optional*):
            Width of the states the fusion layers attend to (the key/value projections' input). `None` means "the
            vision width": [`CCLMConfig`] fills it in from its vision config.
        position_id_scheme (`str`, *optional*, defaults to `"zero_based"`):
            `"zero_based"`: positions are `0..L-1` for every token, pads included (the original CCLM-3M/4M
            checkpoints were trained this way). `"padding_offset"`: XLM-R's scheme, positions start at
            `pad_token_id + 1` and pads keep `pad_token_id`.
    """

    model_type = "cclm_text_model"
    base_config_key = "text_config"

    # XLM-R large widths, 12 layers (every other layer of XLM-R large, as in the original initialisation).
    vocab_size: int = 250002
    hidden_size: int = 1024
    num_hidden_layers: int = 12
    num_attention_heads: int = 16
    intermediate_size: int = 4096
    max_position_embeddings: int = 514
    type_vocab_size: int = 1
    layer_norm_eps: float = 1e-5
    num_fusion_layers: int = 6
    cross_attention_hidden_size: int | None = None
    position_id_scheme: Literal["zero_based", "padding_offset"] = "zero_based"

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not 0 <= self.num_fusion_layers <= self.num_hidden_layers:
            raise ValueError(
                f"num_fusion_layers={self.num_fusion_layers} must lie in [0, num_hidden_layers={self.num_hidden_layers}]"
            )
        if self.position_id_scheme not in POSITION_ID_SCHEMES:
            raise ValueError(f"position_id_scheme={self.position_id_scheme!r} is not one of {POSITION_ID_SCHEMES}")

    @property
    def num_text_layers(self) -> int:
        """Layers without cross-attention, at the bottom of the stack."""
        return self.num_hidden_layers - self.num_fusion_layers


@strict
class CCLMConfig(PreTrainedConfig):
    r"""
    Configuration of a CCLM model.

    Args:
        vision_config (`dict` or [`SwinConfig`], *optional*):
            The Swin image encoder. Its output is the mean-pooled token followed by the last-stage tokens.
        text_config (`dict` or [`CCLMTextConfig`], *optional*):
            The text / fusion stack.
        projection_dim (`int`, *optional*, defaults to 256):
            Width of the shared contrastive space (`vision_projection`, `text_projection`).
        temperature_init_value (`float`, *optional*, defaults to 0.07):
            Initial value of the learnable contrastive temperature (logits = cosine / temperature).
        tie_word_embeddings (`bool`, *optional*, defaults to `True`):
            Tie the masked-LM decoder of [`CCLMForPreTraining`] to the word embeddings, as the original does (and
            the answer decoder's LM head of [`CCLMForQuestionAnswering`] to its own word embeddings).
        images_per_text (`int`, *optional*, defaults to 1):
            Images each text is fused with. 2 for NLVR2 / MaRVL ([`CCLMForImagesAndTextClassification`]): every
            fusion layer becomes a pair of layers, the first attending to the left image and the second to the
            right one, sharing their cross-attention key/value projections (the original's 18-layer stack).
        num_answer_decoder_layers (`int`, *optional*):
            Depth of the causal answer decoder of [`CCLMForQuestionAnswering`] (the original's `num_dec_layers`).
            Defaults to the number of fusion layers (6 in CCLM), which the decoder starts from.

    Example:

    ```python
    >>> from cclm_hf import CCLMConfig, CCLMModel
    >>> config = CCLMConfig.from_preset("cclm-base")
    >>> model = CCLMModel(config)
    ```
    """

    model_type = "cclm"
    sub_configs_defaults = {"vision_config": SwinConfig, "text_config": CCLMTextConfig}

    vision_config: dict | SwinConfig | None = None
    text_config: dict | CCLMTextConfig | None = None
    projection_dim: int = 256
    temperature_init_value: float = 0.07
    initializer_range: float = 0.02
    tie_word_embeddings: bool = True
    images_per_text: int = 1
    num_answer_decoder_layers: int | None = None

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        vision = self.vision_config
        vision_width = vision.embed_dim * 2 ** (len(vision.depths) - 1)
        if vision.hidden_size != vision_width:
            # e.g. a Swin config dict copied from another config whose embed_dim was then changed
            raise ValueError(
                f"vision_config.hidden_size={vision.hidden_size} but embed_dim={vision.embed_dim} with "
                f"{len(vision.depths)} stages gives {vision_width}; drop hidden_size from the vision config"
            )
        if self.text_config.cross_attention_hidden_size is None:
            self.text_config.cross_attention_hidden_size = vision_width
        elif self.text_config.cross_attention_hidden_size != vision_width:
            raise ValueError(
                f"text_config.cross_attention_hidden_size={self.text_config.cross_attention_hidden_size} must equal "
                f"the vision width {vision_width} (embed_dim * 2**(stages-1)): the fusion layers attend to image tokens"
            )
        if self.images_per_text < 1:
            raise ValueError(f"images_per_text={self.images_per_text} must be at least 1")
        if self.num_answer_decoder_layers is None:
            self.num_answer_decoder_layers = self.text_config.num_fusion_layers
        if self.num_answer_decoder_layers < 1:
            raise ValueError(f"num_answer_decoder_layers={self.num_answer_decoder_layers} must be at least 1")
        last_stage = self.image_size // (self.vision_config.patch_size * 2 ** (len(self.vision_config.depths) - 1))
        if last_stage < self.vision_config.window_size:
            raise ValueError(
                f"vision_config.window_size={self.vision_config.window_size} is larger than the last Swin stage "
                f"({last_stage}x{last_stage} tokens at image_size={self.image_size}); use a window of at most {last_stage}"
            )

    @property
    def image_size(self) -> int:
        size = self.vision_config.image_size
        return size if isinstance(size, int) else size[0]

    @property
    def num_image_tokens(self) -> int:
        """Image tokens seen by the fusion layers: the pooled token plus the last-stage patch tokens."""
        side = self.image_size // (self.vision_config.patch_size * 2 ** (len(self.vision_config.depths) - 1))
        return 1 + side * side

    @classmethod
    def from_preset(cls, name: str, **kwargs: Any) -> CCLMConfig:
        """Build the configuration of a named architecture.

        `kwargs` override top-level fields; a dict given for `vision_config` or `text_config` updates the preset's
        sub-config field by field (e.g. `text_config={"vocab_size": len(tokenizer)}`).
        """
        if name not in CCLM_PRESETS:
            raise ValueError(f"Unknown CCLM preset {name!r}; choose one of {sorted(CCLM_PRESETS)}")
        preset = copy.deepcopy(CCLM_PRESETS[name])
        for key, value in kwargs.items():
            if key in cls.sub_configs_defaults and isinstance(value, dict):
                preset[key] = {**preset.get(key, {}), **value}
            else:
                preset[key] = value
        return cls(**preset)


def _swin_base(image_size: int, window_size: int) -> dict[str, Any]:
    return {
        "image_size": image_size,
        "patch_size": 4,
        "embed_dim": 128,
        "depths": [2, 2, 18, 2],
        "num_heads": [4, 8, 16, 32],
        "window_size": window_size,
        "drop_path_rate": 0.1,
    }


# Text defaults of CCLMTextConfig are the released widths (XLM-R large, 12 layers, 6 fusion).
CCLM_PRESETS: dict[str, dict[str, Any]] = {
    # Pre-training architecture of CCLM-3M / CCLM-4M (Swin-B 224, window 7).
    "cclm-base": {"vision_config": _swin_base(224, 7), "text_config": {}},
    # The resolution every CCLM fine-tuning config uses (Swin-B 384, window 12).
    "cclm-base-384": {"vision_config": _swin_base(384, 12), "text_config": {}},
    # A tiny model for the built-in demo, the tiny pre-training recipe and smoke tests on a CPU: Swin 64 px with two
    # stages of width 32 / 64 and window 4, a 64-wide text stack of 4 text + 2 fusion layers, no dropout. Set
    # `text_config={"vocab_size": ...}` to the tokenizer's size. Three choices differ from the released models, all
    # measured in benchmarks/ITM_DIAGNOSTICS.md: absolute position embeddings in Swin (without them this small Swin
    # barely tells where a shape is: position words went unlearned), an initialisation std scaled to the width, and a
    # last stage of several windows. XLM-R's 0.02 at width 1024 gives each new linear layer a gain std * sqrt(width)
    # of about 0.64; at width 64 that gain needs 0.08. With 0.02 the fusion layers pass the other view on at a few
    # percent of the text's scale and the matching heads sit at their label prior for a thousand steps. With window 8
    # the last stage (8x8 tokens) is one window, as Swin-B's 7x7 at 224 px: every token sees the whole image, the
    # contrastive image embedding already holds what the matching head reads, and in the demo's 6 minutes re-ranking
    # only ties with the contrastive ranking. With window 4 (four windows) the image embedding is a weaker first
    # stage, which the matching head's cross-attention over all tokens corrects, and an image step is cheaper.
    "cclm-tiny": {
        "vision_config": {
            "image_size": 64,
            "embed_dim": 32,
            "depths": [2, 2],
            "num_heads": [2, 4],
            "window_size": 4,
            "drop_path_rate": 0.0,
            "use_absolute_embeddings": True,
            "initializer_range": 0.08,
        },
        "text_config": {
            "hidden_size": 64,
            "num_hidden_layers": 6,
            "num_fusion_layers": 2,
            "num_attention_heads": 2,
            "intermediate_size": 256,
            "max_position_embeddings": 64,
            "hidden_dropout_prob": 0.0,
            "attention_probs_dropout_prob": 0.0,
            "initializer_range": 0.08,
        },
        "projection_dim": 64,
        "initializer_range": 0.08,
    },
}


__all__ = ["CCLMConfig", "CCLMTextConfig", "CCLM_PRESETS"]
