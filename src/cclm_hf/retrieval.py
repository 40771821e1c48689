"""Image-text retrieval with the original CCLM protocol: contrastive top-k, then re-ranking with the matching head.

1. every image and every text is encoded once; their cosine similarities rank all candidates;
2. for each query only the top-`k` candidates are fused and scored with the ITM logit of class "match";
   every other candidate gets -100 (the original's fill value);
3. recalls: an image query is answered when any of its captions is within the top `n` (`txt_r@n`), a caption query
   when its image is (`img_r@n`); `r_mean` averages the six recalls at 1, 5 and 10.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .modeling_cclm import CCLMForImageTextRetrieval, CCLMModel


@dataclass
class EncodedImages:
    """`tokens` `[N, 1 + P, D]` for the fusion layers and L2-normalised `embeds` `[N, E]` for ranking."""

    tokens: torch.Tensor
    embeds: torch.Tensor


@dataclass
class EncodedTexts:
    """Text-only `states` `[N, L, H]` with their `attention_mask`, and L2-normalised `embeds` `[N, E]`."""

    states: torch.Tensor
    attention_mask: torch.Tensor
    embeds: torch.Tensor


@torch.no_grad()
def encode_images(model: CCLMModel, pixel_values: torch.Tensor, batch_size: int = 64) -> EncodedImages:
    tokens, embeds = [], []
    for start in tqdm(range(0, len(pixel_values), batch_size), desc="images", leave=False):
        batch = pixel_values[start : start + batch_size].to(model.device, model.dtype)
        output = model.get_image_features(batch)
        tokens.append(output.last_hidden_state)
        embeds.append(F.normalize(output.pooler_output, dim=-1))
    return EncodedImages(torch.cat(tokens), torch.cat(embeds))


@torch.no_grad()
def encode_texts(
    model: CCLMModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, batch_size: int = 256
) -> EncodedTexts:
    states, embeds = [], []
    for start in tqdm(range(0, len(input_ids), batch_size), desc="texts", leave=False):
        ids = input_ids[start : start + batch_size].to(model.device)
        mask = attention_mask[start : start + batch_size].to(model.device)
        output = model.get_text_features(ids, mask)
        states.append(output.last_hidden_state)
        embeds.append(F.normalize(output.pooler_output, dim=-1))
    return EncodedTexts(torch.cat(states), attention_mask.to(model.device), torch.cat(embeds))


@torch.no_grad()
def itm_rerank(
    model: CCLMForImageTextRetrieval,
    images: EncodedImages,
    texts: EncodedTexts,
    k: int,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-score the top-`k` contrastive candidates of every query with the matching head.

    Returns:
        `(image_to_text, text_to_image)` score matrices `[N_images, N_texts]` and `[N_texts, N_images]`: the
        class-1 ITM logit for the top-`k` candidates of each row, -100 elsewhere.
    """
    similarity = images.embeds @ texts.embeds.t()
    image_to_text = _rerank_rows(model, similarity, images, texts, k, batch_size, queries_are_images=True)
    text_to_image = _rerank_rows(model, similarity.t(), images, texts, k, batch_size, queries_are_images=False)
    return image_to_text, text_to_image


def _rerank_rows(model, similarity, images, texts, k, batch_size, queries_are_images):
    k = min(k, similarity.shape[1])
    candidates = similarity.topk(k, dim=1).indices  # [Q, k]
    queries = torch.arange(similarity.shape[0], device=similarity.device).repeat_interleave(k)
    candidates = candidates.flatten()
    image_index, text_index = (queries, candidates) if queries_are_images else (candidates, queries)
    logits = []
    for start in tqdm(range(0, len(queries), batch_size), desc="ITM re-ranking", leave=False):
        images_batch = image_index[start : start + batch_size]
        texts_batch = text_index[start : start + batch_size]
        logits.append(
            model.get_itm_logits(
                images.tokens[images_batch], texts.states[texts_batch], texts.attention_mask[texts_batch]
            )[:, 1]
        )
    scores = torch.full_like(similarity, -100.0)
    scores[queries, candidates] = torch.cat(logits).to(scores.dtype)
    return scores


def retrieval_recalls(
    image_to_text: torch.Tensor, text_to_image: torch.Tensor, text_image_ids: torch.Tensor
) -> dict[str, float]:
    """Recall@1/5/10 both ways, as the original `itm_eval`.

    Args:
        image_to_text: `[N_images, N_texts]` scores of every caption for every image query.
        text_to_image: `[N_texts, N_images]` scores of every image for every caption query.
        text_image_ids: `[N_texts]` index of the image each caption describes.

    Returns:
        `txt_r1`, `txt_r5`, `txt_r10` (image queries), `img_r1`, ... (caption queries), `txt_r_mean`,
        `img_r_mean`, `r_mean`, as fractions in [0, 1].
    """
    text_image_ids = text_image_ids.to(image_to_text.device)
    # rank of the best ground-truth caption of each image
    order = image_to_text.argsort(dim=1, descending=True)
    is_caption_of_query = text_image_ids[order] == torch.arange(len(order), device=order.device)[:, None]
    image_query_rank = is_caption_of_query.float().argmax(dim=1)
    # rank of the ground-truth image of each caption
    order = text_to_image.argsort(dim=1, descending=True)
    text_query_rank = (order == text_image_ids[:, None]).float().argmax(dim=1)

    metrics = {}
    for prefix, ranks in (("txt", image_query_rank), ("img", text_query_rank)):
        for n in (1, 5, 10):
            metrics[f"{prefix}_r{n}"] = (ranks < n).float().mean().item()
        metrics[f"{prefix}_r_mean"] = sum(metrics[f"{prefix}_r{n}"] for n in (1, 5, 10)) / 3
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics
