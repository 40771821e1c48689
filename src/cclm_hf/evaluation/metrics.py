"""Benchmark metrics: classification accuracy, retrieval recalls with a stated tie rule, IGLUE averaging, seeds.

Every metric is a fraction in [0, 1].

**Retrieval ranks and ties.** The original ranks candidates with `np.argsort` (quicksort, reversed), so a gold
candidate tied with others lands at an arbitrary place among them. Here ties are resolved *against* the query: the rank
of a query is the number of wrong candidates scoring at least as high as its best gold candidate. A constant score
matrix therefore gives R@1 = 0, not a lucky 1, and the entries the re-ranking leaves at -100 (outside the ITM top-k)
never count as hits for recall levels within k. Without ties this equals the original's ranks (tested against a
brute-force ranking); the demo, the benchmark scripts and the search index all use these recalls.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence

import torch


__all__ = [
    "ENGLISH",
    "accuracy",
    "language_average",
    "mean_and_std",
    "retrieval_metrics",
    "retrieval_ranks",
]

ENGLISH = "en"
RECALL_LEVELS = (1, 5, 10)


def accuracy(predictions: Sequence[object], references: Sequence[object]) -> float:
    """Share of `predictions` equal to `references` (class indices, answer strings, ...)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    if not references:
        raise ValueError("accuracy of an empty set")
    return sum(prediction == reference for prediction, reference in zip(predictions, references, strict=True)) / len(
        references
    )


def retrieval_ranks(scores: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """0-based rank of each query's best positive candidate, ties counted against the query.

    Args:
        scores: `[Q, C]` score of every candidate for every query (higher is better).
        positives: `[Q, C]` boolean, `True` where the candidate is correct; every row needs one.

    Returns:
        `[Q]` long tensor: the number of wrong candidates scoring at least the best positive's score.
    """
    if scores.shape != positives.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and positives {tuple(positives.shape)} differ in shape")
    if not bool(positives.any(dim=1).all()):
        raise ValueError("every query needs at least one positive candidate")
    positives = positives.to(scores.device)
    best_positive = scores.masked_fill(~positives, -math.inf).amax(dim=1, keepdim=True)
    return ((scores >= best_positive) & ~positives).sum(dim=1)


def retrieval_metrics(
    image_to_text: torch.Tensor, text_to_image: torch.Tensor, text_image_ids: torch.Tensor | Sequence[int]
) -> dict[str, float]:
    """Recall@1/5/10 both ways and their means, the original `itm_eval` keys, with the tie rule above.

    Args:
        image_to_text: `[N_images, N_texts]` scores of every caption for every image query.
        text_to_image: `[N_texts, N_images]` scores of every image for every caption query.
        text_image_ids: `[N_texts]` index of the image each caption describes.

    Returns:
        `txt_r1`, `txt_r5`, `txt_r10` (image queries: text retrieval, IGLUE's "TR"), `img_r1`, `img_r5`, `img_r10`
        (caption queries: image retrieval, "IR"), `txt_r_mean`, `img_r_mean` and `r_mean` (mean of the six).
    """
    text_image_ids = torch.as_tensor(text_image_ids, device=image_to_text.device)
    num_images = image_to_text.shape[0]
    caption_of = text_image_ids[None, :] == torch.arange(num_images, device=image_to_text.device)[:, None]
    ranks = {
        "txt": retrieval_ranks(image_to_text, caption_of),
        "img": retrieval_ranks(text_to_image, caption_of.t().to(text_to_image.device)),
    }
    metrics = {
        f"{prefix}_r{level}": (rank < level).double().mean().item()
        for prefix, rank in ranks.items()
        for level in RECALL_LEVELS
    }
    for prefix in ranks:
        metrics[f"{prefix}_r_mean"] = sum(metrics[f"{prefix}_r{level}"] for level in RECALL_LEVELS) / 3
    metrics["r_mean"] = (metrics["txt_r_mean"] + metrics["img_r_mean"]) / 2
    return metrics


def language_average(
    per_language: Mapping[str, Mapping[str, float]], exclude: Iterable[str] = (ENGLISH,)
) -> tuple[dict[str, float], list[str]]:
    """Mean of every metric over the languages, IGLUE style: English excluded.

    When only excluded languages were evaluated (English-only tasks) their mean is returned instead, so that
    `average` is never empty. Returns `(averages, languages averaged)`.
    """
    excluded = set(exclude)
    languages = [language for language in per_language if language not in excluded] or list(per_language)
    if not languages:
        return {}, []
    metrics = [name for name in per_language[languages[0]] if all(name in per_language[lang] for lang in languages)]
    averages = {name: statistics.fmean(per_language[lang][name] for lang in languages) for name in metrics}
    return averages, languages


def mean_and_std(runs: Sequence[Mapping[str, float]]) -> tuple[dict[str, float], dict[str, float]]:
    """Per-metric mean and sample standard deviation over runs (seeds); the std of a single run is 0."""
    if not runs:
        raise ValueError("no runs to average")
    names = [name for name in runs[0] if all(name in run for run in runs)]
    means = {name: statistics.fmean(run[name] for run in runs) for name in names}
    stds = {name: statistics.stdev([run[name] for run in runs]) if len(runs) > 1 else 0.0 for name in names}
    return means, stds
