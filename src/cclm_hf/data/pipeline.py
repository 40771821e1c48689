"""Readers -> streams -> collators -> DataLoaders -> [`~cclm_hf.training.PretrainingSchedule`]: the pre-training
data path, one function for every caller (`examples/pretrain.py`, the built-in demo, the step benchmark).

Each stream is configured by a dict with the keys of the recipe's YAML (`examples/configs/*.yaml`):

| key            | images | regions | parallel_text | meaning                                                  |
|----------------|--------|---------|---------------|----------------------------------------------------------|
| batch_size     | yes    | yes     | yes           | (image, text) items per batch                            |
| max_words      | 40     | 40      | 64            | `pre_caption` word limit                                 |
| max_tokens     | 40     | 40      | 64            | token limit, `<s>` and `</s>` included                   |
| max_masks      | 12     | 12      | 20            | masked positions per text                                |
| image_root     | yes    | yes     |               | folder that relative image paths are resolved against    |
| max_images     |        | 48      |               | images per region DataLoader batch                       |
| max_regions    |        | 5       |               | region texts per image                                   |
| translation_lm |        |         | false         | mask `<s> A </s> B </s>` instead (the original's use_tlm) |
| id_key         | null   |         | null          | record field whose duplicates are positives, never negatives |

Numbers are the original's defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import PIL.Image
import torch
from torch.utils.data import DataLoader

from ..training.schedule import PretrainingSchedule
from .collators import ImageCaptionCollator, ParallelTextCollator, RegionCollator
from .pretraining import BadSampleCounter, ImageCaptionStream, ParallelTextStream, RegionStream
from .readers import RecordReader, epoch_seed
from .transforms import eval_transform


__all__ = ["STREAM_DEFAULTS", "build_pretraining_schedule"]

STREAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "images": {"max_words": 40, "max_tokens": 40, "max_masks": 12, "image_root": None, "id_key": None},
    "regions": {
        "max_words": 40,
        "max_tokens": 40,
        "max_masks": 12,
        "image_root": None,
        "max_images": 48,
        "max_regions": 5,
    },
    "parallel_text": {"max_words": 64, "max_tokens": 64, "max_masks": 20, "translation_lm": False, "id_key": None},
}


def _options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    known = {"batch_size", *STREAM_DEFAULTS[name]}
    unknown = set(options) - known - {"files", "dataset"}  # where the records come from: the caller's business
    if unknown:
        raise ValueError(f"unknown option(s) of the {name} stream: {sorted(unknown)}; known: {sorted(known)}")
    if "batch_size" not in options:
        raise ValueError(f"the {name} stream needs a batch_size")
    return {**STREAM_DEFAULTS[name], **options}


def build_pretraining_schedule(
    tokenizer: Any,
    *,
    image_size: int,
    patch_stride: int,
    images: tuple[RecordReader, Mapping[str, Any]] | None = None,
    regions: tuple[RecordReader, Mapping[str, Any]] | None = None,
    parallel_text: tuple[RecordReader, Mapping[str, Any]] | None = None,
    languages: Sequence[str] | None = None,
    augment: bool = True,
    skip_bad_samples: bool = False,
    bad_samples: BadSampleCounter | None = None,
    num_workers: int = 0,
    mode: Literal["alternating", "summed"] = "alternating",
    region_probability: float = 0.5,
    seed: int = 0,
    rank: int = 0,
) -> PretrainingSchedule:
    """The pre-training schedule over the given streams.

    Args:
        tokenizer: XLM-R-style tokenizer of the model.
        image_size: the model's input size; `patch_stride`: pixels per last-stage token side (region masks).
        images, regions, parallel_text: `(reader, options)` of each stream to use (options: module docstring).
        languages: allowed caption languages (None: all).
        augment: the original's random augmentation; without it images are only resized and normalised.
        skip_bad_samples, bad_samples: log, count (in `bad_samples`) and skip bad records, or raise them.
        num_workers: DataLoader workers per stream.
        mode, region_probability, seed: see [`PretrainingSchedule`]; `seed` also seeds the collators' masking.
        rank: this process's index (the readers already know theirs; the collators' generators need it).
    """
    bad_samples = bad_samples if bad_samples is not None else BadSampleCounter()
    common = {"skip_bad_samples": skip_bad_samples, "bad_samples": bad_samples}
    transform: Callable[[PIL.Image.Image], torch.Tensor] | None = None if augment else eval_transform(image_size)

    def loader(dataset, batch_size, collate_fn) -> DataLoader:
        return DataLoader(
            dataset, batch_size=batch_size, collate_fn=collate_fn, num_workers=num_workers, drop_last=True
        )

    def stream_seed(name: str) -> int:
        # each collator's masking generator gets its own seed: with one seed for all, the streams' masks would be
        # drawn from identical random sequences
        return epoch_seed(seed, list(STREAM_DEFAULTS).index(name)) % 2**62

    def text_options(options):
        return {key: options[key] for key in ("max_tokens", "max_words", "max_masks")}

    sources = {}
    if images is not None:
        reader, options = images[0], _options("images", images[1])
        stream = ImageCaptionStream(
            reader,
            image_size=image_size,
            transform=transform,
            languages=languages,
            max_words=options["max_words"],
            image_root=options["image_root"],
            image_id_key=options["id_key"],
            **common,
        )
        collate = ImageCaptionCollator(tokenizer, **text_options(options), seed=stream_seed("images"), rank=rank)
        sources["image_batches"] = loader(stream, options["batch_size"], collate)
    if regions is not None:
        reader, options = regions[0], _options("regions", regions[1])
        stream = RegionStream(
            reader,
            image_size=image_size,
            patch_stride=patch_stride,
            max_regions=options["max_regions"],
            languages=languages,
            max_words=options["max_words"],
            image_root=options["image_root"],
            augment=augment,
            **common,
        )
        collate = RegionCollator(
            tokenizer, options["batch_size"], **text_options(options), seed=stream_seed("regions"), rank=rank
        )
        sources["region_batches"] = loader(stream, options["max_images"], collate)
    if parallel_text is not None:
        reader, options = parallel_text[0], _options("parallel_text", parallel_text[1])
        stream = ParallelTextStream(reader, max_words=options["max_words"], pair_id_key=options["id_key"], **common)
        collate = ParallelTextCollator(
            tokenizer,
            **text_options(options),
            translation_lm=options["translation_lm"],
            seed=stream_seed("parallel_text"),
            rank=rank,
        )
        sources["parallel_batches"] = loader(stream, options["batch_size"], collate)
    return PretrainingSchedule(**sources, mode=mode, region_probability=region_probability, seed=seed)
