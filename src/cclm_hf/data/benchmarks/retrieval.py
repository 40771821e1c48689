"""Readers of the image-text retrieval benchmarks, and the galleries and training pairs built from them.

| format | files | reader |
|---|---|---|
| CCLM / X-VLM json (Multi30K, multilingual MSCOCO, COCO 5K, Flickr30K 1K) | `data/finetune/multi30k/train.en.json`, `test_2016_flickr.de.json`, `mscoco/ja.1k_test.json`, `coco_test.json`, ... | [`read_caption_json`] |
| IGLUE jsonl (xFlickr&CO, Flickr30K) | `iglue/datasets/flickr30k/annotations/train_ann.jsonl`, `xFlickrCO/annotations/de/test.jsonl`, `train_100.jsonl`, `annotations_machine-translate/de/test_gmt.jsonl` | [`read_xflickrco_jsonl`] |
| WIT jsonl, base64 images or files | `data/wit/annotations-bs64/test_ar.jsonl` (`image_content`), `iglue/datasets/wit/annotations/test_ar.jsonl` + `images/wit/` | [`read_wit_jsonl`] |

Field rules, from the original datasets:

- CCLM json: a list of `{"image": rel_path, "caption": str | [str, ...], "image_id": id}`; training files have one
  caption per item and share `image_id` between the items (and, in the "all languages" setting, between the language
  files) of one image, which makes them positives; evaluation files have caption lists. Captions: `pre_caption(., 30)`;
  an empty one is a bad record.
- xFlickr&CO jsonl: `{"sentences": [...], "id": ..., "img_path": ...}`; images from the COCO root when the path contains
  "COCO", else from the Flickr30K root; empty sentences are left out as the original does (counted as
  `empty_caption`). Captions: `pre_caption(., 80)`.
- WIT jsonl: one caption per line (`caption_reference_description`); lines are grouped into images by `image_url`
  (the original's image id); the image is the base64 `image_content` when present, else the file named like the
  last component of `image_url` under the image root. Empty captions are left out (`empty_caption`); a caption that
  cleans to nothing (e.g. ".") is kept verbatim, as the original does.
"""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass

from ..images import BadSampleError
from ..readers import MALFORMED_RECORD, bad_sample
from .fields import caption_field, field, join_root
from .files import iter_json_records, iter_jsonl
from .records import BadRecordLog, CaptionRecord, ImageRef


__all__ = [
    "RetrievalGallery",
    "RetrievalPair",
    "build_gallery",
    "read_caption_json",
    "read_wit_jsonl",
    "read_xflickrco_jsonl",
    "training_pairs",
]


def _log(log: BadRecordLog | None) -> BadRecordLog:
    return log if log is not None else BadRecordLog(skip=False)


def read_caption_json(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str],
    *,
    max_words: int = 30,
    log: BadRecordLog | None = None,
) -> list[CaptionRecord]:
    """Read a CCLM / X-VLM retrieval json (train: one caption per item; evaluation: caption lists)."""
    log = _log(log)
    records = []
    for record, source in iter_json_records(path, log):
        try:
            image = field(record, "image", source)
            raw = field(record, "caption", source, (str, list))
            image_key = str(record["image_id"]) if record.get("image_id") is not None else image
        except BadSampleError as error:
            log(error)
            continue
        captions = _clean_captions([raw] if isinstance(raw, str) else raw, max_words, source, log)
        if captions:
            records.append(CaptionRecord(source, ImageRef(join_root(image_root, image)), image_key, captions))
        elif raw == []:
            log.report(source, "empty caption list", "missing_text")
    log.summarize(len(records))
    return records


def _clean_captions(raw: list, max_words: int, source: str, log: BadRecordLog) -> list[str]:
    captions = []
    for index, text in enumerate(raw):
        try:
            captions.append(caption_field(text, max_words, source if len(raw) == 1 else f"{source} caption {index}"))
        except BadSampleError as error:
            log(error)
    return captions


def read_xflickrco_jsonl(
    path: str | os.PathLike[str],
    flickr_root: str | os.PathLike[str],
    coco_root: str | os.PathLike[str],
    *,
    max_words: int = 80,
    log: BadRecordLog | None = None,
) -> list[CaptionRecord]:
    """Read an IGLUE xFlickr&CO / Flickr30K jsonl (`sentences`, `id`, `img_path`)."""
    log = _log(log)
    records = []
    for record, source in iter_jsonl(path, log):
        try:
            image = field(record, "img_path", source)
            sentences = field(record, "sentences", source, list)
            field(record, "id", source, (str, int))
        except BadSampleError as error:
            log(error)
            continue
        kept = []
        for index, text in enumerate(sentences):
            if isinstance(text, str) and not text.strip():
                log.protocol_skip("empty_caption")
                continue
            try:
                kept.append(caption_field(text, max_words, f"{source} sentence {index}"))
            except BadSampleError as error:
                if getattr(error, "kind", None) == "empty_text":  # punctuation only: empty for the original too
                    log.protocol_skip("empty_caption")
                else:
                    log(error)
        if kept:
            root = coco_root if "COCO" in image else flickr_root
            records.append(CaptionRecord(source, ImageRef(join_root(root, image)), image, kept))
    log.summarize(len(records))
    return records


def read_wit_jsonl(
    path: str | os.PathLike[str],
    image_root: str | os.PathLike[str] | None = None,
    *,
    max_words: int = 80,
    log: BadRecordLog | None = None,
) -> list[CaptionRecord]:
    """Read a WIT jsonl, one caption per line; `image_content` (base64) or a file under `image_root`."""
    log = _log(log)
    records = []
    for record, source in iter_jsonl(path, log):
        try:
            url = field(record, "image_url", source)
            text = field(record, "caption_reference_description", source)
            image = _wit_image(record, url, image_root, source)
        except BadSampleError as error:
            log(error)
            continue
        if not text.strip():
            log.protocol_skip("empty_caption")
            continue
        try:
            caption = caption_field(text, max_words, source)
        except BadSampleError:
            caption = text.strip()  # the original keeps such captions ("." in the test sets) verbatim
        records.append(CaptionRecord(source, image, url, [caption]))
    log.summarize(len(records))
    return records


def _wit_image(record: dict, url: str, image_root: str | os.PathLike[str] | None, source: str) -> ImageRef:
    content = record.get("image_content")
    if content is not None:
        if not isinstance(content, str):
            raise bad_sample(source, f"image_content is a {type(content).__name__}", MALFORMED_RECORD)
        return ImageRef(content, is_path=False)
    if image_root is None:
        raise bad_sample(
            source,
            "record has no base64 'image_content' and no WIT image folder was given",
            "missing_image",
        )
    name = urllib.parse.unquote(urllib.parse.urlparse(url).path.rsplit("/", 1)[-1])
    return ImageRef(join_root(image_root, name))


# ---------------------------------------------------------------------------------------------------------------------
# Galleries and training pairs
# ---------------------------------------------------------------------------------------------------------------------


@dataclass
class RetrievalGallery:
    """An evaluation set: distinct images, all captions, and the image each caption describes.

    Images are distinct by `image_key` (WIT: `image_url`, as the original groups its captions).
    """

    images: list[ImageRef]
    image_sources: list[str]
    texts: list[str]
    text_sources: list[str]
    text_image_index: list[int]

    def __len__(self) -> int:
        return len(self.texts)


def build_gallery(records: list[CaptionRecord]) -> RetrievalGallery:
    """Group `records` by image key into a [`RetrievalGallery`] (the image of a key's first record is used)."""
    index: dict[str, int] = {}
    gallery = RetrievalGallery([], [], [], [], [])
    for record in records:
        if record.image_key not in index:
            index[record.image_key] = len(gallery.images)
            gallery.images.append(record.image)
            gallery.image_sources.append(record.source)
        for number, caption in enumerate(record.captions):
            gallery.texts.append(caption)
            gallery.text_sources.append(record.source if len(record.captions) == 1 else f"{record.source}#{number}")
            gallery.text_image_index.append(index[record.image_key])
    return gallery


@dataclass
class RetrievalPair:
    """One training item: an image, one caption, and the dense index of the image (equal for positives)."""

    image: ImageRef
    caption: str
    image_index: int
    source: str


def training_pairs(records: list[CaptionRecord]) -> list[RetrievalPair]:
    """One pair per caption; records sharing an `image_key` share `image_index` (the original's `img_ids` mapping)."""
    index: dict[str, int] = {}
    pairs = []
    for record in records:
        image_index = index.setdefault(record.image_key, len(index))
        pairs += [RetrievalPair(record.image, caption, image_index, record.source) for caption in record.captions]
    return pairs
