"""PyTorch CCLM: an image encoder and an XLM-R text stack whose upper layers cross-attend to another view.

Read top-down: output classes; the text embeddings; the fusion layers (self-attention, cross-attention to one of
several views, feed-forward); the towers (`CCLMTextModel`, `CCLMFusionModel`, the vision tower built from its own
config); `CCLMModel`, which composes them; and the task heads, which compose `CCLMModel`.

Every public forward follows the transformers v5 contract: `output_hidden_states=True` / `output_attentions=True`
add the per-layer states and attention maps of each tower to its `*_model_output`, and `return_dict=False` returns
the output's fields as a tuple in field order (unset fields left out, nested outputs as tuples).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.dynamic_module_utils import custom_object_save
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import (
    BaseModelOutput,
    BaseModelOutputWithCrossAttentions,
    BaseModelOutputWithPooling,
)
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.xlm_roberta.modeling_xlm_roberta import (
    XLMRobertaAttention,
    XLMRobertaIntermediate,
    XLMRobertaLayer,
    XLMRobertaLMHead,
    XLMRobertaOutput,
    XLMRobertaSelfAttention,
    XLMRobertaSelfOutput,
    eager_attention_forward,
)
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs, can_return_tuple, logging
from transformers.utils.output_capturing import OutputRecorder, capture_outputs

from .configuration_cclm import CCLMConfig, CCLMTextConfig
from .losses import box_losses, contrastive_loss, masked_lm_loss, matching_loss, sample_hard_negatives


logger = logging.get_logger(__name__)


# =====================================================================================================================
# Outputs
# =====================================================================================================================


class CCLMModelOutput(ModelOutput):
    """Base of the CCLM outputs: `to_tuple` turns the nested tower outputs into tuples too (as `CLIPOutput`)."""

    def to_tuple(self) -> tuple:
        return tuple(value.to_tuple() if isinstance(value, ModelOutput) else value for value in self.values())


_TOWER_OUTPUTS_DOC = r"""
    vision_model_output (`BaseModelOutputWithPooling`, *optional*):
        The image tower: `last_hidden_state` are the image tokens (pooled token first), `pooler_output` their
        projection; with `output_hidden_states` / `output_attentions` also the vision tower's per-stage
        `hidden_states` and `attentions` (as the vision model returns them, e.g. `SwinModelOutput`'s).
    text_model_output (`BaseModelOutputWithPooling`, *optional*):
        The text-only layers: `last_hidden_state` `[B, L, hidden]`, `pooler_output` the projected `<s>` state;
        `hidden_states` (embeddings + one per text layer) and `attentions` (one per text layer) when requested.
    fusion_model_output (`BaseModelOutputWithCrossAttentions`, *optional*):
        The fusion layers: `last_hidden_state` `[B, L, hidden]` (position 0 is what the heads read);
        `hidden_states` (input + one per fusion layer), self-attention `attentions` and `cross_attentions` (one per
        fusion layer) when requested.
"""


@dataclass
class CCLMOutput(CCLMModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        Symmetric image-text contrastive loss (ITC).
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
        Cosine similarities divided by the temperature.
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
        The transpose of `logits_per_image`.
    text_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised projection of the text-only encoder's first (`<s>`) state.
    image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised projection of the pooled image token.
    text_model_output (`BaseModelOutputWithPooling`):
        Output of [`CCLMModel.get_text_features`]: the text-only states (and per-layer states when requested).
    vision_model_output (`BaseModelOutputWithPooling`):
        Output of [`CCLMModel.get_image_features`]: the image tokens (and per-stage states when requested).
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None


@dataclass
class CCLMImageTextRetrievalOutput(CCLMModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `return_loss=True`):
        `itc_loss + itm_loss`, the original retrieval fine-tuning objective.
    itc_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Image-text contrastive loss; captions sharing an `image_ids` value are all positives.
    itm_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Image-text matching loss over the `B` given pairs (label 1) and `2B` hard-negative pairs (label 0).
    itm_logits (`torch.FloatTensor` of shape `(batch_size, 2)`, *optional*):
        Matching-head logits of the given pairs (image `b`, text `b`); class 1 means "match". Returned when
        `use_itm_head=True` or `return_loss=True`.
    itm_negative_logits (`torch.FloatTensor` of shape `(2 * batch_size, 2)`, *optional*):
        Matching-head logits of the negative pairs behind `itm_loss`: rows `[0, B)` pair image
        `negative_image_indices[b]` with text `b`, rows `[B, 2B)` pair image `b` with text `negative_text_indices[b]`.
    negative_image_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        For each text, the image used as its hard negative.
    negative_text_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        For each image, the text used as its hard negative.
    logits_per_image (`torch.FloatTensor` of shape `(image_batch_size, text_batch_size)`):
        Contrastive logits (cosine / temperature).
    logits_per_text (`torch.FloatTensor` of shape `(text_batch_size, image_batch_size)`):
        The transpose of `logits_per_image`.
    text_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised text features.
    image_embeds (`torch.FloatTensor` of shape `(batch_size, projection_dim)`):
        L2-normalised image features.
    """ + _TOWER_OUTPUTS_DOC.replace(
        "The fusion layers:", "The fusion layers on the given pairs (with `use_itm_head` or `return_loss`):"
    )

    loss: torch.FloatTensor | None = None
    itc_loss: torch.FloatTensor | None = None
    itm_loss: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    itm_negative_logits: torch.FloatTensor | None = None
    negative_image_indices: torch.LongTensor | None = None
    negative_text_indices: torch.LongTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    fusion_model_output: BaseModelOutputWithCrossAttentions | None = None


@dataclass
class CCLMSequenceClassifierOutput(CCLMModelOutput):
    (
        r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when `labels` are given):
        Classification loss (cross-entropy for single-label problems).
    logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`):
        Classifier scores on the fused `<s>` state.
    """
        + _TOWER_OUTPUTS_DOC
    )

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    fusion_model_output: BaseModelOutputWithCrossAttentions | None = None


@dataclass
class CCLMForPreTrainingOutput(CCLMModelOutput):
    r"""
    Losses of one pre-training batch; the ones a batch kind does not compute are `None`.

    loss (`torch.FloatTensor` of shape `()`):
        Sum of the computed losses below (all weights 1, as in the original).
    itc_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Image(-region)-text contrastive loss; with a second caption, the mean over both captions.
    itm_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Image(-region)-text matching loss with hard negatives.
    mlm_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Conditional masked-LM loss: the masked text attends to the image, the region or the other sentence
        (translation-LM batches: to nothing, the pair is one sequence).
    ttc_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Text-text contrastive loss between a sentence and its translation (or two captions of one image).
    ttm_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Text-text matching loss; the first sentence plays the image's role.
    bbox_loss (`torch.FloatTensor` of shape `()`, *optional*):
        L1 loss of the predicted region boxes.
    giou_loss (`torch.FloatTensor` of shape `()`, *optional*):
        Generalised-IoU loss of the predicted region boxes.
    mlm_logits (`torch.FloatTensor` of shape `(batch_size, max_masks, vocab_size)`, *optional*):
        Masked-LM logits at `masked_positions`.
    itm_logits (`torch.FloatTensor` of shape `(3 * batch_size, 2)`, *optional*):
        Matching logits behind `itm_loss` / `ttm_loss`: `B` positive pairs, then the `2B` negative pairs.
    predicted_boxes (`torch.FloatTensor` of shape `(batch_size, 4)`, *optional*):
        `(cx, cy, w, h)` in `[0, 1]` for region batches.
    negative_image_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        Hard negative of each text on the image (or first-sentence) side.
    negative_text_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
        Hard negative of each image (or first sentence) on the text side.
    """ + _TOWER_OUTPUTS_DOC.replace("The image tower:", "The image tower (absent in parallel-text batches):").replace(
        "The text-only layers:", "The text-only layers on `input_ids`:"
    ).replace("The fusion layers:", "The fusion layers on the `B` positive pairs of the matching loss:")

    loss: torch.FloatTensor | None = None
    itc_loss: torch.FloatTensor | None = None
    itm_loss: torch.FloatTensor | None = None
    mlm_loss: torch.FloatTensor | None = None
    ttc_loss: torch.FloatTensor | None = None
    ttm_loss: torch.FloatTensor | None = None
    bbox_loss: torch.FloatTensor | None = None
    giou_loss: torch.FloatTensor | None = None
    mlm_logits: torch.FloatTensor | None = None
    itm_logits: torch.FloatTensor | None = None
    predicted_boxes: torch.FloatTensor | None = None
    negative_image_indices: torch.LongTensor | None = None
    negative_text_indices: torch.LongTensor | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    fusion_model_output: BaseModelOutputWithCrossAttentions | None = None


@dataclass
class CCLMEncodedView:
    """One view of a batch as the objectives and fusion layers consume it.

    Attributes:
        hidden_states: `[B, N, D]` image tokens (pooled token first) or text-only states: the keys/values of the
            fusion layers, or the query side.
        attention_mask: `[B, N]` 1 for positions to attend to; `None` for all (image tokens).
        embeds: `[B, projection_dim]` L2-normalised projection of position 0, for contrastive scores.
        model_output: the tower output the view came from (per-layer states when requested).
    """

    hidden_states: torch.Tensor
    attention_mask: torch.Tensor | None
    embeds: torch.Tensor
    model_output: BaseModelOutputWithPooling | None = None

    def select(self, index: torch.Tensor) -> CCLMEncodedView:
        """The rows `index` (e.g. the image of each region text), without the tower output."""
        mask = None if self.attention_mask is None else self.attention_mask[index]
        return CCLMEncodedView(self.hidden_states[index], mask, self.embeds[index])


class CCLMTextEmbeddings(nn.Module):
    """Word + token-type + absolute position embeddings, LayerNorm, dropout (XLM-R parameter names).

    Unlike `XLMRobertaEmbeddings` the position table has no padding row: CCLM-3M/4M number every position from 0,
    so position `pad_token_id` is a real, trained position.
    """

    def __init__(self, config: CCLMTextConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size, padding_idx=config.pad_token_id)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, config.hidden_size)
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)
        self.position_id_scheme = config.position_id_scheme
        self.padding_idx = config.pad_token_id

    def create_position_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        if self.position_id_scheme == "zero_based":
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            return positions.unsqueeze(0).expand_as(input_ids)
        # XLM-R: count non-pad tokens from padding_idx + 1; pads keep padding_idx
        not_pad = input_ids.ne(self.padding_idx).long()
        return torch.cumsum(not_pad, dim=1) * not_pad + self.padding_idx

    def forward(
        self,
        input_ids: torch.LongTensor,
        position_ids: torch.LongTensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
    ) -> torch.Tensor:
        if position_ids is None:
            position_ids = self.create_position_ids(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        embeddings = (
            self.word_embeddings(input_ids)
            + self.token_type_embeddings(token_type_ids)
            + self.position_embeddings(position_ids)
        )
        return self.dropout(self.LayerNorm(embeddings))


# =====================================================================================================================
# Fusion layers
# =====================================================================================================================


class CCLMCrossAttention(nn.Module):
    """Multi-head attention from the text (queries) to another view (keys and values).

    The key/value projections read the other view, whose width (`cross_attention_hidden_size`: the vision width by
    default, the text width for the answer decoder) may differ from the text width. They can be computed once per
    view with `project_key_value` and passed back as `key_value`, so a view attended by many texts (an image
    re-ranked against its candidate captions) is projected once.
    """

    def __init__(self, config: CCLMTextConfig, cross_attention_hidden_size: int | None = None):
        super().__init__()
        if config.hidden_size % config.num_attention_heads:
            raise ValueError(
                f"hidden_size={config.hidden_size} is not a multiple of num_attention_heads={config.num_attention_heads}"
            )
        self.config = config
        self.attention_head_size = config.hidden_size // config.num_attention_heads
        self.scaling = self.attention_head_size**-0.5
        view_width = cross_attention_hidden_size or config.cross_attention_hidden_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(view_width, config.hidden_size)
        self.value = nn.Linear(view_width, config.hidden_size)
        self.dropout = nn.Dropout(config.attention_probs_dropout_prob)
        self.is_causal = False

    def project_key_value(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """`(key, value)`, each `[B, heads, N, head_dim]`, of a view `[B, N, cross_attention_hidden_size]`."""
        shape = (*encoder_hidden_states.shape[:-1], -1, self.attention_head_size)
        key = self.key(encoder_hidden_states).view(shape).transpose(1, 2)
        value = self.value(encoder_hidden_states).view(shape).transpose(1, 2)
        return key, value

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        input_shape = hidden_states.shape[:-1]
        query = self.query(hidden_states).view(*input_shape, -1, self.attention_head_size).transpose(1, 2)
        key, value = key_value if key_value is not None else self.project_key_value(encoder_hidden_states)
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(
            self.config._attn_implementation, eager_attention_forward
        )
        output, weights = attention_interface(
            self,
            query,
            key,
            value,
            attention_mask,
            dropout=0.0 if not self.training else self.dropout.p,
            scaling=self.scaling,
            **kwargs,
        )
        return output.reshape(*input_shape, -1).contiguous(), weights


class CCLMCrossAttentionBlock(nn.Module):
    """Cross-attention followed by its output projection, residual and LayerNorm (XLM-R's `*.output` naming)."""

    def __init__(self, config: CCLMTextConfig, cross_attention_hidden_size: int | None = None):
        super().__init__()
        self.self = CCLMCrossAttention(config, cross_attention_hidden_size)
        self.output = XLMRobertaSelfOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None,
        attention_mask: torch.Tensor | None,
        key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        attended, _ = self.self(hidden_states, encoder_hidden_states, attention_mask, key_value, **kwargs)
        return self.output(attended, hidden_states)


class CCLMFusionLayer(GradientCheckpointingLayer):
    """Post-LN transformer layer: self-attention (bidirectional, or causal in a decoder), cross-attention to one view,
    feed-forward.

    `XLMRobertaLayer` only adds cross-attention to causal decoders, so the layer is composed from its parts.
    """

    def __init__(
        self, config: CCLMTextConfig, is_causal: bool = False, cross_attention_hidden_size: int | None = None
    ):
        super().__init__()
        self.attention = XLMRobertaAttention(config, is_causal=is_causal)
        self.crossattention = CCLMCrossAttentionBlock(config, cross_attention_hidden_size)
        self.intermediate = XLMRobertaIntermediate(config)
        self.output = XLMRobertaOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> torch.Tensor:
        hidden_states, _ = self.attention(hidden_states, attention_mask, **kwargs)
        # without another view (e.g. translation-LM batches) the layer is a plain encoder layer, as in the original
        if encoder_hidden_states is not None or cross_attention_key_value is not None:
            hidden_states = self.crossattention(
                hidden_states, encoder_hidden_states, encoder_attention_mask, cross_attention_key_value, **kwargs
            )
        return self.output(self.intermediate(hidden_states), hidden_states)


# =====================================================================================================================
# Towers
# =====================================================================================================================


class CCLMTextPreTrainedModel(PreTrainedModel):
    """Base of the two text towers built from a [`CCLMTextConfig`]: the text-only layers and the fusion layers."""

    config: CCLMTextConfig
    config_class = CCLMTextConfig
    base_model_prefix = "text"
    input_modalities = ("text",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["CCLMTextEmbeddings", "XLMRobertaLayer", "CCLMFusionLayer"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True


class CCLMTextModel(CCLMTextPreTrainedModel):
    """Embeddings and the text-only layers (the lower `num_text_layers` of the stack)."""

    _can_record_outputs = {
        "hidden_states": OutputRecorder(XLMRobertaLayer, num_hidden_layers_key="num_text_layers"),
        "attentions": XLMRobertaSelfAttention,
    }

    def __init__(self, config: CCLMTextConfig):
        super().__init__(config)
        self.embeddings = CCLMTextEmbeddings(config)
        self.layers = nn.ModuleList([XLMRobertaLayer(config) for _ in range(config.num_text_layers)])
        self.post_init()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.embeddings.word_embeddings = value

    @capture_outputs
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutput:
        hidden_states = self.embeddings(input_ids, position_ids=position_ids)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask, **kwargs)
        return BaseModelOutput(last_hidden_state=hidden_states)


class CCLMFusionModel(CCLMTextPreTrainedModel):
    """Fusion layers: text states attend to themselves and, in every layer, to one of the given views.

    The base model has one view (image tokens, or the text-only states of a parallel sentence) and
    `num_fusion_layers` layers. Other stacks are configurations of this one: the NLVR stack (`layer_views=(0, 1) *
    6`, each pair sharing its key/value projections) and the VQA answer decoder (`is_causal=True`, attending to the
    question states).

    Args:
        config: the text configuration (widths, heads; `num_fusion_layers` is the default depth).
        num_layers: depth of the stack.
        layer_views: for each layer, the index of the view it attends to (default: all view 0).
        is_causal: causal self-attention (an answer decoder).
        cross_attention_hidden_size: width of the views (default: `config.cross_attention_hidden_size`).
        shared_key_value: `(source, target)` layer pairs whose cross-attention key and value projections are one
            module (one parameter each, declared as tied weights so they stay one through saving and loading).
        layer_class: the layer type, built as `layer_class(config, is_causal=..., cross_attention_hidden_size=...)`.
    """

    _can_record_outputs = {
        "hidden_states": OutputRecorder(CCLMFusionLayer, num_hidden_layers_key="num_fusion_layers"),
        "attentions": XLMRobertaSelfAttention,
        "cross_attentions": CCLMCrossAttention,
    }

    def __init__(
        self,
        config: CCLMTextConfig,
        num_layers: int | None = None,
        layer_views: Sequence[int] | None = None,
        is_causal: bool = False,
        cross_attention_hidden_size: int | None = None,
        shared_key_value: Sequence[tuple[int, int]] = (),
        layer_class: type[CCLMFusionLayer] = CCLMFusionLayer,
    ):
        super().__init__(config)
        num_layers = config.num_fusion_layers if num_layers is None else num_layers
        self.layer_views = tuple(layer_views) if layer_views is not None else (0,) * num_layers
        if len(self.layer_views) != num_layers:
            raise ValueError(f"layer_views has {len(self.layer_views)} entries for {num_layers} layers")
        self.num_views = max(self.layer_views, default=-1) + 1
        self.is_causal = is_causal
        self.layers = nn.ModuleList(
            [
                layer_class(config, is_causal=is_causal, cross_attention_hidden_size=cross_attention_hidden_size)
                for _ in range(num_layers)
            ]
        )
        tied = {}
        for source, target in shared_key_value:
            source_attention = self.layers[source].crossattention.self
            target_attention = self.layers[target].crossattention.self
            target_attention.key, target_attention.value = source_attention.key, source_attention.value
            for projection in ("key", "value"):
                for name in ("weight", "bias"):
                    prefix = "layers.{}.crossattention.self." + f"{projection}.{name}"
                    tied[prefix.format(target)] = prefix.format(source)
        self._tied_weights_keys = tied or None
        self.post_init()

    def _as_views(self, value: torch.Tensor | Sequence[torch.Tensor | None] | None) -> list[torch.Tensor | None]:
        if value is None or isinstance(value, torch.Tensor):
            return [value] * max(self.num_views, 1)
        if len(value) != self.num_views:
            raise ValueError(f"the fusion layers attend to {self.num_views} views, got {len(value)}")
        return list(value)

    def precompute_cross_attention(
        self, encoder_hidden_states: torch.Tensor | Sequence[torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Every layer's cross-attention `(key, value)` of its view, each `[B, heads, N, head_dim]`."""
        views = self._as_views(encoder_hidden_states)
        return tuple(
            layer.crossattention.self.project_key_value(views[view])
            for layer, view in zip(self.layers, self.layer_views, strict=True)
        )

    def _self_attention_mask(self, hidden_states: torch.Tensor, attention_mask: torch.Tensor | None):
        if not self.is_causal:
            return create_bidirectional_mask(
                config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
            )
        causal = torch.ones(hidden_states.shape[1], hidden_states.shape[1], dtype=torch.bool).tril()
        allowed = causal.to(hidden_states.device)[None, None]
        if attention_mask is not None:
            allowed = allowed & attention_mask[:, None, None, :].bool()
        if self.config._attn_implementation == "sdpa":
            return allowed
        return torch.zeros(allowed.shape, dtype=hidden_states.dtype, device=hidden_states.device).masked_fill(
            ~allowed, torch.finfo(hidden_states.dtype).min
        )

    def _cross_attention_mask(self, hidden_states, encoder_hidden_states, encoder_attention_mask, key_value):
        if encoder_hidden_states is None and key_value is None:
            return None
        if encoder_hidden_states is None:  # only its batch size, length and dtype are read
            encoder_hidden_states = key_value[0][:, 0, :, :0]
        return create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )

    @capture_outputs
    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        encoder_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        cross_attention_key_values: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithCrossAttentions:
        r"""
        Args:
            hidden_states: `[B, L, hidden]` text states (the text-only layers' output, or embeddings in a decoder).
            attention_mask: `[B, L]` padding mask of the text.
            encoder_hidden_states: the view `[B, N, cross_attention_hidden_size]`, or one per view.
            encoder_attention_mask: `[B, N]` mask of the view (or one per view); `None` attends to everything.
            cross_attention_key_values: per layer `(key, value)` from `precompute_cross_attention`, already aligned
                with the rows of `hidden_states`; used instead of projecting `encoder_hidden_states`.
        """
        views = self._as_views(encoder_hidden_states)
        view_masks = self._as_views(encoder_attention_mask)
        key_values = cross_attention_key_values or (None,) * len(self.layers)
        self_mask = self._self_attention_mask(hidden_states, attention_mask)
        cross_masks = {}
        for layer, view, key_value in zip(self.layers, self.layer_views, key_values, strict=True):
            if view not in cross_masks:
                cross_masks[view] = self._cross_attention_mask(hidden_states, views[view], view_masks[view], key_value)
            hidden_states = layer(hidden_states, self_mask, views[view], cross_masks[view], key_value, **kwargs)
        return BaseModelOutputWithCrossAttentions(last_hidden_state=hidden_states)


class CCLMMLPHead(nn.Module):
    """`Linear(d, 2d) -> LayerNorm -> GELU -> Linear(2d, out)`: CCLM's ITM, box and classification heads."""

    def __init__(self, input_size: int, output_size: int):
        super().__init__()
        self.dense_in = nn.Linear(input_size, 2 * input_size)
        self.layer_norm = nn.LayerNorm(2 * input_size)
        self.activation = nn.GELU()
        self.dense_out = nn.Linear(2 * input_size, output_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.dense_out(self.activation(self.layer_norm(self.dense_in(hidden_states))))


def swin_image_tokens(vision_output: BaseModelOutputWithPooling) -> torch.Tensor:
    """Swin: the mean of the last-stage tokens after the final LayerNorm (`SwinModel`'s pooler), then the tokens."""
    return torch.cat([vision_output.pooler_output.unsqueeze(1), vision_output.last_hidden_state], dim=1)


# How each vision family's output becomes CCLM's image tokens `[B, 1 + P, D]` (pooled token first), by the vision
# config's `model_type`.
IMAGE_TOKENS_BY_VISION_FAMILY: dict[str, Callable[[BaseModelOutputWithPooling], torch.Tensor]] = {
    "swin": swin_image_tokens,
}


# =====================================================================================================================
# Base model
# =====================================================================================================================

# Every model class lives in this file, which `save_pretrained` copies next to the weights. Listing them all lets
# any of these Auto classes load a saved folder with `trust_remote_code=True`, whichever head saved it.
_REMOTE_CODE_AUTO_MAP = {
    "AutoModel": "modeling_cclm.CCLMModel",
    "AutoModelForPreTraining": "modeling_cclm.CCLMForPreTraining",
    "AutoModelForSequenceClassification": "modeling_cclm.CCLMForSequenceClassification",
    "AutoModelForVisualQuestionAnswering": "modeling_cclm.CCLMForQuestionAnswering",
    "AutoModelForZeroShotImageClassification": "modeling_cclm.CCLMForImageTextRetrieval",
}


class CCLMPreTrainedModel(PreTrainedModel):
    config: CCLMConfig
    config_class = CCLMConfig
    base_model_prefix = "cclm"
    main_input_name = "input_ids"
    input_modalities = ("image", "text")
    supports_gradient_checkpointing = True
    _no_split_modules = ["CCLMTextEmbeddings", "XLMRobertaLayer", "CCLMFusionLayer", "SwinStage"]
    _supports_sdpa = True
    _supports_flash_attn = False
    _supports_flex_attn = False
    _supports_attention_backend = True
    # The forwards take `**kwargs` for the output flags only: their losses are means, so `Trainer` must keep dividing
    # them by the gradient-accumulation steps rather than pass `num_items_in_batch`.
    accepts_loss_kwargs = False

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_REMOTE_CODE_AUTO_MAP}
        super().save_pretrained(save_directory, *args, **kwargs)
        if self._auto_class is None:
            # a head without an Auto class (two-image classification): transformers copies the code only for
            # registered classes, but the folder must load with remote code too
            custom_object_save(self, save_directory)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.text_model.get_input_embeddings()

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.text_model.set_input_embeddings(value)

    def enable_input_require_grads(self) -> None:
        """Make the word embeddings' output require grad (checkpointing with frozen embeddings, adapters).

        The generic version also hooks the vision tower's patch embedding, whose output is a tuple.
        """

        def make_output_require_grad(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._require_grads_hooks = [self.get_input_embeddings().register_forward_hook(make_output_require_grad)]

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters trained without weight decay, by the original's rule.

        The original excludes every name containing `bias`, `LayerNorm.`, `norm.`, `norm1.` or `norm2.`: all biases,
        Swin's relative position bias tables, and the LayerNorms of the towers and of the MLM head. The LayerNorms
        inside the MLP heads and the temperature are decayed.
        """
        head_norms = {id(head.layer_norm) for head in self.modules() if isinstance(head, CCLMMLPHead)}
        skipped = set()
        for module in self.modules():
            is_tower_norm = isinstance(module, nn.LayerNorm) and id(module) not in head_norms
            for name, parameter in module.named_parameters(recurse=False):
                if is_tower_norm or name.endswith("bias") or name == "relative_position_bias_table":
                    skipped.add(id(parameter))
        # named once each, under the name `named_parameters` gives a parameter shared by several modules
        return {name for name, parameter in self.named_parameters() if id(parameter) in skipped}

    def new_parameters(self) -> set[str]:
        """Parameters that are new when this model starts from its usual source, which the original trains with a
        larger learning rate (its `init_params`). None for the base and retrieval models; the heads say theirs."""
        return set()

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CCLMModel):
            init.constant_(module.temperature, self.config.temperature_init_value)


class CCLMModel(CCLMPreTrainedModel):
    """CCLM's towers and contrastive projections, shared by every task head.

    - `get_image_features`: the vision tower's image tokens (pooled token first) and the projected pooled token;
    - `get_text_features`: the text-only layers' states and the projected `<s>` state;
    - `fuse_views`: the fusion layers on text states against another view (image tokens, or the text-only states of
      another sentence);
    - `embed_image` / `embed_text`: the same as [`CCLMEncodedView`]s, with normalised contrastive embeddings.

    The towers are built from their own configs (`AutoModel.from_config(config.vision_config)`, and the text towers
    from `config.text_config`), so each resolves its attention implementation, and a vision family is a config value
    (see `IMAGE_TOKENS_BY_VISION_FAMILY`).
    """

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        vision_family = config.vision_config.model_type
        if vision_family not in IMAGE_TOKENS_BY_VISION_FAMILY:
            raise ValueError(
                f"vision_config.model_type={vision_family!r} is not supported; one of {sorted(IMAGE_TOKENS_BY_VISION_FAMILY)}"
            )
        self.image_tokens = IMAGE_TOKENS_BY_VISION_FAMILY[vision_family]
        self.vision_model = AutoModel.from_config(config.vision_config)
        self.text_model = CCLMTextModel._from_config(config.text_config)
        # with several images per text (NLVR2: left and right), each fusion layer becomes a group of twins, twin j
        # attending to image j, all of them sharing one key/value projection (the original's paired layers)
        twins, depth = config.images_per_text, config.text_config.num_fusion_layers
        self.fusion_model = CCLMFusionModel._from_config(
            config.text_config,
            num_layers=twins * depth,
            layer_views=tuple(range(twins)) * depth,
            shared_key_value=[(twins * k, twins * k + j) for k in range(depth) for j in range(1, twins)],
        )
        self.vision_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim)
        self.temperature = nn.Parameter(torch.tensor(config.temperature_init_value))
        self.post_init()

    @can_return_tuple
    def get_image_features(
        self,
        pixel_values: torch.FloatTensor,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """
        Returns:
            `last_hidden_state` `[B, 1 + P, vision_width]`: the image tokens, pooled token first (for Swin the mean of
            the last-stage tokens after the final LayerNorm); `pooler_output` `[B, projection_dim]`: the projected
            pooled token (not normalised); the vision tower's `hidden_states` / `attentions` when requested.
        """
        vision_output = self.vision_model(
            pixel_values=pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True, **kwargs
        )
        image_tokens = self.image_tokens(vision_output)
        return BaseModelOutputWithPooling(
            last_hidden_state=image_tokens,
            pooler_output=self.vision_projection(image_tokens[:, 0]),
            hidden_states=vision_output.hidden_states,
            attentions=vision_output.attentions,
        )

    @can_return_tuple
    def get_text_features(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        """
        Returns:
            `last_hidden_state` `[B, L, hidden]`: the states after the text-only layers; `pooler_output`
            `[B, projection_dim]`: the projected `<s>` state (not normalised); per-layer `hidden_states` /
            `attentions` when requested.
        """
        text_output = self.text_model(input_ids, attention_mask, position_ids, return_dict=True, **kwargs)
        text_states = text_output.last_hidden_state
        return BaseModelOutputWithPooling(
            last_hidden_state=text_states,
            pooler_output=self.text_projection(text_states[:, 0]),
            hidden_states=text_output.hidden_states,
            attentions=text_output.attentions,
        )

    def embed_image(self, pixel_values: torch.FloatTensor, **kwargs: Unpack[TransformersKwargs]) -> CCLMEncodedView:
        """Image tokens (all attended) and their normalised contrastive embedding."""
        output = self.get_image_features(pixel_values, **kwargs)
        return CCLMEncodedView(
            output.last_hidden_state, None, F.normalize(output.pooler_output, dim=-1), model_output=output
        )

    def embed_text(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMEncodedView:
        """Text-only states with their padding mask, and the normalised contrastive embedding of `<s>`."""
        output = self.get_text_features(input_ids, attention_mask, position_ids, **kwargs)
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        return CCLMEncodedView(
            output.last_hidden_state, attention_mask, F.normalize(output.pooler_output, dim=-1), model_output=output
        )

    def precompute_cross_attention(
        self, encoder_hidden_states: torch.Tensor | Sequence[torch.Tensor]
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """Each fusion layer's cross-attention `(key, value)` of a view, each `[N, heads, Lv, head_dim]`.

        Index their rows to align them with a text batch and pass them to `fuse_views(...,
        cross_attention_key_values=...)`: a view attended by many texts is then projected once.
        """
        return self.fusion_model.precompute_cross_attention(encoder_hidden_states)

    def fuse_views(
        self,
        text_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
        encoder_attention_mask: torch.Tensor | Sequence[torch.Tensor | None] | None = None,
        cross_attention_key_values: Sequence[tuple[torch.Tensor, torch.Tensor]] | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithCrossAttentions:
        """Run the fusion layers.

        Args:
            text_hidden_states: `[B, L, hidden]` states of the text-only layers (`get_text_features`).
            attention_mask: `[B, L]` padding mask of that text (1 = token).
            encoder_hidden_states: `[B, N, cross_attention_hidden_size]` the other view: image tokens from
                `get_image_features`, or another sentence's text-only states. `None` (and no key/values) skips the
                cross-attention (the layers then continue the text encoder, as for translation-LM batches).
            encoder_attention_mask: `[B, N]` mask of the other view; `None` attends to every position.
            cross_attention_key_values: from `precompute_cross_attention`, row `b` belonging to text `b`; used
                instead of projecting `encoder_hidden_states` (which may then be `None`).

        Returns:
            `last_hidden_state` `[B, L, hidden]` (position 0 is the fused `<s>` state the heads read); per-layer
            `hidden_states`, `attentions` and `cross_attentions` when requested.
        """
        return self.fusion_model(
            text_hidden_states,
            attention_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            cross_attention_key_values,
            return_dict=True,
            **kwargs,
        )

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool = False,
        image_ids: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMOutput:
        r"""
        image_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            With `return_loss`, pairs sharing an id are all positives (several captions of one image).
        """
        image = self.embed_image(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        text = self.embed_text(input_ids, attention_mask, position_ids, **kwargs)
        logits_per_image = image.embeds @ text.embeds.t() / self.temperature
        loss = contrastive_loss(image.embeds, text.embeds, self.temperature, image_ids) if return_loss else None
        return CCLMOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text.embeds,
            image_embeds=image.embeds,
            text_model_output=text.model_output,
            vision_model_output=image.model_output,
        )


# =====================================================================================================================
# Heads
# =====================================================================================================================


@dataclass
class CCLMMatchingResult:
    """What the matching objective (ITM / TTM) computed.

    Attributes:
        loss: cross-entropy of the `B` positive pairs (class 1) and `2B` hard-negative pairs (class 0).
        positive_logits: `[B, 2]` of the pairs (view `b`, text `b`).
        negative_logits: `[2B, 2]`: rows `[0, B)` pair view `negative_view_indices[b]` with text `b`, rows
            `[B, 2B)` view `b` with text `negative_text_indices[b]`.
        negative_view_indices, negative_text_indices: `[B]` the negatives used.
        fusion_output: the fusion layers' output on the positive pairs.
    """

    loss: torch.Tensor
    positive_logits: torch.Tensor
    negative_logits: torch.Tensor
    negative_view_indices: torch.LongTensor
    negative_text_indices: torch.LongTensor
    fusion_output: BaseModelOutputWithCrossAttentions


def select_negative_pairs(
    view: CCLMEncodedView,
    text: CCLMEncodedView,
    negative_view_indices: torch.LongTensor,
    negative_text_indices: torch.LongTensor,
) -> tuple[CCLMEncodedView, CCLMEncodedView]:
    """The `2B` negative pairs of the original matching loss, aligned row by row: rows `[0, B)` pair view
    `negative_view_indices[b]` with text `b`; rows `[B, 2B)` pair view `b` with text `negative_text_indices[b]`."""
    rows = torch.arange(view.hidden_states.shape[0], device=view.hidden_states.device)
    return view.select(torch.cat([negative_view_indices, rows])), text.select(torch.cat([rows, negative_text_indices]))


class CCLMMatchingMixin:
    """Matching (`self.itm_head` on the fused `<s>` state) on top of `self.cclm`: the retrieval and pre-training
    heads."""

    def score_pairs(
        self, view: CCLMEncodedView, text: CCLMEncodedView, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, BaseModelOutputWithCrossAttentions]:
        """Matching logits `[N, 2]` of aligned pairs (row `n`: text `n` fused with view `n`) and the fusion output."""
        fused = self.cclm.fuse_views(
            text.hidden_states, text.attention_mask, view.hidden_states, view.attention_mask, **kwargs
        )
        return self.itm_head(fused.last_hidden_state[:, 0]), fused

    def get_itm_logits(
        self,
        image_hidden_states: torch.Tensor,
        text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor | None,
        image_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Matching logits `[N, 2]` of aligned pairs: row `n` fuses text `n` with image `n` (class 1 = match).

        Takes the tokens of `get_image_features` and the text-only states of `get_text_features`, so a ranking can
        encode each image and text once and fuse only the candidate pairs.
        """
        fused = self.cclm.fuse_views(
            text_hidden_states, text_attention_mask, image_hidden_states, image_attention_mask
        )
        return self.itm_head(fused.last_hidden_state[:, 0])

    def matching_objective(
        self,
        view: CCLMEncodedView,
        text: CCLMEncodedView,
        ids: torch.LongTensor | None = None,
        negative_view_indices: torch.LongTensor | None = None,
        negative_text_indices: torch.LongTensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMMatchingResult:
        """The original matching loss (ITM, or TTM with the first sentence as the view).

        Hard negatives are drawn from the local batch's contrastive softmax (never a pair sharing an id) unless
        given. `kwargs` (output flags) apply to the fusion of the positive pairs.
        """
        if (negative_view_indices is None) != (negative_text_indices is None):
            raise ValueError("Pass both negative_image_indices and negative_text_indices, or neither.")
        if negative_view_indices is None:
            negative_view_indices, negative_text_indices = sample_hard_negatives(
                view.embeds, text.embeds, self.cclm.temperature, ids
            )
        positive_logits, fused = self.score_pairs(view, text, **kwargs)
        negative_logits, _ = self.score_pairs(
            *select_negative_pairs(view, text, negative_view_indices, negative_text_indices)
        )
        return CCLMMatchingResult(
            loss=matching_loss(positive_logits, negative_logits),
            positive_logits=positive_logits,
            negative_logits=negative_logits,
            negative_view_indices=negative_view_indices,
            negative_text_indices=negative_text_indices,
            fusion_output=fused,
        )


class CCLMForImageTextRetrieval(CCLMMatchingMixin, CCLMPreTrainedModel):
    """CCLM with the image-text matching head: contrastive ranking, ITM re-ranking and the retrieval loss."""

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.cclm = CCLMModel(config)
        self.itm_head = CCLMMLPHead(config.text_config.hidden_size, 2)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        use_itm_head: bool = False,
        return_loss: bool = False,
        image_ids: torch.LongTensor | None = None,
        negative_image_indices: torch.LongTensor | None = None,
        negative_text_indices: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMImageTextRetrievalOutput:
        r"""
        use_itm_head (`bool`, *optional*, defaults to `False`):
            Also score the given pairs (image `b`, text `b`) with the matching head (`itm_logits`); needs as many
            images as texts. The contrastive `logits_per_image` are always returned (any number of each), which is
            what the zero-shot image classification pipeline reads.
        return_loss (`bool`, *optional*, defaults to `False`):
            Compute `itc_loss + itm_loss` with hard negatives drawn from the contrastive softmax of the local batch.
        image_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Pairs sharing an id are positives in ITC and never drawn as ITM negatives.
        negative_image_indices, negative_text_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Use these hard negatives instead of sampling them (reproducible losses); pass both or neither.
        """
        image = self.cclm.embed_image(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs)
        text = self.cclm.embed_text(input_ids, attention_mask, **kwargs)
        temperature = self.cclm.temperature
        logits_per_image = image.embeds @ text.embeds.t() / temperature
        fields = {}
        if use_itm_head or return_loss:
            if image.hidden_states.shape[0] != text.hidden_states.shape[0]:
                raise ValueError(
                    f"use_itm_head and return_loss score aligned (image b, text b) pairs, but got "
                    f"{image.hidden_states.shape[0]} images and {text.hidden_states.shape[0]} texts"
                )
        if return_loss:
            matching = self.matching_objective(
                image, text, image_ids, negative_image_indices, negative_text_indices, **kwargs
            )
            itc_loss = contrastive_loss(image.embeds, text.embeds, temperature, image_ids)
            fields.update(
                loss=itc_loss + matching.loss,
                itc_loss=itc_loss,
                itm_loss=matching.loss,
                itm_logits=matching.positive_logits,
                itm_negative_logits=matching.negative_logits,
                negative_image_indices=matching.negative_view_indices,
                negative_text_indices=matching.negative_text_indices,
                fusion_model_output=matching.fusion_output,
            )
        elif use_itm_head:
            fields["itm_logits"], fields["fusion_model_output"] = self.score_pairs(image, text, **kwargs)
        # built in one go: a ModelOutput orders its fields by assignment, and `return_dict=False` follows that order
        return CCLMImageTextRetrievalOutput(
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text.embeds,
            image_embeds=image.embeds,
            vision_model_output=image.model_output,
            text_model_output=text.model_output,
            **fields,
        )


class CCLMForSequenceClassification(CCLMPreTrainedModel):
    """CCLM with an MLP on the fused `<s>` state of (image, text) pairs, e.g. XVNLI (image premise, hypothesis)."""

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.loss_type = "ForSequenceClassification"  # also for subclasses, whose names transformers would not map
        self.num_labels = config.num_labels
        self.cclm = CCLMModel(config)
        self.classifier = CCLMMLPHead(config.text_config.hidden_size, config.num_labels)
        self.post_init()

    def new_parameters(self) -> set[str]:
        """The classifier (the original's `cls_head`, trained with twice the learning rate)."""
        return {name for name, _ in self.named_parameters() if name.startswith("classifier.")}

    def encode_image_views(
        self, pixel_values: torch.FloatTensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[BaseModelOutputWithPooling, torch.Tensor | list[torch.Tensor]]:
        """The vision tower's output and the view(s) the fusion layers attend to: here one image per text."""
        if self.config.images_per_text != 1:
            raise ValueError(
                f"this model fuses {self.config.images_per_text} images per text: use "
                "CCLMForImagesAndTextClassification"
            )
        image = self.cclm.get_image_features(pixel_values, **kwargs)
        return image, image.last_hidden_state

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMSequenceClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, num_labels)`; the loss follows `config.problem_type` as in transformers' heads.
        """
        image, views = self.encode_image_views(
            pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        text = self.cclm.get_text_features(input_ids, attention_mask, **kwargs)
        fused = self.cclm.fuse_views(text.last_hidden_state, attention_mask, views, **kwargs)
        logits = self.classifier(fused.last_hidden_state[:, 0])
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return CCLMSequenceClassifierOutput(
            loss=loss, logits=logits, vision_model_output=image, text_model_output=text, fusion_model_output=fused
        )


class CCLMForImagesAndTextClassification(CCLMForSequenceClassification):
    """CCLM for a statement about two images (NLVR2, MaRVL): an MLP on the fused `<s>` state of the text attending to
    both images through the paired fusion layers (`config.images_per_text = 2`).

    `pixel_values` are `[batch, 2, channels, height, width]` (left, right). The image tower runs once over all `2B`
    images (`vision_model_output` row `2b` is the left and row `2b + 1` the right image of pair `b`); fusion layer
    `2k` attends to the left image and layer `2k + 1` to the right one, the two sharing their cross-attention
    key/value projections. `labels`: 1 if the statement is true of the pair, else 0.
    """

    def __init__(self, config: CCLMConfig):
        if config.images_per_text != 2:
            raise ValueError(
                f"{type(self).__name__} fuses a text with two images: set config.images_per_text=2 "
                f"(got {config.images_per_text})"
            )
        super().__init__(config)

    def encode_image_views(
        self, pixel_values: torch.FloatTensor, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[BaseModelOutputWithPooling, list[torch.Tensor]]:
        images_per_text = self.config.images_per_text
        if pixel_values.ndim != 5 or pixel_values.shape[1] != images_per_text:
            raise ValueError(
                f"pixel_values must be [batch, {images_per_text}, channels, height, width], got "
                f"{tuple(pixel_values.shape)}"
            )
        image = self.cclm.get_image_features(pixel_values.flatten(0, 1), **kwargs)
        tokens = image.last_hidden_state.unflatten(0, pixel_values.shape[:2])
        return image, [tokens[:, index] for index in range(images_per_text)]


@dataclass
class CCLMQuestionAnsweringOutput(CCLMModelOutput):
    r"""
    loss (`torch.FloatTensor` of shape `()`, *optional*, returned when answers are given):
        The original VQA loss: each answer's summed next-token negative log-likelihood times its weight, summed
        over all answers and divided by the number of questions.
    answer_nll (`torch.FloatTensor` of shape `(num_answers,)`, *optional*):
        Summed next-token negative log-likelihood of each given answer (padding excluded).
    logits (`torch.FloatTensor` of shape `(num_answers, answer_length, vocab_size)`, *optional*):
        Answer decoder logits; position `t` predicts token `t + 1`.
    question_states (`torch.FloatTensor` of shape `(batch_size, question_length, hidden_size)`):
        The question fused with the image (all text layers), which the answer decoder attends to.
    answer_decoder_output (`BaseModelOutputWithCrossAttentions`, *optional*):
        The answer decoder's layers (per-layer states and attention maps when requested).
    """ + _TOWER_OUTPUTS_DOC.replace("The fusion layers:", "The fusion layers on the question and the image:")

    loss: torch.FloatTensor | None = None
    answer_nll: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    question_states: torch.FloatTensor | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    fusion_model_output: BaseModelOutputWithCrossAttentions | None = None
    answer_decoder_output: BaseModelOutputWithCrossAttentions | None = None


@dataclass
class CCLMAnswerCandidates:
    """A candidate answer list tokenised once (`<s> answer </s>`, padded to the longest), for `rank_answers`.

    Attributes:
        answers: the answer strings, in the order of the rows.
        input_ids, attention_mask: `[A, La]`.
    """

    answers: list[str]
    input_ids: torch.LongTensor
    attention_mask: torch.LongTensor

    @classmethod
    def from_answers(cls, tokenizer, answers: Sequence[str]) -> CCLMAnswerCandidates:
        if not answers:
            raise ValueError("the candidate answer list is empty")
        encoded = tokenizer(list(answers), padding="longest", return_tensors="pt", return_token_type_ids=False)
        return cls(list(answers), encoded["input_ids"], encoded["attention_mask"])

    def to(self, device: torch.device | str) -> CCLMAnswerCandidates:
        return CCLMAnswerCandidates(self.answers, self.input_ids.to(device), self.attention_mask.to(device))


class CCLMForQuestionAnswering(CCLMPreTrainedModel):
    """CCLM for visual question answering (VQA v2, GQA / xGQA) as the original: the question is encoded with the image
    by all text layers, and a causal answer decoder whose every layer cross-attends to the question states scores
    answers (`rank_answers` ranks a candidate list; `forward` computes the training loss).

    The decoder has its own word embeddings and an LM head tied to them; from a pre-training checkpoint it starts
    as a copy of the fusion layers, the embeddings and the MLM head (see `cclm_hf.conversion`).
    """

    _tied_weights_keys = {
        "answer_head.decoder.weight": "answer_embeddings.word_embeddings.weight",
        "answer_head.decoder.bias": "answer_head.bias",
    }

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        text_config = config.text_config
        self.cclm = CCLMModel(config)
        self.answer_embeddings = CCLMTextEmbeddings(text_config)
        self.answer_decoder = CCLMFusionModel._from_config(
            text_config,
            num_layers=config.num_answer_decoder_layers,
            is_causal=True,
            cross_attention_hidden_size=text_config.hidden_size,
        )
        self.answer_head = XLMRobertaLMHead(text_config)
        self.post_init()

    def encode_question(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[
        torch.Tensor, BaseModelOutputWithPooling, BaseModelOutputWithPooling, BaseModelOutputWithCrossAttentions
    ]:
        """`(question_states, vision_output, text_output, fusion_output)`: the question through all text layers,
        attending to the image."""
        image = self.cclm.get_image_features(pixel_values, **kwargs)
        text = self.cclm.get_text_features(input_ids, attention_mask, **kwargs)
        fused = self.cclm.fuse_views(text.last_hidden_state, attention_mask, image.last_hidden_state, **kwargs)
        return fused.last_hidden_state, image, text, fused

    def decode_answers(
        self,
        question_states: torch.Tensor,
        question_attention_mask: torch.Tensor | None,
        answer_input_ids: torch.LongTensor,
        answer_attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, BaseModelOutputWithCrossAttentions]:
        """Decoder logits `[N, La, V]` of answers `[N, La]` (row `n` attends to question row `n`) and the decoder
        output."""
        hidden_states = self.answer_embeddings(answer_input_ids)
        decoded = self.answer_decoder(
            hidden_states,
            answer_attention_mask,
            question_states,
            question_attention_mask,
            return_dict=True,
            **kwargs,
        )
        return self.answer_head(decoded.last_hidden_state), decoded

    @staticmethod
    def answer_nll(logits: torch.Tensor, answer_input_ids: torch.LongTensor, answer_attention_mask) -> torch.Tensor:
        """Summed next-token negative log-likelihood `[N]` of each answer; padding positions are not predicted."""
        targets = answer_input_ids.masked_fill(answer_attention_mask == 0, -100)[:, 1:]
        per_token = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="none")
        return per_token.sum(dim=1)

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        answer_input_ids: torch.LongTensor | None = None,
        answer_attention_mask: torch.Tensor | None = None,
        answer_weights: torch.FloatTensor | None = None,
        answers_per_question: torch.LongTensor | None = None,
        interpolate_pos_encoding: bool = False,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMQuestionAnsweringOutput:
        r"""
        answer_input_ids, answer_attention_mask (`torch.LongTensor` of shape `(num_answers, answer_length)`, *optional*):
            The answers of all questions, `<s> answer </s>` padded, grouped per question in batch order.
        answer_weights (`torch.FloatTensor` of shape `(num_answers,)`, *optional*):
            Weight of each answer (the original gives each of a question's `n` answers `1 / n`); default 1.
        answers_per_question (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            How many of the answers belong to each question; default one each.
        """
        question_states, image, text, fused = self.encode_question(
            input_ids, pixel_values, attention_mask, interpolate_pos_encoding=interpolate_pos_encoding, **kwargs
        )
        fields = {}
        if answer_input_ids is not None:
            if answer_attention_mask is None:
                answer_attention_mask = torch.ones_like(answer_input_ids)
            if answers_per_question is None:
                answers_per_question = torch.ones(question_states.shape[0], dtype=torch.long, device=input_ids.device)
            if int(answers_per_question.sum()) != answer_input_ids.shape[0]:
                raise ValueError(
                    f"answers_per_question sums to {int(answers_per_question.sum())} but {answer_input_ids.shape[0]} "
                    "answers were given"
                )
            question_index = torch.repeat_interleave(
                torch.arange(question_states.shape[0], device=question_states.device), answers_per_question
            )
            question_mask = None if attention_mask is None else attention_mask[question_index]
            logits, decoded = self.decode_answers(
                question_states[question_index], question_mask, answer_input_ids, answer_attention_mask, **kwargs
            )
            nll = self.answer_nll(logits, answer_input_ids, answer_attention_mask)
            weights = answer_weights if answer_weights is not None else torch.ones_like(nll)
            fields = {
                "loss": (weights * nll).sum() / question_states.shape[0],
                "answer_nll": nll,
                "logits": logits,
                "answer_decoder_output": decoded,
            }
        return CCLMQuestionAnsweringOutput(
            question_states=question_states,
            vision_model_output=image,
            text_model_output=text,
            fusion_model_output=fused,
            **fields,
        )

    @torch.no_grad()
    def rank_answers(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None,
        candidates: CCLMAnswerCandidates,
        k: int = 128,
    ) -> tuple[torch.LongTensor, torch.FloatTensor]:
        """The original two-stage answer ranking (`rank_answer`).

        1. the decoder reads `<s>` alone; the `k` candidates whose first token is most probable are kept;
        2. those `k` answers are scored with teacher forcing: `log p(first token) - NLL(answer)` (the NLL includes
           the first token again, as the original counts it twice), softmax over the `k`.

        Returns:
            `(indices, probabilities)`, both `[B, k]` sorted by decreasing probability: rows of `candidates`.
        """
        candidates = candidates.to(input_ids.device)
        question_states = self.encode_question(input_ids, pixel_values, attention_mask)[0]
        num_questions = question_states.shape[0]
        k = min(k, candidates.input_ids.shape[0])
        start = candidates.input_ids[:1, :1].expand(num_questions, 1)
        start_logits = self.decode_answers(question_states, attention_mask, start)[0][:, 0]
        first_token_probs = start_logits.softmax(dim=-1)[:, candidates.input_ids[:, 1]]
        top_probs, top_ids = first_token_probs.topk(k, dim=1)

        question_index = torch.arange(num_questions, device=input_ids.device).repeat_interleave(k)
        answer_ids = candidates.input_ids[top_ids.flatten()]
        answer_mask = candidates.attention_mask[top_ids.flatten()]
        question_mask = None if attention_mask is None else attention_mask[question_index]
        logits = self.decode_answers(question_states[question_index], question_mask, answer_ids, answer_mask)[0]
        nll = self.answer_nll(logits, answer_ids, answer_mask).view(num_questions, k)
        probabilities = (top_probs.log() - nll).softmax(dim=-1)
        probabilities, order = probabilities.topk(k, dim=1)
        return top_ids.gather(1, order), probabilities


BatchKind = Literal["image", "region", "parallel"]
BATCH_KINDS: tuple[str, ...] = ("image", "region", "parallel")


class CCLMForPreTraining(CCLMMatchingMixin, CCLMPreTrainedModel):
    """CCLM with the pre-training heads (ITM, masked LM tied to the word embeddings, box regression).

    `forward` computes the losses of one batch of one of the three streams of the original (`batch_kind`; inferred
    from the inputs when not given):

    - `"image"`: `pixel_values` + caption (`input_ids`, masked copy): ITC + ITM + conditional MLM; with a second
      caption of the same images (`input_ids_2`) also TTC and an ITC averaged over both captions;
    - `"region"`: additionally `image_index`, `region_mask`, `target_boxes`, `is_whole_image`: the same losses on
      the region-pooled image tokens with the region as cross-attention mask, plus box L1 + GIoU;
    - `"parallel"`: no `pixel_values`; sentence (`input_ids`) and translation (`input_ids_2`): TTC + TTM +
      conditional MLM (the masked sentence attends to the translation's text-only states); with
      `masked_attention_mask` the masked input is the translation-LM concatenation `<s> A </s> B </s>` instead, and
      the losses are TTC + MLM (no TTM), as with the original's `use_tlm`.

    Each objective is one method returning its named losses: `contrastive_objective`, `matching_objective`,
    `masked_lm_objective`, `box_objective`.
    """

    _tied_weights_keys = {
        "mlm_head.decoder.weight": "cclm.text_model.embeddings.word_embeddings.weight",
        "mlm_head.decoder.bias": "mlm_head.bias",
    }

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.cclm = CCLMModel(config)
        hidden_size = config.text_config.hidden_size
        self.itm_head = CCLMMLPHead(hidden_size, 2)
        self.bbox_head = CCLMMLPHead(hidden_size, 4)
        self.mlm_head = XLMRobertaLMHead(config.text_config)
        self.post_init()

    def get_output_embeddings(self) -> nn.Linear:
        return self.mlm_head.decoder

    def set_output_embeddings(self, new_embeddings: nn.Linear) -> None:
        self.mlm_head.decoder = new_embeddings

    def new_parameters(self) -> set[str]:
        """What is new when the text stack starts from XLM-R and the image encoder from Swin: the fusion layers'
        cross-attention, the projections, the temperature and the ITM and box heads."""
        new_prefixes = ("cclm.vision_projection.", "cclm.text_projection.", "itm_head.", "bbox_head.")
        return {
            name
            for name, _ in self.named_parameters()
            if name.startswith(new_prefixes)
            or name == "cclm.temperature"
            or (name.startswith("cclm.fusion_model.") and ".crossattention." in name)
        }

    # ---- the objectives --------------------------------------------------------------------------------------------

    def contrastive_objective(
        self, first: CCLMEncodedView, second: CCLMEncodedView, ids: torch.LongTensor | None = None
    ) -> torch.Tensor:
        """Symmetric InfoNCE between two views' embeddings (ITC: image/caption; TTC: sentence/translation), gathered
        over all processes."""
        return contrastive_loss(first.embeds, second.embeds, self.cclm.temperature, ids)

    def get_mlm_logits(
        self,
        masked_input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        masked_positions: torch.LongTensor,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Masked-LM logits `[B, M, V]` at `masked_positions` `[B, M]`: all layers, cross-attending to the other view.

        Only the masked positions go through the vocabulary projection.
        """
        text_states = self.cclm.get_text_features(masked_input_ids, attention_mask).last_hidden_state
        fused = self.cclm.fuse_views(text_states, attention_mask, encoder_hidden_states, encoder_attention_mask)
        index = masked_positions.unsqueeze(-1).expand(-1, -1, fused.last_hidden_state.shape[-1])
        return self.mlm_head(torch.gather(fused.last_hidden_state, 1, index))

    def masked_lm_objective(
        self,
        masked_input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None,
        masked_positions: torch.LongTensor,
        masked_labels: torch.LongTensor,
        condition: CCLMEncodedView | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Conditional MLM: `(loss, logits)` of the masked text attending to `condition` (the image, the region, the
        other sentence; `None` for translation-LM sequences)."""
        view_states = None if condition is None else condition.hidden_states
        view_mask = None if condition is None else condition.attention_mask
        logits = self.get_mlm_logits(masked_input_ids, attention_mask, masked_positions, view_states, view_mask)
        return masked_lm_loss(logits, masked_labels), logits

    def predict_boxes(
        self, image_hidden_states: torch.Tensor, text_hidden_states: torch.Tensor, text_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """`(cx, cy, w, h)` in `[0, 1]` of the region each text describes, from the text fused with the whole image."""
        fused = self.cclm.fuse_views(text_hidden_states, text_attention_mask, image_hidden_states)
        return self.bbox_head(fused.last_hidden_state[:, 0]).sigmoid()

    def box_objective(
        self,
        whole_image: CCLMEncodedView,
        text: CCLMEncodedView,
        target_boxes: torch.FloatTensor,
        is_whole_image: torch.LongTensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """`(bbox_loss, giou_loss, predicted_boxes)` of the region texts (whole-image captions excluded)."""
        predicted = self.predict_boxes(whole_image.hidden_states, text.hidden_states, text.attention_mask)
        bbox_loss, giou_loss = box_losses(predicted, target_boxes, is_whole_image)
        return bbox_loss, giou_loss, predicted

    # ---- region pooling ----------------------------------------------------------------------------------------------

    def get_region_features(
        self,
        pixel_values: torch.FloatTensor,
        image_index: torch.LongTensor,
        region_mask: torch.Tensor,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Image tokens per text of a region batch.

        Args:
            pixel_values: `[N_images, 3, H, W]`.
            image_index: `[B]` the image each text belongs to.
            region_mask: `[B, 1 + P]` 1 for the pooled token and the patches inside the region (all ones for texts
                about the whole image).

        Returns:
            `(region_tokens, image_tokens)`, both `[B, 1 + P, D]`: the first with the pooled token replaced by the
            mean over the region's patches, the second the whole image's tokens.
        """
        return self._region_views(self.cclm.get_image_features(pixel_values, **kwargs), image_index, region_mask)[:2]

    def _region_views(self, image_output, image_index, region_mask):
        image_tokens = image_output.last_hidden_state[image_index]
        patch_weights = region_mask[:, 1:].unsqueeze(-1).to(image_tokens.dtype)
        region_pooled = (patch_weights * image_tokens[:, 1:]).sum(dim=1) / patch_weights.sum(dim=1)
        region_tokens = torch.cat([region_pooled.unsqueeze(1), image_tokens[:, 1:]], dim=1)
        return region_tokens, image_tokens, self.cclm.vision_projection(region_tokens[:, 0])

    # ---- forward -----------------------------------------------------------------------------------------------------

    @staticmethod
    def infer_batch_kind(pixel_values, region_mask) -> BatchKind:
        """The stream a batch comes from, when `batch_kind` is not given."""
        if region_mask is not None:
            return "region"
        return "parallel" if pixel_values is None else "image"

    @can_return_tuple
    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor,
        masked_input_ids: torch.LongTensor | None = None,
        masked_positions: torch.LongTensor | None = None,
        masked_labels: torch.LongTensor | None = None,
        masked_attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        image_index: torch.LongTensor | None = None,
        region_mask: torch.Tensor | None = None,
        target_boxes: torch.FloatTensor | None = None,
        is_whole_image: torch.LongTensor | None = None,
        input_ids_2: torch.LongTensor | None = None,
        attention_mask_2: torch.Tensor | None = None,
        negative_image_indices: torch.LongTensor | None = None,
        negative_text_indices: torch.LongTensor | None = None,
        image_ids: torch.LongTensor | None = None,
        batch_kind: BatchKind | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> CCLMForPreTrainingOutput:
        r"""
        masked_input_ids (`torch.LongTensor` of shape `(batch_size, length)`, *optional*):
            `input_ids` with masking applied (see `cclm_hf.data.masking`); without it no MLM loss is computed.
        masked_positions (`torch.LongTensor` of shape `(batch_size, max_masks)`, *optional*):
            Masked positions, padded with 0.
        masked_labels (`torch.LongTensor` of shape `(batch_size, max_masks)`, *optional*):
            Original ids at `masked_positions`, padded with -100.
        masked_attention_mask (`torch.Tensor` of shape `(batch_size, masked_length)`, *optional*):
            Parallel-text batches only: the masked input is the translation-LM concatenation with this mask.
        image_index, region_mask, target_boxes, is_whole_image (*optional*):
            Region batches: see `get_region_features`; boxes `(cx, cy, w, h)` in `[0, 1]`; `is_whole_image` marks
            texts about the whole image (no box loss).
        input_ids_2, attention_mask_2 (*optional*):
            The translation (parallel-text batches) or a second caption of the same images (image batches).
        negative_image_indices, negative_text_indices (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Hard negatives to use instead of sampling them (reproducible losses).
        image_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            What each pair is about (its image; for parallel text, the sentence): pairs sharing an id are positives
            of each other in ITC / TTC and never drawn as ITM / TTM negatives. Off by default, as in the original.
        batch_kind (`str`, *optional*):
            `"image"`, `"region"` or `"parallel"`; inferred from the inputs when not given (`region_mask` -> region,
            no `pixel_values` -> parallel).
        """
        # The original clamps the temperature in place at every step. Through `.data`, so that the parameter's
        # version counter does not move: a step that sums the losses of several forwards (summed schedule) keeps the
        # earlier forwards' graphs valid, and all of them see the same clamped value.
        self.cclm.temperature.data.clamp_(0.001, 0.5)
        batch_kind = batch_kind or self.infer_batch_kind(pixel_values, region_mask)
        if batch_kind not in BATCH_KINDS:
            raise ValueError(f"batch_kind must be one of {BATCH_KINDS}, got {batch_kind!r}")
        if batch_kind == "parallel":
            if pixel_values is not None or input_ids_2 is None:
                raise ValueError("A parallel-text batch has input_ids_2 (the translation) and no pixel_values.")
            return self._parallel_text_batch(
                input_ids,
                attention_mask,
                input_ids_2,
                attention_mask_2,
                masked=(masked_input_ids, masked_attention_mask, masked_positions, masked_labels),
                negatives=(negative_image_indices, negative_text_indices),
                image_ids=image_ids,
                **kwargs,
            )
        if pixel_values is None or (batch_kind == "region") != (region_mask is not None):
            raise ValueError(
                f"A{'' if batch_kind == 'image' else ' region'} batch needs pixel_values"
                + (" and image_index / region_mask" if batch_kind == "region" else " and no region_mask")
            )
        return self._image_text_batch(
            pixel_values,
            input_ids,
            attention_mask,
            masked=(masked_input_ids, attention_mask, masked_positions, masked_labels),
            negatives=(negative_image_indices, negative_text_indices),
            image_ids=image_ids,
            region=(image_index, region_mask, target_boxes, is_whole_image) if batch_kind == "region" else None,
            second_caption=(input_ids_2, attention_mask_2) if input_ids_2 is not None else None,
            **kwargs,
        )

    def _image_text_batch(
        self, pixel_values, input_ids, attention_mask, masked, negatives, image_ids, region, second_caption, **kwargs
    ) -> CCLMForPreTrainingOutput:
        image = self.cclm.embed_image(pixel_values, **kwargs)
        whole_image = None
        if region is not None:
            image_index, region_mask, _, _ = region
            region_tokens, whole_tokens, region_projection = self._region_views(
                image.model_output, image_index, region_mask
            )
            whole_image = CCLMEncodedView(whole_tokens, None, image.embeds[image_index])
            image = CCLMEncodedView(
                region_tokens, region_mask, F.normalize(region_projection, dim=-1), model_output=image.model_output
            )
        text = self.cclm.embed_text(input_ids, attention_mask, **kwargs)

        losses = {"itc_loss": self.contrastive_objective(image, text, image_ids)}
        if second_caption is not None:
            text_2 = self.cclm.embed_text(*second_caption)
            losses["itc_loss"] = (losses["itc_loss"] + self.contrastive_objective(image, text_2, image_ids)) / 2
            losses["ttc_loss"] = self.contrastive_objective(text, text_2, image_ids)
        matching = self.matching_objective(image, text, image_ids, *negatives, **kwargs)
        losses["itm_loss"] = matching.loss
        extras = {}
        if masked[0] is not None:
            losses["mlm_loss"], extras["mlm_logits"] = self.masked_lm_objective(*masked, condition=image)
        if region is not None and region[2] is not None:
            losses["bbox_loss"], losses["giou_loss"], extras["predicted_boxes"] = self.box_objective(
                whole_image, text, region[2], region[3]
            )
        return self._output(
            losses,
            **extras,
            matching=matching,
            vision_model_output=image.model_output,
            text_model_output=text.model_output,
        )

    def _parallel_text_batch(
        self, input_ids, attention_mask, input_ids_2, attention_mask_2, masked, negatives, image_ids, **kwargs
    ) -> CCLMForPreTrainingOutput:
        masked_input_ids, masked_attention_mask, masked_positions, masked_labels = masked
        text_config = self.config.text_config
        if masked_attention_mask is None and text_config.hidden_size != text_config.cross_attention_hidden_size:
            raise ValueError(
                f"parallel-text batches fuse one sentence into the other, which needs the text width "
                f"({text_config.hidden_size}) to equal the cross-attention input width "
                f"({text_config.cross_attention_hidden_size}, the vision width); CCLM uses 1024 for both"
            )
        sentence = self.cclm.embed_text(input_ids, attention_mask, **kwargs)
        translation = self.cclm.embed_text(input_ids_2, attention_mask_2)
        losses = {"ttc_loss": self.contrastive_objective(sentence, translation, image_ids)}

        if masked_attention_mask is not None:  # translation LM: one sequence, no other view, no matching
            losses["mlm_loss"], mlm_logits = self.masked_lm_objective(
                masked_input_ids, masked_attention_mask, masked_positions, masked_labels, condition=None
            )
            return self._output(losses, mlm_logits=mlm_logits, text_model_output=sentence.model_output)

        # the first sentence plays the image's role: its states are the keys/values of the fusion layers
        matching = self.matching_objective(sentence, translation, image_ids, *negatives, **kwargs)
        losses["ttm_loss"] = matching.loss
        extras = {}
        if masked_input_ids is not None:
            losses["mlm_loss"], extras["mlm_logits"] = self.masked_lm_objective(
                masked_input_ids, attention_mask, masked_positions, masked_labels, condition=translation
            )
        return self._output(losses, **extras, matching=matching, text_model_output=sentence.model_output)

    @staticmethod
    def _output(
        losses: dict[str, torch.Tensor], matching: CCLMMatchingResult | None = None, **fields
    ) -> CCLMForPreTrainingOutput:
        if matching is not None:
            fields.update(
                itm_logits=torch.cat([matching.positive_logits, matching.negative_logits]),
                negative_image_indices=matching.negative_view_indices,
                negative_text_indices=matching.negative_text_indices,
                fusion_model_output=matching.fusion_output,
            )
        return CCLMForPreTrainingOutput(loss=torch.stack(list(losses.values())).sum(), **losses, **fields)


__all__ = [
    "BATCH_KINDS",
    "CCLMAnswerCandidates",
    "CCLMEncodedView",
    "CCLMForImagesAndTextClassification",
    "CCLMForQuestionAnswering",
    "CCLMQuestionAnsweringOutput",
    "CCLMForImageTextRetrieval",
    "CCLMForPreTraining",
    "CCLMForPreTrainingOutput",
    "CCLMForSequenceClassification",
    "CCLMFusionModel",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
    "CCLMSequenceClassifierOutput",
    "CCLMTextModel",
    "IMAGE_TOKENS_BY_VISION_FAMILY",
]
