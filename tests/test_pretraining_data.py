"""Tests of the pre-training data pipeline: readers (`cclm_hf.data.readers`), streams and collators
(`cclm_hf.data.pretraining`, `cclm_hf.data.collators`), end to end from records on disk to the losses of a tiny `CCLMForPreTraining`."""

from __future__ import annotations

import base64
import collections
import copy
import inspect
import io
import json
import logging
import math
import pickle
import random
import tarfile
from pathlib import Path

import datasets
import numpy as np
import PIL.Image
import pytest
import torch
from model_factories import tiny_config
from torch.utils.data import DataLoader, IterableDataset

from cclm_hf import CCLMForPreTraining
from cclm_hf.data.collators import ImageCaptionCollator, ParallelTextCollator, RegionCollator
from cclm_hf.data.images import BadSampleError
from cclm_hf.data.pretraining import (
    BadSampleCounter,
    ImageCaptionStream,
    ParallelTextStream,
    RegionStream,
    choose_caption,
)
from cclm_hf.data.readers import HFDatasetReader, JsonlReader, list_data_files


IMAGE_SIZE = 32  # tiny_config: Swin with 2 stages -> patch stride 8, a 4 x 4 grid
PATCH_STRIDE = 8
GRID = IMAGE_SIZE // PATCH_STRIDE
TEXT_KEYS = {"input_ids", "attention_mask", "masked_input_ids", "masked_positions", "masked_labels"}


# =====================================================================================================================
# Helpers
# =====================================================================================================================


def png_bytes(seed: int = 0, width: int = 48, height: int = 40) -> bytes:
    array = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def b64(seed: int = 0, **kwargs) -> str:
    return base64.b64encode(png_bytes(seed, **kwargs)).decode()


def write_jsonl(path: Path, lines: list) -> Path:
    """Write records (dicts are JSON-encoded, strings written verbatim) one per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for line in lines:
            handle.write((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n")
    return path


def cheap_transform(image: PIL.Image.Image) -> torch.Tensor:
    """A deterministic stand-in for the augmenting transform, for tests that only look at the texts."""
    return torch.zeros(3, IMAGE_SIZE, IMAGE_SIZE)


class Sources(IterableDataset):
    """The sources a reader yields, as a torch dataset (to run readers inside DataLoader workers)."""

    def __init__(self, reader):
        self.reader = reader

    def __iter__(self):
        for _, source in self.reader:
            yield source


def read_all(reader_factory, world_size: int = 2, num_workers: int = 2, epoch: int = 0) -> list[list[str]]:
    """Per rank, the sources read by `reader_factory(rank)` through a DataLoader with `num_workers` workers."""
    per_rank = []
    for rank in range(world_size):
        reader = reader_factory(rank)
        reader.set_epoch(epoch)
        loader = DataLoader(Sources(reader), batch_size=None, num_workers=num_workers)
        per_rank.append(list(loader))
    return per_rank


def assert_exactly_once(per_rank: list[list[str]], expected: set[str]) -> None:
    seen = [source for sources in per_rank for source in sources]
    duplicates = [source for source, n in collections.Counter(seen).items() if n > 1]
    assert not duplicates, f"read more than once: {duplicates[:5]}"
    assert set(seen) == expected
    assert all(per_rank), "a rank got no data"


@pytest.fixture
def model_and_tokenizer(tiny_tokenizer):
    """The tiny model of `model_factories`, with the tokenizer's vocabulary, room for a TLM sequence, and a text
    width equal to the vision width (48): parallel-text batches cross-attend to text states with the layers that
    attend to image tokens otherwise (as in the original, where both widths are 1024)."""
    text_config = {
        "vocab_size": len(tiny_tokenizer),
        "hidden_size": 48,
        "num_hidden_layers": 4,
        "num_fusion_layers": 2,
        "num_attention_heads": 4,
        "intermediate_size": 64,
        "max_position_embeddings": 64,
    }
    torch.manual_seed(0)
    return CCLMForPreTraining(tiny_config(text_config=text_config)).eval(), tiny_tokenizer


def forward_keys(model) -> set[str]:
    return set(inspect.signature(model.forward).parameters)


# =====================================================================================================================
# Readers
# =====================================================================================================================


def test_list_data_files(tmp_path):
    for name in ("b.jsonl", "a.jsonl", ".hidden"):
        write_jsonl(tmp_path / "dir" / name, [{"x": 1}])
    single = write_jsonl(tmp_path / "single.jsonl", [{"x": 1}])
    directory = [str(tmp_path / "dir" / "a.jsonl"), str(tmp_path / "dir" / "b.jsonl")]
    assert list_data_files(tmp_path / "dir") == directory
    assert list_data_files(f"{single}, {tmp_path / 'dir'}") == [str(single), *directory]
    assert list_data_files([single]) == [str(single)]
    with pytest.raises(FileNotFoundError, match="nope"):
        list_data_files(str(tmp_path / "nope"))


@pytest.mark.parametrize(
    ("num_files", "lines_per_file", "buffer"),
    [(10, 3, 0), (1, 17, 0), (3, 5, 4)],  # whole files per shard; fewer files than shards (line stride); buffer
)
def test_jsonl_reader_sharding(tmp_path, num_files, lines_per_file, buffer):
    expected = set()
    for f in range(num_files):
        path = write_jsonl(tmp_path / f"part-{f:02d}.jsonl", [{"id": f"{f}-{i}"} for i in range(lines_per_file)])
        expected |= {f"{path}:{i + 1}" for i in range(lines_per_file)}

    def factory(seed):
        return lambda rank: JsonlReader(tmp_path, rank=rank, world_size=2, seed=seed, shuffle_buffer_size=buffer)

    epoch_0 = read_all(factory(seed=1), epoch=0)
    assert_exactly_once(epoch_0, expected)
    epoch_1 = read_all(factory(seed=1), epoch=1)
    assert_exactly_once(epoch_1, expected)
    assert read_all(factory(seed=1), epoch=0) == epoch_0, "same seed and epoch must give the same order"
    if num_files > 1 or buffer:
        assert epoch_1 != epoch_0, "the order must change across epochs"


def test_jsonl_reader_records_and_malformed_lines(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"a": 1}, "", "{not json", "[1, 2]", {"a": 2}])
    with open(path, "ab") as handle:
        handle.write(b'{"a": "\xff\xfe"}\n')
    reader = JsonlReader(path, shuffle=False)
    errors = []
    records = list(reader.iter_records(on_bad_sample=errors.append))
    assert records == [({"a": 1}, f"{path}:1"), ({"a": 2}, f"{path}:5")]  # the blank line 2 is skipped silently
    assert [error.source for error in errors] == [f"{path}:3", f"{path}:4", f"{path}:6"]
    assert "malformed JSON" in str(errors[0]) and "not an object" in str(errors[1]) and "UTF-8" in str(errors[2])
    with pytest.raises(BadSampleError, match=f"{path}:3"):
        list(reader)  # without a callback the first bad line raises


def test_jsonl_reader_repeat_moves_to_next_epoch(tmp_path):
    for f in range(4):
        write_jsonl(tmp_path / f"{f}.jsonl", [{"f": f}])
    reader = JsonlReader(tmp_path, seed=3, repeat=True)
    iterator = iter(reader)
    first_passes = [next(iterator)[1] for _ in range(8)]
    assert first_passes[:4] == [source for _, source in JsonlReader(tmp_path, seed=3)]
    later = JsonlReader(tmp_path, seed=3)
    later.set_epoch(1)
    assert first_passes[4:] == [source for _, source in later]


def test_hf_map_style_reader_sharding():
    dataset = datasets.Dataset.from_list([{"source_text": f"s{i}", "target_text": f"t{i}"} for i in range(23)])
    expected = {f"rows[{i}]" for i in range(23)}

    def factory(rank):
        return HFDatasetReader(dataset, rank=rank, world_size=2, seed=5, name="rows")

    epoch_0, epoch_1 = read_all(factory, epoch=0), read_all(factory, epoch=1)
    assert_exactly_once(epoch_0, expected)
    assert_exactly_once(epoch_1, expected)
    assert epoch_0 != epoch_1
    assert read_all(factory, epoch=0) == epoch_0
    # the record behind a source is the row it names
    record, source = next(iter(HFDatasetReader(dataset, name="rows")))
    assert record == dataset[int(source[5:-1])]


def test_hf_iterable_reader_sharding():
    dataset = datasets.Dataset.from_list([{"id": i} for i in range(40)]).to_iterable_dataset(num_shards=4)

    class Ids(IterableDataset):
        def __init__(self, reader):
            self.reader = reader

        def __iter__(self):
            for record, _ in self.reader:
                yield record["id"]

    def run(epoch):
        per_rank = []
        for rank in range(2):
            reader = HFDatasetReader(dataset, rank=rank, world_size=2, seed=5, shuffle_buffer_size=8)
            reader.set_epoch(epoch)
            per_rank.append([int(i) for i in DataLoader(Ids(reader), batch_size=None, num_workers=2)])
        return per_rank

    epoch_0, epoch_1 = run(0), run(1)
    for per_rank in (epoch_0, epoch_1):
        assert_exactly_once([[str(i) for i in ids] for ids in per_rank], {str(i) for i in range(40)})
    assert epoch_0 != epoch_1
    assert run(0) == epoch_0


def write_tar_shard(path: Path, samples: list[tuple[str, bytes, dict]]) -> Path:
    with tarfile.open(path, "w") as tar:
        for key, image, metadata in samples:
            for name, data in ((f"{key}.png", image), (f"{key}.json", json.dumps(metadata).encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def test_webdataset_tar_shards(tmp_path, caplog):
    shards = []
    for s in range(2):
        samples = [
            (f"s{s}-{i:02d}", png_bytes(10 * s + i), {"caption": {"en": f"a photo number {i}"}}) for i in range(5)
        ]
        if s == 1:  # one corrupt image: must be a bad sample, not an exception inside the `datasets` iterator
            samples[2] = (samples[2][0], png_bytes(99)[:60], samples[2][2])
        shards.append(str(write_tar_shard(tmp_path / f"shard-{s}.tar", samples)))
    dataset = datasets.load_dataset(
        "webdataset", data_files={"train": shards}, split="train", streaming=True, cache_dir=str(tmp_path / "cache")
    )

    # records in the original layout, sources naming the tar and the key, each sample on exactly one rank
    per_rank = [[s for _, s in HFDatasetReader(dataset, rank=r, world_size=2, seed=0)] for r in range(2)]
    assert_exactly_once(per_rank, {f"{shards[s]}:s{s}-{i:02d}" for s in range(2) for i in range(5)})
    record, _ = next(iter(HFDatasetReader(dataset, shuffle=False)))
    assert record["caption"] == {"en": "a photo number 0"} and set(record["image"]) == {"bytes", "path"}

    stream = ImageCaptionStream(HFDatasetReader(dataset, seed=0), image_size=IMAGE_SIZE)
    with caplog.at_level(logging.WARNING, logger="cclm_hf.data.pretraining"):
        samples = list(stream)
    assert len(samples) == 9 and all(s["pixel_values"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) for s in samples)
    assert stream.bad_samples.counts() == {"unreadable_image": 1}
    assert f"{shards[1]}:s1-02" in caplog.text


# =====================================================================================================================
# Bad samples
# =====================================================================================================================


def good_record(tmp_path: Path) -> dict:
    path = tmp_path / "good.png"
    path.write_bytes(png_bytes(1))
    return {"image": str(path), "caption": {"en": "a red square", "de": "ein rotes quadrat"}}


def bad_image_caption_records(tmp_path: Path) -> dict[str, object]:
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(png_bytes(2, width=64, height=64)[:300])
    image = b64(3)
    return {
        "malformed_record": '{"binary": "abc", "caption": ',
        "missing_image": {"caption": {"en": "no image here"}},
        "unreadable_image": {"image": str(truncated), "caption": {"en": "a truncated file"}},
        "missing_text": {"binary": image},
        "unknown_language": {"binary": image, "caption": {"xx": "unknown words"}},
        "empty_text": {"binary": image, "caption": {"en": " ?!... "}},
    }


BAD_IMAGE_CAPTION_KINDS = [
    "malformed_record",
    "missing_image",
    "unreadable_image",
    "missing_text",
    "unknown_language",
    "empty_text",
]


@pytest.mark.parametrize("kind", BAD_IMAGE_CAPTION_KINDS)
def test_bad_image_caption_sample_raises_with_source(tmp_path, kind):
    bad = bad_image_caption_records(tmp_path)[kind]
    path = write_jsonl(tmp_path / "data.jsonl", [good_record(tmp_path), bad, good_record(tmp_path)])
    stream = ImageCaptionStream(
        JsonlReader(path, shuffle=False), image_size=IMAGE_SIZE, languages=["en", "de"], skip_bad_samples=False
    )
    iterator = iter(stream)
    assert next(iterator)["text"] in {"a red square", "ein rotes quadrat"}
    with pytest.raises(BadSampleError, match=f"{path}:2") as info:
        next(iterator)
    assert getattr(info.value, "kind", None) == kind


def test_bad_samples_are_skipped_counted_and_logged(tmp_path, caplog):
    bad = bad_image_caption_records(tmp_path)
    lines = [good_record(tmp_path)]
    for record in bad.values():
        lines += [record, good_record(tmp_path)]
    path = write_jsonl(tmp_path / "data.jsonl", lines)
    stream = ImageCaptionStream(JsonlReader(path, shuffle=False), image_size=IMAGE_SIZE, languages=["en", "de"])
    with caplog.at_level(logging.WARNING, logger="cclm_hf.data.pretraining"):
        samples = list(stream)
    assert len(samples) == len(bad) + 1 and sorted(bad) == sorted(BAD_IMAGE_CAPTION_KINDS)
    assert stream.bad_samples.counts() == {kind: 1 for kind in bad}
    assert stream.bad_samples.total == len(bad)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "cclm_hf.data.pretraining"]
    assert len(warnings) == len(bad)
    for line_number in range(2, 2 * len(bad) + 1, 2):
        assert f"{path}:{line_number}" in caplog.text


def test_bad_sample_counter_sums_over_dataloader_workers(tmp_path):
    lines = []
    for i in range(12):
        lines.append({"source_text": f"sentence {i}", "target_text": f"satz {i}"})
        lines.append({"source_text": f"sentence {i}"} if i % 2 else "{broken")
    for f in range(4):  # 4 files: both workers read (and hit bad lines)
        write_jsonl(tmp_path / f"{f}.jsonl", lines[f * 6 : (f + 1) * 6])
    stream = ParallelTextStream(JsonlReader(tmp_path))
    samples = list(DataLoader(stream, batch_size=None, num_workers=2))
    assert len(samples) == 12
    assert stream.bad_samples.counts() == {"malformed_record": 6, "missing_text": 6}
    assert copy.deepcopy(stream.bad_samples).total == 12


def test_region_and_parallel_bad_samples(tmp_path):
    image = b64(4, width=40, height=40)
    region_bad = {
        "invalid_region": {"binary": image, "elems": []},
        "unknown_language": {"binary": image, "elems": [{"bb": [1, 1, 30, 30], "caption": {"xx": "?"}}]},
    }
    for kind, record in region_bad.items():
        path = write_jsonl(tmp_path / f"{kind}.jsonl", [record])
        stream = RegionStream(JsonlReader(path), image_size=IMAGE_SIZE, patch_stride=PATCH_STRIDE, languages=["en"])
        assert list(stream) == [] and stream.bad_samples.counts() == {kind: 1}
        stream.skip_bad_samples = False
        with pytest.raises(BadSampleError, match=f"{path}:1"):
            list(stream)
    # a chosen box outside the image
    path = write_jsonl(
        tmp_path / "outside.jsonl", [{"binary": image, "elems": [{"bb": [50, 50, 5, 5], "caption": "x"}]}]
    )
    with pytest.raises(BadSampleError, match=f"{path}:1.*no area"):
        list(RegionStream(JsonlReader(path), image_size=IMAGE_SIZE, patch_stride=PATCH_STRIDE, skip_bad_samples=False))
    path = write_jsonl(
        tmp_path / "para.jsonl", [{"source_text": "only one side"}, {"source_text": "a", "target_text": "..."}]
    )
    stream = ParallelTextStream(JsonlReader(path, shuffle=False))
    assert list(stream) == [] and stream.bad_samples.counts() == {"missing_text": 1, "empty_text": 1}


# =====================================================================================================================
# Streams
# =====================================================================================================================


def test_language_sampling_is_uniform_and_restricted(tmp_path):
    image_path = tmp_path / "image.png"
    image_path.write_bytes(png_bytes(0, width=8, height=8))
    n = 1200
    captions = {"en": "a dog", "de": "ein hund", "fr": "un chien"}
    records = [{"image": "image.png", "caption": [captions] if i % 2 else captions} for i in range(n)]
    records.append({"image": "image.png", "caption": {"fr": "seulement en français"}})
    path = write_jsonl(tmp_path / "data.jsonl", records)

    def languages_drawn(languages):
        stream = ImageCaptionStream(
            JsonlReader(path), transform=cheap_transform, languages=languages, image_root=str(tmp_path), seed=7
        )
        drawn = collections.Counter(sample["language"] for sample in stream)
        return drawn, stream.bad_samples.counts()

    drawn, bad = languages_drawn(None)
    assert set(drawn) == {"en", "de", "fr"} and not bad and drawn.total() == n + 1
    for language in ("en", "de"):  # uniform: 5-sigma bound of a binomial(n, 1/3)
        assert abs(drawn[language] - n / 3) < 5 * math.sqrt(n / 3 * 2 / 3)
    drawn, bad = languages_drawn(["en", "de"])
    assert set(drawn) == {"en", "de"} and bad == {"unknown_language": 1}
    assert abs(drawn["en"] - n / 2) < 5 * math.sqrt(n / 4)


def test_choose_caption_formats():
    rng = random.Random(0)
    assert choose_caption("plain text", rng) == [("plain text", "und")]
    assert choose_caption("plain text", rng, languages=frozenset({"en"}), default_language="en") == [
        ("plain text", "en")
    ]
    assert choose_caption([{"en": "x"}], rng) == [("x", "en")]
    pair = choose_caption({"en": "x", "de": "y"}, rng, count=2)
    assert sorted(pair) == [("x", "en"), ("y", "de")]
    with pytest.raises(BadSampleError, match="2 languages"):
        choose_caption({"en": "x"}, rng, count=2)
    with pytest.raises(BadSampleError, match="type int"):
        choose_caption({"en": 3}, rng)


def test_parallel_swap_frequency_and_determinism(tmp_path):
    n = 2000
    path = write_jsonl(
        tmp_path / "para.jsonl", [{"source_text": f"src {i}", "target_text": f"tgt {i}"} for i in range(n)]
    )

    def run(seed, epoch):
        stream = ParallelTextStream(JsonlReader(path, seed=seed))
        stream.set_epoch(epoch)
        return [sample["text"].startswith("tgt") for sample in stream]

    swapped = run(0, 0)
    assert abs(sum(swapped) - n / 2) < 5 * math.sqrt(n / 4)
    assert run(0, 0) == swapped
    assert run(0, 1) != swapped
    samples = list(ParallelTextStream(JsonlReader(path), swap_prob=0.0))
    assert samples[0] == {"text": "src 0", "text_2": "tgt 0"}


def region_record(image: str, *, whole_caption=True, num_elems=4, caption_word="dog") -> dict:
    elems = [
        {"bb": [4 + 8 * i, 2 + 6 * i, 14, 12], "caption": {"en": f"a {caption_word} {i}", "de": f"ein hund {i}"}}
        for i in range(num_elems)
    ]
    elems[0]["attributes"] = {"en": ["brown", "small"], "de": ["braun"]}
    record = {"binary": image, "elems": elems}
    if whole_caption:
        record["caption"] = [{"en": "animals in a field"}]
    return record


def test_region_stream_samples(tmp_path):
    records = [region_record(b64(i, width=64, height=56), whole_caption=i % 2 == 0) for i in range(20)]
    path = write_jsonl(tmp_path / "regions.jsonl", records)
    stream = RegionStream(
        JsonlReader(path, shuffle=False), image_size=IMAGE_SIZE, patch_stride=PATCH_STRIDE, max_regions=3
    )
    samples = list(stream)
    assert len(samples) == 20 and not stream.bad_samples.total
    attributed = 0
    for index, sample in enumerate(samples):
        n = len(sample["texts"])
        assert 1 <= n <= 3
        assert sample["pixel_values"].shape == (3, IMAGE_SIZE, IMAGE_SIZE)
        assert sample["boxes"].shape == (n, 4) and sample["boxes"].dtype == torch.float32
        assert sample["region_masks"].shape == (n, 1 + GRID * GRID) and sample["region_masks"].dtype == torch.long
        assert sample["is_whole_image"].dtype == torch.long
        has_whole = index % 2 == 0
        assert sample["is_whole_image"].tolist() == [1] * has_whole + [0] * (n - has_whole)
        if has_whole:
            assert sample["texts"][0] == "animals in a field"
            assert sample["boxes"][0].tolist() == [0.5, 0.5, 1.0, 1.0] and bool(sample["region_masks"][0].all())
        regions = slice(int(has_whole), n)
        assert bool((sample["boxes"][regions] > 0).all() and (sample["boxes"][regions] <= 1).all())
        assert bool((sample["region_masks"][regions, 0] == 1).all())
        assert bool((sample["region_masks"][regions, 1:].sum(1) < GRID * GRID).all())  # a part of the grid only
        attributed += sum(text.split()[0] in {"brown", "braun"} for text in sample["texts"])
    assert attributed > 0, "attributes must be prepended"


def test_region_careful_flip(tmp_path):
    """One element on the left edge: its box centre stays in the left half unless the crop is flipped."""

    def centres(caption):
        record = {"binary": b64(5, width=64, height=64), "elems": [{"bb": [0, 0, 20, 64], "caption": caption}]}
        path = write_jsonl(tmp_path / f"{caption}.jsonl", [record] * 40)
        stream = RegionStream(JsonlReader(path), image_size=IMAGE_SIZE, patch_stride=PATCH_STRIDE, augment=False)
        return [sample["boxes"][0, 0].item() for sample in stream]

    assert max(centres("the dog on the left")) <= 0.5 + 1e-6
    assert max(centres("a dog")) > 0.5


# =====================================================================================================================
# Collators
# =====================================================================================================================


def test_region_collator_pads_and_samples_to_batch_size(tiny_tokenizer):
    generator = torch.Generator().manual_seed(0)

    def sample(image_seed, texts):
        n = len(texts)
        return {
            "pixel_values": torch.full((3, IMAGE_SIZE, IMAGE_SIZE), float(image_seed)),
            "texts": texts,
            "boxes": torch.rand(n, 4, generator=generator),
            "region_masks": torch.randint(0, 2, (n, 1 + GRID * GRID), generator=generator),
            "is_whole_image": torch.tensor([1] + [0] * (n - 1)),
        }

    samples = [sample(0, ["a dog", "a cat", "a park"]), sample(1, ["a man"]), sample(2, ["a red bicycle", "a book"])]
    items = {}  # text -> (image value, box, mask, is_whole)
    for s in samples:
        for k, text in enumerate(s["texts"]):
            items[text] = (
                s["pixel_values"][0, 0, 0].item(),
                s["boxes"][k],
                s["region_masks"][k],
                s["is_whole_image"][k],
            )

    for batch_size in (2, 6, 9, 20):  # draw without replacement / exact / pad by re-sampling / pad by tiling
        batch = RegionCollator(tiny_tokenizer, batch_size, max_tokens=12, seed=1)(samples)
        assert batch["input_ids"].shape[0] == batch_size
        for key in ("image_index", "region_mask", "target_boxes", "is_whole_image", *TEXT_KEYS):
            assert batch[key].shape[0] == batch_size, key
        assert batch["region_mask"].shape[1] == 1 + GRID * GRID
        texts = tiny_tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        counts = collections.Counter(texts)
        if batch_size <= 6:
            assert max(counts.values()) == 1
        else:
            assert set(counts) == set(items)  # every item is kept before any duplicate
            assert max(counts.values()) - min(counts.values()) <= (1 if batch_size < 12 else 3)
        assert batch["pixel_values"].shape[0] == len(set(batch["image_index"].tolist()))
        for j, text in enumerate(texts):  # every field of an item travels together
            image_value, box, mask, whole = items[text]
            assert batch["pixel_values"][batch["image_index"][j], 0, 0, 0].item() == image_value
            assert torch.equal(batch["target_boxes"][j], box) and torch.equal(batch["region_mask"][j], mask)
            assert batch["is_whole_image"][j] == whole


def test_collator_masks_are_seeded(tiny_tokenizer, multilingual_captions):
    texts = [{"text": caption, "text_2": caption} for caption in multilingual_captions["en"]]
    make = lambda **kw: ParallelTextCollator(tiny_tokenizer, **kw)  # noqa: E731
    first = make(seed=0)(texts)
    assert torch.equal(make(seed=0)(texts)["masked_input_ids"], first["masked_input_ids"])
    assert not torch.equal(make(seed=0, rank=1)(texts)["masked_input_ids"], first["masked_input_ids"])
    collator = make(seed=0)
    collator(texts)
    assert not torch.equal(collator(texts)["masked_input_ids"], first["masked_input_ids"]), "the generator advances"


def test_collator_generators_differ_across_workers_and_epochs(tmp_path, tiny_tokenizer):
    path = write_jsonl(
        tmp_path / "para.jsonl", [{"source_text": "a dog runs across the green park", "target_text": "x"}] * 16
    )
    stream = ParallelTextStream(JsonlReader(path), swap_prob=0.0)
    collator = ParallelTextCollator(tiny_tokenizer)
    collator([{"text": "used once in the main process", "text_2": "x"}])  # workers must not inherit this state

    def masks(seed):
        loader = DataLoader(stream, batch_size=4, num_workers=2, collate_fn=collator,
                            generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return [batch["masked_positions"] for batch in loader]

    epoch_a, epoch_b = masks(0), masks(1)
    assert len(epoch_a) == 4
    assert not torch.equal(epoch_a[0], epoch_a[1]), "the two workers must not draw the same masks"
    assert not all(torch.equal(a, b) for a, b in zip(epoch_a, epoch_b, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(epoch_a, masks(0), strict=True)), (
        "reproducible given the DataLoader generator"
    )


def test_collators_pickle_without_generators(tiny_tokenizer):
    """Workers started with "spawn" / "forkserver" receive the collator pickled; torch cannot send a Generator there."""
    samples = [{"text": "a dog runs across the green park", "text_2": "un chien"}] * 3
    explicit = ParallelTextCollator(tiny_tokenizer, generator=torch.Generator().manual_seed(3))
    automatic = ParallelTextCollator(tiny_tokenizer)
    automatic(samples)  # creates its generator
    for collator in (explicit, automatic):
        assert not any(isinstance(value, torch.Generator) for value in collator.__getstate__().values())
    clone = pickle.loads(pickle.dumps(explicit))
    assert torch.equal(clone(samples)["masked_input_ids"], explicit(samples)["masked_input_ids"])
    assert torch.equal(clone(samples)["masked_input_ids"], explicit(samples)["masked_input_ids"])


def test_translation_lm_layout(tiny_tokenizer):
    max_tokens = 6
    collator = ParallelTextCollator(tiny_tokenizer, max_tokens=max_tokens, translation_lm=True, seed=0)
    long_a = "a man rides a red bicycle down the street"
    samples = [
        {"text": long_a, "text_2": "un homme"},
        {"text": "a dog", "text_2": long_a},
        {"text": long_a, "text_2": long_a},
    ]
    batch = collator(samples)
    joint = collator.translation_lm_inputs([s["text"] for s in samples], [s["text_2"] for s in samples])
    bos, eos, pad = tiny_tokenizer.cls_token_id, tiny_tokenizer.sep_token_id, tiny_tokenizer.pad_token_id

    def pieces(text):
        return tiny_tokenizer(text, add_special_tokens=False)["input_ids"]

    for row, sample in enumerate(samples):
        a, b = pieces(sample["text"])[: max_tokens - 1], pieces(sample["text_2"])[: max_tokens - 1]
        expected = ([bos] + a + [eos] + b)[: 2 * max_tokens - 1] + [eos]
        length = int(joint["attention_mask"][row].sum())
        assert joint["input_ids"][row, :length].tolist() == expected and length <= 2 * max_tokens
        assert bool((joint["input_ids"][row, length:] == pad).all())
    assert len(pieces(long_a)) > max_tokens, "the test needs a text longer than a side"
    # both sides full: 1 + 5 + 1 + 5 + 1 = 13 tokens, cut to 2 * max_tokens; the last one is still </s>
    assert int(joint["attention_mask"][2].sum()) == 2 * max_tokens and joint["input_ids"][2, -1] == eos
    assert torch.equal(batch["masked_attention_mask"], joint["attention_mask"])
    # masked copy of the joint sequence: differs only at masked positions, labels are the joint ids there
    positions, labels = batch["masked_positions"], batch["masked_labels"]
    valid = labels != -100
    assert bool((positions[valid] > 0).all())
    assert torch.equal(joint["input_ids"].gather(1, positions)[valid], labels[valid])
    changed = batch["masked_input_ids"] != joint["input_ids"]
    allowed = torch.zeros_like(changed)
    allowed.scatter_(1, positions, valid)
    assert not bool((changed & ~allowed).any())
    # unmasked sides for TTC
    assert torch.equal(batch["input_ids"], collator.tokenize([s["text"] for s in samples])["input_ids"])
    assert batch["input_ids"].shape[1] <= max_tokens and batch["input_ids_2"].shape[1] <= max_tokens


# =====================================================================================================================
# End to end: records -> batches -> tiny model
# =====================================================================================================================


def test_end_to_end_batches_feed_the_model(tmp_path, model_and_tokenizer, multilingual_captions):
    model, tokenizer = model_and_tokenizer
    accepted = forward_keys(model)
    captions = [{lang: multilingual_captions[lang][i] for lang in ("en", "de", "fr", "zh")} for i in range(10)]
    (tmp_path / "images").mkdir()
    image_records = []
    for i in range(6):  # half image files (relative to image_root), half base64
        if i % 2:
            (tmp_path / "images" / f"{i}.png").write_bytes(png_bytes(i))
            image_records.append({"binary": f"{i}.png", "caption": captions[i]})
        else:
            image_records.append({"image": b64(i), "caption": [captions[i], captions[i + 1]]})
    images_path = write_jsonl(tmp_path / "images.jsonl", image_records)
    regions_path = write_jsonl(
        tmp_path / "regions.jsonl", [region_record(b64(i, width=64, height=56)) for i in range(4)]
    )
    para_path = write_jsonl(
        tmp_path / "para.jsonl",
        [
            {"source_text": multilingual_captions["en"][i], "target_text": multilingual_captions["ja"][i]}
            for i in range(6)
        ],
    )

    image_stream = ImageCaptionStream(
        JsonlReader(images_path), image_size=IMAGE_SIZE, image_root=str(tmp_path / "images")
    )
    image_batch = next(iter(DataLoader(image_stream, batch_size=6, collate_fn=ImageCaptionCollator(tokenizer))))
    assert set(image_batch) == TEXT_KEYS | {"pixel_values"}
    assert image_batch["pixel_values"].shape == (6, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert image_batch["pixel_values"].dtype == torch.float32
    assert image_batch["masked_positions"].shape == (6, 12)
    assert image_batch["input_ids"].shape[1] <= 40 and bool((image_batch["input_ids"][:, 0] == 0).all())

    region_stream = RegionStream(JsonlReader(regions_path), image_size=IMAGE_SIZE, patch_stride=PATCH_STRIDE)
    region_loader = DataLoader(region_stream, batch_size=3, collate_fn=RegionCollator(tokenizer, batch_size=8))
    region_batch = next(iter(region_loader))
    assert set(region_batch) == TEXT_KEYS | {
        "pixel_values",
        "image_index",
        "region_mask",
        "target_boxes",
        "is_whole_image",
    }
    assert region_batch["region_mask"].shape == (8, 1 + GRID * GRID)
    assert region_batch["target_boxes"].shape == (8, 4) and region_batch["image_index"].shape == (8,)
    assert int(region_batch["is_whole_image"].sum()) < 8

    para_stream = ParallelTextStream(JsonlReader(para_path))
    para_batch = next(iter(DataLoader(para_stream, batch_size=6, collate_fn=ParallelTextCollator(tokenizer))))
    assert set(para_batch) == TEXT_KEYS | {"input_ids_2", "attention_mask_2"}
    assert para_batch["masked_positions"].shape == (6, 20)
    tlm_collator = ParallelTextCollator(tokenizer, max_tokens=24, translation_lm=True)
    tlm_batch = next(iter(DataLoader(para_stream, batch_size=6, collate_fn=tlm_collator)))
    assert set(tlm_batch) == TEXT_KEYS | {"input_ids_2", "attention_mask_2", "masked_attention_mask"}

    outputs = {}
    for name, batch in (
        ("image", image_batch),
        ("region", region_batch),
        ("parallel", para_batch),
        ("tlm", tlm_batch),
    ):
        assert set(batch) <= accepted, name
        for key, value in batch.items():
            assert value.dtype == (torch.float32 if key in {"pixel_values", "target_boxes"} else torch.long), key
        with torch.no_grad():
            outputs[name] = output = model(**batch)
        assert torch.isfinite(output.loss), name
        assert output.mlm_loss is not None and torch.isfinite(output.mlm_loss), name
    assert torch.isfinite(outputs["region"].bbox_loss) and torch.isfinite(outputs["region"].giou_loss)
    assert outputs["parallel"].ttm_loss is not None
    assert outputs["tlm"].ttm_loss is None  # the TLM variant drops TTM, as the original


def test_bad_sample_counter_kinds():
    counter = BadSampleCounter()
    counter.add("unreadable_image")
    counter.add("something new")
    assert counter.counts() == {"unreadable_image": 1, "other": 1} and counter.total == 2
    counter.reset()
    assert counter.total == 0
