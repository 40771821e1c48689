"""PyTorch CCLM: a Swin image encoder and an XLM-R text stack whose upper layers cross-attend to another view."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel, SwinModel
from transformers import initialization as init
from transformers.masking_utils import create_bidirectional_mask
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.models.swin.modeling_swin import SwinEmbeddings, SwinRelativePositionBias
from transformers.models.xlm_roberta.modeling_xlm_roberta import (
    XLMRobertaAttention,
    XLMRobertaIntermediate,
    XLMRobertaLayer,
    XLMRobertaOutput,
)
from transformers.utils import ModelOutput, logging

from .configuration_cclm import CCLMConfig, CCLMTextConfig
from .losses import contrastive_loss, matching_loss, sample_hard_negatives


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
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        hidden_states, _ = self.attention(hidden_states, attention_mask)
        hidden_states, _ = self.crossattention(
            hidden_states,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
        )
        return self.output(self.intermediate(hidden_states), hidden_states)


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
        mask = create_bidirectional_mask(config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask)
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
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        self_mask = create_bidirectional_mask(
            config=self.config, inputs_embeds=hidden_states, attention_mask=attention_mask
        )
        cross_mask = create_bidirectional_mask(
            config=self.config,
            inputs_embeds=hidden_states,
            attention_mask=encoder_attention_mask,
            encoder_hidden_states=encoder_hidden_states,
        )
        for layer in self.layers:
            hidden_states = layer(hidden_states, self_mask, encoder_hidden_states, cross_mask)
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

    def fuse_views(
        self,
        text_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None,
        encoder_hidden_states: torch.Tensor,
        encoder_attention_mask: torch.Tensor | None = None,
    ) -> BaseModelOutput:
        """Run the fusion layers.

        Args:
            text_hidden_states: `[B, L, hidden]` states of the text-only layers (`get_text_features`).
            attention_mask: `[B, L]` padding mask of that text (1 = token).
            encoder_hidden_states: `[B, N, cross_attention_hidden_size]` the other view: image tokens from
                `get_image_features`, or another sentence's text-only states.
            encoder_attention_mask: `[B, N]` mask of the other view; `None` attends to every position.

        Returns:
            `last_hidden_state` `[B, L, hidden]`; position 0 is the fused `<s>` state the heads read.
        """
        return self.fusion_model(text_hidden_states, attention_mask, encoder_hidden_states, encoder_attention_mask)

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


class CCLMForImageTextRetrieval(CCLMPreTrainedModel):
    """CCLM with the image-text matching head: contrastive ranking, ITM re-ranking and the retrieval loss."""

    def __init__(self, config: CCLMConfig):
        super().__init__(config)
        self.cclm = CCLMModel(config)
        self.itm_head = CCLMMLPHead(config.text_config.hidden_size, 2)
        self.post_init()

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
        fused = self.cclm.fuse_views(text_hidden_states, text_attention_mask, image_hidden_states, image_attention_mask)
        return self.itm_head(fused.last_hidden_state[:, 0])

    def forward(
        self,
        input_ids: torch.LongTensor,
        pixel_values: torch.FloatTensor,
        attention_mask: torch.Tensor | None = None,
        use_itm_head: bool = True,
        return_loss: bool = False,
        image_ids: torch.LongTensor | None = None,
        negative_image_indices: torch.LongTensor | None = None,
        negative_text_indices: torch.LongTensor | None = None,
    ) -> CCLMImageTextRetrievalOutput:
        r"""
        use_itm_head (`bool`, *optional*, defaults to `True`):
            Score the given pairs (image `b`, text `b`) with the matching head (`itm_logits`).
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
            itm_negative_logits = self.get_itm_logits(
                torch.cat([image_tokens[negative_image_indices], image_tokens]),
                torch.cat([text_states, text_states[negative_text_indices]]),
                torch.cat([text_mask, text_mask[negative_text_indices]]),
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


__all__ = [
    "CCLMForImageTextRetrieval",
    "CCLMForSequenceClassification",
    "CCLMImageTextRetrievalOutput",
    "CCLMModel",
    "CCLMOutput",
    "CCLMPreTrainedModel",
]
