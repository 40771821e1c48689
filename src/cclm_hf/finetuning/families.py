"""The benchmark families of the four scripts: `examples/run_retrieval.py` ([`RetrievalFamily`]), `run_xvnli.py`
([`EntailmentFamily`]), `run_nlvr.py` ([`NLVRFamily`]) and `run_vqa.py` ([`VQAFamily`])."""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
from transformers import EvalPrediction, Trainer

from ..data.benchmarks import (
    XVNLI_LABELS,
    BadRecordLog,
    BenchmarkDataset,
    EntailmentDataset,
    ImagePairDataset,
    ImageTextCollator,
    QuestionAnswerCollator,
    QuestionAnswerDataset,
    RetrievalTrainDataset,
    build_gallery,
    read_answer_list,
    read_caption_json,
    read_gqa_json,
    read_marvl_jsonl,
    read_nlvr2_jsonl,
    read_nlvr_json,
    read_vqa_json,
    read_vqa_official,
    read_wit_jsonl,
    read_xflickrco_jsonl,
    read_xvnli,
    training_pairs,
    write_vqa_submission,
)
from ..data.benchmarks.vqa import EVAL_QUESTION_WORDS, TRAIN_QUESTION_WORDS
from ..evaluation import accuracy, vqa_accuracy
from ..modeling_cclm import CCLMAnswerCandidates
from .arguments import AnswerRankingArguments, BenchmarkArguments, RetrievalArguments
from .data import TRAIN_SPLITS
from .retrieval import GalleryEvaluator
from .runner import BenchmarkFamily, RunContext
from .tasks import TaskSpec
from .trainer import AnswerRankingTrainer, CCLMFinetuningTrainer, RetrievalTrainer


logger = logging.getLogger(__name__)

__all__ = [
    "EntailmentFamily",
    "NLVRFamily",
    "RetrievalFamily",
    "VQAFamily",
    "answer_scores",
    "read_nlvr_records",
    "read_vqa_answer_list",
    "read_vqa_records",
]

# Outputs of the classification heads besides the logits (the towers' states): never gathered as predictions.
TOWER_OUTPUTS = ("vision_model_output", "text_model_output", "fusion_model_output", "hidden_states", "attentions")
RETRIEVAL_METRICS = (
    "txt_r1",
    "txt_r5",
    "txt_r10",
    "img_r1",
    "img_r5",
    "img_r10",
    "txt_r_mean",
    "img_r_mean",
    "r_mean",
)


class RetrievalFamily(BenchmarkFamily):
    """Multi30K, MSCOCO, Flickr30K, xFlickr&CO, WIT: ITC + ITM fine-tuning, two-stage retrieval evaluation."""

    name = "retrieval"
    head = "retrieval"  # CCLMForImageTextRetrieval: no new parameters (the original empties its init_params)
    extra_arguments = (RetrievalArguments,)
    metric_names = RETRIEVAL_METRICS

    def read(
        self,
        spec: TaskSpec,
        args: BenchmarkArguments,
        path: str,
        split: str,
        language: str,
        roots: dict[str, str],
        log: BadRecordLog,
    ) -> list:
        max_words = args.max_words or spec.max_words
        if spec.name == "xflickrco":
            return read_xflickrco_jsonl(
                path, roots["image_root"], roots["coco_image_root"], max_words=max_words, log=log
            )
        if spec.name == "wit":
            return read_wit_jsonl(path, roots["image_root"], max_words=max_words, log=log)
        return read_caption_json(path, roots["image_root"], max_words=max_words, log=log)

    def prepare_training_args(self, args) -> None:
        # the original drops the last incomplete batch; a batch of one image has no ITM negative
        args.dataloader_drop_last = True

    def evaluator(self, context: RunContext) -> GalleryEvaluator:
        retrieval_args: RetrievalArguments = context.family_args[0]
        return GalleryEvaluator(
            context.eval_transform(),
            context.tokenizer,
            max_tokens=context.max_tokens,  # the original truncates evaluation captions to max_tokens
            k=retrieval_args.k_test or context.spec.k_test,
            image_batch_size=context.training_args.per_device_eval_batch_size,
            text_batch_size=retrieval_args.text_batch_size,
            itm_batch_size=retrieval_args.itm_batch_size,
            num_workers=context.training_args.dataloader_num_workers,
        )

    def build_trainer(self, context: RunContext) -> Trainer:
        train = None
        if context.data.train:
            train = RetrievalTrainDataset(
                training_pairs(context.data.train),
                context.train_transform(),
                skip_bad_samples=context.benchmark_args.skip_bad_samples,
                name=f"{context.spec.name} train",
            )
        return RetrievalTrainer(
            model=context.model,
            args=context.training_args,
            train_dataset=train,
            eval_dataset=build_gallery(context.data.dev) if context.data.dev else None,
            data_collator=ImageTextCollator(context.tokenizer, context.max_tokens),
            processing_class=context.processor,
            gallery_evaluator=self.evaluator(context),
        )

    def test(self, trainer: RetrievalTrainer, context: RunContext) -> dict[str, dict[str, float]]:
        galleries = {language: build_gallery(records) for language, records in context.data.tests.items()}
        return trainer.gallery_evaluator(trainer.model, galleries)


def _accuracy_of_logits(prediction: EvalPrediction) -> dict[str, float]:
    return {"accuracy": accuracy(prediction.predictions.argmax(-1).tolist(), prediction.label_ids.tolist())}


class EntailmentFamily(BenchmarkFamily):
    """XVNLI: the premise image and the hypothesis -> 3 classes, cross-entropy; accuracy of the argmax, each test
    sample predicted once (`Trainer.predict` gathers them from every process)."""

    name = "xvnli"
    head = "classification"  # CCLMForSequenceClassification: the classifier (`cls_head`) is new
    metric_names = ("accuracy",)
    # records -> samples; an NLVR family only changes this (ImagePairDataset), its head and its reader
    dataset_class: type[BenchmarkDataset] = EntailmentDataset

    def model_kwargs(self, spec: TaskSpec) -> dict[str, Any]:
        return {
            "num_labels": len(XVNLI_LABELS),
            "id2label": dict(enumerate(XVNLI_LABELS)),
            "label2id": {label: index for index, label in enumerate(XVNLI_LABELS)},
        }

    def read(self, spec, args, path, split, language, roots, log) -> list:
        return read_xvnli(path, roots["image_root"], max_words=args.max_words or spec.max_words, log=log)

    def dataset(self, records: list, context: RunContext, train: bool) -> BenchmarkDataset:
        transform = context.train_transform() if train else context.eval_transform()
        return self.dataset_class(
            records,
            transform,
            skip_bad_samples=train and context.benchmark_args.skip_bad_samples,
            name=f"{context.spec.name} {'train' if train else 'evaluation'}",
        )

    def build_trainer(self, context: RunContext) -> Trainer:
        return CCLMFinetuningTrainer(
            model=context.model,
            args=context.training_args,
            train_dataset=self.dataset(context.data.train, context, True) if context.data.train else None,
            eval_dataset=self.dataset(context.data.dev, context, False) if context.data.dev else None,
            data_collator=ImageTextCollator(context.tokenizer, context.max_tokens),
            eval_data_collator=ImageTextCollator(context.tokenizer, context.eval_max_tokens),
            processing_class=context.processor,
            compute_metrics=_accuracy_of_logits,
            prediction_ignore_keys=TOWER_OUTPUTS,
        )

    def test(self, trainer: Trainer, context: RunContext) -> dict[str, dict[str, float]]:
        results = {}
        for language, records in context.data.tests.items():
            output = trainer.predict(self.dataset(records, context, False), metric_key_prefix=f"test_{language}")
            predictions = output.predictions.argmax(-1).tolist()
            if len(predictions) != len(records):  # gathered from every process, each sample exactly once
                raise RuntimeError(f"{len(predictions)} predictions for {len(records)} {language} test examples")
            results[language] = {"accuracy": accuracy(predictions, [record.label for record in records])}
        return results


# ---------------------------------------------------------------------------------------------------------------------
# Readers of the VQA and NLVR families (their scripts add the heads, trainers and tests)
# ---------------------------------------------------------------------------------------------------------------------


def read_vqa_answer_list(spec: TaskSpec, args: BenchmarkArguments) -> list[str]:
    """The candidate answers of xGQA / VQA: `--answer_list`, else the task's file under ROOT."""
    return read_answer_list(args.answer_list or spec.path(args.data_root, "answer_list"))


def read_vqa_records(
    spec: TaskSpec,
    args: BenchmarkArguments,
    path: str,
    split: str,
    language: str,
    roots: dict[str, str],
    log: BadRecordLog,
) -> list:
    """xGQA / GQA files (list or dict json) and VQA v2 (X-VLM json, or the official questions file)."""
    max_words = TRAIN_QUESTION_WORDS if split in TRAIN_SPLITS else EVAL_QUESTION_WORDS
    if spec.name == "xgqa":
        return read_gqa_json(path, roots["image_root"], max_words=max_words, log=log)
    if "_questions" in os.path.basename(path):  # v2_OpenEnded_mscoco_{split}_questions.json
        return read_vqa_official(path, roots["image_root"], max_words=max_words, log=log)
    return read_vqa_json(path, roots["image_root"], max_words=max_words, log=log)


def read_nlvr_records(
    spec: TaskSpec,
    args: BenchmarkArguments,
    path: str,
    split: str,
    language: str,
    roots: dict[str, str],
    log: BadRecordLog,
) -> list:
    """NLVR2 jsonl / X-VLM json (NLVR2 images), MaRVL jsonl (zero-shot, few-shot, translate-test) or the json of the
    original's MaRVL preprocessing (paths relative to ROOT)."""
    max_words = args.max_words or spec.max_words
    name = os.path.basename(path)
    nlvr2_root = roots.get("nlvr2_image_root", roots["image_root"])
    if name.startswith("marvl-") and ".jsonl" in name:
        return read_marvl_jsonl(
            path, roots["image_root"], few_shot=split in TRAIN_SPLITS, max_words=max_words, log=log
        )
    if name.startswith("marvl-"):
        return read_nlvr_json(path, args.data_root, max_words=max_words, log=log)
    if ".jsonl" in name:
        return read_nlvr2_jsonl(path, nlvr2_root, max_words=max_words, log=log)
    return read_nlvr_json(path, nlvr2_root, max_words=max_words, log=log)


# ---------------------------------------------------------------------------------------------------------------------
# NLVR2 / MaRVL and VQA / xGQA
# ---------------------------------------------------------------------------------------------------------------------


class NLVRFamily(EntailmentFamily):
    """NLVR2 / MaRVL: a statement about a left and a right image -> true / false, through the paired fusion layers
    (`CCLMForImagesAndTextClassification`; from a pre-training model each fusion layer starts as both layers of its
    pair), cross-entropy; accuracy. The original neither truncates the statements nor protects "left" / "right"
    from the training flips."""

    name = "nlvr"
    head = "nlvr"
    dataset_class = ImagePairDataset

    def model_kwargs(self, spec: TaskSpec) -> dict[str, Any]:
        return {"num_labels": 2, "id2label": {0: "False", 1: "True"}, "label2id": {"False": 0, "True": 1}}

    def read(self, spec, args, path, split, language, roots, log) -> list:
        return read_nlvr_records(spec, args, path, split, language, roots, log)


class _IndexedQuestions(QuestionAnswerDataset):
    """Evaluation samples that also carry their index in the dataset (`labels`), to find their record again."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {**super().__getitem__(index), "labels": index}


class _IndexedQuestionCollator(QuestionAnswerCollator):
    def __call__(self, samples):
        return {**super().__call__(samples), "labels": torch.tensor([sample["labels"] for sample in samples])}


def answer_scores(records: list, answers: list[str]) -> list[float]:
    """Per question: VQA v2's accuracy against the annotators' answers, or (GQA / xGQA) exact match with the first
    answer of the record, as the original scores them."""
    scores = []
    for record, answer in zip(records, answers, strict=True):
        if record.annotator_answers:
            scores.append(vqa_accuracy(answer, record.annotator_answers))
        else:
            scores.append(float(answer == next(iter(record.answers))))
    return scores


class VQAFamily(BenchmarkFamily):
    """xGQA (GQA, IGLUE) and VQA v2: the answer decoder's loss (each answer's summed NLL times its weight) with the
    careful flip; evaluation ranks the candidate answer list (first-token top-`k_test`, then full likelihood).
    xGQA: accuracy (exact match); VQA v2: the official accuracy, and for test files without answers (test-dev)
    the submission file `OUT/vqa_submission_<lang>.json`."""

    name = "vqa"
    head = "vqa"
    extra_arguments = (AnswerRankingArguments,)
    metric_names = ("accuracy",)

    def read(self, spec, args, path, split, language, roots, log) -> list:
        return read_vqa_records(spec, args, path, split, language, roots, log)

    def dataset(self, records: list, context: RunContext, train: bool) -> QuestionAnswerDataset:
        kind = QuestionAnswerDataset if train else _IndexedQuestions
        transform = context.train_transform(horizontal_flip=False) if train else context.eval_transform()
        return kind(
            records,
            transform,
            careful_flip=train,
            skip_bad_samples=train and context.benchmark_args.skip_bad_samples,
            name=f"{context.spec.name} {'train' if train else 'evaluation'}",
        )

    def build_trainer(self, context: RunContext) -> Trainer:
        candidates = CCLMAnswerCandidates.from_answers(
            context.tokenizer, read_vqa_answer_list(context.spec, context.benchmark_args)
        )
        return AnswerRankingTrainer(
            model=context.model,
            args=context.training_args,
            train_dataset=self.dataset(context.data.train, context, True) if context.data.train else None,
            eval_dataset=self.dataset(context.data.dev, context, False) if context.data.dev else None,
            data_collator=QuestionAnswerCollator(context.tokenizer, context.max_tokens),
            eval_data_collator=_IndexedQuestionCollator(context.tokenizer, None, with_answers=False),
            processing_class=context.processor,
            candidates=candidates,
            score=answer_scores,
            k_test=context.family_args[0].k_test or context.spec.k_test,
        )

    def test(self, trainer: AnswerRankingTrainer, context: RunContext) -> dict[str, dict[str, float]]:
        results = {}
        for language, records in context.data.tests.items():
            answers = trainer.predict_answers(self.dataset(records, context, False), f"test_{language}")
            if all(record.answers or record.annotator_answers for record in records):
                scores = answer_scores(records, answers)
                results[language] = {"accuracy": sum(scores) / len(scores)}
                continue
            # no answers in the file (VQA v2 test-dev / test-std): the file the evaluation server scores
            path = os.path.join(context.plan.output_dir, f"vqa_submission_{language}.json")
            if trainer.is_world_process_zero():
                write_vqa_submission(
                    [(record.question_id, answer) for record, answer in zip(records, answers, strict=True)],
                    path,
                    expected_question_ids=[record.question_id for record in records],
                )
                logger.info("Wrote the VQA submission file %s (%d questions)", path, len(records))
            results[language] = {}
        return results
