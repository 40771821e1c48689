"""Record readers of the pre-training streams, sharded over processes and DataLoader workers.

The original reads every pre-training set with `DistLineReadingDataset`: a directory (or comma-separated list) of
text files, one JSON object per line; the files are split across ranks, then across DataLoader workers, and the file
order is reshuffled on every pass. Its quirks, fixed here: the shuffle uses Python's global `random` (so the order
depends on whatever else consumed it), a rank with fewer files than workers silently starves workers, and a malformed
line is swallowed with a print inside the dataset.

Three readers with one interface ([`RecordReader`]):

- [`JsonlReader`]: the original jsonl shards (local paths). Files are dealt to the `world_size * num_workers`
  shards when there are at least as many files as shards; otherwise every shard reads all files and keeps every
  `num_shards`-th line, so small data sets (and tests) still use all workers. The file order of an epoch is a
  permutation drawn from `(seed, epoch)` only, hence identical on every rank: that is what makes the shards disjoint.
- [`HFDatasetReader`]: a `datasets.Dataset` or `datasets.IterableDataset` (streaming, or `load_dataset("webdataset",
  data_files=...)` tar shards), split with the `datasets` conventions (see the class).
- [`InMemoryReader`]: a list of records already in memory (the built-in demo's generated data), split like a
  map-style `datasets.Dataset`.

Both yield `(record, source)`: `record` a dict, `source` a string naming where it came from (`"path:line"`, 1-based),
repeated in every error message. A record that cannot be parsed is reported as a [`BadSampleError`] to the
`on_bad_sample` callback of [`RecordReader.iter_records`] (the streams count and skip it there) and iteration goes on;
without a callback it is raised.
"""

from __future__ import annotations

import json
import logging
import os
import random
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from .images import BadSampleError


logger = logging.getLogger(__name__)

__all__ = [
    "BAD_SAMPLE_KINDS",
    "HFDatasetReader",
    "InMemoryReader",
    "JsonlReader",
    "RecordReader",
    "ShardContext",
    "bad_sample",
    "epoch_indices",
    "epoch_seed",
    "flatten_webdataset_sample",
    "list_data_files",
    "shard_context",
]

OnBadSample = Callable[[BadSampleError], None]

# Kinds of bad samples, the keys under which the streams count them. The reader reports MALFORMED_RECORD; the others
# come from the streams of `cclm_hf.data.pretraining`. "other" collects errors raised without a kind.
MALFORMED_RECORD = "malformed_record"
BAD_SAMPLE_KINDS: tuple[str, ...] = (
    MALFORMED_RECORD,  # unparsable line / row, wrong field types
    "missing_image",  # no image field
    "unreadable_image",  # missing file, undecodable or truncated image
    "missing_text",  # no caption / source or target text, empty caption list or dict
    "unknown_language",  # no caption in one of the allowed languages
    "empty_text",  # nothing left after `pre_caption`
    "invalid_region",  # no elements, bad boxes, chosen box outside the image
    "other",
)

# Errors a `datasets` row access raises for a corrupt stored value (e.g. an undecodable image column).
_ROW_READ_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, struct.error)

# webdataset members that hold the image of a sample, by preference.
_WEBDATASET_IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff")


def bad_sample(source: str, reason: str, kind: str) -> BadSampleError:
    """A [`BadSampleError`] tagged with `kind` (the key under which the streams count it)."""
    error = BadSampleError(source, reason)
    error.kind = kind
    return error


class ShardContext(NamedTuple):
    """Where this iterator sits among all data-loading iterators: `rank` of `world_size`, worker of `num_workers`."""

    rank: int
    world_size: int
    worker_id: int
    num_workers: int

    @property
    def index(self) -> int:
        """Shard index of this (rank, worker): ranks are split first, then each rank's workers."""
        return self.rank * self.num_workers + self.worker_id

    @property
    def count(self) -> int:
        """Total number of shards, `world_size * num_workers`."""
        return self.world_size * self.num_workers


def shard_context(rank: int, world_size: int) -> ShardContext:
    """The shard of the calling code: `(rank, world_size)` plus the DataLoader worker it runs in (if any)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"Need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    worker = torch.utils.data.get_worker_info()
    if worker is None:
        return ShardContext(rank, world_size, 0, 1)
    return ShardContext(rank, world_size, worker.id, worker.num_workers)


def epoch_seed(*entropy: int) -> int:
    """A 64-bit seed derived from non-negative integers (`numpy.random.SeedSequence`: no collisions in practice,
    unlike `seed + epoch`, where epoch 1 of seed 0 replays epoch 0 of seed 1)."""
    if any(value < 0 for value in entropy):
        raise ValueError(f"Seeds and epochs must be non-negative, got {entropy}.")
    return int(np.random.SeedSequence(list(entropy)).generate_state(1, np.uint64)[0])


def list_data_files(data_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[str]:
    """The files of `data_path`: a file, a directory (its non-hidden files, not recursive, like the original's
    listing), a comma-separated string of those, or a list of those. Directory contents are sorted so that every
    rank sees the same list; the given order of explicit entries is kept.

    Raises:
        FileNotFoundError: An entry does not exist (a configuration error, never a bad sample).
        ValueError: No file at all.
    """
    if isinstance(data_path, (str, os.PathLike)):
        entries = [part.strip() for part in os.fspath(data_path).split(",") if part.strip()]
    else:
        entries = [os.fspath(part) for part in data_path]
    files: list[str] = []
    for entry in entries:
        if os.path.isdir(entry):
            names = sorted(name for name in os.listdir(entry) if not name.startswith("."))
            files += [os.path.join(entry, name) for name in names if os.path.isfile(os.path.join(entry, name))]
        elif os.path.isfile(entry):
            files.append(entry)
        else:
            raise FileNotFoundError(f"No such data file or directory: {entry!r}")
    if not files:
        raise ValueError(f"No data files found in {data_path!r}.")
    return files


class RecordReader:
    """Interface of the readers: an epoch-aware iterable of `(record, source)` pairs for the calling shard.

    Attributes:
        rank, world_size: This process among the data-parallel processes.
        seed: Base seed of every random choice of the reader.
        epoch: Epoch of the next iteration (see `set_epoch`).
    """

    def __init__(self, *, rank: int = 0, world_size: int = 1, seed: int = 0) -> None:
        shard_context(rank, world_size)  # validates
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle of the next iteration. Call it with the same value on every rank before each epoch
        (with `persistent_workers=True` the workers keep the value they were started with)."""
        self.epoch = epoch

    def iter_records(self, on_bad_sample: OnBadSample | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        """Yield `(record, source)` of this shard; unparsable records go to `on_bad_sample` (raised without one)."""
        raise NotImplementedError

    def __iter__(self) -> Iterator[tuple[dict[str, Any], str]]:
        return self.iter_records()

    @staticmethod
    def _report(error: BadSampleError, on_bad_sample: OnBadSample | None) -> None:
        if on_bad_sample is None:
            raise error
        on_bad_sample(error)


def epoch_indices(num_records: int, seed: int, epoch: int, shuffle: bool, shard: ShardContext) -> np.ndarray:
    """Indices of `num_records` in-memory rows read by `shard` in `epoch`, in reading order.

    A per-epoch permutation drawn from `(seed, epoch)` (identical on every rank), cut into `world_size` contiguous
    chunks as `datasets.distributed.split_dataset_by_node` cuts a map-style dataset (`numpy.array_split`), each chunk
    strided over the DataLoader workers.
    """
    order = np.arange(num_records)
    if shuffle:
        order = np.random.default_rng(epoch_seed(seed, epoch)).permutation(num_records)
    chunk = np.array_split(order, shard.world_size)[shard.rank]
    return chunk[shard.worker_id :: shard.num_workers]


class InMemoryReader(RecordReader):
    """Records held in a Python list (e.g. generated data), sharded and shuffled like a map-style `datasets.Dataset`
    (see [`epoch_indices`]).

    Args:
        records: The records (dicts in the layout the stream expects; images may be `PIL.Image` objects).
        rank, world_size, seed: See [`RecordReader`].
        shuffle: Shuffle every epoch.
        repeat: Iterate forever, epoch after epoch, each with its own order.
        name: Prefix of the sources (`"<name>[index]"`).
    """

    def __init__(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        repeat: bool = False,
        name: str = "records",
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        if not records:
            raise ValueError(f"{name}: no records")
        self.records = records
        self.shuffle, self.repeat, self.name = shuffle, repeat, name

    def iter_records(self, on_bad_sample: OnBadSample | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        shard = shard_context(self.rank, self.world_size)
        epoch = self.epoch
        while True:
            for index in epoch_indices(len(self.records), self.seed, epoch, self.shuffle, shard):
                yield dict(self.records[index]), f"{self.name}[{int(index)}]"
            if not self.repeat:
                return
            epoch += 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.name}, {len(self.records)} records, rank={self.rank}, "
            f"world_size={self.world_size}, seed={self.seed}, epoch={self.epoch}, repeat={self.repeat})"
        )


class JsonlReader(RecordReader):
    """Records of jsonl files (one JSON object per line), sharded over ranks and DataLoader workers.

    Args:
        data_path: See [`list_data_files`].
        rank, world_size: This process among the data-parallel processes.
        seed: Seed of the per-epoch file order (the same on all ranks) and of the optional line shuffle buffer.
        shuffle: Shuffle the file order every epoch (the original always does).
        shuffle_buffer_size: When > 1, also shuffle lines through a buffer of this many records (not in the
            original, whose files are large; records carry base64 images, so mind the memory: one buffer per worker).
        repeat: Iterate forever, epoch after epoch (`epoch`, `epoch + 1`, ...), like the original's `repeat=True`.

    Lines are read as bytes and decoded one by one, so a bad byte sequence only spoils its own line. Blank lines are
    skipped silently. A line that is not valid UTF-8 JSON, or not a JSON object, is a bad sample `path:line`.
    """

    def __init__(
        self,
        data_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer_size: int = 0,
        repeat: bool = False,
    ) -> None:
        super().__init__(rank=rank, world_size=world_size, seed=seed)
        self.files = list_data_files(data_path)
        self.shuffle = shuffle
        self.shuffle_buffer_size = shuffle_buffer_size
        self.repeat = repeat

    def file_order(self, epoch: int) -> list[str]:
        """All files in the order of `epoch`: a function of `(seed, epoch)` only, identical on every rank/worker."""
        if not self.shuffle:
            return list(self.files)
        permutation = np.random.default_rng(epoch_seed(self.seed, epoch)).permutation(len(self.files))
        return [self.files[i] for i in permutation]

    def _lines(self, epoch: int, shard: ShardContext) -> Iterator[tuple[bytes, str]]:
        files = self.file_order(epoch)
        if len(files) >= shard.count:
            # Whole files per shard: each file is opened by exactly one iterator.
            for path in files[shard.index :: shard.count]:
                yield from self._read_file(path, None, shard)
            return
        # Fewer files than shards: everybody reads everything and keeps every `count`-th line (counted over the
        # concatenation, so the split stays balanced however the lines are spread over the files).
        offset = 0
        for path in files:
            offset = yield from self._read_file(path, offset, shard)

    @staticmethod
    def _read_file(path: str, offset: int | None, shard: ShardContext):
        """Yield `(line, "path:n")` of `path`; with `offset`, only the lines of this shard's stride. Returns the
        running line count (a generator's return value, read with `yield from`)."""
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if offset is not None:
                    mine = offset % shard.count == shard.index
                    offset += 1
                    if not mine:
                        continue
                if line.strip():
                    yield line, f"{path}:{number}"
        return offset

    @staticmethod
    def parse(line: bytes | str, source: str) -> dict[str, Any]:
        """Decode one jsonl line into a dict, or raise [`BadSampleError`] naming `source`."""
        try:
            text = line.decode("utf-8") if isinstance(line, bytes) else line
            record = json.loads(text)
        except UnicodeDecodeError as error:
            raise bad_sample(source, f"line is not valid UTF-8: {error}", MALFORMED_RECORD) from error
        except json.JSONDecodeError as error:
            raise bad_sample(source, f"malformed JSON line: {error}", MALFORMED_RECORD) from error
        if not isinstance(record, dict):
            raise bad_sample(source, f"line is a JSON {type(record).__name__}, not an object", MALFORMED_RECORD)
        return record

    def iter_records(self, on_bad_sample: OnBadSample | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        shard = shard_context(self.rank, self.world_size)
        epoch = self.epoch
        while True:
            lines = self._lines(epoch, shard)
            if self.shuffle_buffer_size > 1:
                buffer_seed = epoch_seed(self.seed, epoch, shard.index, 1)
                lines = _buffer_shuffle(lines, self.shuffle_buffer_size, random.Random(buffer_seed))
            for line, source in lines:
                try:
                    record = self.parse(line, source)
                except BadSampleError as error:
                    self._report(error, on_bad_sample)
                    continue
                yield record, source
            if not self.repeat:
                return
            epoch += 1

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({len(self.files)} files, rank={self.rank}, world_size={self.world_size}, "
            f"seed={self.seed}, epoch={self.epoch}, shuffle={self.shuffle}, repeat={self.repeat})"
        )


def _buffer_shuffle(items: Iterator[Any], size: int, rng: random.Random) -> Iterator[Any]:
    """Shuffle a stream through a buffer of `size` items (the webdataset / `datasets` streaming shuffle)."""
    buffer: list[Any] = []
    for item in items:
        if len(buffer) < size:
            buffer.append(item)
            continue
        index = rng.randrange(size)
        yield buffer[index]
        buffer[index] = item
    rng.shuffle(buffer)
    yield from buffer


def flatten_webdataset_sample(record: Mapping[str, Any]) -> dict[str, Any]:
    """Turn a `load_dataset("webdataset")` sample into a record of the original layout.

    A webdataset sample is `{"__key__", "__url__", "<ext>": value, ...}`: the fields of its `json` member are lifted
    to the top level, the first image member (`jpg`, `png`, ...) becomes `"image"`, and a `txt` member becomes
    `"caption"` when the JSON has none. Records without `__key__` are returned unchanged (as a dict).
    """
    if "__key__" not in record:
        return dict(record)
    flat: dict[str, Any] = {}
    metadata = record.get("json")
    if isinstance(metadata, Mapping):
        flat.update(metadata)
    for extension in _WEBDATASET_IMAGE_EXTENSIONS:
        if record.get(extension) is not None:
            flat.setdefault("image", record[extension])
            break
    if record.get("txt") is not None:
        flat.setdefault("caption", record["txt"])
    flat["__key__"], flat["__url__"] = record["__key__"], record.get("__url__")
    return flat


class HFDatasetReader(RecordReader):
    """Records of a `datasets.Dataset` or `datasets.IterableDataset`, sharded over ranks and DataLoader workers.

    - `IterableDataset` (streaming, webdataset tar shards, `Dataset.to_iterable_dataset(num_shards=...)`): shuffled
      with `dataset.shuffle(seed, buffer_size)` and `set_epoch(epoch)` (which also reshuffles the shard order), split
      across ranks with `datasets.distributed.split_dataset_by_node` (whole shards when their number is a multiple
      of `world_size`, else every `world_size`-th example) and across DataLoader workers by `datasets` itself (whole
      shards; workers beyond the number of shards get nothing, and `datasets` logs a warning). Media decoding is
      switched off (`decode(False)`) so that a corrupt image reaches [`~cclm_hf.data.images.load_image`] as bytes
      and becomes a bad sample, instead of an exception inside the `datasets` iterator that would end the epoch.
      The source is `"<tar url>:<key>"` for webdataset samples, else `"<name>[rank r, worker w, #i]"`.
    - `Dataset` (map-style): a per-epoch permutation drawn from `(seed, epoch)`, cut into `world_size` contiguous
      chunks exactly as `split_dataset_by_node` cuts a map-style dataset (`Dataset.shard(contiguous=True)`, i.e.
      `numpy.array_split`), each chunk strided over the workers. This is done on the index array rather than with
      `split_dataset_by_node` itself so that the source can name the original row, `"<name>[index]"`. A row whose
      stored value cannot be read is a bad sample.

    Nothing is downloaded: the reader only iterates the dataset object it is given.

    Args:
        dataset: The dataset.
        rank, world_size: This process among the data-parallel processes.
        seed: Seed of the shuffles.
        shuffle: Shuffle every epoch.
        shuffle_buffer_size: Example buffer of the streaming shuffle (iterable datasets only).
        name: Prefix of the sources.
        record_fn: Applied to every row (default: [`flatten_webdataset_sample`], the identity for other rows).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        shuffle_buffer_size: int = 1000,
        name: str = "dataset",
        record_fn: Callable[[Mapping[str, Any]], dict[str, Any]] | None = flatten_webdataset_sample,
    ) -> None:
        import datasets

        super().__init__(rank=rank, world_size=world_size, seed=seed)
        if not isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
            raise TypeError(f"Expected a datasets.Dataset or IterableDataset, got {type(dataset).__name__}.")
        self.dataset = dataset
        self.shuffle = shuffle
        self.shuffle_buffer_size = shuffle_buffer_size
        self.name = name
        self.record_fn = record_fn

    @property
    def is_iterable(self) -> bool:
        import datasets

        return isinstance(self.dataset, datasets.IterableDataset)

    def indices(self, epoch: int, shard: ShardContext) -> np.ndarray:
        """Row indices of a map-style dataset read by `shard` in `epoch`, in reading order."""
        return epoch_indices(len(self.dataset), self.seed, epoch, self.shuffle, shard)

    def _finish(self, row: Mapping[str, Any], source: str) -> dict[str, Any]:
        record = self.record_fn(row) if self.record_fn is not None else dict(row)
        if not isinstance(record, dict):
            raise bad_sample(source, f"row is a {type(record).__name__}, not a dict", MALFORMED_RECORD)
        return record

    def _iter_map_style(self, shard: ShardContext, on_bad_sample: OnBadSample | None):
        for index in self.indices(self.epoch, shard):
            source = f"{self.name}[{int(index)}]"
            try:
                try:
                    row = self.dataset[int(index)]
                except _ROW_READ_ERRORS as error:
                    reason = f"cannot read row: {type(error).__name__}: {error}"
                    raise bad_sample(source, reason, MALFORMED_RECORD) from error
                yield self._finish(row, source), source
            except BadSampleError as error:
                self._report(error, on_bad_sample)

    def _iter_iterable(self, shard: ShardContext, on_bad_sample: OnBadSample | None):
        from datasets.distributed import split_dataset_by_node

        dataset = self.dataset.decode(False)
        if self.shuffle:
            dataset = dataset.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer_size)
        dataset = split_dataset_by_node(dataset, rank=self.rank, world_size=self.world_size)
        if self.shuffle:
            # `datasets` reshuffles the shard order whenever the epoch is non-zero, shuffle() or not: only set it
            # when shuffling is wanted.
            dataset.set_epoch(self.epoch)
        for number, row in enumerate(dataset):
            if "__key__" in row:
                source = f"{row.get('__url__')}:{row['__key__']}"
            else:
                source = f"{self.name}[rank {shard.rank}, worker {shard.worker_id}, #{number}]"
            try:
                yield self._finish(row, source), source
            except BadSampleError as error:
                self._report(error, on_bad_sample)

    def iter_records(self, on_bad_sample: OnBadSample | None = None) -> Iterator[tuple[dict[str, Any], str]]:
        shard = shard_context(self.rank, self.world_size)
        if self.is_iterable:
            return self._iter_iterable(shard, on_bad_sample)
        return self._iter_map_style(shard, on_bad_sample)

    def __repr__(self) -> str:
        kind = "iterable" if self.is_iterable else f"{len(self.dataset)} rows"
        return (
            f"{type(self).__name__}({self.name}, {kind}, rank={self.rank}, world_size={self.world_size}, "
            f"seed={self.seed}, epoch={self.epoch}, shuffle={self.shuffle})"
        )
