"""PyTorch CCLM: a Swin image encoder and an XLM-R text stack whose upper layers cross-attend to another view."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, SwinModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.models.swin.modeling_swin import SwinEmbeddings, SwinRelativePositionBias
from transformers.models.xlm_roberta.modeling_xlm_roberta import (
    XLMRobertaAttention,
    XLMRobertaIntermediate,
    XLMRobertaLayer,
    XLMRobertaLMHead,
    XLMRobertaOutput,
    eager_attention_forward,
)
from transformers.utils import ModelOutput, logging

from .configuration_cclm import CCLMConfig, CCLMTextConfig
from .losses import box_losses, contrastive_loss, masked_lm_loss, matching_loss, sample_hard_negatives


logger = logging.get_logger(__name__)


@dataclass
class CCLMOutput(ModelOutput):
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
        L2-normalised projection of the mean-pooled image token.
    text_model_output (`BaseModelOutputWithPooling`):
        Output of [`CCLMModel.get_text_features`]; `last_hidden_state` are the text-only states.
    vision_model_output (`BaseModelOutputWithPooling`):
        Output of [`CCLMModel.get_image_features`]; `last_hidden_state` are the image tokens (pooled token first).
    """

    loss: torch.FloatTensor | None = None
    logits_per_image: torch.FloatTensor | None = None
    logits_per_text: torch.FloatTensor | None = None
    text_embeds: torch.FloatTensor | None = None
    image_embeds: torch.FloatTensor | None = None
    text_model_output: BaseModelOutputWithPooling | None = None
    vision_model_output: BaseModelOutputWithPooling | None = None

    def to_tuple(self) -> tuple:
        return tuple(v.to_tuple() if isinstance(v, ModelOutput) else v for v in self.values())


@dataclass
class CCLMImageTextRetrievalOutput(ModelOutput):
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
    """

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


@dataclass
class CCLMForPreTrainingOutput(ModelOutput):
    r"""
    Losses of one pre-training batch; the ones a batch type does not compute are `None`.

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
    """

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


class CCLMFusionLayer(GradientCheckpointingLayer):
    """Post-LN transformer layer: bidirectional self-attention, cross-attention to another view, feed-forward.

    `XLMRobertaLayer` only adds cross-attention to causal decoders, so the layer is composed from its parts. The
    cross-attention key/value projections read the other view, whose width (`cross_attention_hidden_size`) may
    differ from the text width.
    """

    def __init__(self, config: CCLMTextConfig):
        super().__init__()
        self.attention = XLMRobertaAttention(config, is_causal=False)
        self.crossattention = XLMRobertaAttention(config, is_causal=False, is_cross_attention=True)
        self.crossattention.self.key = nn.Linear(config.cross_attention_hidden_size, config.hidden_size)
        self.crossattention.self.value = nn.Linear(config.cross_attention_hidden_size, config.hidden_size)
        self.intermediate = XLMRobertaIntermediate(config)
        self.output = XLMRobertaOutput(config)

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None,
        cross_attention_key_value: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        hidden_states, _ = self.attention(hidden_states, attention_mask)
        if cross_attention_key_value is not None:
            hidden_states = self._cross_attend(hidden_states, cross_attention_key_value, encoder_attention_mask)
        # without another view (e.g. translation-LM batches) the layer is a plain encoder layer, as in the original
        elif encoder_hidden_states is not None:
            hidden_states, _ = self.crossattention(
                hidden_states,
                encoder_hidden_states=encoder_hidden_states,
                encoder_attention_mask=encoder_attention_mask,
            )
        return self.output(self.intermediate(hidden_states), hidden_states)

    def project_cross_attention(self, encoder_hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention `(key, value)`, each `[N, num_heads, Lv, head_dim]`, of the other view's states."""
        attention = self.crossattention.self
        shape = (*encoder_hidden_states.shape[:-1], -1, attention.attention_head_size)
        key = attention.key(encoder_hidden_states).view(shape).transpose(1, 2)
        value = attention.value(encoder_hidden_states).view(shape).transpose(1, 2)
        return key, value

    def _cross_attend(
        self,
        hidden_states: torch.Tensor,
        key_value: tuple[torch.Tensor, torch.Tensor],
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        # `XLMRobertaCrossAttention` always projects its keys/values; re-ranking reuses one view's projections for
        # every text paired with it, so the query side of that module is run here on given keys/values.
        attention = self.crossattention.self
        shape = (*hidden_states.shape[:-1], -1, attention.attention_head_size)
        query = attention.query(hidden_states).view(shape).transpose(1, 2)
        attention_interface = ALL_ATTENTION_FUNCTIONS.get_interface(
            attention.config._attn_implementation, eager_attention_forward
        )
        attended, _ = attention_interface(
            attention,
            query,
            *key_value,
            attention_mask,
            dropout=attention.dropout.p if self.training else 0.0,
            scaling=attention.scaling,
        )
        return self.crossattention.output(attended.reshape(*hidden_states.shape[:-1], -1).contiguous(), hidden_states)


class CCLMTextEncoder(nn.Module):
    """Embeddings and the text-only layers (the lower `num_text_layers` of the stack)."""

    def __init__(self, config: CCLMTextConfig):
        super().__init__()
        self.config = config
        self.embeddings = CCLMTextEmbeddings(config)
        self.layers = nn.ModuleList([XLMRobertaLayer(config) for _ in range(config.num_text_layers)])

    def forward(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
    ) -> BaseModelOutput:
        hidden_states = self.embeddings(input_ids, position_ids=position_ids)
        mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, mask)
        return BaseModelOutput(last_hidden_state=hidden_states)


class CCLMFusionEncoder(nn.Module):
    """The upper `num_fusion_layers` layers: text states attend to themselves and to the other view."""

    def __init__(self, config: CCLMTextConfig):
        super().__init__()
        self.config = config
        self.layers = nn.ModuleList([CCLMFusionLayer(config) for _ in range(config.num_fusion_layers)])

    def forward(
        self,
        hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_key_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
    ) -> BaseModelOutput:
        self_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        # the mask only needs the view's batch size, length and dtype, which a key tensor `[N, heads, Lv, d]` has too
        view = encoder_hidden_states
        if cross_attention_key_values is not None:
            view = cross_attention_key_values[0][0][:, 0]
        cross_mask = None
        if view is not None:
            cross_mask = create_bidirectional_mask(
                config=self.config,
                inputs_embeds=hidden_states,
                attention_mask=encoder_attention_mask,
                encoder_hidden_states=view,
            )
        key_values = cross_attention_key_values or (None,) * len(self.layers)
        for layer, key_value in zip(self.layers, key_values, strict=True):
            hidden_states = layer(hidden_states, self_mask, encoder_hidden_states, cross_mask, key_value)
        return BaseModelOutput(last_hidden_state=hidden_states)


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


# Every model class lives in this file, which `save_pretrained` copies next to the weights. Listing them all lets
# any of these Auto classes load a saved folder with `trust_remote_code=True`, whichever head saved it.
_REMOTE_CODE_AUTO_MAP = {
    "AutoModel": "modeling_cclm.CCLMModel",
    "AutoModelForPreTraining": "modeling_cclm.CCLMForPreTraining",
    "AutoModelForSequenceClassification": "modeling_cclm.CCLMForSequenceClassification",
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

    def save_pretrained(self, save_directory: str | os.PathLike, *args, **kwargs) -> None:
        if self._auto_class is not None:
            self.config.auto_map = {**(getattr(self.config, "auto_map", None) or {}), **_REMOTE_CODE_AUTO_MAP}
        super().save_pretrained(save_directory, *args, **kwargs)

    def get_input_embeddings(self) -> nn.Embedding:
        return self.base_model.text_model.embeddings.word_embeddings

    def set_input_embeddings(self, value: nn.Embedding) -> None:
        self.base_model.text_model.embeddings.word_embeddings = value

    def enable_input_require_grads(self) -> None:
        """Make the word embeddings' output require grad (checkpointing with frozen embeddings, adapters).

        The generic version also hooks the nested Swin's patch embedding, whose output is a tuple.
        """

        def make_output_require_grad(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            output.requires_grad_(True)

        self._require_grads_hooks = [self.get_input_embeddings().register_forward_hook(make_output_require_grad)]

    def _init_weights(self, module: nn.Module) -> None:
        super()._init_weights(module)
        if isinstance(module, CCLMModel):
            init.constant_(module.temperature, self.config.temperature_init_value)
        elif isinstance(module, SwinRelativePositionBias):
            init.zeros_(module.relative_position_bias_table)
            init.copy_(module.relative_position_index, module._create_relative_position_index().view(-1))
        elif isinstance(module, SwinEmbeddings):
            if module.mask_token is not None:
                init.zeros_(module.mask_token)
            if module.position_embeddings is not None:
                init.zeros_(module.position_embeddings)


class CCLMModel(CCLMPreTrainedModel):
    """CCLM's encoders and contrastive projections, shared by every task head.

    - `get_image_features`: Swin tokens with their mean prepended, and the projected pooled token;
    - `get_text_features`: the text-only layers' states, and the projected `<s>` state;
    - `fuse_views`: the fusion layers run on text states against another view (image tokens, or the text-only
      states of another sentence).
    """

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        # The text stack is built from plain modules, which read the attention implementation from the text config;
        # transformers only resolves it on the top-level config and on sub-configs owned by a PreTrainedModel.
        config.text_config._attn_implementation = config._attn_implementation
        self.vision_model = SwinModel(config.vision_config, add_pooling_layer=False)
        self.text_model = CCLMTextEncoder(config.text_config)
        self.fusion_model = CCLMFusionEncoder(config.text_config)
        self.vision_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim)
        self.temperature = nn.Parameter(torch.tensor(config.temperature_init_value))
        self.post_init()

    def get_image_features(self, pixel_values: torch.FloatTensor) -> BaseModelOutputWithPooling:
        """
        Returns:
            `last_hidden_state` `[B, 1 + P, vision_width]`: the mean of the last-stage Swin tokens (after the final
            LayerNorm) followed by the `P` tokens; `pooler_output` `[B, projection_dim]`: the projected mean token
            (not normalised).
        """
        patch_tokens = self.vision_model(pixel_values=pixel_values).last_hidden_state
        image_tokens = torch.cat([patch_tokens.mean(dim=1, keepdim=True), patch_tokens], dim=1)
        return BaseModelOutputWithPooling(
            last_hidden_state=image_tokens, pooler_output=self.vision_projection(image_tokens[:, 0])
        )

    def get_text_features(
        self,
        input_ids: torch.LongTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
    ) -> BaseModelOutputWithPooling:
        """
        Returns:
            `last_hidden_state` `[B, L, hidden]`: the states after the text-only layers; `pooler_output`
            `[B, projection_dim]`: the projected `<s>` state (not normalised).
        """
        text_states = self.text_model(input_ids, attention_mask, position_ids).last_hidden_state
        return BaseModelOutputWithPooling(
            last_hidden_state=text_states, pooler_output=self.text_projection(text_states[:, 0])
        )

    def precompute_cross_attention(
        self, encoder_hidden_states: torch.Tensor
    ) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """The cross-attention `(key, value)` projections of a view, one pair per fusion layer.

        Each is `[N, num_heads, Lv, head_dim]`. Index them to the text batch and pass them as
        `fuse_views(..., cross_attention_key_values=...)` to fuse several texts with one view without projecting it
        again for each text.
        """
        return tuple(layer.project_cross_attention(encoder_hidden_states) for layer in self.fusion_model.layers)

    def fuse_views(
        self,
        text_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor | None = None,
        encoder_attention_mask: torch.Tensor | None = None,
        cross_attention_key_values: tuple[tuple[torch.Tensor, torch.Tensor], ...] | None = None,
    ) -> BaseModelOutput:
        """Run the fusion layers.

        Args:
            text_hidden_states: `[B, L, hidden]` states of the text-only layers (`get_text_features`).
            attention_mask: `[B, L]` padding mask of that text (1 = token).
            encoder_hidden_states: `[B, N, cross_attention_hidden_size]` the other view: image tokens from
                `get_image_features`, or another sentence's text-only states. `None` skips the cross-attention (the
                layers then continue the text encoder, as for translation-LM batches).
            encoder_attention_mask: `[B, N]` mask of the other view; `None` attends to every position.
            cross_attention_key_values: the view's projections from `precompute_cross_attention`, row `b` of every
                key/value belonging to text `b`; used instead of projecting `encoder_hidden_states` (which may then
                be `None`), with the same result.

        Returns:
            `last_hidden_state` `[B, L, hidden]`; position 0 is the fused `<s>` state the heads read.
        """
        return self.fusion_model(
            text_hidden_states,
            attention_mask,
            encoder_hidden_states,
            encoder_attention_mask,
            cross_attention_key_values,
        )

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        return_loss: bool = False,
        image_ids: torch.LongTensor | None = None,
    ) -> CCLMOutput:
        r"""
        image_ids (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            With `return_loss`, pairs sharing an id are all positives (several captions of one image).
        """
        vision_outputs = self.get_image_features(pixel_values)
        text_outputs = self.get_text_features(input_ids, attention_mask, position_ids)
        image_embeds = F.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        logits_per_image = image_embeds @ text_embeds.t() / self.temperature
        loss = contrastive_loss(image_embeds, text_embeds, self.temperature, image_ids) if return_loss else None
        return CCLMOutput(
            loss=loss,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
            text_model_output=text_outputs,
            vision_model_output=vision_outputs,
        )


def select_negative_pairs(
    image_states: torch.Tensor,
    image_mask: torch.Tensor | None,
    text_states: torch.Tensor,
    text_mask: torch.Tensor,
    negative_image_indices: torch.LongTensor,
    negative_text_indices: torch.LongTensor,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """The `2B` negative pairs of the original matching loss, aligned row by row.

    Rows `[0, B)` pair image `negative_image_indices[b]` with text `b`; rows `[B, 2B)` pair image `b` with text
    `negative_text_indices[b]`. Returns `(image_states, image_mask, text_states, text_mask)` of those pairs.
    """
    images = torch.cat([image_states[negative_image_indices], image_states])
    masks = None if image_mask is None else torch.cat([image_mask[negative_image_indices], image_mask])
    texts = torch.cat([text_states, text_states[negative_text_indices]])
    text_masks = torch.cat([text_mask, text_mask[negative_text_indices]])
    return images, masks, texts, text_masks


class CCLMMatchingMixin:
    """Image-text matching with `self.itm_head` on top of `self.cclm` (retrieval and pre-training heads)."""

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

    def get_itm_negative_logits(
        self,
        image_hidden_states: torch.Tensor,
        image_attention_mask: torch.Tensor | None,
        text_hidden_states: torch.Tensor,
        text_attention_mask: torch.Tensor,
        negative_image_indices: torch.LongTensor,
        negative_text_indices: torch.LongTensor,
    ) -> torch.Tensor:
        """Matching logits `[2B, 2]` of the negative pairs described in `select_negative_pairs`."""
        images, image_masks, texts, text_masks = select_negative_pairs(
            image_hidden_states,
            image_attention_mask,
            text_hidden_states,
            text_attention_mask,
            negative_image_indices,
            negative_text_indices,
        )
        return self.get_itm_logits(images, texts, text_masks, image_masks)


class CCLMForImageTextRetrieval(CCLMMatchingMixin, CCLMPreTrainedModel):
    """CCLM with the image-text matching head: contrastive ranking, ITM re-ranking and the retrieval loss."""

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.cclm = CCLMModel(config)
        self.itm_head = CCLMMLPHead(config.text_config.hidden_size, 2)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        use_itm_head: bool = False,
        return_loss: bool = False,
        image_ids: torch.LongTensor | None = None,
        negative_image_indices: torch.LongTensor | None = None,
        negative_text_indices: torch.LongTensor | None = None,
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
        vision_outputs = self.cclm.get_image_features(pixel_values)
        text_outputs = self.cclm.get_text_features(input_ids, attention_mask)
        image_embeds = F.normalize(vision_outputs.pooler_output, dim=-1)
        text_embeds = F.normalize(text_outputs.pooler_output, dim=-1)
        temperature = self.cclm.temperature
        logits_per_image = image_embeds @ text_embeds.t() / temperature
        image_tokens = vision_outputs.last_hidden_state
        text_states = text_outputs.last_hidden_state

        itm_logits = None
        if use_itm_head or return_loss:
            if image_tokens.shape[0] != text_states.shape[0]:
                raise ValueError(
                    f"use_itm_head and return_loss score aligned (image b, text b) pairs, but got "
                    f"{image_tokens.shape[0]} images and {text_states.shape[0]} texts"
                )
            itm_logits = self.get_itm_logits(image_tokens, text_states, attention_mask)

        loss = itc_loss = itm_loss = itm_negative_logits = None
        if return_loss:
            if (negative_image_indices is None) != (negative_text_indices is None):
                raise ValueError("Pass both negative_image_indices and negative_text_indices, or neither.")
            if negative_image_indices is None:
                negative_image_indices, negative_text_indices = sample_hard_negatives(
                    image_embeds, text_embeds, temperature, image_ids
                )
            itc_loss = contrastive_loss(image_embeds, text_embeds, temperature, image_ids)
            text_mask = attention_mask if attention_mask is not None else torch.ones_like(input_ids)
            itm_negative_logits = self.get_itm_negative_logits(
                image_tokens, None, text_states, text_mask, negative_image_indices, negative_text_indices
            )
            itm_loss = matching_loss(itm_logits, itm_negative_logits)
            loss = itc_loss + itm_loss

        return CCLMImageTextRetrievalOutput(
            loss=loss,
            itc_loss=itc_loss,
            itm_loss=itm_loss,
            itm_logits=itm_logits,
            itm_negative_logits=itm_negative_logits,
            negative_image_indices=negative_image_indices,
            negative_text_indices=negative_text_indices,
            logits_per_image=logits_per_image,
            logits_per_text=logits_per_image.t(),
            text_embeds=text_embeds,
            image_embeds=image_embeds,
        )


class CCLMForSequenceClassification(CCLMPreTrainedModel):
    """CCLM with an MLP on the fused `<s>` state of (image, text) pairs, e.g. XVNLI (image premise, hypothesis)."""

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.cclm = CCLMModel(config)
        self.classifier = CCLMMLPHead(config.text_config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        labels: torch.LongTensor | None = None,
    ) -> SequenceClassifierOutput:
        r"""
        labels (`torch.LongTensor` of shape `(batch_size,)`, *optional*):
            Class indices in `[0, num_labels)`; the loss follows `config.problem_type` as in transformers' heads.
        """
        image_tokens = self.cclm.get_image_features(pixel_values).last_hidden_state
        text_states = self.cclm.get_text_features(input_ids, attention_mask).last_hidden_state
        fused = self.cclm.fuse_views(text_states, attention_mask, image_tokens).last_hidden_state
        logits = self.classifier(fused[:, 0])
        loss = None
        if labels is not None:
            loss = self.loss_function(labels=labels, pooled_logits=logits, config=self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


class CCLMForPreTraining(CCLMMatchingMixin, CCLMPreTrainedModel):
    """CCLM with the pre-training heads (ITM, masked LM tied to the word embeddings, box regression).

    `forward` computes the losses of one batch of one of the three streams of the original, chosen by the inputs:

    - image-caption batch: `pixel_values` + caption (`input_ids`, masked copy): ITC + ITM + conditional MLM; with a
      second caption of the same images (`input_ids_2`) also TTC and an ITC averaged over both captions;
    - region batch: additionally `image_index`, `region_mask`, `target_boxes`, `is_whole_image`: the same losses on
      the region-pooled image tokens with the region as cross-attention mask, plus box L1 + GIoU;
    - parallel-text batch: no `pixel_values`; sentence (`input_ids`) and translation (`input_ids_2`): TTC + TTM +
      conditional MLM (the masked sentence attends to the translation's text-only states); with
      `masked_attention_mask` the masked input is the translation-LM concatenation `<s> A </s> B </s>` instead, and
      the losses are TTC + MLM (no TTM), as with the original's `use_tlm`.
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

    def predict_boxes(
        self, image_hidden_states: torch.Tensor, text_hidden_states: torch.Tensor, text_attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """`(cx, cy, w, h)` in `[0, 1]` of the region each text describes, from the text fused with the whole image."""
        fused = self.cclm.fuse_views(text_hidden_states, text_attention_mask, image_hidden_states)
        return self.bbox_head(fused.last_hidden_state[:, 0]).sigmoid()

    def get_region_features(
        self, pixel_values: torch.FloatTensor, image_index: torch.LongTensor, region_mask: torch.Tensor
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
        image_tokens = self.cclm.get_image_features(pixel_values).last_hidden_state[image_index]
        patch_weights = region_mask[:, 1:].unsqueeze(-1).to(image_tokens.dtype)
        region_pooled = (patch_weights * image_tokens[:, 1:]).sum(dim=1) / patch_weights.sum(dim=1)
        region_tokens = torch.cat([region_pooled.unsqueeze(1), image_tokens[:, 1:]], dim=1)
        return region_tokens, image_tokens

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
        """
        # The original clamps the temperature in place at every step. Through `.data`, so that the parameter's
        # version counter does not move: a step that sums the losses of several forwards (summed schedule) keeps the
        # earlier forwards' graphs valid, and all of them see the same clamped value.
        self.cclm.temperature.data.clamp_(0.001, 0.5)
        if (negative_image_indices is None) != (negative_text_indices is None):
            raise ValueError("Pass both negative_image_indices and negative_text_indices, or neither.")
        if pixel_values is None:
            if input_ids_2 is None:
                raise ValueError("A batch without pixel_values is a parallel-text batch and needs input_ids_2.")
            return self._parallel_text_losses(
                input_ids=input_ids,
                attention_mask=attention_mask,
                input_ids_2=input_ids_2,
                attention_mask_2=attention_mask_2,
                masked_input_ids=masked_input_ids,
                masked_positions=masked_positions,
                masked_labels=masked_labels,
                masked_attention_mask=masked_attention_mask,
                negative_first_indices=negative_image_indices,
                negative_second_indices=negative_text_indices,
            )
        return self._image_text_losses(
            input_ids=input_ids,
            attention_mask=attention_mask,
            pixel_values=pixel_values,
            masked_input_ids=masked_input_ids,
            masked_positions=masked_positions,
            masked_labels=masked_labels,
            image_index=image_index,
            region_mask=region_mask,
            target_boxes=target_boxes,
            is_whole_image=is_whole_image,
            input_ids_2=input_ids_2,
            attention_mask_2=attention_mask_2,
            negative_image_indices=negative_image_indices,
            negative_text_indices=negative_text_indices,
        )

    def _matching(self, view_tokens, view_mask, view_embeds, text_states, text_mask, text_embeds, negatives):
        """Matching logits of the `B` positive and `2B` hard-negative pairs, and the negatives used."""
        negative_views, negative_texts = negatives
        if negative_views is None:
            negative_views, negative_texts = sample_hard_negatives(view_embeds, text_embeds, self.cclm.temperature)
        positive_logits = self.get_itm_logits(view_tokens, text_states, text_mask, view_mask)
        negative_logits = self.get_itm_negative_logits(
            view_tokens, view_mask, text_states, text_mask, negative_views, negative_texts
        )
        return positive_logits, negative_logits, negative_views, negative_texts

    def _image_text_losses(
        self,
        *,
        input_ids,
        attention_mask,
        pixel_values,
        masked_input_ids,
        masked_positions,
        masked_labels,
        image_index,
        region_mask,
        target_boxes,
        is_whole_image,
        input_ids_2,
        attention_mask_2,
        negative_image_indices,
        negative_text_indices,
    ) -> CCLMForPreTrainingOutput:
        temperature = self.cclm.temperature
        is_region_batch = region_mask is not None
        if is_region_batch:
            image_tokens, whole_image_tokens = self.get_region_features(pixel_values, image_index, region_mask)
        else:
            image_tokens = self.cclm.get_image_features(pixel_values).last_hidden_state
        text_states = self.cclm.get_text_features(input_ids, attention_mask).last_hidden_state
        image_embeds = F.normalize(self.cclm.vision_projection(image_tokens[:, 0]), dim=-1)
        text_embeds = F.normalize(self.cclm.text_projection(text_states[:, 0]), dim=-1)

        itc_loss = contrastive_loss(image_embeds, text_embeds, temperature)
        ttc_loss = None
        if input_ids_2 is not None:
            text_states_2 = self.cclm.get_text_features(input_ids_2, attention_mask_2).last_hidden_state
            text_embeds_2 = F.normalize(self.cclm.text_projection(text_states_2[:, 0]), dim=-1)
            itc_loss = (itc_loss + contrastive_loss(image_embeds, text_embeds_2, temperature)) / 2
            ttc_loss = contrastive_loss(text_embeds, text_embeds_2, temperature)

        positive_logits, negative_logits, negative_images, negative_texts = self._matching(
            image_tokens,
            region_mask,
            image_embeds,
            text_states,
            attention_mask,
            text_embeds,
            (negative_image_indices, negative_text_indices),
        )
        itm_loss = matching_loss(positive_logits, negative_logits)

        mlm_loss = mlm_logits = None
        if masked_input_ids is not None:
            mlm_logits = self.get_mlm_logits(
                masked_input_ids, attention_mask, masked_positions, image_tokens, region_mask
            )
            mlm_loss = masked_lm_loss(mlm_logits, masked_labels)

        bbox_loss = giou_loss = predicted_boxes = None
        if is_region_batch and target_boxes is not None:
            predicted_boxes = self.predict_boxes(whole_image_tokens, text_states, attention_mask)
            bbox_loss, giou_loss = box_losses(predicted_boxes, target_boxes, is_whole_image)

        return self._output(
            itc_loss=itc_loss,
            itm_loss=itm_loss,
            mlm_loss=mlm_loss,
            ttc_loss=ttc_loss,
            bbox_loss=bbox_loss,
            giou_loss=giou_loss,
            mlm_logits=mlm_logits,
            itm_logits=torch.cat([positive_logits, negative_logits]),
            predicted_boxes=predicted_boxes,
            negative_image_indices=negative_images,
            negative_text_indices=negative_texts,
        )

    def _parallel_text_losses(
        self,
        *,
        input_ids,
        attention_mask,
        input_ids_2,
        attention_mask_2,
        masked_input_ids,
        masked_positions,
        masked_labels,
        masked_attention_mask,
        negative_first_indices,
        negative_second_indices,
    ) -> CCLMForPreTrainingOutput:
        text_config = self.config.text_config
        if masked_attention_mask is None and text_config.hidden_size != text_config.cross_attention_hidden_size:
            raise ValueError(
                f"parallel-text batches fuse one sentence into the other, which needs the text width "
                f"({text_config.hidden_size}) to equal the cross-attention input width "
                f"({text_config.cross_attention_hidden_size}, the vision width); CCLM uses 1024 for both"
            )
        states = self.cclm.get_text_features(input_ids, attention_mask).last_hidden_state
        states_2 = self.cclm.get_text_features(input_ids_2, attention_mask_2).last_hidden_state
        embeds = F.normalize(self.cclm.text_projection(states[:, 0]), dim=-1)
        embeds_2 = F.normalize(self.cclm.text_projection(states_2[:, 0]), dim=-1)
        ttc_loss = contrastive_loss(embeds, embeds_2, self.cclm.temperature)

        if masked_attention_mask is not None:  # translation LM: one sequence, no other view, no matching
            mlm_logits = self.get_mlm_logits(masked_input_ids, masked_attention_mask, masked_positions, None)
            return self._output(
                ttc_loss=ttc_loss, mlm_loss=masked_lm_loss(mlm_logits, masked_labels), mlm_logits=mlm_logits
            )

        # the first sentence plays the image's role: its states are the keys/values of the fusion layers
        positive_logits, negative_logits, negative_first, negative_second = self._matching(
            states,
            attention_mask,
            embeds,
            states_2,
            attention_mask_2,
            embeds_2,
            (negative_first_indices, negative_second_indices),
        )
        mlm_loss = mlm_logits = None
        if masked_input_ids is not None:
            mlm_logits = self.get_mlm_logits(
                masked_input_ids, attention_mask, masked_positions, states_2, attention_mask_2
            )
            mlm_loss = masked_lm_loss(mlm_logits, masked_labels)
        return self._output(
            ttc_loss=ttc_loss,
            ttm_loss=matching_loss(positive_logits, negative_logits),
            mlm_loss=mlm_loss,
            mlm_logits=mlm_logits,
            itm_logits=torch.cat([positive_logits, negative_logits]),
            negative_image_indices=negative_first,
            negative_text_indices=negative_second,
        )

    @staticmethod
    def _output(**fields) -> CCLMForPreTrainingOutput:
        losses = [value for name, value in fields.items() if name.endswith("_loss") and value is not None]
        return CCLMForPreTrainingOutput(loss=torch.stack(losses).sum(), **fields)


__all__ = [
    "CCLMForImageTextRetrieval",
    "CCLMForPreTraining",
    "CCLMForPreTrainingOutput",
    "CCLMForSequenceClassification",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
]
