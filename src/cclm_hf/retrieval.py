"""Image-text retrieval with the original CCLM protocol: contrastive top-k, then re-ranking with the matching head.

1. every image and every text is encoded once; their cosine similarities rank all candidates;
2. for each query only the top-`k` candidates are fused and scored with the ITM logit of class "match";
   every other candidate gets -100 (the original's fill value);
3. recalls (`cclm_hf.evaluation.retrieval_metrics`): an image query is answered when any of its captions is within the
   top `n` (`txt_r@n`), a caption query when its image is (`img_r@n`); `r_mean` averages the six recalls.
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
def encode_images(
    model: CCLMModel, pixel_values: torch.Tensor, batch_size: int = 64, show_progress: bool = True
) -> EncodedImages:
    tokens, embeds = [], []
    batches = range(0, len(pixel_values), batch_size)
    for start in tqdm(batches, desc="images", leave=False, disable=not show_progress):
        batch = pixel_values[start : start + batch_size].to(model.device, model.dtype)
        output = model.get_image_features(batch)
        tokens.append(output.last_hidden_state)
        embeds.append(F.normalize(output.pooler_output, dim=-1))
    return EncodedImages(torch.cat(tokens), torch.cat(embeds))


@torch.no_grad()
def encode_texts(
    model: CCLMModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    batch_size: int = 256,
    show_progress: bool = True,
) -> EncodedTexts:
    states, embeds = [], []
    batches = range(0, len(input_ids), batch_size)
    for start in tqdm(batches, desc="texts", leave=False, disable=not show_progress):
        ids = input_ids[start : start + batch_size].to(model.device)
        mask = attention_mask[start : start + batch_size].to(model.device)
        output = model.get_text_features(ids, mask)
        states.append(output.last_hidden_state)
        embeds.append(F.normalize(output.pooler_output, dim=-1))
    return EncodedTexts(torch.cat(states), attention_mask.to(model.device), torch.cat(embeds))


# Each chunk is fused in this many groups of texts of similar length, each group trimmed to its longest text: with
# captions padded to a fixed length (CCLM pads to 40 tokens), most of a chunk's columns are padding otherwise.
_LENGTH_GROUPS = 4


@torch.no_grad()
def itm_scores(
    model: CCLMForImageTextRetrieval,
    images: EncodedImages,
    texts: EncodedTexts,
    image_index: torch.LongTensor,
    text_index: torch.LongTensor,
    chunk_size: int = 128,
) -> torch.Tensor:
    """Class-1 ITM logits `[P]` of the pairs (image `image_index[p]`, text `text_index[p]`).

    The pairs are sorted by image and gathered in chunks of `chunk_size`, which bounds the memory. Each chunk
    projects the cross-attention keys/values of its distinct images once and reuses them for every text paired with
    them; its texts are fused in groups of similar length without the padding columns none of them uses.
    `images.tokens`, `texts.states` and `texts.attention_mask` may be tensors or memory-mapped row stores (anything
    that returns the rows for `store[LongTensor]`); only the rows of one chunk are read at a time.
    """
    device, dtype = model.device, model.dtype
    image_index, text_index = image_index.flatten(), text_index.flatten()
    order = torch.argsort(image_index, stable=True)
    scores = torch.empty(len(order), dtype=torch.float32, device=order.device)
    for start in tqdm(range(0, len(order), chunk_size), desc="ITM re-ranking", leave=False):
        pairs = order[start : start + chunk_size]
        chunk_images, image_of_pair = torch.unique_consecutive(image_index[pairs], return_inverse=True)
        image_key_values = model.cclm.precompute_cross_attention(_take(images.tokens, chunk_images).to(device, dtype))
        image_of_pair = image_of_pair.to(device)
        states = _take(texts.states, text_index[pairs]).to(device, dtype)
        mask = _take(texts.attention_mask, text_index[pairs]).to(device)
        lengths = mask.shape[1] - mask.flip(1).int().argmax(dim=1)  # up to the last token, whichever the padding side
        for group in lengths.argsort().chunk(_LENGTH_GROUPS):
            length = int(lengths[group].max())
            group_images = image_of_pair[group]
            key_values = tuple((key[group_images], value[group_images]) for key, value in image_key_values)
            fused = model.cclm.fuse_views(
                states[group, :length], mask[group, :length], cross_attention_key_values=key_values
            )
            logits = model.itm_head(fused.last_hidden_state[:, 0])[:, 1]
            scores[pairs[group.to(pairs.device)]] = logits.float().to(scores.device)
    return scores


def _take(rows_store, rows: torch.LongTensor) -> torch.Tensor:
    if isinstance(rows_store, torch.Tensor):
        return rows_store[rows.to(rows_store.device)]
    return rows_store[rows.cpu()]


@torch.no_grad()
def itm_rerank(
    model: CCLMForImageTextRetrieval,
    images: EncodedImages,
    texts: EncodedTexts,
    k: int,
    batch_size: int = 128,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Re-score the top-`k` contrastive candidates of every query with the matching head.

    A pair that is a candidate both ways (image -> text and text -> image) is fused once; see `itm_scores` for the
    rest of the work that is shared. `batch_size` is the number of pairs fused at once.

    Returns:
        `(image_to_text, text_to_image)` score matrices `[N_images, N_texts]` and `[N_texts, N_images]`: the
        class-1 ITM logit for the top-`k` candidates of each row, -100 elsewhere.
    """
    similarity = images.embeds @ texts.embeds.t()
    num_images, num_texts = similarity.shape
    image_rows = torch.arange(num_images, device=similarity.device)[:, None]
    text_rows = torch.arange(num_texts, device=similarity.device)[:, None]
    texts_of_image = similarity.topk(min(k, num_texts), dim=1).indices  # [N_images, k]
    images_of_text = similarity.t().topk(min(k, num_images), dim=1).indices  # [N_texts, k]
    # each (image, text) pair as one id, image-major, so that a pair found both ways is fused once
    candidates = torch.cat(
        [(image_rows * num_texts + texts_of_image).flatten(), (images_of_text * num_texts + text_rows).flatten()]
    )
    pairs, pair_of_candidate = torch.unique(candidates, return_inverse=True)
    pair_scores = itm_scores(model, images, texts, pairs // num_texts, pairs % num_texts, batch_size)
    candidate_scores = pair_scores[pair_of_candidate].to(similarity.dtype)

    image_to_text = torch.full_like(similarity, -100.0)
    image_to_text[image_rows, texts_of_image] = candidate_scores[: texts_of_image.numel()].view_as(texts_of_image)
    text_to_image = torch.full((num_texts, num_images), -100.0, dtype=similarity.dtype, device=similarity.device)
    text_to_image[text_rows, images_of_text] = candidate_scores[texts_of_image.numel() :].view_as(images_of_text)
    return image_to_text, text_to_image
