"""Readers, datasets and collators of the fine-tuning benchmarks, from the files as distributed.

One module per benchmark family (`retrieval`, `xvnli`, `vqa`, `nlvr`); `files` reads json / jsonl (also inside
`.zip` archives) with record sources, `records` holds the validated record types, the bad-record policy and the image
checks; `datasets` and `collators` turn records into model inputs.
"""

from .collators import ImageTextCollator, QuestionAnswerCollator, tokenize
from .datasets import (
    BenchmarkDataset,
    EntailmentDataset,
    ImageDataset,
    ImagePairDataset,
    QuestionAnswerDataset,
    RetrievalTrainDataset,
)
from .files import (
    AnnotationFile,
    AnnotationFileError,
    iter_json_records,
    iter_jsonl,
    open_annotation_file,
    read_json,
    resolve_annotation_file,
)
from .nlvr import preprocess_marvl, read_marvl_jsonl, read_nlvr2_jsonl, read_nlvr_json
from .records import (
    BadRecordLog,
    BenchmarkDataError,
    BenchmarkRecord,
    CaptionRecord,
    EntailmentRecord,
    ImagePairRecord,
    ImageRef,
    QuestionRecord,
    drop_missing_images,
    unique_images,
    verify_images,
)
from .retrieval import (
    RetrievalGallery,
    RetrievalPair,
    build_gallery,
    read_caption_json,
    read_wit_jsonl,
    read_xflickrco_jsonl,
    training_pairs,
)
from .vqa import read_answer_list, read_gqa_json, read_vqa_json, read_vqa_official, write_vqa_submission
from .xvnli import XVNLI_LABELS, read_xvnli


__all__ = [
    "AnnotationFile",
    "AnnotationFileError",
    "BadRecordLog",
    "BenchmarkDataError",
    "BenchmarkDataset",
    "BenchmarkRecord",
    "CaptionRecord",
    "EntailmentDataset",
    "EntailmentRecord",
    "ImageDataset",
    "ImagePairDataset",
    "ImagePairRecord",
    "ImageRef",
    "ImageTextCollator",
    "QuestionAnswerCollator",
    "QuestionAnswerDataset",
    "QuestionRecord",
    "RetrievalGallery",
    "RetrievalPair",
    "RetrievalTrainDataset",
    "XVNLI_LABELS",
    "build_gallery",
    "drop_missing_images",
    "iter_json_records",
    "iter_jsonl",
    "open_annotation_file",
    "preprocess_marvl",
    "read_answer_list",
    "read_caption_json",
    "read_gqa_json",
    "read_json",
    "read_marvl_jsonl",
    "read_nlvr2_jsonl",
    "read_nlvr_json",
    "read_vqa_json",
    "read_vqa_official",
    "read_wit_jsonl",
    "read_xflickrco_jsonl",
    "read_xvnli",
    "resolve_annotation_file",
    "tokenize",
    "training_pairs",
    "unique_images",
    "verify_images",
    "write_vqa_submission",
]
