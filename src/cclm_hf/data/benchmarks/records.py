"""Validated benchmark records, the policy for bad ones, and the image checks that run before training.

Every reader of this package returns lists of the record types below. A record keeps its `source` (`"file:line"`,
`"file[index]"` or `"file[key]"`, see `files.py`) so that any later problem names the annotation it came from.

**Bad records.** A reader reports each problem local to one record (malformed line, unknown label, empty text, missing
field) as a [`~cclm_hf.data.images.BadSampleError`] to a [`BadRecordLog`]: without `--skip_bad_samples` it is raised
(the scripts stop with that message), with it the record is dropped, logged and counted by kind. Records that the
original protocol leaves out on purpose (XVNLI pairs without a gold label, xFlickr&CO / WIT captions that are empty)
are not errors: they are counted under their own kind and summarised in one log line.

**Images.** [`drop_missing_images`] checks that every image file of every record exists *before* anything is trained or
evaluated, and names the annotation file, the record and the path of each missing one. [`verify_images`] decodes every
distinct image once (threads), which the scripts do for evaluation sets so that evaluation never meets a broken image
halfway through (a skipped evaluation sample would otherwise misalign the gathered predictions).
"""

from __future__ import annotations

import collections
import logging
import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import PIL.Image

from ...errors import CCLMUserError
from ..images import BadSampleError, load_image
from ..readers import bad_sample


logger = logging.getLogger(__name__)

__all__ = [
    "BadRecordLog",
    "BenchmarkDataError",
    "BenchmarkRecord",
    "CaptionRecord",
    "EntailmentRecord",
    "ImagePairRecord",
    "ImageRef",
    "QuestionRecord",
    "drop_missing_images",
    "unique_images",
    "verify_images",
]

# Kinds of records left out on purpose by the original protocols (never errors).
PROTOCOL_SKIPS = ("no_gold_label", "empty_caption")
# How many bad records are logged one by one before only the counts are.
_MAX_LOGGED = 20


class BenchmarkDataError(CCLMUserError, ValueError):
    """Bad benchmark input that stops a run: the message names the file, the record and the problem.

    Takes a single message argument so that it survives being re-raised from a DataLoader worker.
    """


@dataclass(frozen=True)
class ImageRef:
    """One image of a record: a file path (already joined with its image root) or a base64 string."""

    value: str
    is_path: bool = True

    def load(self, source: str) -> PIL.Image.Image:
        """Decode to RGB, or raise [`BadSampleError`] naming `source`."""
        return load_image(self.value, is_path=self.is_path, source=source)

    def __str__(self) -> str:
        return self.value if self.is_path else f"<base64 image, {len(self.value)} characters>"


@dataclass
class BenchmarkRecord:
    source: str

    @property
    def images(self) -> tuple[ImageRef, ...]:
        raise NotImplementedError


@dataclass
class CaptionRecord(BenchmarkRecord):
    """An image and its captions (retrieval). `image_key` identifies the image across records and files (the original
    `image_id`, `id` or `image_url`): captions of records with the same key are positives of each other."""

    image: ImageRef
    image_key: str
    captions: list[str]

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return (self.image,)


@dataclass
class EntailmentRecord(BenchmarkRecord):
    """XVNLI: the premise image, the hypothesis, and the label index."""

    image: ImageRef
    text: str
    label: int
    pair_id: str = ""

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return (self.image,)


@dataclass
class QuestionRecord(BenchmarkRecord):
    """VQA / GQA: an image, a question and the answers with their training weights.

    `answers` maps each distinct answer to its weight (the original's `answer_weight`); `annotator_answers` keeps every
    human answer in order (VQA v2, for the official accuracy), empty when the file has none (test sets).
    """

    image: ImageRef
    question: str
    question_id: int | str
    answers: dict[str, float] = field(default_factory=dict)
    annotator_answers: list[str] = field(default_factory=list)

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return (self.image,)


@dataclass
class ImagePairRecord(BenchmarkRecord):
    """NLVR2 / MaRVL: a sentence about a left and a right image, label 1 (true) or 0 (false)."""

    left: ImageRef
    right: ImageRef
    sentence: str
    label: int
    identifier: str = ""

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return (self.left, self.right)


Record = TypeVar("Record", bound=BenchmarkRecord)


class BadRecordLog:
    """Raise bad records, or (with `skip=True`) log and count them; also counts the protocol's deliberate skips.

    Use an instance as the `on_bad_record` callback of the readers.

    Args:
        skip: The user asked for `--skip_bad_samples`.
        name: What is being read (`"xvnli test ar"`), prefixed to the log lines.
    """

    def __init__(self, skip: bool, name: str = "") -> None:
        self.skip = skip
        self.name = name
        self.counts: collections.Counter[str] = collections.Counter()

    def __call__(self, error: BadSampleError) -> None:
        if not self.skip:
            raise error
        kind = getattr(error, "kind", None) or "other"
        self.counts[kind] += 1
        if sum(self.counts[k] for k in self.counts if k not in PROTOCOL_SKIPS) <= _MAX_LOGGED:
            logger.warning("%sskipping bad record (%s): %s", self._prefix, kind, error)

    def report(self, source: str, reason: str, kind: str) -> None:
        """Report a bad record found by a reader (raised, or logged and counted)."""
        self(bad_sample(source, reason, kind))

    def protocol_skip(self, kind: str) -> None:
        """Count a record that the original protocol leaves out (see `PROTOCOL_SKIPS`)."""
        self.counts[kind] += 1

    @property
    def _prefix(self) -> str:
        return f"{self.name}: " if self.name else ""

    @property
    def skipped(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))

    def summarize(self, kept: int) -> None:
        """Log how many records were kept and how many were skipped, by kind."""
        if self.counts:
            logger.info("%s%d records kept, skipped: %s", self._prefix, kept, self.skipped)


def drop_missing_images(records: Sequence[Record], log: BadRecordLog, image_root: str | None = None) -> list[Record]:
    """Check that every image file of `records` exists; return the records whose images all do.

    Without `log.skip` any missing file is a [`BenchmarkDataError`] naming the annotation record and the path of the
    first missing images and how many there are in total; with it each record with a missing image is dropped and
    counted (`missing_image`).
    """
    exists: dict[str, bool] = {}
    kept: list[Record] = []
    missing: list[tuple[str, str]] = []
    for record in records:
        absent = []
        for image in record.images:
            if image.is_path:
                if image.value not in exists:
                    exists[image.value] = os.path.isfile(image.value)
                if not exists[image.value]:
                    absent.append(image.value)
        if absent:
            missing.append((record.source, absent[0]))
        else:
            kept.append(record)
    if not missing:
        return kept
    where = f" under the image root {image_root}" if image_root else ""
    if not log.skip:
        first = "; ".join(f"{source}: image file not found: {path}" for source, path in missing[:3])
        more = f" (and {len(missing) - 3} more records)" if len(missing) > 3 else ""
        raise BenchmarkDataError(
            f"{len(missing)} record(s) refer to missing images{where}: {first}{more}. Fix the image root (each "
            f"script has a flag for it) or pass --skip_bad_samples to leave these records out."
        )
    for source, path in missing:
        log.report(source, f"image file not found: {path}", "missing_image")
    return kept


def verify_images(records: Sequence[Record], log: BadRecordLog, num_threads: int = 8) -> list[Record]:
    """Decode every distinct image of `records` once; return the records whose images all decode.

    A broken image (empty, truncated, not an image, undecodable base64) is a [`BadSampleError`] naming the record
    (raised without `log.skip`; with it the record is dropped and counted as `unreadable_image`).
    """
    first_source: dict[ImageRef, str] = {}
    for record in records:
        for image in record.images:
            first_source.setdefault(image, record.source)

    def check(item: tuple[ImageRef, str]) -> tuple[ImageRef, str | None]:
        image, source = item
        try:
            image.load(source)
        except BadSampleError as error:
            return image, error.reason
        return image, None

    with ThreadPoolExecutor(max_workers=max(1, num_threads)) as pool:
        failures = {image: reason for image, reason in pool.map(check, first_source.items()) if reason is not None}
    if not failures:
        return list(records)
    kept = []
    for record in records:
        broken = [image for image in record.images if image in failures]
        if broken:
            log(bad_sample(record.source, failures[broken[0]], "unreadable_image"))
        else:
            kept.append(record)
    return kept


def unique_images(records: Iterable[BenchmarkRecord]) -> list[ImageRef]:
    """The distinct images of `records`, in order of first appearance."""
    return list(dict.fromkeys(image for record in records for image in record.images))
