"""The three pre-training data streams of CCLM (their collators are in `collators.py`).

Records come from a [`~cclm_hf.data.readers.RecordReader`] (jsonl shards or a `datasets` dataset); a stream turns each
record into one model-ready sample and a collator turns a list of samples into exactly the keyword arguments of
[`~cclm_hf.CCLMForPreTraining.forward`]:

| original (`dataset/pretrain_dataset_multilingual.py`) | stream                   | collator                 |
|-------------------------------------------------------|--------------------------|--------------------------|
| `ImageMultiTextDataset` (`images:`)                   | [`ImageCaptionStream`]   | [`ImageCaptionCollator`] |
| `RegionMultiTextDataset` (`regions:`)                 | [`RegionStream`]         | [`RegionCollator`]       |
| `ParaTextDataset` (`texts_para:`)                     | [`ParallelTextStream`]   | [`ParallelTextCollator`] |

```python
>>> reader = JsonlReader("data/cc3m_uc2/", rank=rank, world_size=world_size, seed=42)
>>> stream = ImageCaptionStream(reader, image_size=224)
>>> loader = DataLoader(stream, batch_size=128, num_workers=8, collate_fn=ImageCaptionCollator(tokenizer, rank=rank))
>>> for epoch in range(epochs):
...     stream.set_epoch(epoch)  # same value on every rank
...     for batch in loader:
...         loss = model(**batch).loss
>>> stream.bad_samples.counts()  # summed over all workers of this process
Counter({'unreadable_image': 3, 'unknown_language': 1})
```

Region batches: the DataLoader's `batch_size` is the number of *images* (the original's `max_images`, 48); the
[`RegionCollator`] flattens their region texts and samples exactly `batch_size` (image, text) items (128).

**Bad samples.** The original wraps every record in `try/except Exception: print(...)`, which also hides programming
errors and leaves no trace but stdout. Here a record-local problem is a [`BadSampleError`] naming `file:line` and the
problem. With `skip_bad_samples=True` (default, so that one record never ends a multi-day run halfway through an
epoch) it is logged at WARNING with its source, counted in `stream.bad_samples` (a [`BadSampleCounter`]: per kind,
summed over the DataLoader workers through shared memory, readable by the trainer) and skipped; with `False` it is
raised. Any other exception is a bug and propagates.

**Languages.** A caption is `{lang: text}`, a list of such dicts (one is drawn uniformly), or a plain string (language
`default_language`). With `languages` given, the keys outside it are ignored and one of the remaining ones is drawn
uniformly; a caption with none of them is a bad sample (`unknown_language`). (The original asserts that *all* chosen
languages are present, i.e. drops a record that lacks one of them.)

**Text.** The streams clean every text with `pre_caption(text, max_words)` so that a text that cleans to nothing is a
bad sample of the stream (where it can be skipped) rather than an exception in the collator; the collators clean again
(`pre_caption` is idempotent), so they also accept raw samples. Tokenization is `<s> ... </s>` truncated to
`max_tokens` as in the original, but padded to the longest text of the batch instead of always to `max_tokens`
(shorter batches, same losses: padding is masked everywhere).

**Randomness.** Each stream draws its choices (caption, language, swap, region element, crop, flip, region
augmentation) from a `random.Random` seeded from `(seed, epoch, rank, worker_id)`, so an epoch is reproducible and
differs from the next one. The image-caption transform (torchvision) uses torch's global RNG, which the DataLoader
seeds per worker (pass it a seeded `generator` for reproducible augmentations). Each collator owns a
`torch.Generator` for masking and region-item sampling: in a DataLoader worker it is seeded from
`(seed, rank, worker_info.seed)` (`worker_info.seed` is drawn anew for every epoch's iterator from the DataLoader's
`generator`), in the main process once from `(seed, rank)`.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import PIL.Image
import torch

from ..processing_cclm import pre_caption
from .images import BadSampleError, load_image
from .readers import BAD_SAMPLE_KINDS, MALFORMED_RECORD, RecordReader, bad_sample, epoch_seed, shard_context
from .transforms import (
    RandAugment,
    caption_mentions_left_or_right,
    pretraining_image_transform,
    region_crop,
    region_patch_mask,
)


logger = logging.getLogger(__name__)

__all__ = [
    "BadSampleCounter",
    "ImageCaptionStream",
    "ParallelTextStream",
    "PretrainingStream",
    "RegionStream",
    "choose_caption",
]

# Language of a caption given as a plain string (ISO 639-2 "undetermined"); see `default_language`.
UNDETERMINED_LANGUAGE = "und"
# Fields that may hold the image of a record, by preference (the original's `image_key` is "binary").
IMAGE_KEYS = ("binary", "image")
# Distinguishes the streams' seeds from the readers' (same base seed and epoch).
_STREAM_SEED_SALT = 2


# =====================================================================================================================
# Bad-sample accounting
# =====================================================================================================================


class BadSampleCounter:
    """Bad samples per kind, summed over the main process and all DataLoader workers of this process.

    The counts live in a shared-memory tensor (one row per worker, so increments never race), which DataLoader
    workers inherit whatever their start method; the trainer reads the totals from the main process. A copy made
    outside a worker start (`copy.deepcopy`, `pickle`) is detached: it counts on its own.

    Args:
        kinds: The kinds counted; unknown kinds are counted as `"other"`.
        max_workers: Workers with distinct rows (beyond that, rows are shared and concurrent increments may race).
    """

    def __init__(self, kinds: Sequence[str] = BAD_SAMPLE_KINDS, max_workers: int = 64) -> None:
        self.kinds = tuple(kinds) if "other" in kinds else (*kinds, "other")
        self.max_workers = max_workers
        self._counts = torch.zeros(max_workers + 1, len(self.kinds), dtype=torch.int64).share_memory_()

    def add(self, kind: str, count: int = 1) -> None:
        column = self.kinds.index(kind if kind in self.kinds else "other")
        worker = torch.utils.data.get_worker_info()
        row = 0 if worker is None else 1 + worker.id % self.max_workers
        self._counts[row, column] += count

    def counts(self) -> collections.Counter[str]:
        """The non-zero counts by kind."""
        totals = self._counts.sum(dim=0).tolist()
        return collections.Counter({kind: n for kind, n in zip(self.kinds, totals, strict=True) if n})

    @property
    def total(self) -> int:
        return int(self._counts.sum())

    def reset(self) -> None:
        self._counts.zero_()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({dict(self.counts())})"


def _kind(error: BadSampleError, default: str) -> str:
    return getattr(error, "kind", None) or default


# =====================================================================================================================
# Record fields
# =====================================================================================================================


def choose_caption(
    captions: Any,
    rng: random.Random,
    *,
    languages: frozenset[str] | None = None,
    default_language: str = UNDETERMINED_LANGUAGE,
    source: str = "<unknown>",
    count: int = 1,
) -> list[tuple[str, str]]:
    """Draw `count` `(text, language)` pairs in distinct languages from a caption field (the original's
    `get_caption` / `get_2_captions`): a list -> one of its entries uniformly; a dict -> `count` of its keys allowed
    by `languages`, uniformly without replacement; a string -> itself, in `default_language`.

    Raises:
        BadSampleError: missing or empty field (`missing_text`), no allowed language (`unknown_language`), a
            non-string text or an unexpected type (`malformed_record`).
    """
    if isinstance(captions, list):
        if not captions:
            raise bad_sample(source, "empty caption list", "missing_text")
        captions = rng.choice(captions)
    if captions is None:
        raise bad_sample(source, "record has no caption", "missing_text")
    if isinstance(captions, str):
        if languages is not None and default_language not in languages:
            raise bad_sample(
                source,
                f"plain-string caption has language {default_language!r}, not in {sorted(languages)}",
                "unknown_language",
            )
        if count > 1:
            raise bad_sample(source, f"a plain-string caption cannot give {count} languages", "missing_text")
        return [(captions, default_language)]
    if not isinstance(captions, Mapping):
        raise bad_sample(source, f"caption has type {type(captions).__name__}", MALFORMED_RECORD)
    if not captions:
        raise bad_sample(source, "empty caption dict", "missing_text")
    allowed = [key for key in captions if languages is None or key in languages]
    if not allowed:
        raise bad_sample(
            source,
            f"no caption in the allowed languages {sorted(languages)}; has {list(captions)}",
            "unknown_language",
        )
    if len(allowed) < count:
        raise bad_sample(source, f"needs captions in {count} languages, has {allowed}", "missing_text")
    chosen = rng.sample(allowed, count) if count > 1 else [rng.choice(allowed)]
    pairs = []
    for language in chosen:
        text = captions[language]
        if not isinstance(text, str):
            raise bad_sample(source, f"caption[{language!r}] has type {type(text).__name__}", MALFORMED_RECORD)
        pairs.append((text, language))
    return pairs


def clean_text(text: str, max_words: int, source: str, what: str = "caption") -> str:
    """`pre_caption`, with an empty result turned into a bad sample (`empty_text`)."""
    try:
        return pre_caption(text, max_words)
    except ValueError as error:
        raise bad_sample(source, f"{what} is empty after cleaning (raw: {text[:80]!r})", "empty_text") from error


def record_id(record: Mapping[str, Any], key: str, source: str) -> int:
    """A record's id field as a 63-bit integer, the same on every process (strings are hashed with BLAKE2b, so
    ids from different shards and workers can be compared after the contrastive losses gather them)."""
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise bad_sample(source, f"id field {key!r} must be an integer or a string, got {value!r}", MALFORMED_RECORD)
    if isinstance(value, int):
        return value
    return int.from_bytes(hashlib.blake2b(value.encode("utf-8"), digest_size=8).digest(), "little") >> 1


def _image_field(record: Mapping[str, Any], image_key: str | None, source: str) -> Any:
    keys = (image_key,) if image_key else IMAGE_KEYS
    for key in keys:
        if record.get(key) is not None:
            return record[key]
    raise bad_sample(source, f"record has no image field ({' or '.join(map(repr, keys))})", "missing_image")


def _load(record, image_key, root, is_path, source) -> PIL.Image.Image:
    value = _image_field(record, image_key, source)
    try:
        return load_image(value, root=root, source=source, is_path=is_path)
    except BadSampleError as error:
        error.kind = "unreadable_image"
        raise


# =====================================================================================================================
# Streams
# =====================================================================================================================


class PretrainingStream(torch.utils.data.IterableDataset):
    """Base of the streams: reads records, makes samples, skips and counts bad ones (see the module docstring).

    Args:
        reader: Source of `(record, source)` pairs; it does the sharding over ranks and workers.
        skip_bad_samples: Log, count and skip bad samples (`True`) or raise them (`False`).
        seed: Seed of the stream's random choices (default: the reader's seed).
        bad_samples: Counter to add to (e.g. one shared by several streams); a new one by default.
    """

    stream_name = "pretraining"

    def __init__(
        self,
        reader: RecordReader,
        *,
        skip_bad_samples: bool = True,
        seed: int | None = None,
        bad_samples: BadSampleCounter | None = None,
    ) -> None:
        super().__init__()
        self.reader = reader
        self.skip_bad_samples = skip_bad_samples
        self.seed = reader.seed if seed is None else seed
        self.epoch = reader.epoch
        self.bad_samples = bad_samples if bad_samples is not None else BadSampleCounter()

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle and random draws of the next epoch (same value on every rank)."""
        self.epoch = epoch
        self.reader.set_epoch(epoch)

    def _rng(self) -> random.Random:
        shard = shard_context(self.reader.rank, self.reader.world_size)
        return random.Random(epoch_seed(self.seed, self.epoch, shard.rank, shard.worker_id, _STREAM_SEED_SALT))

    def _on_bad_sample(self, error: BadSampleError) -> None:
        if not self.skip_bad_samples:
            raise error
        kind = _kind(error, "other")
        self.bad_samples.add(kind)
        logger.warning("Skipping bad %s sample (%s) %s", self.stream_name, kind, error)

    def make_sample(self, record: dict[str, Any], source: str, rng: random.Random) -> dict[str, Any]:
        """Turn one record into a sample, or raise [`BadSampleError`]."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[dict[str, Any]]:
        rng = self._rng()
        for record, source in self.reader.iter_records(on_bad_sample=self._on_bad_sample):
            try:
                sample = self.make_sample(record, source, rng)
            except BadSampleError as error:
                self._on_bad_sample(error)
                continue
            yield sample


class _CaptionOptions:
    """Caption fields shared by the image and region streams."""

    def _set_caption_options(self, languages, default_language, max_words) -> None:
        if languages is not None and (isinstance(languages, str) or not languages):
            raise ValueError(f"`languages` must be a non-empty list of language codes or None, got {languages!r}.")
        self.languages = frozenset(languages) if languages is not None else None
        self.default_language = default_language
        self.max_words = max_words

    def _caption(self, captions, rng, source, count=1) -> list[tuple[str, str]]:
        pairs = choose_caption(
            captions,
            rng,
            languages=self.languages,
            default_language=self.default_language,
            source=source,
            count=count,
        )
        return [(clean_text(text, self.max_words, source), language) for text, language in pairs]


class ImageCaptionStream(_CaptionOptions, PretrainingStream):
    """Image + one caption in a random language (the original's `ImageMultiTextDataset`).

    Records: `{"binary" | "image": <base64 | path | bytes | PIL image>, "caption": {lang: text} | [{lang: text},
    ...] | str}`. Yields `{"pixel_values": FloatTensor[3, S, S], "text": str, "language": str}`, plus `"text_2"` and
    `"language_2"` (a second caption in another language) with `sample_2_captions=True`.

    Args:
        reader: See [`PretrainingStream`].
        image_size: Side `S` of the default transform's output.
        transform: PIL image -> tensor (default: `pretraining_image_transform(image_size)`, the original's).
        languages: Allowed caption languages (None: all).
        default_language: Language of plain-string captions.
        max_words: `pre_caption` word limit (40 for captions).
        sample_2_captions: Also draw a second caption in a different language (both shipped configs: off).
        image_key, caption_key: Record fields (default image field: `"binary"`, else `"image"`).
        image_root, image_is_path: Passed to [`~cclm_hf.data.images.load_image`] (`root`, `is_path`).
        image_id_key: Optional record field identifying the image (several captions of one image, e.g. COCO and
            Visual Genome in the original 4M data); samples then carry `"image_id"` and the collator `image_ids`,
            so that in-batch duplicates are positives of each other in ITC and never hard negatives for ITM. A
            record without the field is a bad sample. Off by default, as in the original.
        skip_bad_samples, seed, bad_samples: See [`PretrainingStream`].
    """

    stream_name = "image-caption"

    def __init__(
        self,
        reader: RecordReader,
        *,
        image_size: int = 224,
        transform: Callable[[PIL.Image.Image], torch.Tensor] | None = None,
        languages: Sequence[str] | None = None,
        default_language: str = UNDETERMINED_LANGUAGE,
        max_words: int = 40,
        sample_2_captions: bool = False,
        image_key: str | None = None,
        caption_key: str = "caption",
        image_root: str | None = None,
        image_is_path: bool | None = None,
        image_id_key: str | None = None,
        skip_bad_samples: bool = True,
        seed: int | None = None,
        bad_samples: BadSampleCounter | None = None,
    ) -> None:
        super().__init__(reader, skip_bad_samples=skip_bad_samples, seed=seed, bad_samples=bad_samples)
        self._set_caption_options(languages, default_language, max_words)
        self.transform = transform if transform is not None else pretraining_image_transform(image_size)
        self.sample_2_captions = sample_2_captions
        self.image_key, self.caption_key = image_key, caption_key
        self.image_root, self.image_is_path = image_root, image_is_path
        self.image_id_key = image_id_key

    def make_sample(self, record: dict[str, Any], source: str, rng: random.Random) -> dict[str, Any]:
        # Text first: a bad caption is found without decoding the image.
        captions = self._caption(record.get(self.caption_key), rng, source, 2 if self.sample_2_captions else 1)
        image = _load(record, self.image_key, self.image_root, self.image_is_path, source)
        sample = {"pixel_values": self.transform(image), "text": captions[0][0], "language": captions[0][1]}
        if self.sample_2_captions:
            sample["text_2"], sample["language_2"] = captions[1]
        if self.image_id_key is not None:
            sample["image_id"] = record_id(record, self.image_id_key, source)
        return sample


class RegionStream(_CaptionOptions, PretrainingStream):
    """Image crop around a random region + up to `max_regions` region texts (the original's `RegionMultiTextDataset`).

    Records: `{"binary" | "image": ..., "caption": optional whole-image caption, "elems": [{"bb": [x, y, w, h]
    (pixels), "caption": dict | list | str, "attributes": optional dict | list | str}, ...]}`.

    Per record: a random element; [`~cclm_hf.data.transforms.region_crop`] around it (random crop containing it,
    flip with p = 0.5 unless `careful_hflip` and a caption or attribute of the record mentions left/right, resize,
    photometric RandAugment); the whole-image caption, when present, is the first item (box (0.5, 0.5, 1, 1), all
    patches, `is_whole_image = 1`); then the elements kept in the crop, in random order, until `max_regions` items.
    Yields `{"pixel_values": [3, S, S], "texts": list[str], "boxes": FloatTensor[n, 4] (cx, cy, w, h) / S,
    "region_masks": LongTensor[n, 1 + G*G], "is_whole_image": LongTensor[n]}` with `G = S // patch_stride`.

    Region text: the element's caption in a random allowed language, with an attribute prepended when present.
    With `code_switch=True` (4M config) the attribute's language is drawn independently of the caption's, else the
    caption's language is used (no attribute if it has none). A list of attributes gives its first one, as the
    original's `[0]`; a string is used whole (the original's `[0]` would take its first character: a bug, see the
    reference's open question 6). Any unusable text of an item that is used makes the whole record bad (the original
    drops the record on any exception too).

    Args:
        reader, skip_bad_samples, seed, bad_samples: See [`PretrainingStream`].
        image_size: Side `S` of the output image.
        patch_stride: Pixels per patch token side of the vision encoder's last stage (32 for Swin-B).
        max_regions: Maximum (image, text) items per record, whole-image caption included.
        min_perc_in_image: A box is kept when more than this fraction of it lies in the crop.
        careful_hflip: Never flip records whose captions or attributes mention left or right.
        code_switch: See above.
        augment: Photometric augmentation of the crop (see `region_crop`).
        languages, default_language, max_words, image_key, caption_key, image_root, image_is_path: As in
            [`ImageCaptionStream`].
    """

    stream_name = "region"

    def __init__(
        self,
        reader: RecordReader,
        *,
        image_size: int = 224,
        patch_stride: int = 32,
        max_regions: int = 5,
        min_perc_in_image: float = 0.5,
        careful_hflip: bool = True,
        code_switch: bool = True,
        augment: RandAugment | bool = True,
        languages: Sequence[str] | None = None,
        default_language: str = UNDETERMINED_LANGUAGE,
        max_words: int = 40,
        image_key: str | None = None,
        caption_key: str = "caption",
        image_root: str | None = None,
        image_is_path: bool | None = None,
        skip_bad_samples: bool = True,
        seed: int | None = None,
        bad_samples: BadSampleCounter | None = None,
    ) -> None:
        super().__init__(reader, skip_bad_samples=skip_bad_samples, seed=seed, bad_samples=bad_samples)
        if image_size % patch_stride != 0:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_stride ({patch_stride}).")
        if max_regions < 1:
            raise ValueError(f"max_regions must be at least 1, got {max_regions}.")
        self._set_caption_options(languages, default_language, max_words)
        self.image_size, self.patch_stride, self.max_regions = image_size, patch_stride, max_regions
        self.min_perc_in_image, self.careful_hflip, self.code_switch = min_perc_in_image, careful_hflip, code_switch
        self.augment = augment
        self.image_key, self.caption_key = image_key, caption_key
        self.image_root, self.image_is_path = image_root, image_is_path

    def _attribute(self, attributes: Any, language: str, rng: random.Random) -> str | None:
        if isinstance(attributes, list) and attributes and all(isinstance(a, Mapping) for a in attributes):
            attributes = rng.choice(attributes)
        if isinstance(attributes, Mapping):
            if self.code_switch:
                keys = [key for key in attributes if self.languages is None or key in self.languages]
            else:
                keys = [language] if language in attributes else []
            attributes = attributes[rng.choice(keys)] if keys else None
        if isinstance(attributes, list):
            attributes = next((a for a in attributes if isinstance(a, str) and a.strip()), None)
        return attributes if isinstance(attributes, str) and attributes.strip() else None

    def _elements(self, record: dict[str, Any], source: str) -> list[Mapping[str, Any]]:
        elems = record.get("elems")
        if not isinstance(elems, list) or not elems:
            raise bad_sample(source, "record has no region elements ('elems')", "invalid_region")
        for index, elem in enumerate(elems):
            if not isinstance(elem, Mapping) or not isinstance(elem.get("bb"), (list, tuple)):
                raise bad_sample(source, f"element {index} has no box 'bb'", "invalid_region")
        return elems

    def make_sample(self, record: dict[str, Any], source: str, rng: random.Random) -> dict[str, Any]:
        elems = self._elements(record, source)
        image = _load(record, self.image_key, self.image_root, self.image_is_path, source)
        mentions = [record.get(self.caption_key)] + [[e.get("caption"), e.get("attributes")] for e in elems]
        try:
            region = region_crop(
                image,
                [elem["bb"] for elem in elems],
                rng.randrange(len(elems)),
                self.image_size,
                rng,
                careful_hflip=self.careful_hflip and caption_mentions_left_or_right(mentions),
                min_perc_in_image=self.min_perc_in_image,
                augment=self.augment,
                source=source,
            )
        except BadSampleError as error:
            error.kind = _kind(error, "invalid_region")
            raise

        grid = self.image_size // self.patch_stride
        texts: list[str] = []
        boxes: list[torch.Tensor] = []
        masks: list[torch.Tensor] = []
        if record.get(self.caption_key) is not None:
            texts.append(self._caption(record[self.caption_key], rng, source)[0][0])
            boxes.append(torch.tensor([0.5, 0.5, 1.0, 1.0]))
            masks.append(torch.ones(1 + grid * grid, dtype=torch.long))
        num_whole = len(texts)
        # The original visits all elements in random order and keeps those inside the crop: the same as a random
        # order of the kept ones.
        order = list(range(len(region.indices)))
        rng.shuffle(order)
        for k in order[: self.max_regions - num_whole]:
            elem = elems[region.indices[k]]
            item_source = f"{source} (element {region.indices[k]})"
            text, language = choose_caption(
                elem.get("caption"),
                rng,
                languages=self.languages,
                default_language=self.default_language,
                source=item_source,
            )[0]
            attribute = self._attribute(elem.get("attributes"), language, rng)
            if attribute is not None:
                text = f"{attribute} {text}"
            texts.append(clean_text(text, self.max_words, item_source))
            boxes.append(region.boxes[k])
            masks.append(region_patch_mask(region.boxes_xywh[k], self.image_size, self.patch_stride))
        is_whole_image = torch.zeros(len(texts), dtype=torch.long)
        is_whole_image[:num_whole] = 1
        return {
            "pixel_values": region.pixel_values,
            "texts": texts,
            "boxes": torch.stack(boxes).float(),
            "region_masks": torch.stack(masks),
            "is_whole_image": is_whole_image,
        }


class ParallelTextStream(PretrainingStream):
    """Translation pairs, randomly swapped so that both directions are trained (the original's `ParaTextDataset`).

    Records: `{"source_text": str, "target_text": str}`. Yields `{"text": str, "text_2": str}`: with probability
    `swap_prob` (0.5) `text` is the target, else the source.

    Args:
        reader, skip_bad_samples, seed, bad_samples: See [`PretrainingStream`].
        max_words: `pre_caption` word limit (64 for parallel text).
        source_key, target_key: Record fields.
        swap_prob: Probability of swapping the pair.
        pair_id_key: Optional record field identifying what a pair says (e.g. the same sentence translated into
            several languages); samples then carry `"image_id"` (the name the model and collators use for "what
            the pair is about") so that duplicates are TTC positives and never TTM negatives. Off by default.
    """

    stream_name = "parallel-text"

    def __init__(
        self,
        reader: RecordReader,
        *,
        max_words: int = 64,
        source_key: str = "source_text",
        target_key: str = "target_text",
        swap_prob: float = 0.5,
        pair_id_key: str | None = None,
        skip_bad_samples: bool = True,
        seed: int | None = None,
        bad_samples: BadSampleCounter | None = None,
    ) -> None:
        super().__init__(reader, skip_bad_samples=skip_bad_samples, seed=seed, bad_samples=bad_samples)
        self.max_words, self.source_key, self.target_key, self.swap_prob = max_words, source_key, target_key, swap_prob
        self.pair_id_key = pair_id_key

    def make_sample(self, record: dict[str, Any], source: str, rng: random.Random) -> dict[str, Any]:
        texts = []
        for key in (self.source_key, self.target_key):
            text = record.get(key)
            if text is None:
                raise bad_sample(source, f"record has no {key!r}", "missing_text")
            if not isinstance(text, str):
                raise bad_sample(source, f"{key!r} has type {type(text).__name__}", MALFORMED_RECORD)
            texts.append(clean_text(text, self.max_words, source, what=key))
        if rng.random() < self.swap_prob:
            texts.reverse()
        sample = {"text": texts[0], "text_2": texts[1]}
        if self.pair_id_key is not None:
            sample["image_id"] = record_id(record, self.pair_id_key, source)
        return sample
