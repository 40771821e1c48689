"""Readers of the two-image reasoning benchmarks (NLVR2, MaRVL) and the original MaRVL preprocessing.

| format | files | reader |
|---|---|---|
| NLVR2 jsonl (official / IGLUE) | `iglue/datasets/nlvr2/annotations/{train,dev,test}.jsonl`: `{"sentence", "label": "True", "identifier", "directory" (train), ...}` | [`read_nlvr2_jsonl`] |
| X-VLM / CCLM json | `data/finetune/nlvr_en/nlvr_{train,dev,test}.json`, `data/marvl/marvl-{lang}.json` (the output of [`preprocess_marvl`]): `[{"sentence", "label", "images": [left, right]}]` | [`read_nlvr_json`] |
| MaRVL jsonl (IGLUE) | `iglue/datasets/marvl/zero_shot/annotations/marvl-{lang}.jsonl`, `few_shot/annotations/marvl-{lang}_train10x2.jsonl`, `zero_shot/annotations_machine-translate/marvl-{lang}_gmt.jsonl` | [`read_marvl_jsonl`] |

Labels are `True` / `"True"` -> 1 and `False` / `"False"` -> 0 (booleans in MaRVL, strings in NLVR2); anything else is
a bad record. Sentences: `pre_caption(., 30)`. MaRVL images live in concept folders whose names are not ASCII
(`images/marvl-images/zh/images/24-花生/...`): paths are kept as the annotation spells them (NFC as stored).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..images import BadSampleError
from ..readers import MALFORMED_RECORD, bad_sample
from .fields import caption_field, field, join_root, parse_bool_label
from .files import iter_json_records, iter_jsonl
from .records import BadRecordLog, ImagePairRecord, ImageRef


__all__ = ["preprocess_marvl", "read_marvl_jsonl", "read_nlvr2_jsonl", "read_nlvr_json"]

MAX_WORDS = 30


def _log(log: BadRecordLog | None) -> BadRecordLog:
    return log if log is not None else BadRecordLog(skip=False)


def _nlvr2_image_paths(image_root: str | os.PathLike[str], identifier: str, directory: object) -> tuple[str, str]:
    """Files of an NLVR2 pair: `train/{directory}/{split-set-pair}-img{0,1}.png`, `dev/...`, `test1/...`.

    The identifier is `{split}-{set}-{pair}-{sentence}`; the images drop the sentence number. Both the layout of the
    official zips (`train/51/...`) and the one with an `images/` level (`images/train/51/...`, as X-VLM's json) are
    accepted: the first that exists is used, else the former (and the image check reports it).
    """
    split, _, rest = identifier.partition("-")
    stem = identifier.rsplit("-", 1)[0]
    folder = f"{split}/{directory}" if directory is not None and split == "train" else split
    names = [f"{stem}-img0.png", f"{stem}-img1.png"]
    for prefix in (folder, f"images/{folder}"):
        candidates = [join_root(image_root, f"{prefix}/{name}") for name in names]
        if os.path.isfile(candidates[0]):
            return candidates[0], candidates[1]
    return join_root(image_root, f"{folder}/{names[0]}"), join_root(image_root, f"{folder}/{names[1]}")


def read_nlvr2_jsonl(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    max_words: int = MAX_WORDS,
    log: BadRecordLog | None = None,
) -> list[ImagePairRecord]:
    """Read an NLVR2 jsonl file (string labels; `directory` locates the training images)."""
    log = _log(log)
    records = []
    for record, source in iter_jsonl(path, log):
        try:
            identifier = field(record, "identifier", source)
            label = parse_bool_label(field(record, "label", source, (str, bool)), source)
            sentence = caption_field(field(record, "sentence", source), max_words, source, "sentence")
        except BadSampleError as error:
            log(error)
            continue
        left, right = _nlvr2_image_paths(image_root, identifier, record.get("directory"))
        records.append(ImagePairRecord(source, ImageRef(left), ImageRef(right), sentence, label, identifier))
    log.summarize(len(records))
    return records


def read_nlvr_json(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None,
    *,
    max_words: int = MAX_WORDS,
    log: BadRecordLog | None = None,
) -> list[ImagePairRecord]:
    """Read an X-VLM NLVR2 json or a preprocessed MaRVL json (`images` relative to `image_root`; MaRVL's are relative
    to the data root, the original's working directory)."""
    log = _log(log)
    records = []
    for record, source in iter_json_records(path, log):
        try:
            images = field(record, "images", source, list)
            if len(images) != 2 or not all(isinstance(image, str) for image in images):
                raise bad_sample(source, f"'images' must hold 2 paths, got {images!r}", MALFORMED_RECORD)
            label = parse_bool_label(field(record, "label", source, (str, bool)), source)
            sentence = caption_field(field(record, "sentence", source), max_words, source, "sentence")
        except BadSampleError as error:
            log(error)
            continue
        left, right = (ImageRef(join_root(image_root, image)) for image in images)
        records.append(ImagePairRecord(source, left, right, sentence, label))
    log.summarize(len(records))
    return records


def _marvl_image_paths(record: dict, few_shot: bool, source: str) -> tuple[str, str]:
    language = field(record, "language", source)
    left, right = field(record, "left_img", source), field(record, "right_img", source)
    if few_shot:
        return tuple(f"marvl_fewshot/{language}/all/{name.split('/')[-1]}" for name in (left, right))
    concept = field(record, "concept", source)
    return tuple(f"marvl-images/{language}/images/{concept}/{name}" for name in (left, right))


def read_marvl_jsonl(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    few_shot: bool = False,
    max_words: int = MAX_WORDS,
    log: BadRecordLog | None = None,
) -> list[ImagePairRecord]:
    """Read an IGLUE MaRVL jsonl (boolean labels). `image_root` is the folder holding `marvl-images/` (zero-shot
    test sets: `marvl-images/{language}/images/{concept}/{img}`) and `marvl_fewshot/` (few-shot training sets:
    `marvl_fewshot/{language}/all/{img}`), i.e. `ROOT/images`."""
    log = _log(log)
    records = []
    for record, source in iter_jsonl(path, log):
        try:
            left, right = _marvl_image_paths(record, few_shot, source)
            label = parse_bool_label(field(record, "label", source, (bool, str)), source)
            sentence = caption_field(field(record, "caption", source), max_words, source, "caption")
        except BadSampleError as error:
            log(error)
            continue
        records.append(
            ImagePairRecord(
                source,
                ImageRef(join_root(image_root, left)),
                ImageRef(join_root(image_root, right)),
                sentence,
                label,
                str(record.get("id", "")),
            )
        )
    log.summarize(len(records))
    return records


def preprocess_marvl(marvl_dir: str | os.PathLike[str], output_dir: str | os.PathLike[str]) -> list[Path]:
    """The original `utils/marvl_preproc.py`: IGLUE's MaRVL jsonl files -> `marvl-{lang}.json` / `marvl-{lang}_train*.json`
    lists of `{"sentence", "label", "images": [left, right]}` with paths relative to the data root
    (`images/marvl-images/{language}/images/{concept}/{img}`, few-shot `images/marvl_fewshot/{language}/all/{img}`),
    as `NLVR.py` reads them. Raw captions and labels are copied unchanged.

    Args:
        marvl_dir: `iglue/datasets/marvl` (holds `zero_shot/annotations/` and `few_shot/annotations/`).
        output_dir: The original's `data/marvl`.

    Returns:
        The files written.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    for subset, few_shot in (("zero_shot", False), ("few_shot", True)):
        folder = Path(marvl_dir) / subset / "annotations"
        if not folder.is_dir():
            continue
        for annotation in sorted(folder.glob("*.jsonl")):
            items = []
            for record, source in iter_jsonl(annotation):
                left, right = _marvl_image_paths(record, few_shot, source)
                items.append(
                    {
                        "sentence": field(record, "caption", source),
                        "label": record.get("label"),
                        "images": [f"images/{left}", f"images/{right}"],
                    }
                )
            target = output / annotation.name.removesuffix("l")  # marvl-id.jsonl -> marvl-id.json
            target.write_text(json.dumps(items, ensure_ascii=False))
            written.append(target)
    return written
