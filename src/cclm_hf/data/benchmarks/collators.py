"""Collators of the benchmark datasets: samples -> the keyword arguments of the task heads.

Texts arrive cleaned by the readers (`pre_caption` / `pre_question`) and are tokenized as the original does:
`<s> text </s>`, padded to the longest of the batch, truncated to `max_tokens` when one is given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


__all__ = ["ImageTextCollator", "QuestionAnswerCollator", "tokenize"]


def tokenize(tokenizer: Any, texts: Sequence[str], max_tokens: int | None) -> dict[str, torch.Tensor]:
    """`input_ids` / `attention_mask` of `texts`, padded to the longest, truncated to `max_tokens` if given."""
    encoded = tokenizer(
        list(texts),
        padding="longest",
        truncation=max_tokens is not None,
        max_length=max_tokens,
        return_attention_mask=True,
        return_token_type_ids=False,
        return_tensors="pt",
    )
    return {"input_ids": encoded["input_ids"].long(), "attention_mask": encoded["attention_mask"].long()}


class ImageTextCollator:
    """Samples with `pixel_values` and `text` (and `label` or `image_id`) -> `pixel_values`, `input_ids`,
    `attention_mask` (and `labels`, or `image_ids` with `return_loss=True` for the retrieval loss).

    `pixel_values` keep their per-sample shape: `[B, 3, H, W]`, or `[B, 2, 3, H, W]` for image pairs.
    """

    def __init__(self, tokenizer: Any, max_tokens: int | None = None) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"pixel_values": torch.stack([sample["pixel_values"] for sample in samples])}
        batch.update(tokenize(self.tokenizer, [sample["text"] for sample in samples], self.max_tokens))
        if "label" in samples[0]:
            batch["labels"] = torch.tensor([sample["label"] for sample in samples], dtype=torch.long)
        if "image_id" in samples[0]:
            batch["image_ids"] = torch.tensor([sample["image_id"] for sample in samples], dtype=torch.long)
            batch["return_loss"] = True
        return batch


class QuestionAnswerCollator:
    """VQA samples -> `pixel_values`, question `input_ids` / `attention_mask`, and for training the answers of all
    questions flattened (the original `vqa_collate_fn`): `answer_input_ids` / `answer_attention_mask`
    (`<s> answer </s>`, padded to the longest), `answer_weights` `[total answers]` and `answers_per_question` `[B]`
    (how many answers belong to each question, in order): the training inputs of `CCLMForQuestionAnswering`.

    Args:
        tokenizer: The XLM-R tokenizer.
        max_tokens: Question token limit (40 in the original's training; `None` for evaluation, which it does not
            truncate).
        with_answers: Add the answer tensors (training).
    """

    def __init__(self, tokenizer: Any, max_tokens: int | None = 40, with_answers: bool = True) -> None:
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.with_answers = with_answers

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = {"pixel_values": torch.stack([sample["pixel_values"] for sample in samples])}
        batch.update(tokenize(self.tokenizer, [sample["question"] for sample in samples], self.max_tokens))
        if self.with_answers:
            answers = [answer for sample in samples for answer in sample["answers"]]
            if not answers:
                raise ValueError("a training batch of questions without answers")
            encoded = tokenize(self.tokenizer, answers, None)
            batch["answer_input_ids"] = encoded["input_ids"]
            batch["answer_attention_mask"] = encoded["attention_mask"]
            batch["answer_weights"] = torch.tensor(
                [weight for sample in samples for weight in sample["weights"]], dtype=torch.float
            )
            batch["answers_per_question"] = torch.tensor(
                [len(sample["answers"]) for sample in samples], dtype=torch.long
            )
        return batch
