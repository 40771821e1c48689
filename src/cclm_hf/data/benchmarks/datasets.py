"""Map-style torch datasets over benchmark records: decode images on access, apply the original transforms.

The samples are plain dicts (tensors and strings); the collators of `collators.py` tokenize and batch them into the
keyword arguments of the task heads.

**Bad samples at load time.** Records arrive validated and with existing images (`records.py`), but a training image can
still fail to decode (truncated, empty, broken base64): evaluation sets are decoded once before evaluation
(`verify_images`), training sets are not (that would read every image twice). Such a failure is raised as a
[`BenchmarkDataError`] naming the record, or with `skip_bad_samples=True` logged, counted in `bad_samples` (a
[`~cclm_hf.data.BadSampleCounter`]: summed over DataLoader workers) and replaced by the next good sample, which keeps
the batch size. Evaluation datasets must be built with `skip_bad_samples=False`: a replaced evaluation sample would be
scored twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import PIL.Image
import torch
from torchvision.transforms import functional as TF

from ..images import BadSampleError
from ..pretraining import BadSampleCounter
from ..transforms import caption_mentions_left_or_right
from .records import BenchmarkDataError, EntailmentRecord, ImagePairRecord, ImageRef, QuestionRecord
from .retrieval import RetrievalPair


logger = logging.getLogger(__name__)

__all__ = [
    "BenchmarkDataset",
    "EntailmentDataset",
    "ImageDataset",
    "ImagePairDataset",
    "QuestionAnswerDataset",
    "RetrievalTrainDataset",
]

Transform = Callable[[PIL.Image.Image], torch.Tensor]
# VQA's careful flip looks for these words in the question and the answers (the original's test, case-insensitive).
VQA_FLIP_KEYWORDS = ("left", "right")
_MAX_LOGGED = 20


class BenchmarkDataset(torch.utils.data.Dataset):
    """Base: `make_sample(item)` for each item; bad samples raised or replaced (see the module docstring).

    Args:
        items: Records (or training pairs).
        transform: PIL image -> normalised tensor.
        skip_bad_samples: Replace a sample that fails to load by the next good one instead of raising.
        name: Used in log lines.
    """

    def __init__(
        self, items: Sequence[Any], transform: Transform, *, skip_bad_samples: bool = False, name: str = "dataset"
    ) -> None:
        self.items = list(items)
        self.transform = transform
        self.skip_bad_samples = skip_bad_samples
        self.name = name
        self.bad_samples = BadSampleCounter()

    def __len__(self) -> int:
        return len(self.items)

    def make_sample(self, item: Any) -> dict[str, Any]:
        raise NotImplementedError

    def load(self, image: ImageRef, source: str) -> torch.Tensor:
        return self.transform(image.load(source))

    def __getitem__(self, index: int) -> dict[str, Any]:
        for attempt in range(len(self.items)):
            item = self.items[(index + attempt) % len(self.items)]
            try:
                return self.make_sample(item)
            except BadSampleError as error:
                if not self.skip_bad_samples:
                    raise BenchmarkDataError(str(error)) from error
                self.bad_samples.add("unreadable_image")
                if self.bad_samples.total <= _MAX_LOGGED:
                    logger.warning("%s: skipping bad sample (replaced by the next one): %s", self.name, error)
        raise BenchmarkDataError(f"{self.name}: no sample of the {len(self.items)} could be loaded")


class RetrievalTrainDataset(BenchmarkDataset):
    """Training pairs -> `{"pixel_values", "text", "image_id"}` (`image_id` equal for positives)."""

    def make_sample(self, pair: RetrievalPair) -> dict[str, Any]:
        return {"pixel_values": self.load(pair.image, pair.source), "text": pair.caption, "image_id": pair.image_index}


class EntailmentDataset(BenchmarkDataset):
    """XVNLI records -> `{"pixel_values", "text", "label"}`."""

    def make_sample(self, record: EntailmentRecord) -> dict[str, Any]:
        return {"pixel_values": self.load(record.image, record.source), "text": record.text, "label": record.label}


class ImagePairDataset(BenchmarkDataset):
    """NLVR2 / MaRVL records -> `{"pixel_values": [2, 3, H, W] (left, right), "text", "label"}`.

    Each image gets its own draw of the transform, as in the original (whose training flips do not check the
    sentence for "left" / "right").
    """

    def make_sample(self, record: ImagePairRecord) -> dict[str, Any]:
        pixel_values = torch.stack([self.load(record.left, record.source), self.load(record.right, record.source)])
        return {"pixel_values": pixel_values, "text": record.sentence, "label": record.label}


class QuestionAnswerDataset(BenchmarkDataset):
    """VQA / GQA records -> `{"pixel_values", "question", "answers", "weights", "question_id"}`.

    With `careful_flip=True` (training, with a transform built with `horizontal_flip=False`) the image is flipped
    with probability 0.5 before the transform unless the question or one of its answers mentions "left" or "right"
    (the original's `careful_hflip`); the draw uses torch's RNG, seeded per DataLoader worker.
    """

    def __init__(
        self, items: Sequence[QuestionRecord], transform: Transform, *, careful_flip: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(items, transform, **kwargs)
        self.careful_flip = careful_flip

    def make_sample(self, record: QuestionRecord) -> dict[str, Any]:
        image = record.image.load(record.source)
        if self.careful_flip and torch.rand(()).item() < 0.5:
            if not caption_mentions_left_or_right([record.question, *record.answers], VQA_FLIP_KEYWORDS):
                image = TF.hflip(image)
        return {
            "pixel_values": self.transform(image),
            "question": record.question,
            "answers": list(record.answers),
            "weights": list(record.answers.values()),
            "question_id": record.question_id,
        }


class ImageDataset(BenchmarkDataset):
    """Images alone (retrieval galleries) -> `{"pixel_values"}`; `sources[i]` names the record of image `i`."""

    def __init__(self, images: Sequence[ImageRef], sources: Sequence[str], transform: Transform, **kwargs: Any):
        super().__init__(list(zip(images, sources, strict=True)), transform, **kwargs)

    def make_sample(self, item: tuple[ImageRef, str]) -> dict[str, Any]:
        image, source = item
        return {"pixel_values": self.load(image, source)}
