"""Readers of the question-answering benchmarks (xGQA / GQA, VQA v2) and the VQA v2 submission writer.

| format | files | reader |
|---|---|---|
| GQA list json (LXMERT style) | `iglue/datasets/gqa/annotations/train.json(.zip)`, `valid.json`: `[{"img_id", "sent", "question_id", "label": {answer: score}}]` | [`read_gqa_json`] |
| xGQA / GQA dict json | `iglue/datasets/xGQA/annotations/few_shot/{lang}/test.json`, `train_48.json`: `{qid: {"imageId", "question", "answer", ...}}` | [`read_gqa_json`] |
| answer vocabulary | `iglue/datasets/gqa/annotations/trainval_ans2label.json` (`{answer: index}`) or an X-VLM `answer_list.json` | [`read_answer_list`] |
| VQA v2, X-VLM json | `data/finetune/vqa_{train,val,test}.json`: `[{"question_id", "question", "answer": [...], "image", "dataset"}]` | [`read_vqa_json`] |
| VQA v2, official | `v2_OpenEnded_mscoco_{split}_questions.json` (+ `v2_mscoco_{split}_annotations.json`) | [`read_vqa_official`] |

As in the original `vqa_dataset`: questions are cleaned with `pre_question` (30 words for training, 50 for
evaluation); GQA images are `{image_root}/{img_id}.jpg`; each answer of a GQA list record gets the weight
`1 / len(label)` (the scores are ignored) and the gold answer of an evaluation record is the first key of `label`;
a dict-format record's single `answer` has weight 1. VQA v2 answers are weighted by their share of the annotators'
answers (`count / len(answers)`, X-VLM's rule; Visual Genome items of an X-VLM file get weight 0.5).
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...processing_cclm import pre_question
from ..images import BadSampleError
from ..readers import MALFORMED_RECORD, bad_sample
from .fields import field, join_root
from .files import AnnotationFileError, iter_json_records, read_json
from .records import BadRecordLog, BenchmarkDataError, ImageRef, QuestionRecord


__all__ = [
    "TRAIN_QUESTION_WORDS",
    "EVAL_QUESTION_WORDS",
    "read_answer_list",
    "read_gqa_json",
    "read_vqa_json",
    "read_vqa_official",
    "write_vqa_submission",
]

TRAIN_QUESTION_WORDS = 30
EVAL_QUESTION_WORDS = 50
# X-VLM weighs Visual Genome answers (one per question) by this constant.
VISUAL_GENOME_ANSWER_WEIGHT = 0.5


def _question(text: object, max_words: int, source: str) -> str:
    if not isinstance(text, str):
        raise bad_sample(source, f"question is a {type(text).__name__}, not a string", MALFORMED_RECORD)
    question = pre_question(text, max_words)
    if not question.strip():
        raise bad_sample(source, f"question is empty after cleaning (raw: {text[:80]!r})", "empty_text")
    return question


def _share_weights(answers: list[str]) -> dict[str, float]:
    counts = collections.Counter(answers)
    return {answer: count / len(answers) for answer, count in counts.items()}


def read_gqa_json(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    max_words: int = TRAIN_QUESTION_WORDS,
    log: BadRecordLog | None = None,
) -> list[QuestionRecord]:
    """Read a GQA list json or an xGQA / GQA dict json (detected per record)."""
    log = log if log is not None else BadRecordLog(skip=False)
    records = []
    for record, source in iter_json_records(path, log):
        try:
            if "__key__" in record:  # dict format: {qid: {"imageId", "question", "answer"}}
                question_id = record["__key__"]
                image_id = field(record, "imageId", source, (str, int))
                question = _question(field(record, "question", source), max_words, source)
                answer = field(record, "answer", source)
                answers = {answer: 1.0}
            else:
                question_id = field(record, "question_id", source, (str, int))
                image_id = field(record, "img_id", source, (str, int))
                question = _question(field(record, "sent", source), max_words, source)
                label = field(record, "label", source, dict)
                answers = {str(answer): 1 / len(label) for answer in label}
        except BadSampleError as error:
            log(error)
            continue
        image = ImageRef(join_root(image_root, f"{image_id}.jpg"))
        records.append(QuestionRecord(source, image, question, question_id, answers))
    log.summarize(len(records))
    return records


def read_answer_list(path: str | os.PathLike[str]) -> list[str]:
    """The candidate answers: the keys of an `ans2label` dict (in file order, as the original) or a json list."""
    data, location = read_json(path)
    if isinstance(data, dict):
        answers = list(data)
    elif isinstance(data, list) and all(isinstance(answer, str) for answer in data):
        answers = list(data)
    else:
        raise AnnotationFileError(f"{location}: expected a json dict {{answer: index}} or a list of answers")
    if not answers:
        raise AnnotationFileError(f"{location}: the answer list is empty")
    return answers


def read_vqa_json(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    vg_image_root: str | None = None,
    max_words: int = TRAIN_QUESTION_WORDS,
    log: BadRecordLog | None = None,
) -> list[QuestionRecord]:
    """Read an X-VLM VQA json (`answer` lists for train / val, no answers for test; `dataset` "vqa" or "vg")."""
    log = log if log is not None else BadRecordLog(skip=False)
    records = []
    for record, source in iter_json_records(path, log):
        try:
            question_id = field(record, "question_id", source, (int, str))
            question = _question(field(record, "question", source), max_words, source)
            image = field(record, "image", source)
            answer = record.get("answer")
            annotator_answers: list[str] = []
            if record.get("dataset") == "vg":
                answers = {field(record, "answer", source): VISUAL_GENOME_ANSWER_WEIGHT}
                root = vg_image_root if vg_image_root is not None else image_root
            else:
                if answer is not None:
                    annotator_answers = field(record, "answer", source, list)
                    if not annotator_answers or not all(isinstance(a, str) for a in annotator_answers):
                        raise bad_sample(source, "answer must be a non-empty list of strings", MALFORMED_RECORD)
                answers = _share_weights(annotator_answers) if annotator_answers else {}
                root = image_root
        except BadSampleError as error:
            log(error)
            continue
        records.append(
            QuestionRecord(source, ImageRef(join_root(root, image)), question, question_id, answers, annotator_answers)
        )
    log.summarize(len(records))
    return records


def _official_annotations_path(questions_path: str) -> str:
    folder, name = os.path.split(questions_path)
    name = name.replace("v2_OpenEnded_mscoco_", "v2_mscoco_").replace("_questions", "_annotations")
    return os.path.join(folder, name)


def read_vqa_official(
    questions_path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    annotations_path: str | os.PathLike[str] | None = None,
    *,
    max_words: int = TRAIN_QUESTION_WORDS,
    log: BadRecordLog | None = None,
) -> list[QuestionRecord]:
    """Read the official VQA v2 questions file, with its annotations when they exist (train / val).

    `annotations_path` defaults to the official name next to the questions file (`v2_mscoco_{split}_annotations.json`);
    test files have none. Images: `{image_root}/{subtype}/COCO_{subtype}_{image_id:012d}.jpg` where `subtype` is the
    file's `data_subtype` (`test-dev2015` questions use the `test2015` images).
    """
    log = log if log is not None else BadRecordLog(skip=False)
    questions, location = read_json(questions_path)
    if not isinstance(questions, dict) or not isinstance(questions.get("questions"), list):
        raise AnnotationFileError(f"{location}: not an official VQA questions file (no 'questions' list)")
    subtype = str(questions.get("data_subtype", ""))
    image_folder = "test2015" if subtype.startswith("test") else subtype
    if not image_folder:
        raise AnnotationFileError(f"{location}: no 'data_subtype' to locate the images")
    if annotations_path is None and os.path.isfile(_official_annotations_path(os.fspath(questions_path))):
        annotations_path = _official_annotations_path(os.fspath(questions_path))
    answers_by_question: dict[int, list[str]] = {}
    if annotations_path is not None:
        annotations, annotations_location = read_json(annotations_path)
        if not isinstance(annotations, dict) or not isinstance(annotations.get("annotations"), list):
            raise AnnotationFileError(f"{annotations_location}: not an official VQA annotations file")
        for index, annotation in enumerate(annotations["annotations"]):
            source = f"{annotations_location}[{index}]"
            try:
                answers = field(annotation, "answers", source, list)
                answers_by_question[field(annotation, "question_id", source, int)] = [
                    field(answer, "answer", source) for answer in answers
                ]
            except (BadSampleError, TypeError) as error:
                log(error if isinstance(error, BadSampleError) else bad_sample(source, str(error), MALFORMED_RECORD))
    records = []
    for index, item in enumerate(questions["questions"]):
        source = f"{location}[{index}]"
        try:
            if not isinstance(item, dict):
                raise bad_sample(source, f"question is a {type(item).__name__}, not an object", MALFORMED_RECORD)
            question_id = field(item, "question_id", source, int)
            image_id = field(item, "image_id", source, int)
            question = _question(field(item, "question", source), max_words, source)
            if annotations_path is not None and question_id not in answers_by_question:
                raise bad_sample(source, f"question {question_id} has no annotation", MALFORMED_RECORD)
        except BadSampleError as error:
            log(error)
            continue
        annotator_answers = answers_by_question.get(question_id, [])
        image = ImageRef(join_root(image_root, f"{image_folder}/COCO_{image_folder}_{image_id:012d}.jpg"))
        answers = _share_weights(annotator_answers) if annotator_answers else {}
        records.append(QuestionRecord(source, image, question, question_id, answers, annotator_answers))
    log.summarize(len(records))
    return records


def write_vqa_submission(
    predictions: Mapping[int, str] | Iterable[tuple[int, str]],
    path: str | os.PathLike[str],
    expected_question_ids: Iterable[int] | None = None,
) -> Path:
    """Write the official VQA v2 result file `[{"question_id": int, "answer": str}, ...]` (test-dev / test-std).

    Args:
        predictions: `{question_id: answer}` or `(question_id, answer)` pairs, one per question.
        path: Output file (`.json`).
        expected_question_ids: When given, every one of them must have exactly one answer (the evaluation server
            rejects incomplete files).

    Raises:
        BenchmarkDataError: A question id is not an integer, appears twice, or an expected one is missing.
    """
    items = predictions.items() if isinstance(predictions, Mapping) else predictions
    results, seen = [], set()
    for question_id, answer in items:
        if isinstance(question_id, bool) or not isinstance(question_id, int):
            try:
                question_id = int(question_id)
            except (TypeError, ValueError) as error:
                raise BenchmarkDataError(f"VQA question id {question_id!r} is not an integer") from error
        if question_id in seen:
            raise BenchmarkDataError(f"VQA question {question_id} has more than one answer")
        if not isinstance(answer, str):
            raise BenchmarkDataError(f"VQA question {question_id}: the answer {answer!r} is not a string")
        seen.add(question_id)
        results.append({"question_id": question_id, "answer": answer})
    if expected_question_ids is not None:
        missing = set(expected_question_ids) - seen
        if missing:
            raise BenchmarkDataError(
                f"{len(missing)} VQA questions have no answer (e.g. {sorted(missing)[:5]}); the server needs all"
            )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results))
    return path
