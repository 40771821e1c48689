"""transformers pipelines for CCLM: image-text retrieval, and zero-shot image classification with ITM re-ranking.

Importing `cclm_hf` registers the task `"image-text-retrieval"`:

```python
from transformers import pipeline
import cclm_hf

retriever = pipeline("image-text-retrieval", model="cclm-4m")
retriever("ein Hund im Schnee", images=["a.jpg", "b.jpg", "c.jpg"], top_k=2, rerank="itm")
retriever("ein Hund im Schnee", index="photos.index")          # a saved CCLMIndex
retriever(Image.open("a.jpg"), texts=["a dog", "ein Hund", "un chat"])
```

and `pipeline("zero-shot-image-classification", model=..., pipeline_class=CCLMZeroShotImageClassificationPipeline)`
adds `itm_top_k=n` to the standard zero-shot pipeline: the `n` labels with the highest contrastive probability are
re-ordered by the matching head.
"""

from __future__ import annotations

import os
from collections import UserDict
from typing import Any

import torch
from transformers import AutoModelForZeroShotImageClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY, ZeroShotImageClassificationPipeline

from .retrieval import encode_images, encode_texts, itm_scores
from .search.index import CCLMIndex


class ImageTextRetrievalPipeline(Pipeline):
    """Rank a gallery for each query: images for a text query (any language), captions for an image query.

    The gallery is a `CCLMIndex` (or the directory of a saved one) passed as `index=`, or the candidates of the call
    as `images=` (paths or PIL images) or `texts=`, with optional `ids=`; it is embedded once per call, not per
    query. Parameters (at construction or per call): `top_k` (default 5), `rerank` (`None`, `"itc"`, `"itm"`,
    `"itm+itc"`, see `CCLMIndex.search`), `rerank_k`, `backend`.

    Returns for each query a list of `{"score", "id"}` (plus `"text"` for captions), best first.
    """

    _load_processor = True
    _load_tokenizer = False
    _load_image_processor = False
    _load_feature_extractor = False

    def _sanitize_parameters(
        self, index=None, images=None, texts=None, ids=None, top_k=None, rerank=None, rerank_k=None, backend=None
    ):
        forward_params: dict[str, Any] = {}
        if sum(gallery is not None for gallery in (index, images, texts)) > 1:
            raise ValueError("pass one gallery: index=, images= or texts=")
        if index is not None:
            forward_params["index"] = self._open_index(index)
        elif images is not None:
            forward_params["index"] = CCLMIndex.from_images(self.model, self.processor, images, ids)
        elif texts is not None:
            forward_params["index"] = CCLMIndex.from_texts(self.model, self.processor, texts, ids)
        search = {"k": top_k, "rerank": rerank, "rerank_k": rerank_k, "backend": backend}
        forward_params |= {name: value for name, value in search.items() if value is not None}
        return {}, forward_params, {}

    def _open_index(self, index: CCLMIndex | str | os.PathLike) -> CCLMIndex:
        if isinstance(index, CCLMIndex):
            return index
        return CCLMIndex.load(index, self.model, self.processor)

    def preprocess(self, query) -> dict[str, Any]:
        return {"query": query}

    def _forward(self, model_inputs: dict[str, Any], index: CCLMIndex | None = None, k: int = 5, **search) -> dict:
        if index is None:
            raise ValueError("no gallery: pass index=, images= or texts= to the pipeline or to the call")
        return {"hits": index.search([model_inputs["query"]], k=k, **search)[0]}

    def postprocess(self, model_outputs: dict) -> list[dict[str, Any]]:
        return [
            {"score": hit.score, "id": hit.id} | ({"text": hit.text} if hit.text is not None else {})
            for hit in model_outputs["hits"]
        ]


class CCLMZeroShotImageClassificationPipeline(ZeroShotImageClassificationPipeline):
    """The zero-shot image classification pipeline, with optional ITM re-ranking of the top labels.

    With `itm_top_k=n`, the `n` labels of highest contrastive probability come first, ordered by the matching
    head's logit of class "match" (`"itm_score"`), then the other labels by probability. `"score"` stays the
    contrastive probability of each label (softmax over all labels), as in the standard pipeline.
    """

    def _sanitize_parameters(self, itm_top_k=None, **kwargs):
        preprocess_params, forward_params, postprocess_params = super()._sanitize_parameters(**kwargs)
        if itm_top_k is not None:
            forward_params["itm_top_k"] = itm_top_k
        return preprocess_params, forward_params, postprocess_params

    @torch.no_grad()
    def _forward(self, model_inputs, itm_top_k: int | None = None):
        if not itm_top_k:
            return super()._forward(model_inputs)
        candidate_labels = model_inputs.pop("candidate_labels")
        text_inputs = model_inputs.pop("text_inputs")
        text_inputs = text_inputs[0] if isinstance(text_inputs[0], UserDict) else text_inputs[0][0]
        # encoded once: the contrastive logits and the matching head read the same states
        base = self.model.cclm
        images = encode_images(base, model_inputs["pixel_values"], show_progress=False)
        texts = encode_texts(base, text_inputs["input_ids"], text_inputs["attention_mask"], show_progress=False)
        logits = images.embeds @ texts.embeds.t() / base.temperature
        top_labels = logits[0].topk(min(itm_top_k, len(candidate_labels))).indices
        scores = itm_scores(self.model, images, texts, torch.zeros_like(top_labels), top_labels)
        return {
            "candidate_labels": candidate_labels,
            "logits": logits,
            "itm_labels": top_labels,
            "itm_scores": scores,
        }

    def postprocess(self, model_outputs):
        top_labels, scores = model_outputs.pop("itm_labels", None), model_outputs.pop("itm_scores", None)
        candidate_labels = model_outputs["candidate_labels"]
        ranked = super().postprocess(model_outputs)
        if top_labels is None:
            return ranked
        itm_score = {
            candidate_labels[label]: score for label, score in zip(top_labels.tolist(), scores.tolist(), strict=True)
        }
        reranked = [entry for entry in ranked if entry["label"] in itm_score]
        reranked.sort(key=lambda entry: -itm_score[entry["label"]])
        rest = [entry for entry in ranked if entry["label"] not in itm_score]
        return [entry | {"itm_score": itm_score[entry["label"]]} for entry in reranked] + rest


PIPELINE_REGISTRY.register_pipeline(
    "image-text-retrieval",
    pipeline_class=ImageTextRetrievalPipeline,
    pt_model=AutoModelForZeroShotImageClassification,
    type="multimodal",
)

__all__ = ["CCLMZeroShotImageClassificationPipeline", "ImageTextRetrievalPipeline"]
