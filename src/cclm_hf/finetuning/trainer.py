"""`Trainer` subclasses of the benchmark scripts.

- [`CCLMFinetuningTrainer`]: the original optimizer (AdamW, no decay for biases and norms, the task's new head at
  twice the learning rate, `lr_mult: 2`; both read from the model), and an optional separate collator for evaluation and prediction (the
  original truncates training texts but not evaluation texts);
- [`RetrievalTrainer`]: `evaluate()` runs the two-stage retrieval evaluation on the dev gallery instead of a loss loop,
  so that `eval_strategy`, `metric_for_best_model="r_mean"` and `load_best_model_at_end` select checkpoints as usual;
- [`AnswerRankingTrainer`]: evaluation and prediction rank a candidate answer list (`rank_answers`), so the
  predictions are answer indices, gathered from every process like any predictions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import DataLoader
from transformers import Trainer

from ..data.benchmarks import RetrievalGallery
from ..modeling_cclm import CCLMAnswerCandidates
from ..training import OriginalOptimizerMixin


__all__ = ["AnswerRankingTrainer", "CCLMFinetuningTrainer", "RetrievalTrainer"]


class CCLMFinetuningTrainer(OriginalOptimizerMixin, Trainer):
    """A `Trainer` with the original fine-tuning optimizer groups.

    Args:
        new_parameter_patterns: `fnmatch` patterns replacing the model's `new_parameters()` (the head's new
            parameters, e.g. XVNLI's classifier), which train at `learning_rate * new_parameter_lr_multiplier`.
        eval_data_collator: Collator of evaluation / prediction batches (default: `data_collator`).
        prediction_ignore_keys: Model outputs left out of the gathered predictions (the towers' hidden states, which
            would otherwise be gathered for the whole test set) when `evaluate` / `predict` get no `ignore_keys`.
    """

    def __init__(
        self,
        *args: Any,
        new_parameter_patterns: Iterable[str] | None = None,
        new_parameter_lr_multiplier: float = 2.0,
        eval_data_collator: Callable | None = None,
        prediction_ignore_keys: Iterable[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.new_parameter_patterns = None if new_parameter_patterns is None else tuple(new_parameter_patterns)
        self.new_parameter_lr_multiplier = new_parameter_lr_multiplier
        self.eval_data_collator = eval_data_collator
        self.prediction_ignore_keys = list(prediction_ignore_keys)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        ignore_keys = self.prediction_ignore_keys if ignore_keys is None else ignore_keys
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    @contextmanager
    def _evaluation_collator(self):
        training_collator = self.data_collator
        if self.eval_data_collator is not None:
            self.data_collator = self.eval_data_collator
        try:
            yield
        finally:
            self.data_collator = training_collator

    def get_eval_dataloader(self, eval_dataset=None) -> DataLoader:
        with self._evaluation_collator():
            return super().get_eval_dataloader(eval_dataset)

    def get_test_dataloader(self, test_dataset) -> DataLoader:
        with self._evaluation_collator():
            return super().get_test_dataloader(test_dataset)


class RetrievalTrainer(CCLMFinetuningTrainer):
    """Retrieval fine-tuning (ITC + ITM loss of the batch) with gallery evaluation.

    Args:
        gallery_evaluator: `(model, {name: gallery}) -> {name: metrics}`, e.g. a
            [`~cclm_hf.finetuning.retrieval.GalleryEvaluator`].
        eval_dataset: The dev [`RetrievalGallery`].
    """

    def __init__(self, *args: Any, gallery_evaluator: Callable, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gallery_evaluator = gallery_evaluator

    def evaluate(
        self, eval_dataset: RetrievalGallery | None = None, ignore_keys=None, metric_key_prefix: str = "eval"
    ) -> dict[str, float]:
        gallery = eval_dataset if eval_dataset is not None else self.eval_dataset
        if gallery is None:
            raise ValueError("RetrievalTrainer.evaluate needs a dev gallery")
        start = time.time()
        metrics = self.gallery_evaluator(self.model, {"dev": gallery})["dev"]
        metrics = {f"{metric_key_prefix}_{name}": value for name, value in metrics.items()}
        metrics[f"{metric_key_prefix}_runtime"] = round(time.time() - start, 4)
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class AnswerRankingTrainer(CCLMFinetuningTrainer):
    """VQA / xGQA fine-tuning (the answer decoder's loss) whose evaluation ranks the candidate answers.

    Evaluation and prediction batches carry `labels`: each sample's index in its dataset, gathered with the predicted
    answer index so that every question is answered exactly once whatever the number of processes.
    `evaluate()` scores the dev answers with `score` (so `metric_for_best_model="accuracy"` selects checkpoints).

    Args:
        candidates: The candidate answer list, tokenised once.
        score: `(records, answers) -> scores in [0, 1]`, one per question.
        k_test: Candidates kept by the first-token stage of `rank_answers`.
    """

    def __init__(
        self,
        *args: Any,
        candidates: CCLMAnswerCandidates,
        score: Callable[[list, list[str]], list[float]],
        k_test: int = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.candidates = candidates
        self.score = score
        self.k_test = k_test

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.pop("labels", None)
        with torch.no_grad():
            ranked, _ = self.accelerator.unwrap_model(model).rank_answers(
                inputs["input_ids"], inputs["pixel_values"], inputs["attention_mask"], self.candidates, k=self.k_test
            )
        return None, ranked[:, 0], labels

    def predict_answers(self, dataset, metric_key_prefix: str = "test") -> list[str]:
        """The best-ranked answer of every question of `dataset` (samples with their index as `labels`), in order."""
        output = self.predict(dataset, metric_key_prefix=metric_key_prefix)
        order, predicted = output.label_ids.tolist(), output.predictions.tolist()
        if sorted(order) != list(range(len(dataset))):  # gathered from every process, each sample exactly once
            raise RuntimeError(f"{len(order)} predictions for {len(dataset)} questions")
        answers = dict(zip(order, (self.candidates.answers[index] for index in predicted), strict=True))
        return [answers[index] for index in range(len(dataset))]

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        start = time.time()
        scores = self.score(dataset.items, self.predict_answers(dataset, metric_key_prefix))
        metrics = {
            f"{metric_key_prefix}_accuracy": sum(scores) / len(scores),
            f"{metric_key_prefix}_runtime": round(time.time() - start, 4),
        }
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics
