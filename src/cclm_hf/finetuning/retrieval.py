"""Retrieval evaluation of a gallery with the original two-stage protocol, on one or many processes.

Per gallery (`cclm_hf.retrieval`): every image and caption is encoded once (images streamed in chunks from a
DataLoader, so the pixels of a large gallery never sit in memory together), the top-`k` contrastive candidates of
every query are re-ranked by `itm_rerank`, and the recalls are computed with the tie rule of
[`~cclm_hf.evaluation.retrieval_metrics`].

With several processes (`accelerate launch`), the galleries (languages) are dealt to the processes and their metrics
gathered, so each gallery, and each of its images and captions, is evaluated exactly once; a single gallery (the dev
set) is evaluated by the main process while the others wait.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

import torch
from accelerate import PartialState
from accelerate.utils import gather_object
from torch.utils.data import DataLoader

from ..data.benchmarks import ImageDataset, RetrievalGallery, tokenize
from ..evaluation import retrieval_metrics
from ..modeling_cclm import CCLMForImageTextRetrieval
from ..retrieval import EncodedImages, encode_images, encode_texts, itm_rerank


logger = logging.getLogger(__name__)

__all__ = ["GalleryEvaluator"]


def _stack_pixels(samples: list[dict]) -> torch.Tensor:
    return torch.stack([sample["pixel_values"] for sample in samples])


class GalleryEvaluator:
    """Evaluates [`RetrievalGallery`]s with a retrieval model.

    Args:
        image_transform: The evaluation transform (`eval_transform(image_size)`).
        tokenizer: The model's tokenizer; captions are truncated to `max_tokens`, as the original's evaluation.
        k: ITM re-ranking candidates per query (`k_test`).
        image_batch_size, text_batch_size, itm_batch_size: Batch sizes of the three stages.
        image_chunk_size: Images decoded and encoded per DataLoader step.
        num_workers: DataLoader workers decoding the images.
    """

    def __init__(
        self,
        image_transform: Callable,
        tokenizer,
        *,
        max_tokens: int,
        k: int,
        image_batch_size: int = 16,
        text_batch_size: int = 64,
        itm_batch_size: int = 128,
        image_chunk_size: int = 256,
        num_workers: int = 0,
    ) -> None:
        self.image_transform = image_transform
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.k = k
        self.image_batch_size = image_batch_size
        self.text_batch_size = text_batch_size
        self.itm_batch_size = itm_batch_size
        self.image_chunk_size = image_chunk_size
        self.num_workers = num_workers

    @torch.no_grad()
    def evaluate_gallery(self, model: CCLMForImageTextRetrieval, gallery: RetrievalGallery) -> dict[str, float]:
        """Recalls of one gallery (see the module)."""
        was_training = model.training
        model.eval()
        images = ImageDataset(gallery.images, gallery.image_sources, self.image_transform)
        loader = DataLoader(
            images,
            batch_size=self.image_chunk_size,
            num_workers=self.num_workers,
            collate_fn=_stack_pixels,
        )
        chunks = [encode_images(model.cclm, pixels, batch_size=self.image_batch_size) for pixels in loader]
        encoded_images = EncodedImages(
            torch.cat([chunk.tokens for chunk in chunks]), torch.cat([chunk.embeds for chunk in chunks])
        )
        text_inputs = tokenize(self.tokenizer, gallery.texts, self.max_tokens)
        encoded_texts = encode_texts(
            model.cclm, text_inputs["input_ids"], text_inputs["attention_mask"], batch_size=self.text_batch_size
        )
        image_to_text, text_to_image = itm_rerank(
            model, encoded_images, encoded_texts, k=self.k, batch_size=self.itm_batch_size
        )
        model.train(was_training)
        return retrieval_metrics(image_to_text, text_to_image, gallery.text_image_index)

    def __call__(
        self, model: CCLMForImageTextRetrieval, galleries: Mapping[str, RetrievalGallery]
    ) -> dict[str, dict[str, float]]:
        """Metrics of every gallery, `{name: metrics}` on every process; galleries are dealt to the processes."""
        state = PartialState()
        names = list(galleries)
        mine = names[state.process_index :: state.num_processes]
        results = {}
        for name in mine:
            gallery = galleries[name]
            logger.info("Evaluating %s: %d images, %d captions", name, len(gallery.images), len(gallery.texts))
            results[name] = self.evaluate_gallery(model, gallery)
        if state.num_processes > 1:
            merged: dict[str, dict[str, float]] = {}
            for part in gather_object([results]):
                merged.update(part)
            results = merged
        return {name: results[name] for name in names}
