"""Reader of XVNLI (IGLUE's multilingual SNLI-VE), as distributed.

Files: `iglue/datasets/XVNLI/annotations/{lang}/{train,dev,test}.jsonl` (English train as `train.jsonl.zip`), the
few-shot splits `{lang}/train_{1,5,10,20,25,48}.jsonl`, and the translate-test files
`annotations_machine-translate/{lang}/test.jsonl`. Records: `{"gold_label", "sentence1", "sentence2", "captionID",
"pairID", "Flikr30kID"}` (sic). As in the original `xvnli_dataset`: the input is the Flickr30K image
`{Flikr30kID}.jpg` (the premise) and the hypothesis `sentence2` only, `pre_caption(., 80)`; labels
`contradiction -> 0, entailment -> 1, neutral -> 2`; pairs whose gold label is `-` (no annotator majority) are left
out (counted as `no_gold_label`). Any other label is a bad record (`unknown_label`).
"""

from __future__ import annotations

import os

from ..images import BadSampleError
from ..readers import bad_sample
from .fields import caption_field, field, join_root
from .files import iter_jsonl
from .records import BadRecordLog, EntailmentRecord, ImageRef


__all__ = ["XVNLI_LABELS", "read_xvnli"]

XVNLI_LABELS = ("contradiction", "entailment", "neutral")
_NO_GOLD_LABEL = "-"


def read_xvnli(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    max_words: int = 80,
    log: BadRecordLog | None = None,
) -> list[EntailmentRecord]:
    """Read an XVNLI jsonl file (any split, language or translate-test file)."""
    log = log if log is not None else BadRecordLog(skip=False)
    records = []
    for record, source in iter_jsonl(path, log):
        try:
            label = field(record, "gold_label", source)
            if label == _NO_GOLD_LABEL:
                log.protocol_skip("no_gold_label")
                continue
            if label not in XVNLI_LABELS:
                raise bad_sample(
                    source, f"unknown label {label!r} (expected one of {XVNLI_LABELS} or '-')", "unknown_label"
                )
            image_id = field(record, "Flikr30kID", source, (str, int))
            text = caption_field(field(record, "sentence2", source), max_words, source, "hypothesis")
        except BadSampleError as error:
            log(error)
            continue
        image = ImageRef(join_root(image_root, f"{image_id}.jpg"))
        records.append(EntailmentRecord(source, image, text, XVNLI_LABELS.index(label), str(record.get("pairID", ""))))
    log.summarize(len(records))
    return records
